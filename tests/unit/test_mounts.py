"""The one mount table reader (module_utils/mounts.py): pure parsing, and the live table."""
import os
import subprocess

from ansible_collections.borgfleet.backup.plugins.module_utils import mounts

MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
50 27 254:16 / /srv/my\\040pool rw,relatime - xfs /dev/mapper/vg0-pool rw
51 27 254:16 /sub /mnt/bind rw,relatime - xfs /dev/mapper/vg0-pool rw
60 27 0:50 /a\\011b /mnt/tab\\011here rw shared:1 master:2 - tmpfs my\\040src rw
61 27 0:51 / /mnt/new\\012line rw - tmpfs tmpfs rw
62 27 0:52 / /mnt/back\\134slash\\134040 rw - fuse.borgfs borgfs rw
63 27 0:53 / /mnt/a\\040-\\040b rw - tmpfs tmpfs rw
"""


def test_every_octal_escape_is_undone():
    table = mounts.parse_mountinfo(MOUNTINFO)
    by_point = {m["mountpoint"]: m for m in table}
    assert set(by_point) == {"/proc", "/", "/srv/my pool", "/mnt/bind", "/mnt/tab\there", "/mnt/new\nline",
                             "/mnt/back\\slash\\040", "/mnt/a - b"}
    tab = by_point["/mnt/tab\there"]
    # optional fields (shared:, master:) before the separator do not shift fstype and source
    assert (tab["root"], tab["fstype"], tab["source"], tab["device_number"]) == ("/a\tb", "tmpfs", "my src", "0:50")
    assert by_point["/mnt/back\\slash\\040"]["fstype"] == "fuse.borgfs"
    assert mounts.unescape("x\\040y\\011z\\012w\\134v") == "x y\tz\nw\\v"


def test_mount_of_takes_the_longest_prefix():
    table = mounts.parse_mountinfo(MOUNTINFO)
    assert mounts.mount_of("/srv/my pool/db", table)["source"] == "/dev/mapper/vg0-pool"
    assert mounts.mount_of("/srv/my poolX", table)["mountpoint"] == "/"
    assert mounts.mount_of("/mnt/new\nline/f", table)["device_number"] == "0:51"


def test_mounts_under_deepest_first():
    table = [{"mountpoint": p} for p in ("/run/x", "/run/x/a b", "/run/x/a b/c", "/run/xy", "/run")]
    assert mounts.mounts_under("/run/x", table) == ["/run/x/a b/c", "/run/x/a b", "/run/x"]


def test_live_table_sees_a_mount_point_with_a_space_tab_and_newline(tmp_path):
    if os.geteuid() != 0:
        import pytest
        pytest.skip("mounting needs root")
    point = tmp_path / "a b\tc\nd\\e"
    point.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "borgfleet-test", str(point)], check=True)
    try:
        assert mounts.mount_table()[str(point)] == "tmpfs"
        assert mounts.mounts_under(str(tmp_path)) == [str(point)]
    finally:
        subprocess.run(["umount", str(point)], check=True)
    assert str(point) not in mounts.mount_table()
