"""CPU throttling of chosen processes (the cgroup v1 `cpu` controller): a borg run made slow enough
to be interrupted mid-way on any machine, instead of betting on how loaded the machine is."""
import os
import shutil
import uuid
from pathlib import Path

CPU = Path("/sys/fs/cgroup/cpu")


class CpuThrottle:
    """A cgroup allowed `percent` % of one CPU. Processes join it by pid, or borg joins it itself
    through the wrapper script (only `borg create`); children inherit it."""

    def __init__(self, percent):
        self.dir = CPU / f"borgfleet-test-{uuid.uuid4().hex[:8]}"
        self.dir.mkdir()
        (self.dir / "cpu.cfs_period_us").write_text("100000")
        self.limit(percent)

    def limit(self, percent):
        """`percent` % of one CPU for every process of the group; None: no limit (the group stays)."""
        (self.dir / "cpu.cfs_quota_us").write_text(str(int(percent * 1000)) if percent else "-1")

    def add(self, pid):
        (self.dir / "cgroup.procs").write_text(str(pid))

    def borg_wrapper(self, bindir):
        """A `borg` for the front of PATH: `borg create` runs throttled, everything else as usual.
        Once the throttle is closed the wrapper just runs borg."""
        real = shutil.which("borg")
        bindir = Path(bindir)
        bindir.mkdir(parents=True, exist_ok=True)
        wrapper = bindir / "borg"
        wrapper.write_text(f'#!/bin/sh\ncase " $* " in *" create "*) echo $$ > {self.dir}/cgroup.procs 2>/dev/null;; esac\n'
                           f'exec {real} "$@"\n')
        wrapper.chmod(0o755)
        return bindir

    def close(self):
        """Every process back to full speed, the cgroup removed."""
        if not self.dir.exists():
            return
        for pid in (self.dir / "cgroup.procs").read_text().split():
            try:
                (CPU / "cgroup.procs").write_text(pid)
            except OSError:
                pass   # gone meanwhile
        os.rmdir(self.dir)
