"""Browse, search and restore with real borg through ansible-playbook: one level of an archive,
a file's history across archives, restore to another directory compared byte for byte (modes,
owners, symlinks, ACLs, xattrs), and restore to the original place that refuses to overwrite,
keeps a copy of what it replaces when allowed, and is idempotent."""
import filecmp
import os
import subprocess
import time

import pytest

from tests.lib.playbook import four_ways, run_module
from tests.modules.test_modules import SECRET, borg

NOBODY = 65534


def create(common, archive, *paths):
    env = dict(os.environ, BORG_PASSPHRASE=SECRET, BORG_BASE_DIR=common["borg_base_dir"])
    subprocess.run(["borg", "create", f"{common['repository']}::{archive}", *map(str, paths)], env=env, check=True)


def xattrs_and_acl(path):
    x = {n: os.getxattr(path, n) for n in os.listxattr(path) if n.startswith("user.")}
    a = subprocess.run(["getfacl", "-c", "--absolute-names", str(path)], capture_output=True, text=True).stdout
    return x, a


def assert_same_tree(a, b):
    """Same names, types, modes, owners, mtimes, contents, link targets, xattrs and ACLs."""
    checked = []
    for dirpath, dirnames, filenames in os.walk(a):
        for name in dirnames + filenames:
            pa = os.path.join(dirpath, name)
            pb = os.path.join(b, os.path.relpath(pa, a))
            sa, sb = os.lstat(pa), os.lstat(pb)
            assert (sa.st_mode, sa.st_uid, sa.st_gid) == (sb.st_mode, sb.st_uid, sb.st_gid), pa
            if os.path.islink(pa):
                assert os.readlink(pa) == os.readlink(pb)
                continue
            assert xattrs_and_acl(pa) == xattrs_and_acl(pb), pa
            checked.append(pa)
            if os.path.isfile(pa):
                assert filecmp.cmp(pa, pb, shallow=False), pa
                assert sa.st_mtime_ns // 1000 == sb.st_mtime_ns // 1000, pa
    assert len(checked) >= 3
    assert xattrs_and_acl(os.path.join(b, "nginx.conf"))[0] == {"user.origin": b"borgfleet"}
    assert "user:nobody:r--" in xattrs_and_acl(os.path.join(b, "secret.key"))[1]


@pytest.fixture
def site(scratch):
    data = scratch / "site"
    (data / "nginx" / "sites").mkdir(parents=True)
    (data / "nginx" / "nginx.conf").write_text("worker_processes 1;\n")
    (data / "nginx" / "sites" / "default").write_text("server { listen 80; }\n")
    (data / "nginx" / "secret.key").write_bytes(os.urandom(3000))
    os.chmod(data / "nginx" / "secret.key", 0o600)
    os.chown(data / "nginx" / "sites" / "default", NOBODY, NOBODY)
    os.symlink("sites/default", data / "nginx" / "enabled")
    os.setxattr(data / "nginx" / "nginx.conf", "user.origin", b"borgfleet")
    subprocess.run(["setfacl", "-m", f"u:{NOBODY}:r", str(data / "nginx" / "secret.key")], check=True)
    common = {"repository": str(scratch / "repo"), "passphrase": SECRET, "borg_base_dir": str(scratch / "base")}
    borg(common["repository"], "init", "--encryption", "repokey-blake2", base=common["borg_base_dir"])
    create(common, "site-1", data)
    time.sleep(1.1)
    (data / "nginx" / "nginx.conf").write_text("worker_processes 4;\n")
    create(common, "site-2", data)
    create(common, "site-3", data)  # unchanged
    os.unlink(data / "nginx" / "sites" / "default")
    create(common, "site-4", data)
    return common, data


def test_browse_one_level_and_search_history(tmp_path, site):
    common, data = site
    rel = str(data).lstrip("/")
    r = run_module(tmp_path, "borg_restore_browse", dict(common, archive="site-1", path=f"/{rel}/nginx"))
    assert [(e["name"], e["type"]) for e in r["entries"]] == [
        ("sites", "d"), ("enabled", "l"), ("nginx.conf", "-"), ("secret.key", "-")]
    key = [e for e in r["entries"] if e["name"] == "secret.key"][0]
    # The ACL mask shows in the group bits.
    assert key["size"] == 3000 and key["mode"] == "-rw-r-----" and key["path"] == f"{rel}/nginx/secret.key"
    assert [e for e in r["entries"] if e["name"] == "enabled"][0]["linktarget"] == "sites/default"
    assert not r["truncated"] and not r["changed"]
    r = run_module(tmp_path, "borg_restore_browse", dict(common, archive="site-1", path=f"{rel}/nginx", limit=2))
    assert len(r["entries"]) == 2 and r["truncated"]
    # The archive holds no item for the parents of the backed-up directory: they are listed as directories.
    r = run_module(tmp_path, "borg_restore_browse", dict(common, archive="site-1", path=""))
    assert [(e["name"], e["type"], e["mode"]) for e in r["entries"]] == [(rel.split("/")[0], "d", None)]
    r = run_module(tmp_path, "borg_restore_browse", dict(common, archive="site-1", path=os.path.dirname(rel)))
    assert [(e["name"], e["path"]) for e in r["entries"]] == [("site", rel)]

    r = run_module(tmp_path, "borg_restore_browse", dict(common, match_archives="site-*", path=f"/{rel}/nginx/nginx.conf"))
    assert r["archives_searched"] == 4
    (conf,) = r["found"]
    assert [a["archive"] for a in conf["archives"]] == ["site-1", "site-2", "site-3", "site-4"]
    assert [(c["archive"], c["change"]) for c in conf["changes"]] == [("site-1", "added"), ("site-2", "modified")]
    r = run_module(tmp_path, "borg_restore_browse", dict(common, path=f"{rel}/nginx/sites/*"))
    (default,) = r["found"]
    assert [(c["archive"], c["change"]) for c in default["changes"]] == [("site-1", "added"), ("site-4", "removed")]


def test_browse_lists_only_direct_children_whatever_the_names(tmp_path, scratch):
    """Names with glob/regex metacharacters are listed at their level and browsed into literally: the
    directory "(.*)" is not "everything", "a[1]" is not "a1", "x.y" is not "xzy"."""
    tree = scratch / "tree"
    for d, children in {"(.*)": ["inner"], "a[1]": ["in-a-bracket"], "a1": ["in-a1"], "x.y": ["in-x.y"],
                        "xzy": ["in-xzy"], "with space": ["in-space"]}.items():
        (tree / d / "sub").mkdir(parents=True)
        (tree / d / "sub" / "deeper").write_text("")
        for c in children:
            (tree / d / c).write_text("1234")
    for f in ("b*", "c?d", "new\nline", "tab\there"):
        (tree / f).write_text("x")
    common = {"repository": str(scratch / "repo"), "passphrase": SECRET, "borg_base_dir": str(scratch / "base")}
    borg(common["repository"], "init", "--encryption", "repokey-blake2", base=common["borg_base_dir"])
    env = dict(os.environ, BORG_PASSPHRASE=SECRET, BORG_BASE_DIR=common["borg_base_dir"])
    # From a relative path, so that the archive's top level is "tree" (from /x/tree it would be empty:
    # borg stores no item for the parents of what it backs up).
    subprocess.run(["borg", "create", f"{common['repository']}::tree-1", "tree"], env=env, cwd=scratch, check=True)
    rel = "tree"

    def names(path, **kw):
        r = run_module(tmp_path, "borg_restore_browse", dict(common, archive="tree-1", path=path, **kw))
        assert not r["changed"]
        for e in r["entries"]:
            assert e["path"] == (path.strip("/") + "/" if path.strip("/") else "") + e["name"]
        return [(e["name"], e["type"]) for e in r["entries"]], r["truncated"]

    assert names("") == ([("tree", "d")], False)
    assert names(f"/{rel}/") == ([("(.*)", "d"), ("a1", "d"), ("a[1]", "d"), ("with space", "d"), ("x.y", "d"),
                                  ("xzy", "d"), ("b*", "-"), ("c?d", "-"), ("new\nline", "-"),
                                  ("tab\there", "-")], False)
    assert names(f"{rel}/(.*)") == ([("sub", "d"), ("inner", "-")], False)
    assert names(f"{rel}/x.y", limit=1) == ([("sub", "d")], True)
    # The other names are browsed into against borg itself in tests/unit (test_real_list_children_...).


def test_restore_to_another_directory_byte_for_byte(tmp_path, site, scratch):
    common, data = site
    rel = str(data).lstrip("/")
    target = scratch / "restored"
    args = dict(common, archive="site-3", target=str(target), paths=[f"{rel}/nginx"])
    def written():  # what is in the target, down to the inode: a rerun must not write a file again
        return sorted((str(p.relative_to(target)), p.lstat().st_ino, p.lstat().st_mtime_ns)
                      for p in target.rglob("*")) if target.exists() else None

    in_check, real, again, _ = four_ways(tmp_path, "borg_restore", args, written)
    assert in_check["nfiles"] == 6 and written() is not None  # 2 dirs, 3 files, 1 symlink
    assert real["conflicts"] == [] and real["bytes"] > 3000
    assert_same_tree(data / "nginx", target / rel / "nginx")
    # deleted from the source after site-3, so compared here
    default = target / rel / "nginx" / "sites" / "default"
    assert default.read_text() == "server { listen 80; }\n" and default.stat().st_uid == NOBODY
    assert again["skipped"] == 6


def test_restore_to_original_place_refuses_then_keeps_a_copy(tmp_path, site, scratch):
    common, data = site
    rel = str(data).lstrip("/")
    conf = data / "nginx" / "nginx.conf"
    conf.write_text("broken by an operator\n")
    args = dict(common, archive="site-2", paths=[f"{rel}/nginx"])  # target / = where it was
    r = run_module(tmp_path, "borg_restore", args, expect_failure=True)
    assert r["failed"] and r["conflicts"] == [str(conf)] and "overwrite=true" in r["msg"]
    assert conf.read_text() == "broken by an operator\n"
    r = run_module(tmp_path, "borg_restore", dict(args, overwrite=True), check=True)
    assert r["changed"] and r["conflicts"] == [str(conf)]
    assert conf.read_text() == "broken by an operator\n"
    backup_dir = scratch / "replaced"
    r = run_module(tmp_path, "borg_restore", dict(args, overwrite=True, backup_dir=str(backup_dir)))
    assert r["changed"] and r["replaced"] == [str(conf)] and r["backup_dir"] == str(backup_dir)
    assert conf.read_text() == "worker_processes 4;\n"
    assert (backup_dir / rel / "nginx" / "nginx.conf").read_text() == "broken by an operator\n"
    # sites/default was deleted after site-2: it is back, with its owner
    assert os.stat(data / "nginx" / "sites" / "default").st_uid == NOBODY
    r = run_module(tmp_path, "borg_restore", dict(args, overwrite=True))
    assert not r["changed"] and r["replaced"] == []
