"""Watch every process's command line for a secret while something runs (secrets never in argv)."""
import os
import threading
from pathlib import Path


class ArgvWatcher(threading.Thread):
    """Polls every process's command line while a run goes on, looking for a secret."""

    def __init__(self, needles, control=None):
        """`control`: a string that the watched run does put on a command line (a repository
        path, say); seeing it proves the watcher looked at the right processes in time."""
        super().__init__(daemon=True)
        self.needles = [n.encode() for n in needles]
        self.control = control.encode() if control else None
        self.stop = threading.Event()
        self.seen, self.scans, self.control_seen = [], 0, False

    def run(self):
        while not self.stop.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if any(n in cmdline for n in self.needles):
                    self.seen.append(cmdline.replace(b"\0", b" ")[:200])
                if self.control and self.control in cmdline:
                    self.control_seen = True
            self.scans += 1
