"""Progress of long work, for people watching it: one line rewritten in place on a terminal, a log
line every `every` seconds otherwise (a log file, a Beam worker's log).

    p = Progress("harvest", total=5000, unit="candidates", stream=sys.stderr)
    p.add(done=1, made=1)     # from any thread
    p.close()                 # the last line, ended with a newline on a terminal

The line: `harvest: 1,234 of 5,000 candidates (24.7%), 1,180 images, 41.2/s, ETA 1m 31s`. The rate
counts the work done here since the start (work reused from an earlier run is counted done, not in
the rate), so the ETA is what is left at that rate.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TextIO

log = logging.getLogger("entitynet.progress")


def duration(seconds: float) -> str:
    """`42s`, `3m 05s`, `2h 07m`."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


class Progress:
    """Counts done of `total` (0: unknown) and reports them (thread-safe)."""

    def __init__(
        self,
        what: str,
        total: int = 0,
        unit: str = "items",
        made_unit: str = "images",
        stream: TextIO | None = None,
        every: float | None = None,
        clock=time.monotonic,
    ):
        self.what, self.total, self.unit, self.made_unit = what, total, unit, made_unit
        self.stream = stream
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.every = every if every is not None else (0.5 if self.tty else 30.0)
        self.clock = clock
        self.started = self.last = clock()
        self.done = self.made = self.reused = 0
        self._lock = threading.Lock()
        self._shown = False

    def add(self, done: int = 0, made: int = 0, reused: int = 0) -> None:
        """`done` units finished here, `made` of what they produce, `reused` units done earlier."""
        with self._lock:
            self.done += done + reused
            self.made += made
            self.reused += reused
            now = self.clock()
            if now - self.last >= self.every:
                self.last = now
                self._report()

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-9)
        fresh = self.done - self.reused
        rate = fresh / elapsed
        parts = [f"{self.what}: {self.done:,}"]
        if self.total:
            parts[0] += f" of {self.total:,} {self.unit} ({self.done / self.total:.1%})"
        else:
            parts[0] += f" {self.unit}"
        if self.made_unit:  # "" for work that makes nothing to count apart
            parts.append(f"{self.made:,} {self.made_unit}")
        if self.reused:
            parts.append(f"{self.reused:,} reused")
        parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total and rate > 0 and self.done < self.total:
            parts.append(f"ETA {duration((self.total - self.done) / rate)}")
        return ", ".join(parts)

    def _rewrite(self, end: str = "") -> None:
        """The line, over the one shown before (a terminal's)."""
        if self.stream is not None:
            self.stream.write("\r" + self.line() + "\033[K" + end)
            self.stream.flush()

    def _report(self) -> None:
        if self.tty:
            self._rewrite()
            self._shown = True
        else:
            log.info("%s", self.line())

    def close(self) -> None:
        """The final count (on a terminal: the line ended, so what follows starts afresh)."""
        with self._lock:
            if self.tty:
                if self._shown:
                    self._rewrite("\n")
            elif self.done:
                log.info("%s", self.line())
