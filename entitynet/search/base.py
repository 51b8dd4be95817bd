"""One small interface for every image-search backend (query in, candidates out), and the HTTP
plumbing they share: a per-backend request rate, retries with backoff on 429/5xx and connection
errors (honouring Retry-After), one total deadline per call (answer, retries and waits) and a
size cap on each answer (`entitynet.http_policy.request`), and an on-disk cache keyed by
(backend, query) so a re-run does not search again.

Search modifiers (photo type, exclude terms, or-terms) reach a backend only when its API can
express them (`SearchBackend.modifiers`); the others are dropped (`sendable`), never pasted into
the query text: engines that do not honour "-term" read the words as wanted and fill every
result page with exactly the clipart the terms meant to exclude."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import requests

from entitynet import __version__
from entitynet.errors import ConfigError, SearchError
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
from entitynet.records import Candidate, Query, decode_search_answer, encode_search_answer
from entitynet.storage import STORE, Store

MODIFIERS = ("photo_type", "exclude_terms", "or_terms")
TOTAL_TIMEOUT = 120.0  # seconds for one call of an API: its answer, retries and their waits
MAX_ANSWER_BYTES = 32 << 20  # one page of results is kilobytes; MediaWiki's largest are a few MiB


class SearchBackend(Protocol):
    name: str
    modifiers: frozenset[str]  # the MODIFIERS its API expresses; the rest are dropped

    def search(self, query: Query) -> list[Candidate]: ...


def sendable(query: Query, supported: frozenset[str]) -> Query:
    """`query` with the modifiers a backend cannot express removed."""
    return replace(
        query,
        photo_type=query.photo_type if "photo_type" in supported else None,
        exclude_terms=query.exclude_terms if "exclude_terms" in supported else (),
        or_terms=query.or_terms if "or_terms" in supported else (),
    )


def dropped_modifiers(queries, supported: frozenset[str]) -> dict[str, int]:
    """modifier -> how many queries carry it although the backend cannot send it."""
    out: dict[str, int] = {}
    for q in queries:
        for name in MODIFIERS:
            if name not in supported and getattr(q, name):
                out[name] = out.get(name, 0) + 1
    return out


def parse_size(text: Any) -> tuple[int, int]:
    """ "1920x1080", "1920 x 1080" or "1920×1080" -> (1920, 1080); anything else -> (0, 0)."""
    if not isinstance(text, str):
        return 0, 0
    parts = text.lower().replace("×", "x").replace(" ", "").split("x")
    if len(parts) == 2 and all(p.isascii() and p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return 0, 0


def user_agent(contact: str = "") -> str:
    """An identifying User-Agent, as Wikimedia's, GBIF's and iNaturalist's API etiquette asks: the
    tool, its version and how to reach whoever runs it (`--contact`: an e-mail address or URL)."""
    who = f"; {contact}" if contact else "; set --contact to say who runs it"
    return f"EntityNet/{__version__} (image-text dataset builder{who}) python-requests/{requests.__version__}"


class JsonApi:
    """GET JSON from one API with a request rate, retries, a total deadline, a size cap and clear
    errors."""

    def __init__(
        self,
        name: str,
        requests_per_second: float = 1.0,
        retries: int = 3,
        backoff: float = 1.0,
        timeout: float = 20.0,
        max_wait: float = 60.0,
        contact: str = "",
        total_timeout: float = TOTAL_TIMEOUT,
        max_bytes: int = MAX_ANSWER_BYTES,
    ):
        self.name = name
        self.session = session(user_agent(contact))
        self.limiter = RateLimiter(requests_per_second)
        self.retries, self.timeout = retries, timeout
        self.total_timeout, self.max_bytes = total_timeout, max_bytes
        self.backoff = Backoff(backoff, max_wait)

    def get(self, url: str, params: dict, headers: dict | None = None) -> Any:
        last = ""
        deadline = Deadline(self.total_timeout)
        for attempt in range(self.retries + 1):
            wait = None
            self.limiter.wait()
            try:
                r = request(
                    self.session,
                    "GET",
                    url,
                    params=params,
                    headers=headers or {},
                    deadline=deadline,
                    max_bytes=self.max_bytes,
                    connect_timeout=self.timeout,
                    read_timeout=self.timeout,
                )
            except ResponseTooLarge as e:
                raise SearchError(
                    f"{self.name} search at {url}: {e} for one page of results; "
                    "ask for fewer results per page (max_results)"
                ) from None
            except DeadlinePassed:
                raise self._late(url, last) from None
            except requests.RequestException as e:
                last = f"connection failed ({why(e)})"
            else:
                if r.status == 200:
                    try:
                        return r.json()
                    except ValueError:
                        last = "answer is not JSON"
                elif r.status == 429 or r.status >= 500:
                    last = f"HTTP {r.status}"
                    wait = retry_after_seconds(r.headers.get("Retry-After"))
                else:
                    raise SearchError(
                        f"{self.name} search at {url} answered HTTP {r.status} ({r.text()[:120]!r}); "
                        "check the API key and the endpoint"
                    )
            if attempt < self.retries:
                delay = self.backoff.delay(attempt, wait)
                if not deadline.allows(delay):
                    raise self._late(url, last)
                time.sleep(delay)
        raise SearchError(
            f"{self.name} search at {url} failed after {self.retries + 1} attempts, last: {last}"
        )

    def _late(self, url: str, last: str) -> SearchError:
        return SearchError(
            f"{self.name} search at {url} gave no whole answer within its total timeout of "
            f"{self.total_timeout:g} s" + (f" (last: {last})" if last else "") + "; retry later"
        )


def by_identifier(query: Query, identifiers: dict[str, str], find) -> list[Candidate]:
    """An identifier backend's answer: `find(identifier, query, entity)` for every entity of a noun
    query that has an identifier (Commons category, GBIF key, iNaturalist id). Other query kinds
    get nothing: each entity's images come once, from its own noun query."""
    if query.kind != "noun":
        return []
    out: list[Candidate] = []
    for e in query.entity_ids:
        if identifiers.get(e):
            out += find(identifiers[e], query, e)
    return out


class SearchCache:
    """Answers of a backend stored as JSON files named by a hash of (backend, its `settings`, query
    and modifiers), in a local directory or a bucket (`entitynet.storage`).
    `settings` is a digest of what else decides an answer (endpoint, max results, pool file:
    `entitynet.harvest.search_settings`), so an answer made under other settings is never reused."""

    def __init__(self, directory: str | Path, store: Store = STORE, settings: str = ""):
        self.dir, self.store, self.settings = os.fspath(directory), store, settings

    def _path(self, backend: str, query: Query) -> str:
        key = json.dumps(
            [
                backend,
                self.settings,
                query.text,
                query.kind,
                query.photo_type,
                list(query.exclude_terms),
                list(query.or_terms),
            ],
            ensure_ascii=False,
        )
        return self.store.join(self.dir, f"{backend}-{hashlib.sha1(key.encode()).hexdigest()}.json")

    def get(self, backend: str, query: Query) -> list[Candidate] | None:
        """The cached answer, or None when there is none (or it is of another version, or garbled:
        then it is searched again)."""
        data = self.store.read(self._path(backend, query))
        return None if data is None else decode_search_answer(data, query.id, tuple(query.entity_ids))

    def put(self, backend: str, query: Query, candidates: list[Candidate]) -> None:
        self.store.write(self._path(backend, query), encode_search_answer(candidates))


def cached_search(backend: SearchBackend, query: Query, cache: SearchCache | None) -> list[Candidate]:
    """The backend's answer to `query` as it can be sent (cached by what is sent), each candidate
    with its rank in the answer."""
    query = sendable(query, getattr(backend, "modifiers", frozenset()))
    found = cache.get(backend.name, query) if cache is not None else None
    if found is None:
        found = backend.search(query)
        if cache is not None:
            cache.put(backend.name, query, found)
    # a result's rank is its position in the answer (evidence for its entity links)
    return [replace(c, ranks=(i,)) for i, c in enumerate(found)]


def file_stamp(path: str, store: Store = STORE) -> list:
    """(path, size, modification time) of a file a backend reads: a changed file is searched again
    (part of a backend's `settings`)."""
    try:
        size, mtime = store.stat(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read it ({e}); check the path") from None
    return [os.path.abspath(path) if "://" not in path else path, size, mtime]
