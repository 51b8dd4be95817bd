"""Web image-search APIs: SearXNG (self-hosted), Google Custom Search (image search), Brave.

Each turns the documented response shape into `Candidate`s and sends the `Query` modifiers its
API can express; the others are dropped before the request (`search.base.sendable`), never
pasted into the query text:

| modifier | google-cse | brave | searxng |
|---|---|---|---|
| photo type | `imgType` | dropped (no parameter) | dropped (no parameter) |
| exclude terms | `excludeTerms` | dropped (no parameter) | dropped ("-term" is passed on to engines that may read the words as wanted) |
| or-terms | `orTerms` | dropped | dropped |

Keys come from environment variables, never from files that get committed or saved next to
outputs.
"""

from __future__ import annotations

import os
from typing import Any

from entitynet.errors import ConfigError
from entitynet.records import Candidate, Query
from entitynet.search.base import JsonApi, SearchError, parse_size
from entitynet.search.registry import Backend, register


def _env(var: str, what: str) -> str:
    value = os.environ.get(var, "")
    if not value:
        raise ConfigError(f"{what} needs the environment variable {var}")
    return value


def _list(doc: Any, key: str, backend: str) -> list:
    value = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(value, list):
        raise SearchError(f"{backend} answered without a '{key}' list; is the URL the right API?")
    return value


class SearXNG:
    """`/search?q=…&format=json&categories=images` of a self-hosted SearXNG (JSON output enabled)."""

    name = "searxng"
    modifiers: frozenset[str] = frozenset()

    def __init__(self, base_url: str, max_results: int = 20, requests_per_second: float = 2.0, **api):
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"SearXNG URL {base_url!r} is not an http(s) URL")
        self.url = base_url.rstrip("/") + "/search"
        self.max_results = max_results
        self.api = JsonApi(self.name, requests_per_second, **api)

    def search(self, query: Query) -> list[Candidate]:
        out: list[Candidate] = []
        page = 1
        while len(out) < self.max_results and page <= 5:
            doc = self.api.get(
                self.url, {"q": query.text, "format": "json", "categories": "images", "pageno": page}
            )
            results = _list(doc, "results", self.name)
            if not results:
                break
            for r in results:
                src = r.get("img_src") if isinstance(r, dict) else None
                if not isinstance(src, str) or not src.startswith(("http://", "https://")):
                    continue
                w, h = parse_size(r.get("resolution"))
                texts = tuple(
                    t for t in (r.get("title"), r.get("content")) if isinstance(t, str) and t.strip()
                )
                out.append(
                    Candidate(
                        url=src,
                        page_url=r.get("url") or "",
                        alt_texts=texts,
                        width=w,
                        height=h,
                        query_ids=(query.id,),
                        entity_ids=query.entity_ids,
                        backend=self.name,
                    )
                )
            page += 1
        return out[: self.max_results]


class GoogleCSE:
    """Google Custom Search JSON API with `searchType=image` (key: GOOGLE_CSE_KEY, engine: GOOGLE_CSE_CX)."""

    name = "google-cse"
    modifiers = frozenset({"photo_type", "exclude_terms", "or_terms"})
    URL = "https://www.googleapis.com/customsearch/v1"

    def __init__(
        self, max_results: int = 20, requests_per_second: float = 1.0, url: str | None = None, **api
    ):
        self.key = _env("GOOGLE_CSE_KEY", "the google-cse backend")
        self.cx = _env("GOOGLE_CSE_CX", "the google-cse backend")
        self.url = url or self.URL
        self.max_results = max_results
        self.api = JsonApi(self.name, requests_per_second, **api)

    def params(self, query: Query, start: int) -> dict:
        p = {
            "key": self.key,
            "cx": self.cx,
            "q": query.text,
            "searchType": "image",
            "num": 10,
            "start": start,
        }
        if query.photo_type:
            p["imgType"] = query.photo_type
        if query.exclude_terms:
            p["excludeTerms"] = " ".join(query.exclude_terms)
        if query.or_terms:
            p["orTerms"] = " ".join(query.or_terms)
        return p

    def search(self, query: Query) -> list[Candidate]:
        out: list[Candidate] = []
        start = 1
        while len(out) < self.max_results and start <= 91:  # the API serves at most 100 results
            doc = self.api.get(self.url, self.params(query, start))
            items = doc.get("items", []) if isinstance(doc, dict) else None
            if not isinstance(items, list):
                raise SearchError(f"{self.name} answered without an 'items' list")
            if not items:
                break
            for it in items:
                link = it.get("link") if isinstance(it, dict) else None
                if not isinstance(link, str):
                    continue
                image = it.get("image") if isinstance(it.get("image"), dict) else {}
                texts = tuple(
                    t for t in (it.get("title"), it.get("snippet")) if isinstance(t, str) and t.strip()
                )
                out.append(
                    Candidate(
                        url=link,
                        page_url=image.get("contextLink", ""),
                        alt_texts=texts,
                        width=int(image.get("width") or 0),
                        height=int(image.get("height") or 0),
                        query_ids=(query.id,),
                        entity_ids=query.entity_ids,
                        backend=self.name,
                    )
                )
            start += 10
        return out[: self.max_results]


class Brave:
    """Brave Search image API (key: BRAVE_API_KEY, sent as X-Subscription-Token)."""

    name = "brave"
    modifiers: frozenset[str] = frozenset()
    URL = "https://api.search.brave.com/res/v1/images/search"

    def __init__(
        self, max_results: int = 50, requests_per_second: float = 1.0, url: str | None = None, **api
    ):
        self.key = _env("BRAVE_API_KEY", "the brave backend")
        self.url = url or self.URL
        self.max_results = max_results
        self.api = JsonApi(self.name, requests_per_second, **api)

    def search(self, query: Query) -> list[Candidate]:
        doc = self.api.get(
            self.url,
            {"q": query.text, "count": min(self.max_results, 200), "safesearch": "strict"},
            headers={"X-Subscription-Token": self.key, "Accept": "application/json"},
        )
        out = []
        for r in _list(doc, "results", self.name):
            props = got if isinstance(r, dict) and isinstance(got := r.get("properties"), dict) else {}
            src = props.get("url")
            if not isinstance(src, str) or not src.startswith(("http://", "https://")):
                continue
            title = r.get("title")
            out.append(
                Candidate(
                    url=src,
                    page_url=r.get("url") or "",
                    alt_texts=(title,) if title else (),
                    width=int(props.get("width") or 0),
                    height=int(props.get("height") or 0),
                    query_ids=(query.id,),
                    entity_ids=query.entity_ids,
                    backend=self.name,
                )
            )
        return out[: self.max_results]


def _searxng_check(spec) -> str:
    return (
        ""
        if spec.endpoint("searxng")
        else "the searxng backend needs --searxng-url (the base URL of your SearXNG)"
    )


register(
    Backend(
        "searxng",
        "a self-hosted SearXNG with JSON output",
        "web",
        modifiers=SearXNG.modifiers,
        open=lambda spec, entities, queries, url: SearXNG(
            url, max_results=spec.max_results, requests_per_second=spec.requests_per_second
        ),
        check=_searxng_check,
    )
)
register(
    Backend(
        "google-cse",
        "Google Custom Search (GOOGLE_CSE_KEY, GOOGLE_CSE_CX)",
        "web",
        modifiers=GoogleCSE.modifiers,
        open=lambda spec, entities, queries, url: GoogleCSE(
            max_results=spec.max_results, url=url, requests_per_second=spec.requests_per_second
        ),
    )
)
register(
    Backend(
        "brave",
        "Brave image search (BRAVE_API_KEY)",
        "web",
        modifiers=Brave.modifiers,
        open=lambda spec, entities, queries, url: Brave(
            max_results=spec.max_results, url=url, requests_per_second=spec.requests_per_second
        ),
    )
)
