"""rowfs, the redirect-on-write FUSE layer, against the real kernel: every result is compared
byte for byte with a reference file that received the same operations on a normal filesystem,
and the source tree is proven untouched."""
import hashlib
import os
import random
import shutil
import subprocess

import pytest

BLOCK = 4096


def tree_digest(root):
    """Names, modes, sizes and contents of a tree: proves the source was never written."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{os.path.relpath(p, root)} {st.st_mode} {st.st_size} {st.st_mtime_ns}\n".encode())
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


def fill(path, size, seed):
    path.write_bytes(random.Random(seed).randbytes(size))


def same(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def test_random_writes_truncates_and_fsync_match_a_reference(rowfs, scratch):
    src = rowfs.source
    sizes = {"aligned": 64 * BLOCK, "odd": 3 * BLOCK + 1234, "tiny": 17, "empty": 0}
    for i, (name, size) in enumerate(sizes.items()):
        fill(src / name, size, i)
    before = tree_digest(src)
    rowfs.start()
    ref = scratch / "ref"
    shutil.copytree(src, ref)
    rng = random.Random(42)
    ops = 0
    for name in sizes:
        layer_fd = os.open(rowfs.mountpoint / name, os.O_RDWR)
        ref_fd = os.open(ref / name, os.O_RDWR)
        try:
            for _ in range(300):
                size = os.fstat(ref_fd).st_size
                kind = rng.random()
                if kind < 0.6:  # a write anywhere, unaligned, sometimes past the end (a hole)
                    off = rng.randrange(0, size + 3 * BLOCK + 1)
                    n = rng.choice([1, 100, BLOCK, BLOCK + 7, 3 * BLOCK, 20000])
                    # A quarter zeros: over holes and new tails rowfs keeps them sparse, over data not.
                    data = bytes(n) if rng.random() < 0.25 else rng.randbytes(n)
                    assert os.pwrite(layer_fd, data, off) == len(data)
                    os.pwrite(ref_fd, data, off)
                elif kind < 0.75:  # shrink or grow
                    new = rng.choice([0, rng.randrange(0, size + 1), size + rng.randrange(1, 3 * BLOCK)])
                    os.ftruncate(layer_fd, new)
                    os.ftruncate(ref_fd, new)
                elif kind < 0.8:
                    os.fsync(layer_fd)
                else:  # reads at random places, across written and unwritten blocks
                    off, n = rng.randrange(0, size + 10), rng.randrange(1, 5 * BLOCK)
                    assert os.pread(layer_fd, n, off) == os.pread(ref_fd, n, off), (name, off, n)
                ops += 1
            assert os.fstat(layer_fd).st_size == os.fstat(ref_fd).st_size
        finally:
            os.close(layer_fd)
            os.close(ref_fd)
        # Compared after closing (and again below after remount-free reopen): no cached view.
        assert same(rowfs.mountpoint / name, ref / name), name
    assert ops == 1200
    assert tree_digest(src) == before, "the source tree was written"
    assert rowfs.stop() == 0
    assert tree_digest(src) == before


def test_open_read_write_copies_nothing_and_delta_holds_only_written_blocks(rowfs):
    fill(rowfs.source / "big", 8 * 1024 * 1024, 1)
    rowfs.start()
    fds = [os.open(rowfs.mountpoint / "big", os.O_RDWR) for _ in range(3)]
    for fd in fds:
        os.close(fd)
    assert rowfs.delta_bytes() == 0, "opening read-write copied data"
    with open(rowfs.mountpoint / "big", "r+b") as f:
        f.seek(5 * BLOCK)
        f.write(b"x" * (2 * BLOCK))  # two whole pages
        f.flush()
        os.fsync(f.fileno())
    # Two data blocks plus a one-block bitmap file; nowhere near the file's 8 MiB.
    assert 2 * BLOCK <= rowfs.delta_bytes() <= 4 * BLOCK, rowfs.delta_bytes()
    data = (rowfs.mountpoint / "big").read_bytes()
    orig = (rowfs.source / "big").read_bytes()
    assert data[5 * BLOCK:7 * BLOCK] == b"x" * (2 * BLOCK)
    assert data[:5 * BLOCK] == orig[:5 * BLOCK] and data[7 * BLOCK:] == orig[7 * BLOCK:]
    assert rowfs.stop() == 0


def test_zero_filled_new_file_stays_sparse_and_zeros_over_data_are_kept(rowfs):
    fill(rowfs.source / "data", 4 * BLOCK, 2)
    rowfs.start()
    segment = 4 * 1024 * 1024
    with open(rowfs.mountpoint / "new", "wb") as f:  # as a database zero-fills a new log file
        f.write(b"head" * 1024)
        for _ in range(segment // (64 * 1024) - 1):
            f.write(bytes(64 * 1024))
        f.flush()
        os.fsync(f.fileno())
    with open(rowfs.mountpoint / "data", "r+b") as f:
        f.seek(BLOCK)
        f.write(bytes(2 * BLOCK))  # zeros over the source's data must be stored
        f.flush()
        os.fsync(f.fileno())
    new = (rowfs.mountpoint / "new").read_bytes()
    assert len(new) == 4096 + (segment // (64 * 1024) - 1) * 64 * 1024 and new[:4096] == b"head" * 1024
    assert new[4096:] == bytes(len(new) - 4096)
    orig = (rowfs.source / "data").read_bytes()
    assert (rowfs.mountpoint / "data").read_bytes() == orig[:BLOCK] + bytes(2 * BLOCK) + orig[3 * BLOCK:]
    # The written head (the kernel may send it with the first zeros in one request), the two
    # zeroed blocks and the bitmaps; not the 4 MiB of zeros.
    assert rowfs.delta_bytes() <= 1024 * 1024 + 8 * BLOCK, rowfs.delta_bytes()
    assert rowfs.stop() == 0


def test_namespace_changes_stay_in_the_layer(rowfs):
    src = rowfs.source
    (src / "d").mkdir()
    (src / "d" / "a").write_bytes(b"alpha")
    (src / "d" / "b").write_bytes(b"bravo")
    (src / "keep").write_bytes(b"keep")
    os.symlink("d/a", src / "lnk")
    before = tree_digest(src)
    rowfs.start()
    m = rowfs.mountpoint
    assert sorted(os.listdir(m)) == ["d", "keep", "lnk"]
    assert (m / "lnk").read_bytes() == b"alpha" and os.readlink(m / "lnk") == "d/a"
    # rename over an existing file replaces it (the way databases swap a file in atomically)
    (m / "d" / "new").write_bytes(b"fresh")
    os.rename(m / "d" / "new", m / "d" / "b")
    assert (m / "d" / "b").read_bytes() == b"fresh"
    os.rename(m / "d" / "a", m / "a-moved")
    assert (m / "a-moved").read_bytes() == b"alpha"
    assert not (m / "d" / "a").exists()
    os.unlink(m / "keep")
    assert not (m / "keep").exists()
    os.mkdir(m / "nd")
    (m / "nd" / "f").write_bytes(b"in a new dir")
    os.rename(m / "nd", m / "d" / "nd2")
    assert (m / "d" / "nd2" / "f").read_bytes() == b"in a new dir"
    with pytest.raises(OSError):
        os.rmdir(m / "d")  # not empty
    os.link(m / "a-moved", m / "hard")
    with open(m / "hard", "ab") as f:
        f.write(b"+")
    assert (m / "a-moved").read_bytes() == b"alpha+"
    assert os.stat(m / "hard").st_nlink == 2
    os.symlink("/nowhere", m / "dangling")
    assert os.readlink(m / "dangling") == "/nowhere"
    os.chmod(m / "a-moved", 0o600)
    assert os.stat(m / "a-moved").st_mode & 0o777 == 0o600
    # an unlinked file stays readable through an open descriptor
    fd = os.open(m / "d" / "b", os.O_RDONLY)
    os.unlink(m / "d" / "b")
    assert os.pread(fd, 100, 0) == b"fresh"
    os.close(fd)
    os.rename(m / "d" / "nd2" / "f", m / "f")
    os.rmdir(m / "d" / "nd2")
    assert sorted(os.listdir(m)) == ["a-moved", "d", "dangling", "f", "hard", "lnk"]
    assert os.listdir(m / "d") == []
    assert tree_digest(src) == before
    assert rowfs.stop() == 0
    assert tree_digest(src) == before


def test_other_users_see_the_layer_and_permissions_are_enforced(rowfs):
    src = rowfs.source
    nobody = 65534
    (src / "theirs").mkdir(mode=0o700)
    os.chown(src / "theirs", nobody, nobody)
    (src / "theirs" / "data").write_bytes(b"page" * 2048)
    os.chown(src / "theirs" / "data", nobody, nobody)
    (src / "secret").write_bytes(b"root only")
    os.chmod(src / "secret", 0o600)
    rowfs.start()
    m = rowfs.mountpoint

    def as_nobody(*argv):
        return subprocess.run(list(argv), user=nobody, group=nobody, extra_groups=[],
                              capture_output=True, text=True)

    # allow_other: the owner of the files (not the mounting root) reads and writes them
    r = as_nobody("dd", "if=/dev/zero", f"of={m}/theirs/data", "bs=4096", "count=1", "conv=notrunc")
    assert r.returncode == 0, r.stderr
    r = as_nobody("touch", f"{m}/theirs/created")
    assert r.returncode == 0, r.stderr
    assert os.stat(m / "theirs" / "created").st_uid == nobody
    # default_permissions: modes from the archive still apply
    r = as_nobody("cat", f"{m}/secret")
    assert r.returncode != 0 and "Permission denied" in r.stderr
    data = (m / "theirs" / "data").read_bytes()
    assert data[:4096] == b"\0" * 4096 and data[4096:] == b"page" * 1024
    assert rowfs.stop() == 0
