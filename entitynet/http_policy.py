"""How every HTTP client here waits: one backoff, one rate limiter, one deadline, one Retry-After.

Used by the image fetcher (`entitynet.fetch.fetcher`), the search APIs (`entitynet.search.base`),
the SPARQL client (`entitynet.kg.remote`) and the LLM client (`entitynet.text.llm`), so a retry
or a throttle behaves the same wherever it happens:

- `Backoff`: exponential (`base * 2**attempt`), jittered down to half of that at random so that
  workers which failed together do not retry together, never below a server's Retry-After, never
  above `cap`.
- `RateLimiter`: request starts per second, per key (a host, an API), spaced evenly; thread-safe.
- `Deadline`: a wall-clock budget for a whole operation (connect, headers, body, redirects,
  robots.txt, retries), asked for the time left before every blocking step.
- `request`: one HTTP request of the blocking clients (SPARQL, search APIs, LLM), its whole
  answer read under a `Deadline` and a size cap (`ResponseTooLarge`). A socket timeout is per
  read, so a server trickling a byte a second would never trip it: a watchdog shuts the
  request's sockets down when the deadline passes (headers or body, whatever it is waiting
  for), and the body is read as it arrives, stopping at the cap without holding more. Sessions
  from `session()` carry the watchdog's hook. (The image fetcher is asyncio and bounds the same
  way with `asyncio.timeout` and this `Deadline`.)
"""

from __future__ import annotations

import email.utils
import errno
import json
import random
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
import urllib3


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


# ---------------------------------------------------------------- bounded answers

READ_CHUNK = 64 << 10


class ResponseTooLarge(Exception):
    """An answer over its size cap; reading stopped there (the caller names the fix)."""

    def __init__(self, limit: int, seen: int, announced: bool = False):
        super().__init__(
            f"the answer announced {seen:,} bytes, over the cap of {size_text(limit)}"
            if announced
            else f"the answer grew past the cap of {size_text(limit)} (reading stopped there)"
        )
        self.limit, self.seen, self.announced = limit, seen, announced


def size_text(n: int) -> str:
    """Bytes in words: 268435456 -> "256 MiB"."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):g} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class Answer:
    """A whole HTTP answer, read within its deadline and size cap."""

    status: int
    headers: Mapping[str, str]  # case-insensitive
    body: bytes
    url: str

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def first_line(self, limit: int = 300) -> str:
        lines = self.body[:limit].decode("utf-8", "replace").strip().splitlines()
        return lines[0] if lines else ""


class _Watch:
    """The connections one request uses; `fire` shuts their sockets down (from the timer thread),
    which ends any read blocked on them at once."""

    def __init__(self) -> None:
        self.connections: list = []
        self.fired = False
        self._lock = threading.Lock()

    def add(self, connection) -> None:
        with self._lock:
            self.connections.append(connection)

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            connections = list(self.connections)
        for c in connections:
            sock = getattr(c, "sock", None)
            if sock is not None:
                try:  # the plain socket's shutdown, also under TLS: no TLS alert, no half-state
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass


_watching = threading.local()  # the _Watch of the request this thread is making, if any


class _Watched:
    """A urllib3 connection that puts itself under the watch of the request this thread makes."""

    def request(self, *args, **kwargs):
        watch = getattr(_watching, "watch", None)
        if watch is not None:
            watch.add(self)
        return super().request(*args, **kwargs)


class _WatchedHTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _WatchedPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if hasattr(manager, "pool_classes_by_scheme"):
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


def session(user_agent: str | None = None, max_redirects: int = 5) -> requests.Session:
    """A requests session whose requests `request` can cut off at their deadline."""
    s = requests.Session()
    adapter = _WatchedAdapter()
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.max_redirects = max_redirects
    if user_agent:
        s.headers["User-Agent"] = user_agent
    return s


def read_body(raw: urllib3.BaseHTTPResponse, deadline: Deadline, max_bytes: int) -> bytes:
    """The decoded body of a streamed urllib3 response, as its bytes arrive; ResponseTooLarge as
    soon as more than `max_bytes` came (or were announced), DeadlinePassed when time is up."""
    length = raw.headers.get("Content-Length", "")
    if length.isascii() and length.isdigit() and int(length) > max_bytes:
        raise ResponseTooLarge(max_bytes, int(length), announced=True)
    buf = bytearray()
    while True:
        if deadline.remaining() <= 0:
            raise DeadlinePassed(f"total deadline of {deadline.seconds:g} s passed while reading the answer")
        chunk = raw.read1(READ_CHUNK, decode_content=True)  # returns as bytes arrive
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > max_bytes:
            raise ResponseTooLarge(max_bytes, len(buf))


def request(
    http: requests.Session,
    method: str,
    url: str,
    *,
    deadline: Deadline,
    max_bytes: int,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    **kwargs,
) -> Answer:
    """One request (`http` from `session()`) and its whole answer, within `deadline` and
    `max_bytes`. Raises DeadlinePassed, ResponseTooLarge, or requests' own errors."""
    left = deadline.left(f"before asking {url}")
    watch = _Watch()
    outer = getattr(_watching, "watch", None)
    _watching.watch = watch
    timer = threading.Timer(left, watch.fire)
    timer.daemon = True
    timer.start()
    try:
        r = http.request(
            method,
            url,
            stream=True,
            timeout=(min(connect_timeout, left), min(read_timeout, left)),
            **kwargs,
        )
        try:
            body = read_body(r.raw, deadline, max_bytes)
        except urllib3.exceptions.ReadTimeoutError as e:  # as requests names them when it reads
            raise requests.ReadTimeout(e) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise requests.ConnectionError(e) from e
        finally:
            r.close()  # after a whole body the connection is back in the pool; otherwise dropped
        return Answer(r.status_code, r.headers, body, r.url)
    except (DeadlinePassed, ResponseTooLarge):
        raise
    except Exception as e:
        if watch.fired or deadline.remaining() <= 0:  # the watchdog's doing: say so, not "reset"
            raise DeadlinePassed(f"total deadline of {deadline.seconds:g} s passed") from e
        raise
    finally:
        timer.cancel()
        _watching.watch = outer


def why(e: BaseException) -> str:
    """A failed request in a few words, for every client here (requests' and aiohttp's errors):
    timed out, refused, reset, unresolvable, cut off; else the exception's type."""
    if isinstance(e, requests.ConnectTimeout):
        return "connect timed out"
    if isinstance(e, requests.ReadTimeout):
        return "timed out"
    cause = getattr(e, "os_error", None) or e  # aiohttp keeps the OSError beside it
    number = getattr(cause, "errno", None)
    if number == errno.ECONNREFUSED:
        return "connection refused"
    if number in (errno.ECONNRESET, errno.EPIPE):
        return "connection reset"
    text = f"{e} {cause}"
    for needle, words in (
        ("Connection refused", "connection refused"),
        ("Connect call failed", "connection refused"),
        ("Name or service not known", "cannot resolve the host"),
        ("nodename nor servname", "cannot resolve the host"),
        ("NameResolutionError", "cannot resolve the host"),
        ("Temporary failure in name resolution", "cannot resolve the host"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "closed without an answer"),
        ("Server disconnected", "closed without an answer"),
        ("IncompleteRead", "the answer ended early"),
        ("payload is not completed", "the body ended early"),
        ("timed out", "timed out"),
    ):
        if needle in text:
            return words
    return type(e).__name__
