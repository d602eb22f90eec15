"""Progress of long research commands: a line every few seconds on stderr with the time left."""

from __future__ import annotations

import sys
import time

from deskd.core.text import duration_text


class RunProgress:
    """``tick()`` after each of ``total`` runs: at most one line per ``every_s`` seconds on
    stderr, ``<label>: done/total <what>, about 1m05s left`` (the rate so far), and the last
    run's line always; ``finish()`` the closing line. ``quiet`` prints nothing."""

    def __init__(self, label: str, total: int, what: str = "runs", quiet: bool = False, every_s: float = 5.0):
        self.label, self.total, self.what, self.quiet, self.every_s = label, total, what, quiet, every_s
        self.done = 0
        self.t0 = self.last = time.monotonic()

    def tick(self) -> None:
        """One more run done; prints the progress line when it is time."""
        self.done += 1
        now = time.monotonic()
        if self.quiet or (now - self.last < self.every_s and self.done < self.total):
            return
        self.last = now
        rate = self.done / max(now - self.t0, 1e-9)
        left = f", about {duration_text((self.total - self.done) / rate)} left" if self.done < self.total else ""
        print(f"{self.label}: {self.done}/{self.total} {self.what}{left}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        """The closing line: runs done and the time they took."""
        if not self.quiet and self.done:
            print(f"{self.label}: {self.done} {self.what} done in {duration_text(time.monotonic() - self.t0)}",
                  file=sys.stderr, flush=True)
