"""A SPARQL 1.1 endpoint over HTTP, made dependable.

POST (so long VALUES lists never hit URL limits), JSON results, separate connect and read
timeouts, one total deadline per query (`--total-timeout`: connect, headers, body, retries and
their waits; a server trickling a byte a second is cut off on time) and a size cap on the answer
(`--max-response-mb`: a larger answer is refused as it arrives, never held whole), retries with
exponential backoff and jitter on 429, 5xx, malformed answers and connection errors (honouring
Retry-After), a descriptive User-Agent as Wikimedia's policy asks, and a polite request rate.

SPARQLWrapper builds the request (query encoding, Accept, User-Agent); it is sent through the
project's bounded HTTP client (`entitynet.http_policy.request`), since SPARQLWrapper's own urllib
transport can bound neither the total time nor the size of an answer.
"""

from __future__ import annotations

import time
import urllib.request
from dataclasses import dataclass

import requests
from SPARQLWrapper import JSON, POST, URLENCODED, SPARQLWrapper

from entitynet import __version__
from entitynet.errors import KGDataError, KGError
from entitynet.http_policy import (
    Backoff,
    Deadline,
    DeadlinePassed,
    RateLimiter,
    ResponseTooLarge,
    request,
    retry_after_seconds,
    session,
    why,
)
from entitynet.kg.client import DEFAULT_MAX_BYTES, DEFAULT_TOTAL_TIMEOUT, check_limits
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
        total_timeout: float = DEFAULT_TOTAL_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_wait: float = 120.0,
        requests_per_second: float | None = None,
    ):
        check_limits(total_timeout, max_bytes)
        self.url = url
        self.agent = agent or user_agent(None)
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self.total_timeout, self.max_bytes = total_timeout, max_bytes
        self.max_retries = max_retries
        self.backoff = Backoff(backoff, max_wait)
        self.limiter = RateLimiter(requests_per_second)
        self.http = session()

    def _request(self, query: str) -> urllib.request.Request:
        sw = SPARQLWrapper(self.url, agent=self.agent, returnFormat=JSON)
        sw.setMethod(POST)
        sw.setRequestMethod(URLENCODED)
        sw.setOnlyConneg(True)  # no format=json&output=json parameters; Accept header only
        sw.setQuery(query)
        # SPARQLWrapper builds the request (headers, encoding); we send it ourselves to get separate
        # connect/read timeouts, a total deadline, a size cap and the raw status for retry decisions.
        return sw._createRequest()

    def _once(self, query: str, deadline: Deadline) -> list[Row]:
        req = self._request(query)
        try:
            answer = request(
                self.http,
                "POST",
                req.full_url,
                data=req.data,
                headers={k.title(): v for k, v in req.header_items()},  # urllib spells "User-agent"
                allow_redirects=False,  # a redirected POST loses its query: say where to go instead
                deadline=deadline,
                max_bytes=self.max_bytes,
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
            )
        except ResponseTooLarge as e:
            raise KGError(
                f"SPARQL endpoint {self.url}: {e} (--max-response-mb); "
                "lower --batch-size so each query asks for less (or use --strategy levels), "
                "or raise --max-response-mb"
            ) from None
        except requests.RequestException as e:
            raise _Transient(f"connection failed ({why(e)})") from e
        code = answer.status
        if code in (301, 302, 303, 307, 308):
            raise KGError(
                f"SPARQL endpoint {self.url} redirects (HTTP {code}) to "
                f"{answer.headers.get('Location', '?')[:200]}; give that URL as --endpoint"
            )
        if code == 429 or code >= 500:
            raise _Transient(
                f"HTTP {code} ({answer.first_line() or 'no detail'})",
                retry_after_seconds(answer.headers.get("Retry-After")),
            )
        if code != 200:
            raise KGError(
                f"SPARQL endpoint {self.url} refused the query with HTTP {code}: "
                f"{answer.first_line() or 'no detail'}; check the endpoint URL and that it speaks SPARQL 1.1"
            )
        try:
            return parse_results(answer.body, self.url)
        except KGDataError:
            raise  # a value of the graph itself: the same answer again would not help
        except KGError as e:
            # Some endpoints answer 200 with an error page when a query times out server-side.
            raise _Transient(str(e)) from e

    def select(self, query: str) -> list[Row]:
        deadline = Deadline(self.total_timeout)
        last: _Transient | None = None
        attempts = 0
        try:
            for attempt in range(self.max_retries + 1):
                if attempt:
                    delay = self.backoff.delay(attempt - 1, last.wait if last is not None else None)
                    if not deadline.allows(delay):
                        raise DeadlinePassed("no time left for another attempt")
                    time.sleep(delay)
                self.limiter.wait()
                attempts += 1
                try:
                    return self._once(query, deadline)
                except _Transient as e:
                    last = e
        except DeadlinePassed:
            raise KGError(
                f"SPARQL endpoint {self.url} gave no whole answer within the total timeout of "
                f"{self.total_timeout:g} s (--total-timeout; {attempts} attempt(s)"
                + (f", last: {last}" if last is not None else "")
                + "); lower --batch-size so each query asks for less (or use --strategy levels), "
                "or raise --total-timeout"
            ) from None
        raise KGError(
            f"SPARQL endpoint {self.url} failed after {self.max_retries + 1} attempts, last: {last}; "
            "check the URL and your network, or retry later"
        )
