"""Where a run's result comes from: the playbook's set_stats (runner's playbook_on_stats event),
never the text of a task named like a result, for every kind. Pure logic: the
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


def test_every_kind_reads_its_stats_never_its_result_task():
    listed = [{"backup": "data", "archives": [{"name": "data-1"}]}, {"backup": "etc", "archives": []}]
    system = {"cpu_count": 2}
    for kind, task, printed, recorded in [
            ("list_archives", "borgfleet list_archives result", [{"backup": "x", "archives": []}], listed),
            ("setup", "borgfleet repository result", [LOCKED], [{"backup": "data", "created": True}]),
            ("collect_stats", "borgfleet stats result", {"cpu_count": 99}, {"s1": system, "s2": {"cpu_count": 4}})]:
        key = KINDS[kind].result_key
        assert run_of(kind, [task_ok("s1", task, printed), stats({key: recorded})]).report() == recorded, kind
        # A run without its stats reported nothing, whatever its result task printed.
        assert run_of(kind, [task_ok("s1", task, printed), stats({})]).report() is None, kind
