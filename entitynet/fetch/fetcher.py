"""Fetch one URL safely; every call ends in a `FetchResult` with the bytes or exactly one reason.

- The address guard runs at connection time on the resolved addresses, for the first request
  and for every redirect, and the socket connects to the address that was checked (no second
  DNS lookup for a rebinding server to exploit). A refused address is never contacted.
- Headers decide before the body is read: status, `X-Robots-Tag` opt-out, `Content-Type`
  (image/*), `Content-Length` against the size cap.
- The body is read with a size cap and a total deadline (`raw.read1` returns as bytes arrive,
  so a server trickling a byte a second is cut off on time).
- Redirects are followed by hand (capped, loops detected); robots.txt is consulted per host
  (cached); retries happen only for 429, 5xx and connection errors, honouring Retry-After.
- Per-host concurrency and request-rate limits keep us polite when a DoFn fetches in threads.
"""

from __future__ import annotations

import io
import random
import socket
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from entitynet import __version__
from entitynet.fetch.policy import DEFAULT_OPT_OUT, AddressPolicy, robots_allows, x_robots_opt_out
from entitynet.retry_after import retry_after_seconds

# The outcome vocabulary of fetching (image processing adds its own reasons).
TRANSIENT = ("http_429", "http_5xx", "connection_error", "timeout")


@dataclass(frozen=True)
class FetchOptions:
    user_agent: str = f"EntityNet/{__version__} (image-text dataset builder; +https://github.com/entitynet)"
    agent_token: str = "entitynet"  # the name robots.txt and scoped X-Robots-Tag directives use for us
    connect_timeout: float = 5.0
    read_timeout: float = 10.0  # per socket read
    total_timeout: float = 30.0  # the whole download, redirects included
    max_bytes: int = 20 << 20
    max_redirects: int = 5
    retries: int = 2
    backoff: float = 0.5
    max_retry_wait: float = 30.0
    robots_txt: bool = True
    opt_out: tuple[str, ...] = DEFAULT_OPT_OUT
    address: AddressPolicy = field(default_factory=AddressPolicy)
    allow_file_urls: bool = False  # file:// only for local pools the user gave us
    per_host_concurrency: int = 8
    per_host_rps: float | None = None


@dataclass
class FetchResult:
    url: str
    data: bytes | None = None
    reason: str | None = None  # None when data is set
    detail: str = ""
    final_url: str = ""
    status: int = 0
    content_type: str = ""
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.reason is None


class _Refused(Exception):
    """A decision not to fetch (never an OSError, so no HTTP library wraps or retries it)."""

    def __init__(self, reason: str, detail: str = "", wait: float | None = None):
        super().__init__(detail or reason)
        self.reason, self.detail, self.wait = reason, detail, wait


# ---------------------------------------------------------------- the guarded connection


def _guarded(base, policy: AddressPolicy):
    class Guarded(base):
        def _new_conn(self):
            try:
                infos = socket.getaddrinfo(self._dns_host, self.port, type=socket.SOCK_STREAM)
            except socket.gaierror as e:
                raise _Refused("connection_error", f"cannot resolve {self._dns_host}: {e}") from e
            addresses = list(dict.fromkeys(info[4][0] for info in infos))
            for address in addresses:
                why = policy.refusal(address)
                if why:
                    raise _Refused("blocked_address", f"{self.host}: {why}")
            host = self._dns_host
            self._dns_host = addresses[0]  # connect to the address we checked
            try:
                return super()._new_conn()
            finally:
                self._dns_host = host

    return Guarded


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, policy: AddressPolicy, pool_size: int):
        self._policy = policy
        super().__init__(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        http = type(
            "GuardedHTTPPool",
            (HTTPConnectionPool,),
            {"ConnectionCls": _guarded(HTTPConnectionPool.ConnectionCls, self._policy)},
        )
        https = type(
            "GuardedHTTPSPool",
            (HTTPSConnectionPool,),
            {"ConnectionCls": _guarded(HTTPSConnectionPool.ConnectionCls, self._policy)},
        )
        self.poolmanager.pool_classes_by_scheme = {"http": http, "https": https}


# ---------------------------------------------------------------- politeness


class HostLimiter:
    """At most `concurrency` requests in flight and `rps` request starts per second, per host."""

    def __init__(self, concurrency: int, rps: float | None):
        self._sem: dict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(concurrency)
        )
        self._next: dict[str, float] = defaultdict(float)
        self._interval = 1.0 / rps if rps else 0.0
        self._lock = threading.Lock()

    def acquire(self, host: str) -> None:
        with self._lock:
            sem = self._sem[host]
        sem.acquire()
        if self._interval:
            with self._lock:
                now = time.monotonic()
                slot = max(now, self._next[host])
                self._next[host] = slot + self._interval
            if slot > now:
                time.sleep(slot - now)

    def release(self, host: str) -> None:
        self._sem[host].release()


# ---------------------------------------------------------------- the fetcher


class Fetcher:
    """Thread-safe: one per DoFn instance (opened in `setup`), shared by its fetch threads."""

    def __init__(self, opts: FetchOptions = FetchOptions()):
        self.opts = opts
        self.session = requests.Session()
        self.session.trust_env = False  # no proxies from the environment: the guard must see the real peer
        self.session.headers["User-Agent"] = opts.user_agent
        self.session.headers["Accept"] = "image/avif,image/webp,image/png,image/jpeg,image/*;q=0.8"
        adapter = _GuardedAdapter(opts.address, max(16, opts.per_host_concurrency * 4))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.limiter = HostLimiter(opts.per_host_concurrency, opts.per_host_rps)
        self._robots: dict[str, str | None] = {}
        self._robots_lock = threading.Lock()
        self._robots_host_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------ robots.txt

    def _robots_for(self, origin: str, deadline: float) -> str | None:
        """robots.txt of an origin: its text, "" when there is none (allow all), None for disallow all."""
        with self._robots_lock:
            lock = self._robots_host_locks[origin]
        with lock:
            if origin in self._robots:
                return self._robots[origin]
            text: str | None
            try:
                r = self._get(origin + "/robots.txt", deadline, stream=False)
                if r.status_code == 200:
                    text = r.content[: 512 << 10].decode("utf-8", "replace")
                elif 400 <= r.status_code < 500:
                    text = ""  # RFC 9309: no robots.txt, no restrictions
                else:
                    text = None  # 5xx: assume complete disallow
            except _Refused as e:
                if e.reason == "blocked_address":
                    raise
                text = None
            except requests.RequestException:
                text = None  # unreachable: assume complete disallow
            self._robots[origin] = text
            return text

    # ------------------------------------------------------------ one request

    def _get(self, url: str, deadline: float, stream: bool = True) -> requests.Response:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Refused("timeout", "total deadline passed")
        timeout = (min(self.opts.connect_timeout, remaining), min(self.opts.read_timeout, remaining))
        return self.session.get(url, timeout=timeout, stream=stream, allow_redirects=False)

    def _read_body(self, r: requests.Response, deadline: float) -> bytes:
        buf = io.BytesIO()
        while True:
            if time.monotonic() > deadline:
                raise _Refused("timeout", "total deadline passed while reading the body")
            chunk = r.raw.read1(64 << 10)
            if not chunk:
                break
            buf.write(chunk)
            if buf.tell() > self.opts.max_bytes:
                raise _Refused("too_large", f"body over {self.opts.max_bytes} bytes")
        return buf.getvalue()

    def _once(self, url: str, result: FetchResult, deadline: float) -> bytes:
        visited: set[str] = set()
        current = url
        for _ in range(self.opts.max_redirects + 1):
            parts = urllib.parse.urlsplit(current)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise _Refused("bad_url", f"not an http(s) URL: {current[:200]}")
            if current in visited:
                raise _Refused("redirect_loop", current[:200])
            visited.add(current)
            origin = f"{parts.scheme}://{parts.netloc}"
            if self.opts.robots_txt:
                robots = self._robots_for(origin, deadline)
                if robots is None or (robots and not robots_allows(robots, self.opts.agent_token, current)):
                    raise _Refused("robots_disallowed", current[:200])
            host = parts.hostname
            self.limiter.acquire(host)
            try:
                with self._get(current, deadline) as r:
                    result.status, result.final_url = r.status_code, current
                    if r.is_redirect:
                        location = r.headers.get("Location", "")
                        current = urllib.parse.urljoin(current, location)
                        continue
                    if r.status_code == 429:
                        raise _Refused("http_429", "", retry_after_seconds(r.headers.get("Retry-After")))
                    if r.status_code >= 500:
                        raise _Refused(
                            "http_5xx", str(r.status_code), retry_after_seconds(r.headers.get("Retry-After"))
                        )
                    if r.status_code != 200:
                        raise _Refused(f"http_{r.status_code}")
                    # each header line separately: joined, a "bot:" scope would swallow the next line
                    tags = r.raw.headers.getlist("X-Robots-Tag")
                    opted = x_robots_opt_out(tags, [self.opts.agent_token], self.opts.opt_out)
                    if opted:
                        raise _Refused("opted_out", f"X-Robots-Tag {opted}")
                    ctype = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
                    result.content_type = ctype
                    if not ctype.startswith("image/"):
                        raise _Refused("not_an_image", f"Content-Type {ctype or 'missing'}")
                    length = r.headers.get("Content-Length", "")
                    if length.isdigit() and int(length) > self.opts.max_bytes:
                        raise _Refused("too_large", f"Content-Length {length}")
                    return self._read_body(r, deadline)
            finally:
                self.limiter.release(host)
        raise _Refused("redirect_loop", f"more than {self.opts.max_redirects} redirects")

    def _file(self, url: str, result: FetchResult) -> FetchResult:
        path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
        try:
            size = path.stat().st_size
            if size > self.opts.max_bytes:
                result.reason, result.detail = "too_large", f"{size} bytes"
                return result
            result.data = path.read_bytes()
        except OSError as e:
            result.reason, result.detail = "http_404", f"{path}: {e.strerror}"
        return result

    def fetch(self, url: str) -> FetchResult:
        """Bytes of `url`, or the reason they could not (should not) be had. Never raises for a bad URL
        or a hostile server."""
        result = FetchResult(url)
        if url.startswith("file:"):
            if not self.opts.allow_file_urls:
                result.reason, result.detail = "bad_url", "file URLs are not allowed here"
                return result
            result.attempts = 1
            return self._file(url, result)
        deadline = time.monotonic() + self.opts.total_timeout
        for attempt in range(self.opts.retries + 1):
            result.attempts = attempt + 1
            try:
                result.data = self._once(url, result, deadline)
                result.reason = None
                return result
            except _Refused as e:
                result.reason, result.detail = e.reason, e.detail
                wait = e.wait
            except requests.exceptions.ConnectTimeout as e:
                result.reason, result.detail, wait = (
                    "connection_error",
                    f"connect timeout ({e.__class__.__name__})",
                    None,
                )
            except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError) as e:
                result.reason, result.detail = "timeout", type(e).__name__
                return result
            except (
                requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.ProtocolError,
                ConnectionError,
            ) as e:
                result.reason, result.detail, wait = "connection_error", type(e).__name__, None
            except requests.RequestException as e:
                result.reason, result.detail = "bad_url", type(e).__name__
                return result
            if (
                result.reason not in ("http_429", "http_5xx", "connection_error")
                or attempt == self.opts.retries
            ):
                return result
            delay = self.opts.backoff * 2**attempt * random.uniform(0.5, 1.0)
            if wait is not None:
                delay = max(delay, wait)
            if delay > self.opts.max_retry_wait or time.monotonic() + delay > deadline:
                return result
            time.sleep(delay)
        return result
