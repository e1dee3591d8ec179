"""Each client's own small tree (20-50 MB), a pure function of RECIPE and the client's index,
built once and cached under CACHE_ROOT/fleet-<recipe hash>/client-NN. The benchmark backs the
cached trees up read-only; what changes between runs lives in the run's own directory."""
import hashlib
import json
import random
import shutil

from bench.common import CACHE as CACHE_ROOT

# Per client: small text files, a few compressible logs and random blobs; the counts and sizes
# are drawn per client, so no two trees are alike and none dedups against another.
RECIPE = {"version": 1, "small": {"dirs": (8, 16), "per_dir": 40, "min": 512, "max": 16 << 10},
          "logs": {"count": (2, 5), "min": 1 << 20, "max": 6 << 20},
          "blobs": {"count": (3, 6), "min": 2 << 20, "max": 8 << 20}}
_WORDS = ("backup borg fleet server client archive chunk segment index cache repository key nonce "
          "ansible playbook inventory host task role module handler worker queue latency error").split()


def recipe_key(seed):
    return hashlib.sha256(json.dumps({"recipe": RECIPE, "seed": seed}, sort_keys=True).encode()).hexdigest()[:16]


def _text(rng, size):
    lines, n = [], 0
    while n < size:
        line = (f"2026-12-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d} "
                f"host{rng.randint(1, 40)} {rng.choice(_WORDS)} {rng.choice(_WORDS)} {rng.randint(0, 99999)}\n")
        lines.append(line)
        n += len(line)
    return "".join(lines)[:size].encode()


def _build(dest, seed, index):
    rng = random.Random(f"{seed}:{index}")
    r = RECIPE
    for d in range(rng.randint(*r["small"]["dirs"])):
        sub = dest / f"docs/d{d:02d}"
        sub.mkdir(parents=True)
        for f in range(r["small"]["per_dir"]):
            (sub / f"note{f:03d}.txt").write_bytes(_text(rng, rng.randint(r["small"]["min"], r["small"]["max"])))
    (dest / "logs").mkdir()
    for i in range(rng.randint(*r["logs"]["count"])):
        (dest / f"logs/app{i}.log").write_bytes(_text(rng, rng.randint(r["logs"]["min"], r["logs"]["max"])))
    (dest / "blobs").mkdir()
    for i in range(rng.randint(*r["blobs"]["count"])):
        (dest / f"blobs/blob{i}.bin").write_bytes(rng.randbytes(rng.randint(r["blobs"]["min"], r["blobs"]["max"])))


def client_trees(n, seed=1, log=print):
    """[Path] of n cached client trees, building the missing ones (a finished tree has .done)."""
    root = CACHE_ROOT / f"fleet-{recipe_key(seed)}"
    root.mkdir(mode=0o755, parents=True, exist_ok=True)
    out = []
    for i in range(n):
        tree = root / f"client-{i:02d}"
        if not (root / f"client-{i:02d}.done").exists():
            log(f"building {tree}")
            shutil.rmtree(tree, ignore_errors=True)
            tree.mkdir()
            _build(tree, seed, i)
            (root / f"client-{i:02d}.done").touch()
        out.append(tree)
    return out


def listing(tree):
    """{relative path: size} of the regular files in a tree."""
    return {str(p.relative_to(tree)): p.stat().st_size for p in tree.rglob("*") if p.is_file()}
