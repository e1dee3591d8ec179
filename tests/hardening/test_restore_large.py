"""In-place restore of a large tree (issue 10).

borg_restore leaves files identical to the archive alone. It used to exclude each one with two argv words
(`--exclude pp:<path>`), so restoring a tree of more than ~25,000 files failed before borg started
("Argument list too long"). The names now go to a private `--exclude-from` file as literal full-path
patterns (`pf:`); the few names a line-based file cannot carry (newlines, trailing blanks) stay in argv.
"""
import filecmp
import glob
import os
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ansible_collections.borgfleet.backup.plugins.module_utils import borg as b
from tests.lib.playbook import run_module
from tests.modules.test_modules import SECRET, borg

N = 50_000
PER_DIR = 1_000
# Unchanged names that a glob, a stripped line or a split line would read as another name: each has a
# "twin" (the name it would be mistaken for), deleted before the restore, which must come back.
ODD = {"m*": "mall", "q?": "qz", "[ab]": "a", "b\\x": "bx", "trail ": "trail", "new\nline": "new",
       "é*[?]": "éz[?]", " lead": "lead"}
CHANGED_ODD = "c*[x]?\\"


@pytest.fixture
def scratch(test_root):
    d = Path(tempfile.mkdtemp(prefix="restore-large-", dir=test_root))
    d.chmod(0o755)
    return d


def make_tree(top):
    for d in range(N // PER_DIR):
        sub = top / f"d{d:03}"
        sub.mkdir(parents=True)
        for i in range(PER_DIR):
            (sub / f"f{i:04}").write_text(f"{d}/{i}\n")
    odd = top / "odd"
    odd.mkdir()
    for name, twin in ODD.items():
        (odd / name).write_text(f"odd {name!r}\n")
        (odd / twin).write_text(f"twin {twin!r}\n")
    (odd / CHANGED_ODD).write_text("as archived\n")


def files_under(top):
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, top)] = os.lstat(path)
    return out


@pytest.mark.slow  # about 3-5 minutes on the shared 2-core machine: borg create, list and extract of 50,000 files
def test_in_place_restore_of_50000_files(tmp_path, scratch):
    data = scratch / "big"
    make_tree(data)
    rel = str(data).lstrip("/")
    common = {"repository": str(scratch / "repo"), "passphrase": SECRET, "borg_base_dir": str(scratch / "base")}
    borg(common["repository"], "init", "--encryption", "repokey-blake2", base=common["borg_base_dir"])
    env = dict(os.environ, BORG_PASSPHRASE=SECRET, BORG_BASE_DIR=common["borg_base_dir"])
    subprocess.run(["borg", "create", f"{common['repository']}::big-1", str(data)], env=env, check=True)
    ref = scratch / "ref"  # the archive as borg itself extracts it, to compare with
    ref.mkdir()
    subprocess.run(["borg", "extract", f"{common['repository']}::big-1"], env=env, cwd=ref, check=True)
    ref = ref / rel

    time.sleep(1.1)
    changed = {"d007/f0042": "edited\n", "d049/f0999": "edited too, longer\n", f"odd/{CHANGED_ODD}": "edited\n"}
    for path, text in changed.items():
        (data / path).write_text(text)
    os.chmod(data / "d010" / "f0010", 0o600)  # same content, other mode: a conflict too
    conflicts = sorted(str(data / p) for p in list(changed) + ["d010/f0010"])
    deleted = ["d000/f0000", "d025/f0500"] + [f"odd/{twin}" for twin in ODD.values()]
    for path in deleted:
        (data / path).unlink()
    before = files_under(data)
    skip_dirs_before = set(glob.glob(os.path.join(tempfile.gettempdir(), "borgfleet-skip-*")))

    args = dict(common, archive="big-1", paths=[rel])  # target / : where the files were
    r = run_module(tmp_path, "borg_restore", args, expect_failure=True)
    assert r["failed"] and "overwrite=true" in r["msg"], r["msg"]
    assert sorted(r["conflicts"]) == conflicts
    assert files_under(data).keys() == before.keys()  # nothing written, nothing deleted
    for path, text in changed.items():
        assert (data / path).read_text() == text

    backup_dir = scratch / "replaced"
    started = time.monotonic()
    r = run_module(tmp_path, "borg_restore", dict(args, overwrite=True, backup_dir=str(backup_dir)))
    took = time.monotonic() - started
    assert "Argument list too long" not in str(r)
    assert r["changed"] and sorted(r["replaced"]) == conflicts and r["backup_dir"] == str(backup_dir)
    assert r["nfiles"] == len(conflicts) + len(deleted)
    total_files = N + 2 * len(ODD) + 1
    ndirs = N // PER_DIR + 2  # d000.., odd and the top (borg stores no parent of the path it was given)
    assert r["skipped"] == total_files - len(conflicts) - len(deleted) + ndirs
    for path, text in changed.items():  # the replaced versions are kept
        assert (backup_dir / rel / path).read_text() == text

    # The tree is the archive again: same names, contents, modes and mtimes.
    after, archived = files_under(data), files_under(ref)
    assert after.keys() == archived.keys() and len(after) == total_files
    for path, st in archived.items():
        assert filecmp.cmp(ref / path, data / path, shallow=False), path
        assert (st.st_mode, st.st_mtime_ns // 1000) == (after[path].st_mode, after[path].st_mtime_ns // 1000), path
    # Unchanged files were skipped, not written again: borg extract replaces a file by a new one, whose
    # ctime (which nothing can set back) is the restore's.
    rewritten = [p for p, st in before.items() if (after[p].st_ino, after[p].st_ctime_ns) != (st.st_ino, st.st_ctime_ns)]
    assert sorted(rewritten) == sorted(os.path.relpath(c, data) for c in conflicts)
    # The private skip list is gone.
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "borgfleet-skip-*"))) == skip_dirs_before

    r = run_module(tmp_path, "borg_restore", dict(args, overwrite=True))
    assert not r["changed"] and r["nfiles"] == 0 and r["replaced"] == []
    print(f"\nin-place restore of {total_files} files with {len(conflicts) + len(deleted)} to write: {took:.1f} s")


class Recorder:
    """Stands in for the process runner (pure logic): records argv and the skip file while borg would run."""

    def __init__(self):
        self.calls = []

    def __call__(self, argv, environ_update, cwd=None):
        seen = {"argv": list(argv)}
        if "--exclude-from" in argv:
            path = argv[argv.index("--exclude-from") + 1]
            seen["file_mode"] = stat.S_IMODE(os.stat(path).st_mode)
            seen["dir_mode"] = stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode)
            seen["lines"] = Path(path).read_text(encoding="utf-8").split("\n")
            seen["path"] = path
        self.calls.append(seen)
        return 0, "", ""


def test_skip_list_is_a_private_file_and_odd_names_stay_literal(tmp_path):
    rec = Recorder()
    borg_ = b.Borg(b.BorgSettings(str(tmp_path / "repo"), passphrase=SECRET), runner=rec)
    many = [f"srv/d/f{i}" for i in range(30_000)] + ["srv/x*[?]\\", "srv/trail ", "srv/new\nline", "srv/cr\rx",
                                                      "srv/bad\udcffbyte", " srv/lead"]
    borg_.extract("a-1", str(tmp_path), skip_paths=many)
    seen = rec.calls[0]
    assert (seen["file_mode"], seen["dir_mode"]) == (0o600, 0o700)
    assert seen["lines"][:-1] == [f"pf:{p}" for p in many[:30_000]] + ["pf:srv/x*[?]\\", "pf: srv/lead"]
    argv = seen["argv"]
    odd_in_argv = [argv[i + 1] for i, a in enumerate(argv) if a == "--exclude"]
    assert odd_in_argv == ["pf:srv/trail ", "pf:srv/new\nline", "pf:srv/cr\rx", "pf:srv/bad\udcffbyte"]
    assert len(argv) < 40 and not os.path.exists(os.path.dirname(seen["path"]))
    # Too many names that cannot go in the file: refused clearly, borg not started.
    rec.calls.clear()
    with pytest.raises(b.BorgError) as e:
        borg_.extract("a-1", str(tmp_path), skip_paths=[f"srv/n{i}\nx" * 40 for i in range(2_000)])
    assert e.value.kind == "invalid_input" and "restore into another directory" in e.value.msg and not rec.calls
