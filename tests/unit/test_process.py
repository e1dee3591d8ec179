"""The collection's one command runner (module_utils/_process.py) with real processes."""
import os
import time

import pytest

from ansible_collections.borgfleet.backup.plugins.module_utils import _process
from ansible_collections.borgfleet.backup.plugins.module_utils.errors import CommandError


def test_argv_is_not_a_shell_and_stdin_text_reaches_the_command():
    done = _process.run_command(["cat"], input_text="a; echo $HOME `id`\n", timeout=10)
    assert done.ok and done.out == "a; echo $HOME `id`\n"


def test_c_locale_environment():
    done = _process.run_command(["sh", "-c", 'echo "$LC_ALL $LANG"'], timeout=10)
    assert done.out.strip() == "C.UTF-8 C.UTF-8"
    clean = _process.run_command(["env"], env=_process.c_locale_env({"X": "1"}, inherit=False), timeout=10)
    assert sorted(line.split("=")[0] for line in clean.out.splitlines()) == ["LANG", "LC_ALL", "PATH", "X"]


def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "pid"
    started = time.monotonic()
    done = _process.run_command(["sh", "-c", 'sleep 60 & echo $! > "$1"; wait', "sh", str(pidfile)], timeout=1)
    assert done.status == "timeout" and not done.ok
    assert time.monotonic() - started < 10
    grandchild = int(pidfile.read_text())
    for _ in range(50):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the command's background child survived the timeout")


def test_missing_tool_and_failures_raise_with_secrets_masked():
    assert _process.run_command(["borgfleet-no-such-tool"]).status == "missing"
    with pytest.raises(CommandError) as err:
        _process.check_command(["borgfleet-no-such-tool"])
    assert err.value.rc == 127 and "not installed" in err.value.msg
    with pytest.raises(CommandError) as err:
        _process.check_command(["sh", "-c", 'echo "bad password s3cr3t" >&2; exit 3', "sh", "s3cr3t"],
                               secrets=["s3cr3t"], timeout=10)
    assert err.value.rc == 3
    for text in (err.value.msg, err.value.stderr, " ".join(err.value.cmd)):
        assert "s3cr3t" not in text
    assert "bad password ********" in err.value.msg
    with pytest.raises(CommandError) as err:
        _process.check_command(["sleep", "30"], timeout=1)
    assert "did not finish within 1 s" in err.value.msg


def test_tools_runs_only_what_is_on_its_path(tmp_path):
    assert _process.Tools(path=str(tmp_path)).run(["true"]).status == "missing"
    assert _process.Tools().run(["true"]).ok


def _gone(pid, seconds=5):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a killed child of the exited shell is reaped by init; until then it is a zombie
        with open("/proc/%d/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        time.sleep(0.1)
    return False


def test_borg_guard_kills_what_a_command_left_in_its_group_unless_it_is_a_daemon():
    argv = ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"]
    rc, out, _ = _process.run(argv, dict(os.environ), watch_fd=None)
    assert rc == 0 and _gone(int(out)), "a leftover of the command survived the guard"
    # borg mount: its daemon's ssh stays in the group and must outlive the command
    rc, out, _ = _process.run(argv, dict(os.environ), watch_fd=None, daemon=True)
    left = int(out)
    try:
        assert rc == 0 and not _gone(left, 1)
    finally:
        os.kill(left, 9)


def test_stdout_sink_streams_a_large_output_to_a_gzip_file(tmp_path):
    """borg's item list goes to a sink as it comes (never held whole); the file holds every line, and a
    restart (borg run again after a lock) leaves only the second run's output."""
    import gzip

    from ansible_collections.borgfleet.backup.plugins.module_utils import borg

    script = 'i=0; while [ $i -lt 20000 ]; do echo "{\\"path\\": \\"d/f$i\\"}"; i=$((i+1)); done; echo warn >&2'
    dest = tmp_path / "items.jsonl.gz"
    sink = borg._GzipLines(str(dest))
    rc, out, err = _process.run(["sh", "-c", "echo stale"], dict(os.environ), stdout_sink=sink, watch_fd=None)
    sink.restart()
    rc, out, err = _process.run(["sh", "-c", script], dict(os.environ), stdout_sink=sink, watch_fd=None)
    assert (rc, out, err) == (0, "", "warn\n")
    assert sink.close() == 20000
    lines = gzip.open(dest, "rt").read().splitlines()
    assert lines[0] == '{"path": "d/f0"}' and lines[-1] == '{"path": "d/f19999"}' and len(lines) == 20000
    assert oct(dest.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(FileExistsError):   # never over an existing file
        borg._GzipLines(str(dest))
