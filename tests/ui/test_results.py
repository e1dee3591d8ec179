"""Where a run's result comes from: the playbook's set_stats (runner's playbook_on_stats event),
never the text of a task named like a result; for the keys whose roles do not record stats
yet (jobs.RESULT_TASKS), their result task, in the shape set_stats gives. Pure logic: the
events are what ansible-runner hands the event handler (the real runs are in test_error_class,
test_verify and test_e2e_ssh)."""
from borgfleet_ui import jobs, results
from borgfleet_ui.kinds import KINDS


def run_of(kind, events):
    run = jobs.PlaybookRun({}, None, None, {"id": "j", "kind": kind}, {}, KINDS[kind], joblog=None)
    for event in events:
        assert run.on_event(event) is False
    return run


def task_ok(host, task, msg):
    return {"event": "runner_on_ok", "event_data": {"host": host, "task": task, "res": {"msg": msg}}}


def stats(data):
    return {"event": "playbook_on_stats", "event_data": {"ok": {}, "failures": {}, "artifact_data": data}}


LOCKED = {"backup": "data", "client": "c1", "failed": True, "error_kind": "locked", "msg": "repository locked"}


def test_a_backup_result_is_its_stats_not_its_task():
    # The result task says one thing, the stats another: the stats decide.
    wrong = dict(LOCKED, error_kind="wrong_passphrase")
    run = run_of("backup", [task_ok("c1", "borgfleet backup result", [wrong]),
                            stats({"borgfleet_backup": [LOCKED], "borgfleet_prune": [wrong]})])
    assert run.report() == [LOCKED]
    assert results.failed({"kind": "backup"}, run.report()) == {
        "failed": [{"backup": "data", "client": "c1", "error_kind": "locked", "msg": "repository locked"}]}
    # Without stats (the run died before its end) there is nothing, whatever the tasks printed.
    assert run_of("backup", [task_ok("c1", "borgfleet backup result", [wrong])]).report() is None
    assert results.failed({"kind": "backup"}, None) is None


def test_a_verification_keeps_its_report_when_it_fails():
    entry = {"backup": "pg", "archive": "pg-1", "passed": False, "msg": "did not start"}
    run = run_of("verify", [stats({"borgfleet_verify": {"c1": [entry], "c2": []}})])
    assert results.failed({"kind": "verify"}, run.report()) == {"passed": False, "backups": [entry]}


def test_keys_without_stats_yet_read_their_result_task_in_the_shape_of_stats():
    listed = [{"backup": "data", "archives": [{"name": "data-1"}]}]
    run = run_of("list_archives", [task_ok("c1", "borgfleet list_archives result", listed),
                                   task_ok("c2", "borgfleet list_archives result", [{"backup": "etc", "archives": []}]),
                                   task_ok("c1", "borgfleet backup result", [LOCKED]),
                                   stats({})])
    assert run.report() == listed + [{"backup": "etc", "archives": []}]   # joined, as set_stats joins lists
    system = {"cpu_count": 2}
    run = run_of("collect_stats", [task_ok("s1", "borgfleet stats result", system),
                                   task_ok("s2", "borgfleet stats result", {"cpu_count": 4})])
    assert run.report() == {"s1": system, "s2": {"cpu_count": 4}}         # per host
    # Once the role records its stats, they win.
    run = run_of("collect_stats", [task_ok("s1", "borgfleet stats result", system),
                                   stats({"borgfleet_stats": {"s1": {"cpu_count": 8}}})])
    assert run.report() == {"s1": {"cpu_count": 8}}
