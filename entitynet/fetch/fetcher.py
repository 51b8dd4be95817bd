"""Fetch one URL safely; every call ends in a `FetchResult` with the bytes or exactly one reason.

One asyncio client (aiohttp) per worker holds many requests in flight on one thread: a slow web
(hosts answering in hundreds of milliseconds, some stalling until the deadline) keeps hundreds of
requests open per core instead of one per thread. `Fetcher.afetch` is the coroutine;
`Fetcher.fetch` and `Fetcher.submit` run it on the fetcher's own event loop thread for callers
that are not async (Beam DoFns, tests).

- Any string is a URL to us: one that does not parse (`http://[::1/x`, a bad port, a host IDNA
  cannot encode) ends as `bad_url`, never as an exception.
- The address guard runs at connection time on the resolved addresses, for the first request
  and for every redirect, and the socket connects to the address that was checked (no second
  DNS lookup for a rebinding server to exploit); literal IP hosts are checked the same way. A
  refused address is never contacted. DNS answers are cached per worker (`Resolver`, `--dns-ttl`).
- One deadline (`total_timeout`) covers the whole fetch: connect, response headers, body,
  redirects, retries and the robots.txt fetch of the host, so a server trickling header lines or
  body bytes is cut off on time.
- Headers decide before the body is read: status, `X-Robots-Tag` opt-out, `Content-Type`
  (image/*), `Content-Length` against the size cap.
- We advertise `Accept-Encoding: gzip, deflate` and decode those ourselves with the size cap on
  the decompressed bytes (a gzip bomb stops at the cap); any other encoding is refused.
- robots.txt (RFC 9309, `entitynet.fetch.robots`): at most 500 KiB of it is read (decompression
  stops there too), up to five redirects are followed, 4xx means allow all, 5xx or an unreachable
  host means disallow for now (`robots_unavailable`, or the connection error itself) and is asked
  again later in the run. It is parsed once per origin (scheme, host, port; never the userinfo)
  and the parsed rules are kept, and matched against the path and query as they are sent.
- Credentials in URLs are never sent: a URL whose authority has userinfo (`user:password@`), the
  first one or any redirect's Location, ends as `bad_url` before any request (aiohttp would turn
  it into a Basic `Authorization` header), and no detail repeats the userinfo.
- Redirects are followed by hand (capped, loops detected); retries happen only for 429, 5xx and
  connection errors, with the backoff and deadline of `entitynet.http_policy`.
- Politeness: at most `per_host_concurrency` fetches in progress and `per_host_rps` fetch starts
  per second per host, and `in_flight` fetches in all; a fetch holds its host's place through its
  redirects on that host, retries and robots.txt, and its deadline starts once it has the place.
  A caller that splits a big host over several workers passes `slot=(host, i)` and `share=n`: each of the n slots then gets 1/n of the host's
  allowance, so the host never sees more than the limit from all workers together (the harvest
  routes each slot to one work unit; `entitynet.harvest.politeness`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import math
import socket
import threading
import time
import urllib.parse
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yarl

from entitynet import __version__
from entitynet.errors import ConfigError
from entitynet.fetch import robots as robots_txt
from entitynet.fetch.policy import DEFAULT_OPT_OUT, AddressPolicy, x_robots_opt_out
from entitynet.fetch.resolver import Resolver
from entitynet.http_policy import Backoff, Deadline, retry_after_seconds, why
from entitynet.options import option
from entitynet.urls import CREDENTIALS_REFUSED, has_credentials, public_text

# The outcome vocabulary of fetching (image processing adds its own reasons).
TRANSIENT = ("http_429", "http_5xx", "connection_error", "timeout", "robots_unavailable")
ROBOTS_MAX_BYTES = 500 << 10  # RFC 9309: parse at least 500 KiB; we read no more
ROBOTS_MAX_REDIRECTS = 5
ROBOTS_RETRY_SECONDS = 30.0  # an unavailable robots.txt is asked again after this long
ACCEPT_ENCODING = "gzip, deflate"  # what `_Decoder` decodes
REDIRECTS = (301, 302, 303, 307, 308)
READ_CHUNK = 64 << 10
DNS_THREADS = 32  # lookups of new hosts at once, per worker


@dataclass(frozen=True)
class FetchOptions:
    user_agent: str = f"EntityNet/{__version__} (image-text dataset builder; +https://github.com/entitynet)"
    agent_token: str = "entitynet"  # the name robots.txt and scoped X-Robots-Tag directives use for us
    connect_timeout: float = 5.0
    read_timeout: float = 10.0  # per socket read
    total_timeout: float = option(30.0, "seconds per download, redirects included")
    max_bytes: int = 20 << 20
    max_redirects: int = 5
    retries: int = option(2, "retries of a download that failed transiently", flag="--fetch-retries")
    backoff: float = 0.5
    max_retry_wait: float = 30.0
    robots_txt: bool = option(
        True, "do not consult robots.txt (opt-out headers still count)", flag="--ignore-robots-txt"
    )
    opt_out: tuple[str, ...] = DEFAULT_OPT_OUT
    address: AddressPolicy = field(default_factory=AddressPolicy)
    allow_file_urls: bool = False  # file:// only for local pools the user gave us
    per_host_concurrency: int = option(8, "requests in flight per host, over all workers")
    per_host_rps: float | None = option(None, "request starts per second per host", type=float)
    # how long a host's resolved addresses are reused (failures: 30 s)
    dns_ttl: float = option(300.0, "seconds a host's resolved addresses are reused")
    # fetches one fetcher (one worker) has in progress at a time, over all hosts
    in_flight: int = option(128, "requests a worker holds open at once, over all hosts")

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
        if not 1 <= self.in_flight <= 100_000:
            bad("--in-flight", self.in_flight, "within 1..100000")
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


def robots_origin(parts: urllib.parse.SplitResult) -> str:
    """The origin a robots.txt belongs to: scheme, lower-case host and port, never the userinfo
    (`http://u:p@Example.com:80` and `http://example.com` share one)."""
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = 443 if parts.scheme == "https" else 80
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def host_name(url: str) -> str:
    """The host name a URL's politeness limits count against (lower case; "" when none)."""
    try:
        return (urllib.parse.urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


# ---------------------------------------------------------------- the guarded connection


class _GuardedConnector(aiohttp.TCPConnector):
    """Resolves through the worker's `Resolver` and refuses before connecting when any address is
    refused by the policy; the connection goes to the checked addresses (aiohttp's own DNS cache
    and its shortcut for literal IPs are bypassed: every host, name or literal, is checked here)."""

    def __init__(self, policy: AddressPolicy, resolver: Resolver, **kwargs):
        super().__init__(use_dns_cache=False, **kwargs)
        self._policy, self._entitynet_resolver = policy, resolver

    async def _resolve_host(self, host, port, traces=None):
        resolver = self._entitynet_resolver
        try:
            addresses = resolver.cached(host, port)
            if addresses is None:
                addresses = await asyncio.get_running_loop().run_in_executor(
                    None, resolver.resolve, host, port
                )
        except (socket.gaierror, UnicodeError) as e:
            raise _Refused("connection_error", f"cannot resolve the host {host}: {e}") from None
        for address in addresses:
            why = self._policy.refusal(address)
            if why:
                raise _Refused("blocked_address", f"{host}: {why}")
        return [
            {
                "hostname": host,
                "host": a,
                "port": port,
                "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
            for a in addresses
        ]


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


# ---------------------------------------------------------------- politeness


class _Slot:
    __slots__ = ("sem", "interval", "next", "users")

    def __init__(self, capacity: int, interval: float):
        self.sem, self.interval, self.next, self.users = asyncio.Semaphore(capacity), interval, 0.0, 0


class HostLimiter:
    """Per slot (a host, or a share of one): at most `capacity` requests in flight and one start
    per `interval` seconds. Slots exist while someone holds or waits for them, so memory follows
    the hosts being fetched, not all hosts seen; a rate's last start is kept a little longer."""

    def __init__(self, concurrency: int, rps: float | None):
        self.concurrency, self.rps = concurrency, rps
        self._slots: dict = {}
        self._recent: dict = {}  # slot -> when its next start may be, for slots no one holds now

    def limits(self, share: int) -> tuple[int, float]:
        return max(1, self.concurrency // share), (share / self.rps if self.rps else 0.0)

    @contextlib.asynccontextmanager
    async def hold(self, key, share: int = 1):
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot(*self.limits(share))
            slot.next = self._recent.pop(key, 0.0)
        slot.users += 1
        try:
            async with slot.sem:
                if slot.interval:
                    now = time.monotonic()
                    start = max(now, slot.next)
                    slot.next = start + slot.interval
                    if start > now:
                        await asyncio.sleep(start - now)
                yield
        finally:
            slot.users -= 1
            if not slot.users:
                del self._slots[key]
                if slot.interval and slot.next > time.monotonic():
                    self._recent[key] = slot.next
                    if len(self._recent) > 10_000:
                        now = time.monotonic()
                        self._recent = {k: v for k, v in self._recent.items() if v > now}


# ---------------------------------------------------------------- the fetcher


class Fetcher:
    """One per worker (a DoFn opens it in `setup`). Its coroutines run on its own event loop, in a
    thread it starts on first use; `fetch` and `submit` may be called from any thread."""

    def __init__(self, opts: FetchOptions = FetchOptions()):
        self.opts = opts
        self.resolver = Resolver(ttl=opts.dns_ttl)  # one per worker: its requests share the answers
        self.limiter = HostLimiter(opts.per_host_concurrency, opts.per_host_rps)
        self._gate = asyncio.Semaphore(opts.in_flight)  # places in flight, over all hosts
        self.backoff = Backoff(opts.backoff, float("inf"))  # a wait over max_retry_wait gives up instead
        # origin -> (its parsed robots.txt rules for us; or None = not now), the refusal, when decided
        self._robots: dict[str, tuple[robots_txt.Rules, None, float] | tuple[None, _Refused, float]] = {}
        self.robots_parsed = 0  # robots.txt files parsed (once per origin; stats, tests)
        self._robots_locks: dict[str, asyncio.Lock] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: aiohttp.ClientSession | None = None
        self._start_lock = threading.Lock()
        self.active = 0  # fetches holding their host's place now (at most opts.in_flight)
        self.in_flight = 0  # requests open now, and the most at once (stats, tests)
        self.peak_in_flight = 0

    # ------------------------------------------------------------ the loop and the session

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                # DNS lookups not in the cache run here (getaddrinfo blocks): many hosts resolve at once
                loop.set_default_executor(
                    concurrent.futures.ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="entitynet-dns")
                )

                def run():
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    try:
                        loop.run_forever()
                    finally:
                        loop.close()

                self._thread = threading.Thread(target=run, name="entitynet-fetch", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
        return self._loop

    def submit(self, coro) -> concurrent.futures.Future:
        """Run a coroutine on the fetcher's loop; its result as a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def fetch(self, url: str, slot=None, share: int = 1) -> FetchResult:
        """`afetch` for a caller that is not async: blocks this thread, not the loop."""
        return self.submit(self.afetch(url, slot, share)).result()

    def close(self, wait: bool = True) -> None:
        """Close the connections and stop the loop's thread (a later call starts them again)."""
        loop, thread, session = self._loop, self._thread, self._session
        if loop is None or loop.is_closed():
            return
        self._loop, self._thread, self._session = None, None, None
        # asyncio locks and semaphores belong to their loop: a later loop gets fresh ones
        self._robots_locks = {}
        self.limiter = HostLimiter(self.opts.per_host_concurrency, self.opts.per_host_rps)
        self._gate = asyncio.Semaphore(self.opts.in_flight)

        async def shut():
            if session is not None:
                await session.close()

        try:
            done = asyncio.run_coroutine_threadsafe(shut(), loop)
            # stopped only once the future is answered (stopping inside `shut` would leave it unset)
            done.add_done_callback(lambda _: loop.call_soon_threadsafe(loop.stop))
        except RuntimeError:  # the loop is gone already (interpreter shutting down)
            return
        if wait:
            try:
                done.result(timeout=10)
            except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError, RuntimeError):
                pass
            if thread is not None:
                thread.join(timeout=10)

    def __del__(self):
        try:
            self.close(wait=False)
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            o = self.opts
            connector = _GuardedConnector(
                o.address, self.resolver, limit=0, limit_per_host=0, keepalive_timeout=15
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={
                    "User-Agent": o.user_agent,
                    "Accept": "image/avif,image/webp,image/png,image/jpeg,image/*;q=0.8",
                    "Accept-Encoding": ACCEPT_ENCODING,
                },
                auto_decompress=False,  # `_Decoder` decodes, within the size cap
                trust_env=False,  # no proxies from the environment: the guard must see the real peer
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=o.connect_timeout, sock_read=o.read_timeout
                ),
            )
        return self._session

    @contextlib.asynccontextmanager
    async def _get(self, url: str):
        """One GET (no redirects followed)."""
        u = yarl.URL(url)
        if u.raw_user is not None or u.raw_password is not None:  # every caller checked; never send one
            raise _Refused("bad_url", CREDENTIALS_REFUSED)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            async with self._client().get(url, allow_redirects=False) as r:
                yield r
        finally:
            self.in_flight -= 1

    # ------------------------------------------------------------ robots.txt

    async def _robots_for(self, origin: str) -> robots_txt.Rules:
        """Our rules from an origin's robots.txt, parsed once (none: allow all). A _Refused when it
        cannot be had now (5xx, unreachable): disallow for now, asked again after a while."""
        lock = self._robots_locks.get(origin)
        if lock is None:
            lock = self._robots_locks[origin] = asyncio.Lock()
        async with lock:
            known = self._robots.get(origin)
            if known is not None and (
                known[0] is not None or time.monotonic() - known[2] < ROBOTS_RETRY_SECONDS
            ):
                if known[0] is None:
                    raise known[1]
                return known[0]
            try:
                body = await self._fetch_robots(origin)
            except _Refused as e:
                if e.reason in ("blocked_address", "timeout"):
                    raise  # the host's own decision, or this fetch's deadline: not the host's robots.txt
                self._robots[origin] = (None, e, time.monotonic())
                raise
            rules = robots_txt.ALLOW_ALL
            if body:
                self.robots_parsed += 1
                rules = robots_txt.parse(body).for_agent(self.opts.agent_token)
            self._robots[origin] = (rules, None, time.monotonic())
            return rules

    async def _fetch_robots(self, origin: str) -> bytes:
        """The robots.txt body (at most ROBOTS_MAX_BYTES of it); b"" when there is none (allow all)."""
        url = origin + "/robots.txt"
        for _ in range(ROBOTS_MAX_REDIRECTS + 1):
            try:
                async with self._get(url) as r:
                    if r.status in REDIRECTS and "Location" in r.headers:
                        url = urllib.parse.urljoin(url, r.headers["Location"])
                        if urllib.parse.urlsplit(url).scheme not in ("http", "https") or has_credentials(url):
                            # RFC 9309: a robots.txt unreachable by redirect is unavailable (allow);
                            # one behind credentials is not followed (they are never sent)
                            return b""
                        continue
                    if r.status == 200:
                        try:
                            return await self._read_body(r, ROBOTS_MAX_BYTES, truncate=True)
                        except _Refused as e:
                            if e.reason == "bad_encoding":
                                return b""  # unreadable: parse nothing of it, as if absent
                            raise
                    if 400 <= r.status < 500:
                        return b""  # RFC 9309: "unavailable", no restrictions
                    raise _Refused(  # 5xx (and a 3xx without Location): disallow for now
                        "robots_unavailable",
                        f"{origin}/robots.txt answered HTTP {r.status}; disallowed for now",
                    )
            except _Refused:
                raise
            except aiohttp.ServerTimeoutError:
                raise _Refused("timeout", f"robots.txt of {origin} timed out") from None
            except (aiohttp.ClientError, OSError, ValueError) as e:
                raise _Refused("connection_error", f"robots.txt of {origin}: {why(e)}") from None
        return b""  # more than five redirects: RFC 9309 lets us treat it as unavailable

    # ------------------------------------------------------------ one request

    async def _read_body(self, r: aiohttp.ClientResponse, limit: int, truncate: bool = False) -> bytes:
        """The decoded body, at most `limit` bytes of it (more: too_large, or cut at `limit`)."""
        decoder = _Decoder(r.headers.get("Content-Encoding", ""))
        buf = io.BytesIO()
        while True:
            chunk = await r.content.read(READ_CHUNK)
            if not chunk:
                break
            room = limit - buf.tell()
            data, over = decoder.feed(chunk, room + 1)
            buf.write(data)
            if over or buf.tell() > limit:
                r.close()  # the rest is never read: the connection is not reused
                if truncate:
                    return buf.getvalue()[:limit]
                raise _Refused("too_large", f"body over {limit} bytes (decoded)")
        return buf.getvalue()

    async def _once(self, url: str, result: FetchResult, own_host: str) -> bytes:
        visited: set[str] = set()
        current = url
        for _ in range(self.opts.max_redirects + 1):
            parts = urllib.parse.urlsplit(current)
            if has_credentials(current):  # before anything that repeats the URL in a detail
                raise _Refused("bad_url", CREDENTIALS_REFUSED)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise _Refused("bad_url", f"not an http(s) URL: {current[:200]}")
            parts.port  # noqa: B018 - raises ValueError for a port out of range
            if current in visited:
                raise _Refused("redirect_loop", current[:200])
            visited.add(current)
            if self.opts.robots_txt:
                rules = await self._robots_for(robots_origin(parts))
                # matched against the path as it is sent (yarl resolves dot segments, re-quotes)
                if rules.rules and not rules.allows(yarl.URL(current).raw_path_qs):
                    raise _Refused("robots_disallowed", current[:200])
            # the fetch holds its own host's slot (`afetch`); a redirect to another host waits for
            # that host's (in this worker)
            host = parts.hostname.lower()
            other = self.limiter.hold(host) if host != own_host else contextlib.nullcontext()
            async with other, self._get(current) as r:
                result.status, result.final_url = r.status, current
                if r.status in REDIRECTS and "Location" in r.headers:
                    current = urllib.parse.urljoin(current, r.headers["Location"])
                    continue
                if r.status == 429:
                    raise _Refused("http_429", "", retry_after_seconds(r.headers.get("Retry-After")))
                if r.status >= 500:
                    raise _Refused(
                        "http_5xx", str(r.status), retry_after_seconds(r.headers.get("Retry-After"))
                    )
                if r.status != 200:
                    raise _Refused(f"http_{r.status}")
                # each header line separately: joined, a "bot:" scope would swallow the next line
                opted = x_robots_opt_out(
                    r.headers.getall("X-Robots-Tag", []), [self.opts.agent_token], self.opts.opt_out
                )
                if opted:
                    raise _Refused("opted_out", f"X-Robots-Tag {opted}")
                ctype = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
                result.content_type = ctype
                if not ctype.startswith("image/"):
                    raise _Refused("not_an_image", f"Content-Type {ctype or 'missing'}")
                length = r.headers.get("Content-Length", "")
                if length.isascii() and length.isdigit() and int(length) > self.opts.max_bytes:
                    raise _Refused("too_large", f"Content-Length {length}")
                return await self._read_body(r, self.opts.max_bytes)
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

    async def afetch(self, url: str, slot=None, share: int = 1) -> FetchResult:
        """Bytes of `url`, or the reason they could not (should not) be had. Never raises for a bad URL
        or a hostile server. `slot` and `share`: see the module's note on politeness."""
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
        # politeness first: the deadline starts once the host's slot and a place in flight are ours,
        # so a fetch queued behind its host's other URLs does not run out of time while it waits
        slot = slot if slot is not None else host_name(url)
        own_host = slot[0] if isinstance(slot, tuple) else slot
        async with self.limiter.hold(slot, share), self._gate:
            self.active += 1
            deadline = Deadline(self.opts.total_timeout)
            try:
                async with asyncio.timeout(self.opts.total_timeout):
                    await self._attempts(url, result, deadline, own_host)
            except TimeoutError:
                result.data, result.reason = None, "timeout"
                result.detail = f"total deadline of {self.opts.total_timeout:g} s passed"
            finally:
                self.active -= 1
        result.detail = public_text(result.detail)  # an error text may quote a URL
        return result

    async def _attempts(self, url: str, result: FetchResult, deadline: Deadline, own_host: str) -> None:
        for attempt in range(self.opts.retries + 1):
            result.attempts = attempt + 1
            wait = None
            try:
                result.data = await self._once(url, result, own_host)
                result.reason = None
                return
            except _Refused as e:
                result.reason, result.detail = e.reason, e.detail
                wait = e.wait
            except aiohttp.ConnectionTimeoutError as e:
                result.reason, result.detail = "connection_error", f"connect timeout ({e.__class__.__name__})"
            except aiohttp.ServerTimeoutError as e:
                result.reason, result.detail = "timeout", f"read timeout ({type(e).__name__})"
                return
            except (aiohttp.InvalidURL, ValueError) as e:
                # a URL (or a redirect's Location) that does not parse: bad IPv6, bad port, a host
                # IDNA cannot encode (UnicodeError is a ValueError)
                result.reason, result.detail = "bad_url", f"{type(e).__name__}: {str(e)[:150]}"
                return
            except (aiohttp.ClientError, OSError) as e:
                result.reason, result.detail = "connection_error", why(e)
            if (
                result.reason not in ("http_429", "http_5xx", "connection_error")
                or attempt == self.opts.retries
            ):
                return
            delay = self.backoff.delay(attempt, wait)
            if delay > self.opts.max_retry_wait or not deadline.allows(delay):
                return
            await asyncio.sleep(delay)
