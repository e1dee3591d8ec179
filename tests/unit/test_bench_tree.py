"""bench/backup_overhead/tree.py: the page-cache warm-up every contender gets before its run."""
import os

from bench.backup_overhead import tree


def test_warm_reads_every_backed_up_file_and_skips_what_would_block(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_bytes(b"x" * 10)
    (tmp_path / "sub" / "big.bin").write_bytes(os.urandom(3 * 1024 + 7))
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "skipped.tmp").write_bytes(b"y" * 5)  # excluded by every contender: not read
    os.mkfifo(tmp_path / "sub" / "fifo")          # opening it would wait for a writer forever
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "link").symlink_to(tmp_path / "a.txt")  # read once, through its target
    assert tree.warm(tmp_path, block=1024) == 10 + 3 * 1024 + 7
