"""Small data trees to back up, and an exact comparison of two trees (content, links, modes,
owners, mtimes, ACLs and extended attributes)."""
import filecmp
import os
import stat
import subprocess
from pathlib import Path

# Relative paths the fleet's backups exclude ('*.tmp' and the secret/ directory).
EXCLUDED = ["scratch.tmp", "sub/deep/also.tmp", "secret", "secret/key.pem"]


def make_tree(root, seed):
    """Create a tree with text, binary, odd names, a symlink, an empty dir and excluded files."""
    root = Path(root)
    files = {
        "README.txt": f"BorgFleet test data {seed}\n".encode(),
        "bin/random.dat": os.urandom(300 * 1024),
        "sub/deep/nested.txt": f"nested {seed}\n".encode() * 100,
        "name with spaces & ünïcode.txt": b"odd name\n",
        "mode600.conf": b"private=1\n",
        "scratch.tmp": b"temporary\n",
        "sub/deep/also.tmp": b"temporary too\n",
        "secret/key.pem": b"-----BEGIN NOT A KEY-----\n",
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (root / "mode600.conf").chmod(0o600)
    (root / "empty").mkdir(exist_ok=True)
    link = root / "link-to-readme"
    if not link.is_symlink():
        link.symlink_to("README.txt")
    # Metadata a restore must bring back too: a foreign owner, an extended attribute, an ACL.
    os.chown(root / "sub/deep/nested.txt", 4321, 4322)
    os.setxattr(root / "README.txt", "user.borgfleet", f"xattr {seed}".encode())
    subprocess.run(["setfacl", "-m", "u:4321:r", str(root / "mode600.conf")], check=True)
    return root


def walk(root):
    """{relpath: lstat} for everything under root (root itself excluded)."""
    root = Path(root)
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            found[str(p.relative_to(root))] = p.lstat()
    return found


def compare_trees(expected, actual, ignore=()):
    """Differences between two trees as readable strings; [] means identical.

    Compares, both ways, the set of paths, file types, permission bits, owner and group,
    modification times (ns), extended attributes (ACLs are the system.posix_acl_* ones), file
    contents byte by byte and symlink targets. `ignore` lists relative paths (and their subtrees)
    to leave out.
    """
    def keep(rel):
        return not any(rel == i or rel.startswith(i + "/") for i in ignore)

    a = {k: v for k, v in walk(expected).items() if keep(k)}
    b = {k: v for k, v in walk(actual).items() if keep(k)}
    diffs = [f"missing: {p}" for p in sorted(a.keys() - b.keys())]
    diffs += [f"unexpected: {p}" for p in sorted(b.keys() - a.keys())]
    for rel in sorted(a.keys() & b.keys()):
        sa, sb = a[rel], b[rel]
        if stat.S_IFMT(sa.st_mode) != stat.S_IFMT(sb.st_mode):
            diffs.append(f"type differs: {rel}")
            continue
        if stat.S_IMODE(sa.st_mode) != stat.S_IMODE(sb.st_mode) and not stat.S_ISLNK(sa.st_mode):
            diffs.append(f"mode differs: {rel} {oct(sa.st_mode)} != {oct(sb.st_mode)}")
        if (sa.st_uid, sa.st_gid) != (sb.st_uid, sb.st_gid):
            diffs.append(f"owner differs: {rel} {sa.st_uid}:{sa.st_gid} != {sb.st_uid}:{sb.st_gid}")
        if sa.st_mtime_ns != sb.st_mtime_ns:
            diffs.append(f"mtime differs: {rel} {sa.st_mtime_ns} != {sb.st_mtime_ns}")
        pa, pb = Path(expected) / rel, Path(actual) / rel
        if xattrs(pa) != xattrs(pb):
            diffs.append(f"xattrs/ACLs differ: {rel} {sorted(xattrs(pa))} != {sorted(xattrs(pb))}")
        if stat.S_ISLNK(sa.st_mode):
            if os.readlink(pa) != os.readlink(pb):
                diffs.append(f"link target differs: {rel}")
        elif stat.S_ISREG(sa.st_mode) and not filecmp.cmp(pa, pb, shallow=False):
            diffs.append(f"content differs: {rel}")
    return diffs


def xattrs(path):
    """{name: value} of a path's extended attributes, ACLs included (not following a symlink)."""
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)}
