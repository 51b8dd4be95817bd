"""How every HTTP client here waits: one backoff, one rate limiter, one deadline, one Retry-After.

Used by the image fetcher (`entitynet.fetch.fetcher`), the search APIs (`entitynet.search.base`),
the SPARQL client (`entitynet.kg.remote`) and the LLM client (`entitynet.text.llm`), so a retry
or a throttle behaves the same wherever it happens:

- `Backoff`: exponential (`base * 2**attempt`), jittered down to half of that at random so that
  workers which failed together do not retry together, never below a server's Retry-After, never
  above `cap`.
- `RateLimiter`: request starts per second, per key (a host, an API), spaced evenly; thread-safe.
- `Deadline`: a wall-clock budget for a whole operation (connect, headers, body, redirects,
  robots.txt), asked for the time left before every blocking step.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class Backoff:
    base: float = 1.0  # seconds before the first retry (before jitter)
    cap: float = 60.0  # no wait is longer, Retry-After included

    def delay(self, attempt: int, retry_after: float | None = None, rng=random) -> float:
        """Seconds to wait before retry number `attempt` (0 = the first retry)."""
        d = self.base * 2 ** min(attempt, 30) * rng.uniform(0.5, 1.0)
        if retry_after is not None:
            d = max(d, retry_after)
        return min(self.cap, d)


class RateLimiter:
    """At most `rps` request starts per second per key (None or 0: no limit)."""

    def __init__(self, rps: float | None):
        self._interval = 1.0 / rps if rps else 0.0
        self._next: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()

    def wait(self, key: str = "") -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next[key])
            self._next[key] = slot + self._interval
        if slot > now:
            time.sleep(slot - now)


class DeadlinePassed(Exception):
    """The operation's time budget is spent (the caller turns it into its own outcome or error)."""


class Deadline:
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def left(self, what: str = "") -> float:
        """Seconds left; DeadlinePassed when none are."""
        r = self.remaining()
        if r <= 0:
            raise DeadlinePassed(f"total deadline of {self.seconds:g} s passed{' ' + what if what else ''}")
        return r

    def allows(self, delay: float) -> bool:
        """Whether waiting `delay` seconds still leaves time for another attempt."""
        return time.monotonic() + delay < self.end
