"""The data tree the contenders back up, and the change made to it before each incremental round.

The tree is a pure function of RECIPE and the seed: every file has its own random generator
seeded from (seed, kind, index), so it can be rebuilt identically and is cached under
CACHE_ROOT keyed by a hash of the recipe. The benchmark works on a copy; the cache stays pristine.
"""
import hashlib
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

from bench.common import CACHE as CACHE_ROOT

# ~800 MB: many small text files, MB-sized compressible logs, MB-sized random blobs,
# plus files every contender excludes ('*.tmp' and the scratch/ directory).
RECIPE = {
    "version": 1,
    "small": {"dirs": 160, "per_dir": 100, "min": 1024, "max": 16 * 1024},
    "compressible": {"count": 36, "min": 2 << 20, "max": 14 << 20},
    "incompressible": {"count": 48, "min": 4 << 20, "max": 12 << 20},
    "excluded": {"tmp_files": 40, "scratch_files": 20, "size": 256 << 10},
}

# The change before each incremental round: a small fraction of the tree.
CHANGE = {"rewrite_small": 80, "touch_small": 80, "append_log": 256 << 10, "overwrite_blob": 1 << 20,
          "new_files": 10}

_WORDS = ("backup borg fleet server client archive chunk segment index cache repository key nonce "
          "ansible playbook inventory host task role module handler variable template worker queue "
          "request response latency error warning info debug config value default option path file "
          "directory mount snapshot volume database table query commit rollback lock session").split()


def recipe_key(seed):
    blob = json.dumps({"recipe": RECIPE, "seed": seed}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _rng(seed, *parts):
    return random.Random(":".join([str(seed)] + [str(p) for p in parts]))


def _line_pool(seed, n=20000):
    """Text lines in a few shapes (logs, config, code): lz4 finds repeats, as in real text."""
    rng = _rng(seed, "pool")
    w = lambda: rng.choice(_WORDS)  # noqa: E731
    shapes = [
        lambda: f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} host{rng.randint(1, 40)} "
                f"{w()}d[{rng.randint(100, 99999)}]: {w()} {w()} {w()} in {rng.randint(1, 5000)} ms\n",
        lambda: f"{w()}_{w()} = {w()}-{rng.randint(0, 999)}\n",
        lambda: f"    {w()}({w()}, {w()}) -> {rng.randint(0, 1 << 16)}  # {w()} {w()}\n",
    ]
    return [rng.choice(shapes)() for _ in range(n)]


def _text(rng, pool, size, header=""):
    lines = rng.choices(pool, k=size // 40 + 1)  # lines average more than 40 bytes
    return (header + "".join(lines)).encode()[:size]


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def small_files():
    s = RECIPE["small"]
    return [f"text/d{d:03d}/f{i:03d}.txt" for d in range(s["dirs"]) for i in range(s["per_dir"])]


def _build(data, seed):
    pool = _line_pool(seed)
    s = RECIPE["small"]
    for n, rel in enumerate(small_files()):
        rng = _rng(seed, "small", n)
        _write(data / rel, _text(rng, pool, rng.randint(s["min"], s["max"]), header=f"# {rel}\n"))
    c = RECIPE["compressible"]
    for n in range(c["count"]):
        rng = _rng(seed, "compressible", n)
        _write(data / f"logs/app-{n:03d}.log", _text(rng, pool, rng.randint(c["min"], c["max"])))
    b = RECIPE["incompressible"]
    for n in range(b["count"]):
        rng = _rng(seed, "incompressible", n)
        _write(data / f"blobs/blob-{n:03d}.bin", rng.randbytes(rng.randint(b["min"], b["max"])))
    e = RECIPE["excluded"]
    for n in range(e["tmp_files"]):
        _write(data / f"text/d{n:03d}/work-{n}.tmp", _rng(seed, "tmp", n).randbytes(e["size"]))
    for n in range(e["scratch_files"]):
        _write(data / f"scratch/s{n:03d}.dat", _rng(seed, "scratch", n).randbytes(e["size"]))


def excludes(data):
    """The exclude patterns every contender gets (borg fm: style, as the inventory contract)."""
    return ["*.tmp", str(Path(data) / "scratch")]


def is_excluded(rel):
    return rel.endswith(".tmp") or rel == "scratch" or rel.startswith("scratch/")


def cached_tree(seed, log=print):
    """The cached pristine tree for this recipe and seed (built on first use); returns its data dir."""
    key = recipe_key(seed)
    home = CACHE_ROOT / f"tree-{key}"
    if (home / "recipe.json").exists():
        return home / "data"
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    partial = CACHE_ROOT / f"tree-{key}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    log(f"building data tree {home} (once; later runs reuse it) ...")
    _build(partial / "data", seed)
    # recipe.json is written last: its presence means the tree is complete.
    (partial / "recipe.json").write_text(json.dumps({"recipe": RECIPE, "seed": seed}, indent=1))
    try:
        partial.rename(home)
    except OSError:  # another run finished the same tree first
        shutil.rmtree(partial, ignore_errors=True)
    return home / "data"


def copy_tree(src, dst):
    """A working copy (cp -a keeps modes and times)."""
    subprocess.run(["cp", "-a", "--", str(src), str(dst)], check=True, stdin=subprocess.DEVNULL)
    return Path(dst)


def warm(data, block=1 << 20):
    """Read every file of the tree once, so that each contender starts with it in the page cache.

    This machine's page cache does not keep the tree between runs (each initial backup writes
    ~640 MB): without this, whoever ran first after the copy read it from memory and the others
    from disk (the same borg create took 7.3 s first, then 8.7-9.4 s; warmed: 6.2-6.7 s each).
    The files are those the backups include (walk_files: regular files only, so a FIFO never blocks
    it); returns the bytes read."""
    read = 0
    for rel in walk_files(data):
        with open(os.path.join(data, rel), "rb", buffering=0) as f:
            while chunk := f.read(block):
                read += len(chunk)
    return read


def tree_stats(data):
    """(files, bytes) backed up: regular files not excluded."""
    files = size = 0
    for rel, st in walk_files(data).items():
        files += 1
        size += st
    return files, size


def walk_files(data):
    """{relpath: size} of every regular file that the backups include."""
    data = Path(data)
    found = {}
    for dirpath, dirnames, filenames in os.walk(data):
        for name in filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(data))
            if not is_excluded(rel) and p.is_file() and not p.is_symlink():
                found[rel] = p.stat().st_size
    return found


def change(data, seed, round_no):
    """Modify a small fraction of the tree for `round_no`; returns the relpaths whose content changed."""
    data = Path(data)
    rng = _rng(seed, "round", round_no)
    pool = _line_pool(seed, n=2000)
    small = small_files()
    picked = rng.sample(small, CHANGE["rewrite_small"] + CHANGE["touch_small"])
    rewritten, touched = picked[:CHANGE["rewrite_small"]], picked[CHANGE["rewrite_small"]:]
    for rel in rewritten:
        p = data / rel
        p.write_bytes(_text(rng, pool, p.stat().st_size, header=f"# {rel} round {round_no}\n"))
    for rel in touched:  # same content, new mtime/ctime: borg must read it again
        os.utime(data / rel)
    log = f"logs/app-{rng.randrange(RECIPE['compressible']['count']):03d}.log"
    with open(data / log, "ab") as f:
        f.write(_text(rng, pool, CHANGE["append_log"]))
    blob = f"blobs/blob-{rng.randrange(RECIPE['incompressible']['count']):03d}.bin"
    with open(data / blob, "r+b") as f:
        f.seek(rng.randrange(max(1, (data / blob).stat().st_size - CHANGE["overwrite_blob"])))
        f.write(rng.randbytes(CHANGE["overwrite_blob"]))
    new = [f"new/r{round_no:03d}/n{i:02d}.txt" for i in range(CHANGE["new_files"])]
    for rel in new:
        _write(data / rel, _text(rng, pool, 8192, header=f"# {rel}\n"))
    return rewritten + [log, blob] + new
