"""Watch every process's command line for a secret while something runs (secrets never in argv)."""
import os
import threading
from pathlib import Path


class ArgvWatcher(threading.Thread):
    """Polls every process's command line while a run goes on, looking for a secret."""

    def __init__(self, needles):
        super().__init__(daemon=True)
        self.needles = [n.encode() for n in needles]
        self.stop = threading.Event()
        self.seen, self.scans = [], 0

    def run(self):
        while not self.stop.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if any(n in cmdline for n in self.needles):
                    self.seen.append(cmdline.replace(b"\0", b" ")[:200])
            self.scans += 1
