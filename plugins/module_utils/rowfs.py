# -*- coding: utf-8 -*-
# Copyright: BorgFleet developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private to borgfleet.backup: rowfs, a block-level redirect-on-write FUSE layer.

    python3 rowfs.py SOURCE DELTA_DIR MOUNTPOINT [--allow-other]

Presents SOURCE (a read-only tree, e.g. a ``borg mount``) writable at MOUNTPOINT:
- reads of blocks never written come from SOURCE; written blocks go to a sparse delta file per
  file (DELTA_DIR/<inode>.delta) with a bitmap of written blocks (<inode>.map, saved on fsync
  and release), so opening a file read-write copies nothing and the delta holds only what was
  really written (kernel overlayfs copies the whole file up on the first read-write open);
- zeros written where a file already reads as zeros (a new log file being zero-filled) only
  change its size: the delta stays sparse;
- the kernel's writeback cache is on: a write returns once it is in the page cache and reaches
  the layer later, merged into larger requests (flushed on fsync and close);
- truncate/extend, new files/dirs/symlinks/hard links, renames and unlinks live in memory in the
  layer; SOURCE is never written.
The namespace is kept in memory for the life of the process: the layer is a scratch area that
is thrown away when unmounted.

Runs as its own process (started by the instant_recovery module, never inside it); it stops
when the mountpoint is unmounted (``fusermount3 -u``). Needs Debian's python3-pyfuse3. This file is
a script, not imported by any module: the instant_recovery action plugin copies it to the host
(plugins/action/instant_recovery.py); at module level it imports only the standard library.
"""

from __future__ import absolute_import, division, print_function

import errno
import os
import stat
import sys

BLOCK = 4096  # PostgreSQL (8 KiB) and InnoDB (16 KiB) pages are whole blocks: no read-modify-write.


class Node(object):
    """One inode of the layer."""

    def __init__(self, ino, mode, uid, gid, times, src=None, size=0, rdev=0, target=None):
        self.ino = ino
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.atime_ns, self.mtime_ns, self.ctime_ns = times
        self.rdev = rdev
        self.nlink = 1
        self.src = src              # path in SOURCE, or None for what was created in the layer
        self.size = size
        self.target = target        # symlink target (bytes)
        self.parent = None          # directories only
        self.children = None        # directories: {name(bytes): Node}, loaded from SOURCE on first use
        # Files: source data is valid only below src_limit (a truncate cuts it for good).
        self.src_limit = size if src else 0
        self.bitmap = None          # bytearray, bit per BLOCK written to the delta
        self.delta_fd = None
        self.src_fd = None
        self.open_count = 0

    @property
    def is_dir(self):
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self):
        return stat.S_ISREG(self.mode)


class Layer(object):
    """The redirect-on-write logic, independent of FUSE (unit-testable as plain calls)."""

    def __init__(self, source, delta_dir):
        self.source = os.path.abspath(source)
        self.delta_dir = os.path.abspath(delta_dir)
        os.makedirs(self.delta_dir, mode=0o700, exist_ok=True)
        self.nodes = {}
        self.next_ino = 2
        st = os.lstat(self.source)
        root = self._node_from_stat(1, st, self.source)
        root.parent = root
        self.nodes[1] = root

    # -- nodes ---------------------------------------------------------------------------
    def _node_from_stat(self, ino, st, path):
        times = (st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns)
        target = os.readlink(path).encode('utf-8', 'surrogateescape') if stat.S_ISLNK(st.st_mode) else None
        node = Node(ino, st.st_mode, st.st_uid, st.st_gid, times, src=path,
                    size=st.st_size, rdev=st.st_rdev, target=target)
        return node

    def _new_ino(self):
        ino = self.next_ino
        self.next_ino += 1
        return ino

    def node(self, ino):
        try:
            return self.nodes[ino]
        except KeyError:
            raise OSError(errno.ENOENT, 'no such inode')

    def children(self, node):
        if not node.is_dir:
            raise OSError(errno.ENOTDIR, 'not a directory')
        if node.children is None:
            node.children = {}
            if node.src is not None:
                for entry in os.scandir(node.src):
                    child = self._node_from_stat(self._new_ino(), entry.stat(follow_symlinks=False), entry.path)
                    if child.is_dir:
                        child.parent = node
                    node.children[os.fsencode(entry.name)] = child
                    self.nodes[child.ino] = child
        return node.children

    def lookup(self, parent_ino, name):
        parent = self.node(parent_ino)
        if name == b'.':
            return parent
        if name == b'..':
            return parent.parent
        try:
            return self.children(parent)[name]
        except KeyError:
            raise OSError(errno.ENOENT, 'no such file')

    def _add(self, parent_ino, name, mode, uid, gid, target=None, rdev=0):
        parent = self.node(parent_ino)
        kids = self.children(parent)
        if name in kids:
            raise OSError(errno.EEXIST, 'exists')
        now = _now_ns()
        node = Node(self._new_ino(), mode, uid, gid, (now, now, now), target=target, rdev=rdev)
        if node.is_dir:
            node.children = {}
            node.parent = parent
            node.nlink = 2
        if target is not None:
            node.size = len(target)
        if node.is_reg:
            node.bitmap = bytearray()
        kids[name] = node
        self.nodes[node.ino] = node
        self._touch(parent)
        return node

    def _touch(self, node):
        node.mtime_ns = node.ctime_ns = _now_ns()

    def create(self, parent_ino, name, mode, uid, gid):
        return self._add(parent_ino, name, stat.S_IFREG | (mode & 0o7777), uid, gid)

    def mkdir(self, parent_ino, name, mode, uid, gid):
        return self._add(parent_ino, name, stat.S_IFDIR | (mode & 0o7777), uid, gid)

    def symlink(self, parent_ino, name, target, uid, gid):
        return self._add(parent_ino, name, stat.S_IFLNK | 0o777, uid, gid, target=target)

    def mknod(self, parent_ino, name, mode, rdev, uid, gid):
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISREG(mode)):
            raise OSError(errno.EPERM, 'only files, fifos and sockets')
        return self._add(parent_ino, name, mode, uid, gid, rdev=rdev)

    def link(self, ino, parent_ino, name):
        node = self.node(ino)
        if node.is_dir:
            raise OSError(errno.EPERM, 'hard link to a directory')
        kids = self.children(self.node(parent_ino))
        if name in kids:
            raise OSError(errno.EEXIST, 'exists')
        kids[name] = node
        node.nlink += 1
        node.ctime_ns = _now_ns()
        return node

    def _drop(self, node):
        """One name of ``node`` is gone."""
        node.nlink -= 1 if not node.is_dir else node.nlink
        node.ctime_ns = _now_ns()
        if node.nlink <= 0 and node.open_count == 0:
            self._discard(node)

    def _discard(self, node):
        self._close_fds(node)
        for suffix in ('.delta', '.map'):
            try:
                os.unlink(self._delta_path(node, suffix))
            except FileNotFoundError:
                pass
        self.nodes.pop(node.ino, None)

    def unlink(self, parent_ino, name):
        parent = self.node(parent_ino)
        node = self.lookup(parent_ino, name)
        if node.is_dir:
            raise OSError(errno.EISDIR, 'is a directory')
        del parent.children[name]
        self._touch(parent)
        self._drop(node)

    def rmdir(self, parent_ino, name):
        parent = self.node(parent_ino)
        node = self.lookup(parent_ino, name)
        if not node.is_dir:
            raise OSError(errno.ENOTDIR, 'not a directory')
        if self.children(node):
            raise OSError(errno.ENOTEMPTY, 'directory not empty')
        del parent.children[name]
        self._touch(parent)
        self._drop(node)

    def rename(self, old_parent_ino, old_name, new_parent_ino, new_name, noreplace=False):
        old_parent, new_parent = self.node(old_parent_ino), self.node(new_parent_ino)
        node = self.lookup(old_parent_ino, old_name)
        new_kids = self.children(new_parent)
        existing = new_kids.get(new_name)
        if existing is node:
            return
        if node.is_dir:
            p = new_parent  # refuse moving a directory into itself
            while True:
                if p is node:
                    raise OSError(errno.EINVAL, 'cannot move a directory into itself')
                if p.parent is p:
                    break
                p = p.parent
        if existing is not None:
            if noreplace:
                raise OSError(errno.EEXIST, 'exists')
            if existing.is_dir != node.is_dir:
                raise OSError(errno.EISDIR if existing.is_dir else errno.ENOTDIR, 'type mismatch')
            if existing.is_dir and self.children(existing):
                raise OSError(errno.ENOTEMPTY, 'directory not empty')
            self._drop(existing)
        del old_parent.children[old_name]
        new_kids[new_name] = node
        if node.is_dir:
            node.parent = new_parent
        self._touch(old_parent)
        self._touch(new_parent)
        node.ctime_ns = _now_ns()

    # -- attributes -----------------------------------------------------------------------
    def setattr(self, ino, mode=None, uid=None, gid=None, size=None, atime_ns=None, mtime_ns=None):
        node = self.node(ino)
        if size is not None:
            self.truncate(node, size)
        if mode is not None:
            node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
        if uid is not None:
            node.uid = uid
        if gid is not None:
            node.gid = gid
        if atime_ns is not None:
            node.atime_ns = atime_ns
        if mtime_ns is not None:
            node.mtime_ns = mtime_ns
        node.ctime_ns = _now_ns()
        return node

    # -- file data ------------------------------------------------------------------------
    def _delta_path(self, node, suffix):
        return os.path.join(self.delta_dir, '%d%s' % (node.ino, suffix))

    def _load_map(self, node):
        if node.bitmap is None:
            node.bitmap = bytearray()

    def _delta(self, node):
        if node.delta_fd is None:
            node.delta_fd = os.open(self._delta_path(node, '.delta'), os.O_RDWR | os.O_CREAT, 0o600)
        return node.delta_fd

    def _src(self, node):
        if node.src_fd is None:
            node.src_fd = os.open(node.src, os.O_RDONLY)
        return node.src_fd

    def _close_fds(self, node):
        for attr in ('delta_fd', 'src_fd'):
            fd = getattr(node, attr)
            if fd is not None:
                os.close(fd)
                setattr(node, attr, None)

    def _written(self, node, block):
        bm = node.bitmap
        return bm is not None and (block >> 3) < len(bm) and bm[block >> 3] & (1 << (block & 7))

    def _mark(self, node, block):
        self._load_map(node)
        i = block >> 3
        if i >= len(node.bitmap):
            node.bitmap.extend(b'\0' * (i + 1 - len(node.bitmap)))
        node.bitmap[i] |= 1 << (block & 7)

    def _unmark_from(self, node, first_block):
        bm = node.bitmap
        if not bm:
            return
        for block in range(first_block, len(bm) * 8):
            bm[block >> 3] &= ~(1 << (block & 7)) & 0xff

    def _read_source(self, node, off, size):
        """Bytes of the original file in [off, off+size), zeros past src_limit."""
        end = min(off + size, node.src_limit)
        data = b''
        if node.src is not None and end > off:
            data = os.pread(self._src(node), end - off, off)
        return data + b'\0' * (size - len(data))

    def open(self, ino, truncate=False):
        node = self.node(ino)
        node.open_count += 1
        if truncate:
            self.truncate(node, 0)
        return node

    def release(self, ino):
        node = self.node(ino)
        node.open_count -= 1
        if node.open_count <= 0:
            node.open_count = 0
            self.save_map(node)
            if node.nlink <= 0:
                self._discard(node)
            else:
                self._close_fds(node)

    def read(self, ino, off, size):
        node = self.node(ino)
        if off >= node.size:
            return b''
        size = min(size, node.size - off)
        out = []
        pos, end = off, off + size
        while pos < end:
            block = pos // BLOCK
            written = bool(self._written(node, block))
            # Extend the run over following blocks of the same kind: one read per run.
            run_end = min((block + 1) * BLOCK, end)
            while run_end < end and bool(self._written(node, run_end // BLOCK)) == written:
                run_end = min(run_end + BLOCK, end)
            if written:
                data = os.pread(self._delta(node), run_end - pos, pos)
                data += b'\0' * (run_end - pos - len(data))
            else:
                data = self._read_source(node, pos, run_end - pos)
            out.append(data)
            pos = run_end
        return b''.join(out)

    def write(self, ino, off, buf):
        node = self.node(ino)
        if not node.is_reg:
            raise OSError(errno.EINVAL, 'not a regular file')
        end = off + len(buf)
        first, last = off // BLOCK, (end - 1) // BLOCK
        if off >= node.src_limit and buf == bytes(len(buf)) and \
                not any(self._written(node, block) for block in range(first, last + 1)):
            # Zeros over bytes that read as zeros already (a file's new tail, e.g. a WAL segment
            # being zero-filled): only the size changes, the delta stays sparse.
            self._grow(node, end)
            return len(buf)
        fd = self._delta(node)
        for block in (first, last):
            # A partly written block not yet in the delta: bring its old bytes over first.
            b_start = block * BLOCK
            covered = off <= b_start and end >= b_start + BLOCK
            if not covered and not self._written(node, block):
                old = self._read_current_unwritten(node, b_start)
                os.pwrite(fd, old, b_start)
                self._mark(node, block)
        os.pwrite(fd, buf, off)
        for block in range(first, last + 1):
            self._mark(node, block)
        self._grow(node, end)
        return len(buf)

    def _grow(self, node, end):
        if end > node.size:
            node.size = end
        node.mtime_ns = node.ctime_ns = _now_ns()

    def _read_current_unwritten(self, node, b_start):
        """An unwritten block's current content (source below src_limit, zeros above), cut at size."""
        valid = max(0, min(BLOCK, node.size - b_start))
        return self._read_source(node, b_start, valid)

    def truncate(self, node, size):
        if not node.is_reg:
            raise OSError(errno.EINVAL, 'not a regular file')
        if size < node.size:
            # Keep the straddling block's head, then forget everything past the new end for good.
            block, rem = divmod(size, BLOCK)
            if rem and not self._written(node, block):
                head = self._read_source(node, block * BLOCK, rem)
                os.pwrite(self._delta(node), head, block * BLOCK)
                self._mark(node, block)
            self._unmark_from(node, block + 1 if rem else block)
            os.ftruncate(self._delta(node), size)
            node.src_limit = min(node.src_limit, size)
        node.size = size
        node.mtime_ns = node.ctime_ns = _now_ns()

    def fsync(self, ino):
        node = self.node(ino)
        if node.delta_fd is not None:
            os.fsync(node.delta_fd)
        self.save_map(node)

    def save_map(self, node):
        if node.bitmap:
            path = self._delta_path(node, '.map')
            with open(path + '.tmp', 'wb') as f:
                f.write(bytes(node.bitmap))
            os.rename(path + '.tmp', path)

    def stat(self, ino):
        node = self.node(ino)
        return node


def _now_ns():
    import time
    return time.time_ns()


# -- FUSE glue ----------------------------------------------------------------------------------

def make_operations(layer):
    import pyfuse3

    def attrs(node):
        e = pyfuse3.EntryAttributes()
        e.st_ino = node.ino
        e.generation = 0
        e.entry_timeout = 5
        e.attr_timeout = 5
        e.st_mode = node.mode
        e.st_nlink = node.nlink if not node.is_dir else 2
        e.st_uid = node.uid
        e.st_gid = node.gid
        e.st_rdev = node.rdev
        e.st_size = node.size
        e.st_blksize = BLOCK
        e.st_blocks = (node.size + 511) // 512
        e.st_atime_ns = node.atime_ns
        e.st_mtime_ns = node.mtime_ns
        e.st_ctime_ns = node.ctime_ns
        return e

    def fuse_errors(fn):
        import functools

        @functools.wraps(fn)
        async def wrapper(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except pyfuse3.FUSEError:
                raise
            except OSError as e:
                raise pyfuse3.FUSEError(e.errno or errno.EIO)
        return wrapper

    class Ops(pyfuse3.Operations):
        supports_dot_lookup = True
        # Without it a database evicting pages during recovery waited 0.3-0.8 ms per 8 KiB write (measured).
        enable_writeback_cache = True

        @fuse_errors
        async def lookup(self, parent_inode, name, ctx=None):
            return attrs(layer.lookup(parent_inode, name))

        @fuse_errors
        async def getattr(self, inode, ctx=None):
            return attrs(layer.stat(inode))

        @fuse_errors
        async def setattr(self, inode, attr, fields, fh, ctx):
            node = layer.setattr(
                inode,
                mode=attr.st_mode if fields.update_mode else None,
                uid=attr.st_uid if fields.update_uid else None,
                gid=attr.st_gid if fields.update_gid else None,
                size=attr.st_size if fields.update_size else None,
                atime_ns=attr.st_atime_ns if fields.update_atime else None,
                mtime_ns=attr.st_mtime_ns if fields.update_mtime else None)
            return attrs(node)

        @fuse_errors
        async def readlink(self, inode, ctx):
            node = layer.node(inode)
            if node.target is None:
                raise OSError(errno.EINVAL, 'not a symlink')
            return node.target

        @fuse_errors
        async def opendir(self, inode, ctx):
            layer.children(layer.node(inode))
            return inode

        @fuse_errors
        async def readdir(self, fh, start_id, token):
            entries = sorted(layer.children(layer.node(fh)).items())
            for i in range(start_id, len(entries)):
                name, node = entries[i]
                if not pyfuse3.readdir_reply(token, name, attrs(node), i + 1):
                    break

        async def releasedir(self, fh):
            pass

        async def fsyncdir(self, fh, datasync):
            pass

        @fuse_errors
        async def mkdir(self, parent_inode, name, mode, ctx):
            return attrs(layer.mkdir(parent_inode, name, mode, ctx.uid, ctx.gid))

        @fuse_errors
        async def mknod(self, parent_inode, name, mode, rdev, ctx):
            return attrs(layer.mknod(parent_inode, name, mode, rdev, ctx.uid, ctx.gid))

        @fuse_errors
        async def symlink(self, parent_inode, name, target, ctx):
            return attrs(layer.symlink(parent_inode, name, target, ctx.uid, ctx.gid))

        @fuse_errors
        async def link(self, inode, new_parent_inode, new_name, ctx):
            return attrs(layer.link(inode, new_parent_inode, new_name))

        @fuse_errors
        async def unlink(self, parent_inode, name, ctx):
            layer.unlink(parent_inode, name)

        @fuse_errors
        async def rmdir(self, parent_inode, name, ctx):
            layer.rmdir(parent_inode, name)

        @fuse_errors
        async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
            if flags & pyfuse3.RENAME_EXCHANGE:
                raise OSError(errno.EINVAL, 'RENAME_EXCHANGE is not supported')
            layer.rename(parent_inode_old, name_old, parent_inode_new, name_new,
                         noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE))

        @fuse_errors
        async def open(self, inode, flags, ctx):
            layer.open(inode, truncate=bool(flags & os.O_TRUNC))
            return pyfuse3.FileInfo(fh=inode, keep_cache=True)

        @fuse_errors
        async def create(self, parent_inode, name, mode, flags, ctx):
            node = layer.create(parent_inode, name, mode, ctx.uid, ctx.gid)
            layer.open(node.ino)
            return pyfuse3.FileInfo(fh=node.ino, keep_cache=True), attrs(node)

        @fuse_errors
        async def read(self, fh, off, size):
            return layer.read(fh, off, size)

        @fuse_errors
        async def write(self, fh, off, buf):
            return layer.write(fh, off, buf)

        async def flush(self, fh):
            pass

        @fuse_errors
        async def fsync(self, fh, datasync):
            layer.fsync(fh)

        @fuse_errors
        async def release(self, fh):
            layer.release(fh)

        async def forget(self, inode_list):
            pass  # nodes live as long as the layer: it is a scratch area

        @fuse_errors
        async def statfs(self, ctx):
            st = os.statvfs(layer.delta_dir)
            s = pyfuse3.StatvfsData()
            for name in ('f_bsize', 'f_frsize', 'f_blocks', 'f_bfree', 'f_bavail', 'f_files', 'f_ffree',
                         'f_favail', 'f_namemax'):
                setattr(s, name, getattr(st, name))
            return s

        async def getxattr(self, inode, name, ctx):
            raise pyfuse3.FUSEError(errno.ENODATA)

        async def listxattr(self, inode, ctx):
            return []

    return Ops()


def serve(source, delta_dir, mountpoint, allow_other=False):
    import resource
    import signal

    import pyfuse3
    import trio

    # A database keeps hundreds of files open: one source and one delta fd each.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    layer = Layer(source, delta_dir)
    options = set(pyfuse3.default_options)  # default_permissions: the kernel checks modes/owners
    options.update(['fsname=rowfs', 'subtype=borgfleet'])
    if allow_other:
        options.add('allow_other')  # without it no other user (the database's own) sees the files
    pyfuse3.init(make_operations(layer), mountpoint, options)

    def stop(signum, frame):
        # Unmounting ends pyfuse3.main; a signal alone would leave the mount dead (ENOTCONN).
        pyfuse3.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


def main(argv):
    import argparse
    parser = argparse.ArgumentParser(prog='rowfs', description=__doc__.split('\n\n')[0])
    parser.add_argument('source')
    parser.add_argument('delta_dir')
    parser.add_argument('mountpoint')
    parser.add_argument('--allow-other', action='store_true')
    args = parser.parse_args(argv)
    serve(args.source, args.delta_dir, args.mountpoint, allow_other=args.allow_other)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
