"""Fetch one URL safely; every call ends in a `FetchResult` with the bytes or exactly one reason.

- Any string is a URL to us: one that does not parse (`http://[::1/x`, a bad port, a host IDNA
  cannot encode) ends as `bad_url`, never as an exception.
- The address guard runs at connection time on the resolved addresses, for the first request
  and for every redirect, and the socket connects to the address that was checked (no second
  DNS lookup for a rebinding server to exploit). A refused address is never contacted.
- One deadline (`total_timeout`) covers the whole fetch: connect, response headers, body,
  redirects, retries and the robots.txt fetch of the host. A watchdog shuts the socket down when
  it passes, so a server trickling header lines or body bytes is cut off on time.
- Headers decide before the body is read: status, `X-Robots-Tag` opt-out, `Content-Type`
  (image/*), `Content-Length` against the size cap.
- We advertise `Accept-Encoding: gzip, deflate` and decode those ourselves with the size cap on
  the decompressed bytes (a gzip bomb stops at the cap); any other encoding is refused.
- robots.txt (RFC 9309): at most 500 KiB of it is read (decompression stops there too), up to
  five redirects are followed, 4xx means allow all, 5xx or an unreachable host means disallow for
  now (`robots_unavailable`, or the connection error itself) and is asked again later in the run.
- Redirects are followed by hand (capped, loops detected); retries happen only for 429, 5xx and
  connection errors, with the backoff, rate limiter and deadline of `entitynet.http_policy`.
- Per-host concurrency and request-rate limits keep us polite when a DoFn fetches in threads.
"""

from __future__ import annotations

import io
import math
import socket
import threading
import time
import urllib.parse
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from entitynet import __version__
from entitynet.errors import ConfigError
from entitynet.fetch.policy import DEFAULT_OPT_OUT, AddressPolicy, robots_allows, x_robots_opt_out
from entitynet.fetch.resolver import Resolver
from entitynet.http_policy import Backoff, Deadline, DeadlinePassed, RateLimiter, retry_after_seconds

# The outcome vocabulary of fetching (image processing adds its own reasons).
TRANSIENT = ("http_429", "http_5xx", "connection_error", "timeout", "robots_unavailable")
ROBOTS_MAX_BYTES = 500 << 10  # RFC 9309: parse at least 500 KiB; we read no more
ROBOTS_MAX_REDIRECTS = 5
ROBOTS_RETRY_SECONDS = 30.0  # an unavailable robots.txt is asked again after this long
ACCEPT_ENCODING = "gzip, deflate"  # what `_Decoder` decodes


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
    dns_ttl: float = 300.0  # how long a host's resolved addresses are reused (failures: 30 s)

    def __post_init__(self):
        def bad(flag, value, want):
            raise ConfigError(f"{flag} must be {want}, got {value!r}")

        for flag, value in (
            ("--connect-timeout", self.connect_timeout),
            ("--read-timeout", self.read_timeout),
            ("--total-timeout", self.total_timeout),
        ):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                bad(flag, value, "a positive number of seconds")
        if not 0 <= self.retries <= 100:
            bad("--fetch-retries", self.retries, "within 0..100")
        if not 1 <= self.max_bytes:
            bad("max_bytes", self.max_bytes, "at least 1")
        if not 0 <= self.max_redirects <= 100:
            bad("max_redirects", self.max_redirects, "within 0..100")
        if not (math.isfinite(self.backoff) and self.backoff >= 0) or not self.max_retry_wait >= 0:
            bad("backoff", (self.backoff, self.max_retry_wait), ">= 0")
        if not (isinstance(self.dns_ttl, (int, float)) and math.isfinite(self.dns_ttl) and self.dns_ttl >= 0):
            bad("--dns-ttl", self.dns_ttl, "a number of seconds >= 0")
        if not 1 <= self.per_host_concurrency <= 10_000:
            bad("--per-host-concurrency", self.per_host_concurrency, "within 1..10000")
        if self.per_host_rps is not None and not (math.isfinite(self.per_host_rps) and self.per_host_rps > 0):
            bad("--per-host-rps", self.per_host_rps, "a positive rate")


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

_WATCH = threading.local()  # the deadline of the fetch running on this thread, and its watchdogs


def _cut(sock) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _guarded(base, policy: AddressPolicy, resolver: Resolver):
    class Guarded(base):
        def _new_conn(self):
            try:
                addresses = resolver.resolve(self._dns_host, self.port)
            except socket.gaierror as e:
                raise _Refused("connection_error", f"cannot resolve {self._dns_host}: {e}") from e
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

        def getresponse(self, *args, **kwargs):
            # headers are read line by line, each within the read timeout: only a watchdog bounds
            # the whole; it stays armed for the body and is disarmed when the request is done
            deadline = getattr(_WATCH, "deadline", None)
            if deadline is not None and self.sock is not None:
                timer = threading.Timer(max(0.0, deadline.remaining()), _cut, (self.sock,))
                timer.daemon = True
                timer.start()
                _WATCH.timers.append(timer)
            return super().getresponse(*args, **kwargs)

    return Guarded


def _disarm() -> None:
    for timer in getattr(_WATCH, "timers", ()):
        timer.cancel()
    _WATCH.timers = []


class _Decoder:
    """Content-Encoding undone incrementally, never past `limit` decompressed bytes."""

    def __init__(self, encoding: str):
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            self._z = None
        elif encoding in ("gzip", "x-gzip"):
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._z = zlib.decompressobj()
        else:
            raise _Refused("bad_encoding", f"Content-Encoding {encoding!r} (we ask for {ACCEPT_ENCODING})")
        self._raw_deflate = encoding == "deflate"  # may still turn out to be raw deflate
        self._name = encoding

    def feed(self, chunk: bytes, room: int) -> tuple[bytes, bool]:
        """Decoded bytes of `chunk` (at most `room`), and whether more were left over."""
        if self._z is None:
            return chunk[:room], len(chunk) > room
        try:
            out = self._z.decompress(chunk, room)
        except zlib.error:
            if not self._raw_deflate:
                raise _Refused("bad_encoding", f"the body is not valid {self._name}") from None
            # "deflate" without the zlib header, as some servers send it: only at the very start
            self._z, self._raw_deflate = zlib.decompressobj(-zlib.MAX_WBITS), False
            try:
                out = self._z.decompress(chunk, room)
            except zlib.error:
                raise _Refused("bad_encoding", "the body is not valid deflate") from None
        self._raw_deflate = False
        return out, bool(self._z.unconsumed_tail)


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, policy: AddressPolicy, pool_size: int, resolver: Resolver):
        self._policy, self._resolver = policy, resolver
        super().__init__(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        http = type(
            "GuardedHTTPPool",
            (HTTPConnectionPool,),
            {"ConnectionCls": _guarded(HTTPConnectionPool.ConnectionCls, self._policy, self._resolver)},
        )
        https = type(
            "GuardedHTTPSPool",
            (HTTPSConnectionPool,),
            {"ConnectionCls": _guarded(HTTPSConnectionPool.ConnectionCls, self._policy, self._resolver)},
        )
        self.poolmanager.pool_classes_by_scheme = {"http": http, "https": https}


# ---------------------------------------------------------------- politeness


class HostLimiter:
    """At most `concurrency` requests in flight and `rps` request starts per second, per host."""

    def __init__(self, concurrency: int, rps: float | None):
        self._sem: dict[str, threading.BoundedSemaphore] = defaultdict(
            lambda: threading.BoundedSemaphore(concurrency)
        )
        self._rate = RateLimiter(rps)
        self._lock = threading.Lock()

    def acquire(self, host: str) -> None:
        with self._lock:
            sem = self._sem[host]
        sem.acquire()
        self._rate.wait(host)

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
        self.session.headers["Accept-Encoding"] = ACCEPT_ENCODING
        self.resolver = Resolver(ttl=opts.dns_ttl)  # one per worker: its threads share the answers
        adapter = _GuardedAdapter(opts.address, max(16, opts.per_host_concurrency * 4), self.resolver)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.limiter = HostLimiter(opts.per_host_concurrency, opts.per_host_rps)
        self.backoff = Backoff(opts.backoff, float("inf"))  # a wait over max_retry_wait gives up instead
        # origin -> (robots.txt text, "" = allow all; or None = not now) and, for None, the refusal
        # and when it was decided
        self._robots: dict[str, tuple[str | None, _Refused | None, float]] = {}
        self._robots_lock = threading.Lock()
        self._robots_host_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------ robots.txt

    def _robots_for(self, origin: str, deadline: Deadline) -> str:
        """robots.txt of an origin: its text ("" when there is none: allow all). A _Refused when it
        cannot be had now (5xx, unreachable): disallow for now, asked again after a while."""
        with self._robots_lock:
            lock = self._robots_host_locks[origin]
        with lock:
            known = self._robots.get(origin)
            if known is not None and (
                known[0] is not None or time.monotonic() - known[2] < ROBOTS_RETRY_SECONDS
            ):
                if known[0] is None:
                    raise known[1]
                return known[0]
            try:
                text = self._fetch_robots(origin, deadline)
            except _Refused as e:
                if e.reason in ("blocked_address", "timeout"):
                    raise  # the host's own decision, or this fetch's deadline: not the host's robots.txt
                self._robots[origin] = (None, e, time.monotonic())
                raise
            self._robots[origin] = (text, None, time.monotonic())
            return text

    def _fetch_robots(self, origin: str, deadline: Deadline) -> str:
        url = origin + "/robots.txt"
        for _ in range(ROBOTS_MAX_REDIRECTS + 1):
            try:
                with self._get(url, deadline) as r:
                    deadline.left("while reading the headers")
                    if r.is_redirect:
                        url = urllib.parse.urljoin(url, r.headers.get("Location", ""))
                        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                            return ""  # RFC 9309: unreachable robots.txt by redirect = unavailable, allow
                        continue
                    if r.status_code == 200:
                        try:
                            body = self._read_body(r, deadline, ROBOTS_MAX_BYTES, truncate=True)
                        except _Refused as e:
                            if e.reason == "bad_encoding":
                                return ""  # unreadable: parse nothing of it, as if absent
                            raise
                        return body.decode("utf-8", "replace")
                    if 400 <= r.status_code < 500:
                        return ""  # RFC 9309: "unavailable", no restrictions
                    raise _Refused(  # 5xx (and a 3xx without Location): disallow for now
                        "robots_unavailable",
                        f"{origin}/robots.txt answered HTTP {r.status_code}; disallowed for now",
                    )
            except DeadlinePassed as e:
                raise _Refused("timeout", f"{e} (robots.txt of {origin})") from None
            except requests.exceptions.Timeout:
                raise _Refused("timeout", f"robots.txt of {origin} timed out") from None
            except (requests.ConnectionError, urllib3.exceptions.ProtocolError, ConnectionError) as e:
                if deadline.remaining() <= 0:
                    raise _Refused("timeout", f"total deadline passed (robots.txt of {origin})") from None
                raise _Refused("connection_error", f"robots.txt of {origin}: {_why(e)}") from None
            finally:
                _disarm()
        return ""  # more than five redirects: RFC 9309 lets us treat it as unavailable

    # ------------------------------------------------------------ one request

    def _get(self, url: str, deadline: Deadline) -> requests.Response:
        remaining = deadline.left()
        timeout = (min(self.opts.connect_timeout, remaining), min(self.opts.read_timeout, remaining))
        return self.session.get(url, timeout=timeout, stream=True, allow_redirects=False)

    def _read_body(
        self, r: requests.Response, deadline: Deadline, limit: int, truncate: bool = False
    ) -> bytes:
        """The decoded body, at most `limit` bytes of it (more: too_large, or cut at `limit`)."""
        decoder = _Decoder(r.headers.get("Content-Encoding", ""))
        buf = io.BytesIO()
        while True:
            deadline.left("while reading the body")
            chunk = r.raw.read1(64 << 10)
            if not chunk:
                break
            room = limit - buf.tell()
            data, over = decoder.feed(chunk, room + 1)
            buf.write(data)
            if over or buf.tell() > limit:
                if truncate:
                    return buf.getvalue()[:limit]
                raise _Refused("too_large", f"body over {limit} bytes (decoded)")
        deadline.left("while reading the body")  # an end of the body may be the watchdog's cut
        return buf.getvalue()

    def _once(self, url: str, result: FetchResult, deadline: Deadline) -> bytes:
        visited: set[str] = set()
        current = url
        for _ in range(self.opts.max_redirects + 1):
            parts = urllib.parse.urlsplit(current)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise _Refused("bad_url", f"not an http(s) URL: {current[:200]}")
            parts.port  # noqa: B018 - raises ValueError for a port out of range
            if current in visited:
                raise _Refused("redirect_loop", current[:200])
            visited.add(current)
            origin = f"{parts.scheme}://{parts.netloc}"
            if self.opts.robots_txt:
                robots = self._robots_for(origin, deadline)
                if robots and not robots_allows(robots, self.opts.agent_token, current):
                    raise _Refused("robots_disallowed", current[:200])
            host = parts.hostname
            self.limiter.acquire(host)
            try:
                with self._get(current, deadline) as r:
                    deadline.left("while reading the headers")  # the watchdog may have cut them short
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
                    if length.isascii() and length.isdigit() and int(length) > self.opts.max_bytes:
                        raise _Refused("too_large", f"Content-Length {length}")
                    return self._read_body(r, deadline, self.opts.max_bytes)
            finally:
                _disarm()
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
        except (OSError, ValueError) as e:
            result.reason, result.detail = "http_404", f"{path}: {getattr(e, 'strerror', None) or e}"
        return result

    def fetch(self, url: str) -> FetchResult:
        """Bytes of `url`, or the reason they could not (should not) be had. Never raises for a bad URL
        or a hostile server."""
        result = FetchResult(url)
        if not isinstance(url, str) or not url:
            result.reason, result.detail = "bad_url", "empty URL"
            return result
        if url.startswith("file:"):
            if not self.opts.allow_file_urls:
                result.reason, result.detail = "bad_url", "file URLs are not allowed here"
                return result
            result.attempts = 1
            return self._file(url, result)
        deadline = Deadline(self.opts.total_timeout)
        _WATCH.deadline, _WATCH.timers = deadline, []
        try:
            return self._attempts(url, result, deadline)
        finally:
            _disarm()
            _WATCH.deadline = None

    def _attempts(self, url: str, result: FetchResult, deadline: Deadline) -> FetchResult:
        for attempt in range(self.opts.retries + 1):
            result.attempts = attempt + 1
            wait = None
            try:
                result.data = self._once(url, result, deadline)
                result.reason = None
                return result
            except _Refused as e:
                result.reason, result.detail = e.reason, e.detail
                wait = e.wait
            except DeadlinePassed as e:
                result.reason, result.detail = "timeout", str(e)
                return result
            except requests.exceptions.ConnectTimeout as e:
                result.reason, result.detail = "connection_error", f"connect timeout ({e.__class__.__name__})"
            except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError) as e:
                result.reason, result.detail = "timeout", type(e).__name__
                return result
            except (
                requests.ConnectionError,
                requests.exceptions.ChunkedEncodingError,
                urllib3.exceptions.ProtocolError,
                ConnectionError,
            ) as e:
                if deadline.remaining() <= 0:  # the watchdog cut the socket
                    result.reason, result.detail = (
                        "timeout",
                        f"total deadline of {deadline.seconds:g} s passed",
                    )
                    return result
                result.reason, result.detail = "connection_error", _why(e)
            except (requests.RequestException, ValueError, urllib3.exceptions.LocationValueError) as e:
                # a URL (or a redirect's Location) that does not parse: InvalidURL, bad IPv6, bad port,
                # a host IDNA cannot encode (UnicodeError is a ValueError)
                result.reason, result.detail = "bad_url", f"{type(e).__name__}: {str(e)[:150]}"
                return result
            if (
                result.reason not in ("http_429", "http_5xx", "connection_error")
                or attempt == self.opts.retries
            ):
                return result
            delay = self.backoff.delay(attempt, wait)
            if delay > self.opts.max_retry_wait or not deadline.allows(delay):
                return result
            time.sleep(delay)
        return result


def _why(e: BaseException) -> str:
    """A connection error in words: DNS failure, refused, reset, or the exception's type."""
    text = str(e)
    for needle, words in (
        ("Name or service not known", "cannot resolve the host"),
        ("nodename nor servname", "cannot resolve the host"),
        ("Temporary failure in name resolution", "cannot resolve the host"),
        ("Connection refused", "connection refused"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "closed without an answer"),
    ):
        if needle in text:
            return words
    return type(e).__name__
