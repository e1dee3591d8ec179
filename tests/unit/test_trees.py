"""The restore comparison of the test harness must see every kind of difference it promises."""
import os
import subprocess

import pytest

from tests.lib.trees import compare_trees, make_tree


@pytest.fixture()
def pair(tmp_path):
    a = make_tree(tmp_path / "a", "seed")
    b = tmp_path / "b"
    subprocess.run(["cp", "-a", str(a), str(b)], check=True)   # cp -a keeps owners, times, xattrs, ACLs
    assert compare_trees(a, b) == []
    return a, b


def _touch_back(path, like):
    st = os.lstat(like)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


@pytest.mark.parametrize("change, expected", [
    (lambda b: (b / "extra").write_text("x"), "unexpected: extra"),
    (lambda b: os.chown(b / "sub/deep/nested.txt", 0, 0), "owner differs: sub/deep/nested.txt"),
    (lambda b: os.utime(b / "README.txt", ns=(0, 10**18)), "mtime differs: README.txt"),
    (lambda b: os.removexattr(b / "README.txt", "user.borgfleet"), "xattrs/ACLs differ: README.txt"),
    (lambda b: subprocess.run(["setfacl", "-b", str(b / "mode600.conf")], check=True), "mode600.conf"),
    (lambda b: (b / "bin/random.dat").write_bytes(b"changed"), "content differs: bin/random.dat"),
])
def test_compare_trees_sees_each_difference(pair, change, expected):
    a, b = pair
    change(b)
    for rel in ("bin/random.dat", "bin"):   # keep mtimes equal where the change is not about them
        if expected.endswith("random.dat"):
            _touch_back(b / rel, a / rel)
    diffs = compare_trees(a, b)
    assert any(expected in d for d in diffs), diffs
