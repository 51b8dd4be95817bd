"""A SPARQL 1.1 endpoint over HTTP, through SPARQLWrapper, made dependable.

POST (so long VALUES lists never hit URL limits), JSON results, separate connect and read
timeouts, retries with exponential backoff and jitter on 429, 5xx, malformed answers and
connection errors (honouring Retry-After), a descriptive User-Agent as Wikimedia's policy
asks, and a polite request rate.
"""

from __future__ import annotations

import functools
import http.client
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from SPARQLWrapper import JSON, POST, URLENCODED, SPARQLWrapper

from entitynet import __version__
from entitynet.errors import KGError
from entitynet.http_policy import Backoff, RateLimiter, retry_after_seconds
from entitynet.kg.results import Row, parse_results


@dataclass(frozen=True)
class Preset:
    url: str
    requests_per_second: float
    note: str


# Endpoints people point EntityNet at. Rates are deliberately polite; raise them for your own server.
PRESETS: dict[str, Preset] = {
    "wikidata": Preset("https://query.wikidata.org/sparql", 1.0, "Wikidata Query Service (Blazegraph)"),
    "qlever": Preset("https://qlever.cs.uni-freiburg.de/api/wikidata", 4.0, "QLever's Wikidata endpoint"),
}


def user_agent(contact: str | None) -> str:
    who = contact or "no contact given; pass --contact EMAIL_OR_URL"
    return f"EntityNet/{__version__} (knowledge-graph dataset builder; {who}) SPARQLWrapper"


class _ConnectTimeout:
    """Mixin: use `connect_timeout` while connecting, then the read timeout on the socket."""

    def __init__(self, *args, connect_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self._connect_timeout = connect_timeout

    def connect(self):
        read_timeout = self.timeout
        self.timeout = self._connect_timeout
        try:
            super().connect()
        finally:
            self.timeout = read_timeout
        if isinstance(read_timeout, int | float):  # urllib passes a sentinel object when none was given
            self.sock.settimeout(read_timeout)


class _HTTPConnection(_ConnectTimeout, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_ConnectTimeout, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, connect_timeout: float):
        super().__init__()
        self._cls = functools.partial(_HTTPConnection, connect_timeout=connect_timeout)

    def http_open(self, req):
        return self.do_open(self._cls, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, connect_timeout: float):
        super().__init__()
        self._cls = functools.partial(_HTTPSConnection, connect_timeout=connect_timeout)

    def https_open(self, req):
        return self.do_open(self._cls, req, context=self._context)


class _Transient(Exception):
    def __init__(self, message: str, wait: float | None = None):
        super().__init__(message)
        self.wait = wait


class RemoteSparql:
    """`select(query) -> rows` against a SPARQL endpoint URL."""

    def __init__(
        self,
        url: str,
        *,
        agent: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_wait: float = 120.0,
        requests_per_second: float | None = None,
    ):
        self.url = url
        self.agent = agent or user_agent(None)
        self.read_timeout = read_timeout
        self.max_retries = max_retries
        self.backoff = Backoff(backoff, max_wait)
        self.limiter = RateLimiter(requests_per_second)
        self._opener = urllib.request.build_opener(
            _HTTPHandler(connect_timeout), _HTTPSHandler(connect_timeout)
        )

    def _request(self, query: str) -> urllib.request.Request:
        sw = SPARQLWrapper(self.url, agent=self.agent, returnFormat=JSON)
        sw.setMethod(POST)
        sw.setRequestMethod(URLENCODED)
        sw.setOnlyConneg(True)  # no format=json&output=json parameters; Accept header only
        sw.setQuery(query)
        # SPARQLWrapper builds the request (headers, encoding); we open it ourselves to get
        # separate connect/read timeouts and the raw status and headers for retry decisions.
        return sw._createRequest()

    def _once(self, query: str) -> list[Row]:
        try:
            with self._opener.open(self._request(query), timeout=self.read_timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read(300).decode("utf-8", "replace").strip().splitlines()
            first = detail[0] if detail else e.reason
            if e.code == 429 or e.code >= 500:
                raise _Transient(
                    f"HTTP {e.code} ({first})", retry_after_seconds(e.headers.get("Retry-After"))
                ) from e
            raise KGError(
                f"SPARQL endpoint {self.url} refused the query with HTTP {e.code}: {first}; "
                "check the endpoint URL and that it speaks SPARQL 1.1"
            ) from e
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            reason = getattr(e, "reason", None) or e
            if isinstance(reason, socket.timeout | TimeoutError):
                reason = "timed out"
            raise _Transient(f"connection failed ({reason})") from e
        try:
            return parse_results(payload, self.url)
        except KGError as e:
            # Some endpoints answer 200 with an error page when a query times out server-side.
            raise _Transient(str(e)) from e

    def select(self, query: str) -> list[Row]:
        last: _Transient | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff.delay(attempt - 1, last.wait if last is not None else None))
            self.limiter.wait()
            try:
                return self._once(query)
            except _Transient as e:
                last = e
        raise KGError(
            f"SPARQL endpoint {self.url} failed after {self.max_retries + 1} attempts, last: {last}; "
            "check the URL and your network, or retry later"
        )
