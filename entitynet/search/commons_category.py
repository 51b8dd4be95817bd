"""The files in an entity's Wikimedia Commons category (Wikidata P373) and its subcategories, with
their licence, author and description from the MediaWiki API.

For each noun query, every entity of the query that has a Commons category yields up to
`max_results` files: `list=categorymembers` (`cmtype=file|subcat`, followed through `continue`)
walks the category breadth first down to `depth` levels of subcategories, then `prop=imageinfo`
(`iiprop=url|size|mime|extmetadata`, `iiurlwidth`) gives each file's thumbnail URL (the fetch
downloads a bounded-size thumbnail, never the original), its file page, licence
(`LicenseShortName`, `LicenseUrl`), author (`Artist`, else `Credit`) and texts
(`ImageDescription`, `ObjectName`), and `wbgetentities` the file's captions (structured data,
`M<pageid>` labels). The entity link is by category, so it is exact (`Candidate.id_entities`).

Wikimedia's API etiquette: an identifying User-Agent with a contact (`--contact`), requests one
at a time at `requests_per_second` (default 1), `maxlag=5` on every request, and on a `maxlag` or
`ratelimited` error a wait (Retry-After, else exponential backoff) and a retry.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterable

from entitynet.errors import SearchError
from entitynet.licenses import normalize
from entitynet.records import Candidate, Entity, Query, unique_texts
from entitynet.search.base import JsonApi, by_identifier
from entitynet.search.registry import Backend, Option, register

COMMONS_API = "https://commons.wikimedia.org/w/api.php"
_TAG = re.compile(r"<[^>]+>")
_RETRY_CODES = ("maxlag", "ratelimited")
_BATCH = 50  # titles per imageinfo request, ids per wbgetentities request (the API's limit)


def plain(value: object) -> str:
    """extmetadata values are HTML fragments: their text, whitespace collapsed."""
    return " ".join(html.unescape(_TAG.sub(" ", str(value))).split()) if value else ""


def meta_value(meta: dict, field: str) -> str:
    value = meta.get(field)
    return plain(value.get("value")) if isinstance(value, dict) else ""


class MediaWikiApi:
    """A MediaWiki action API: GET with `maxlag`, and errors in the answer handled as the etiquette
    asks (`maxlag`, `ratelimited`: wait and retry; any other: a SearchError naming it)."""

    def __init__(self, url: str, api: JsonApi, retries: int = 4, wait: float = 5.0):
        self.url, self.api, self.retries, self.wait = url, api, retries, wait

    def get(self, params: dict) -> dict:
        params = {**params, "format": "json", "formatversion": "2", "maxlag": "5"}
        for attempt in range(self.retries + 1):
            doc = self.api.get(self.url, params)
            if not isinstance(doc, dict):
                raise SearchError(
                    f"{self.api.name} API at {self.url} answered {type(doc).__name__}, not an object"
                )
            error = doc.get("error")
            if not error:
                return doc
            code = error.get("code", "?") if isinstance(error, dict) else "?"
            if code in _RETRY_CODES and attempt < self.retries:
                time.sleep(self.api.backoff.delay(attempt, self.wait if code == "maxlag" else None))
                continue
            info = error.get("info", "") if isinstance(error, dict) else error
            raise SearchError(f"{self.api.name} API at {self.url} answered error {code!r}: {str(info)[:160]}")
        raise AssertionError("unreachable")


def _pages(doc: dict) -> list[dict]:
    pages = (doc.get("query") or {}).get("pages") if isinstance(doc.get("query"), dict) else None
    if isinstance(pages, dict):  # formatversion=1 answers
        pages = list(pages.values())
    return [p for p in pages or [] if isinstance(p, dict)]


class CommonsCategory:
    name = "commons-category"
    modifiers: frozenset[str] = frozenset()  # a category listing takes no web-search modifiers

    def __init__(
        self,
        entities: Iterable[Entity],
        api_url: str = COMMONS_API,
        max_results: int = 20,
        depth: int = 1,
        width: int = 512,
        requests_per_second: float = 1.0,
        contact: str = "",
        maxlag_wait: float = 5.0,
        **api,
    ):
        self.categories = {e.id: e.commons_category for e in entities if e.commons_category}
        self.max_results, self.depth, self.width = max_results, depth, width
        json_api = JsonApi(self.name, requests_per_second, contact=contact, **api)
        self.api = MediaWikiApi(api_url, json_api, wait=maxlag_wait)

    def members(self, category: str) -> list[str]:
        """File titles of the category and its subcategories down to `depth`, breadth first, at most
        `max_results`; each category listed once (categories may contain each other)."""
        files: list[str] = []
        seen, level = {category}, [category]
        for d in range(self.depth + 1):
            below: list[str] = []
            for cat in level:
                cont: dict = {}
                while len(files) < self.max_results:
                    doc = self.api.get(
                        {
                            "action": "query",
                            "list": "categorymembers",
                            "cmtitle": f"Category:{cat}",
                            "cmtype": "file|subcat",
                            "cmlimit": "500",
                            **cont,
                        }
                    )
                    for m in (doc.get("query") or {}).get("categorymembers") or []:
                        title = m.get("title", "") if isinstance(m, dict) else ""
                        if title.startswith("File:") and title not in files:
                            files.append(title)
                        elif title.startswith("Category:") and d < self.depth:
                            sub = title.removeprefix("Category:")
                            if sub not in seen:
                                seen.add(sub)
                                below.append(sub)
                    cont = got if isinstance(got := doc.get("continue"), dict) else {}
                    if not cont:
                        break
            level = below
            if not level or len(files) >= self.max_results:
                break
        return files[: self.max_results]

    def captions(self, pageids: list[int]) -> dict[int, list[str]]:
        """Structured-data captions (MediaInfo labels) of the files, by page id."""
        out: dict[int, list[str]] = {}
        for i in range(0, len(pageids), _BATCH):
            chunk = pageids[i : i + _BATCH]
            doc = self.api.get(
                {"action": "wbgetentities", "ids": "|".join(f"M{p}" for p in chunk), "props": "labels"}
            )
            entities = got if isinstance(got := doc.get("entities"), dict) else {}
            for mid, ent in entities.items():
                labels = ent.get("labels") if isinstance(ent, dict) else None
                if isinstance(labels, dict) and mid[1:].isdigit():
                    out[int(mid[1:])] = [
                        v["value"] for v in labels.values() if isinstance(v, dict) and v.get("value")
                    ]
        return out

    def file_candidates(self, titles: list[str], query: Query, entity: str) -> list[Candidate]:
        infos: list[tuple[int, dict, dict]] = []
        for i in range(0, len(titles), _BATCH):
            doc = self.api.get(
                {
                    "action": "query",
                    "titles": "|".join(titles[i : i + _BATCH]),
                    "prop": "imageinfo",
                    "iiprop": "url|size|mime|extmetadata",
                    "iiurlwidth": str(self.width),
                }
            )
            for page in _pages(doc):
                info = (page.get("imageinfo") or [None])[0]
                if isinstance(info, dict) and (info.get("thumburl") or info.get("url")):
                    infos.append((int(page.get("pageid") or 0), page, info))
        captions = self.captions([p for p, _, _ in infos if p])
        out = []
        for pageid, page, info in infos:
            if not str(info.get("mime", "image/")).startswith("image/"):
                continue  # videos, PDFs and sounds live in categories too
            meta = got if isinstance(got := info.get("extmetadata"), dict) else {}
            title = str(page.get("title", ""))
            texts = [
                *captions.get(pageid, []),
                meta_value(meta, "ImageDescription"),
                meta_value(meta, "ObjectName"),
            ]
            out.append(
                Candidate(
                    url=str(info.get("thumburl") or info.get("url")),
                    page_url=str(info.get("descriptionurl", "")),
                    alt_texts=tuple(unique_texts(texts)) or (title.removeprefix("File:").rsplit(".", 1)[0],),
                    width=int(info.get("thumbwidth") or info.get("width") or 0),
                    height=int(info.get("thumbheight") or info.get("height") or 0),
                    query_ids=(query.id,),
                    entity_ids=(entity,),
                    backend=self.name,
                    license=normalize(meta_value(meta, "LicenseShortName") or meta_value(meta, "License")),
                    license_url=meta_value(meta, "LicenseUrl"),
                    attribution=meta_value(meta, "Artist") or meta_value(meta, "Credit"),
                    id_entities=(entity,),
                )
            )
        return out

    def search(self, query: Query) -> list[Candidate]:
        return by_identifier(
            query, self.categories, lambda c, q, e: self.file_candidates(self.members(c), q, e)
        )


register(
    Backend(
        "commons-category",
        "the files of the entities' Commons categories",
        "identifier",
        needs_entities=True,
        modifiers=CommonsCategory.modifiers,
        options=(
            Option(
                "category_depth",
                "--category-depth",
                "levels of subcategories listed below the entity's category",
                int,
                1,
                low=0,
                high=10,
            ),
            Option(
                "thumb_width", "--thumb-width", "width of the thumbnail fetched", int, 512, low=16, high=4096
            ),
        ),
        open=lambda spec, entities, queries, url: CommonsCategory(
            entities,
            api_url=url or COMMONS_API,
            depth=spec.category_depth,
            width=spec.thumb_width,
            max_results=spec.max_results,
            contact=spec.contact,
            requests_per_second=spec.requests_per_second,
        ),
        settings=lambda spec, store: {
            "commons_category": {"depth": spec.category_depth, "width": spec.thumb_width}
        },
    )
)
