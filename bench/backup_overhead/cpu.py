"""CPU seconds spent by the client side and the server side of each run, from two cgroups.

Wall time on a shared 2-core machine swings with whatever else runs; the CPU time a contender
burns swings much less (a saturated machine still inflates it, measured up to ~2x). The benchmark process joins the "client" cgroup (so borg, borgmatic,
ansible-playbook and the client's sshd with everything it spawns land there) and the backup
server's sshd is moved to the "server" cgroup (borg serve). Runs are sequential, so a delta of
the counters around one run is that run's CPU. Uses cgroup v1 cpuacct when mounted, else
cgroup v2's cpu.stat; without either, figures are None and the benchmark runs all the same.
"""
import os
from pathlib import Path

_V1 = Path("/sys/fs/cgroup/cpuacct")
_V2 = [Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")]


def _v2_root():
    return next((p for p in _V2 if (p / "cgroup.procs").exists() and (p / "cgroup.controllers").exists()), None)


class CpuMeter:
    def __init__(self, log=print):
        self.log = log
        self.base = None
        self.v1 = _V1.is_dir() and (_V1 / "cpuacct.usage").exists()
        root = _V1 if self.v1 else _v2_root()
        if root is None:
            log("no cpuacct/cgroup2 hierarchy: CPU seconds not measured")
            return
        base = root / f"borgfleet-bench-{os.getpid()}"
        try:
            for part in ("client", "server"):
                (base / part).mkdir(parents=True)
            self.root = root
            self.base = base
            self.join("client", os.getpid())
        except OSError as e:
            log(f"cannot use cgroups under {root} ({e}): CPU seconds not measured")
            self.base = None

    def join(self, part, pid):
        if self.base is not None:
            (self.base / part / "cgroup.procs").write_text(str(pid))

    def _usage(self, part):
        if self.v1:
            return int((self.base / part / "cpuacct.usage").read_text()) / 1e9
        for line in (self.base / part / "cpu.stat").read_text().splitlines():
            key, value = line.split()
            if key == "usage_usec":
                return int(value) / 1e6
        raise RuntimeError("cpu.stat has no usage_usec")

    def sample(self):
        """{client, server} CPU seconds so far, or None when not measured."""
        if self.base is None:
            return None
        return {part: self._usage(part) for part in ("client", "server")}

    @staticmethod
    def delta(before, after):
        if before is None or after is None:
            return None
        return {k: after[k] - before[k] for k in before}

    def close(self):
        """Move whatever is left (self, lingering ssh control masters) back out, then remove."""
        if self.base is None:
            return
        for part in ("client", "server"):
            procs = self.base / part / "cgroup.procs"
            for pid in procs.read_text().split():
                try:
                    (self.root / "cgroup.procs").write_text(pid)
                except OSError:
                    pass  # exited meanwhile
            try:
                (self.base / part).rmdir()
            except OSError as e:
                self.log(f"warning: cgroup {self.base / part} left behind: {e}")
        try:
            self.base.rmdir()
        except OSError:
            pass
