"""The entities' own Wikimedia Commons images (P18), with their file-page text.

For each noun query, every entity of the query that has a P18 image yields one candidate: the
file (scaled by Commons to `width`), its file page, and as text the file's description and
object name from the MediaWiki API (extmetadata), or its file name when the API is off; its
licence and author from the same extmetadata (`unknown` when the API is off).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable

from entitynet.licenses import UNKNOWN, normalize
from entitynet.records import Candidate, Entity, Query
from entitynet.search.base import JsonApi
from entitynet.search.commons_category import COMMONS_API, meta_value
from entitynet.search.registry import Backend, register


def file_name(image_url: str) -> str:
    """`…/Special:FilePath/Lion_waiting.jpg` -> `Lion waiting.jpg`."""
    tail = urllib.parse.unquote(image_url.rsplit("/", 1)[-1])
    return tail.replace("_", " ")


class Commons:
    name = "commons"
    modifiers: frozenset[str] = frozenset()  # no web-search modifiers apply

    def __init__(
        self,
        entities: Iterable[Entity],
        api_url: str | None = COMMONS_API,
        width: int = 1024,
        requests_per_second: float = 2.0,
        **api,
    ):
        self.images = {e.id: e.image for e in entities if e.image}
        self.api_url, self.width = api_url, width
        self.api = JsonApi(self.name, requests_per_second, **api) if api_url else None

    def file_meta(self, title: str) -> tuple[tuple[str, ...], str, str, str]:
        """(texts, licence, licence URL, author) of a file from its extmetadata."""
        fallback = (title.removeprefix("File:").rsplit(".", 1)[0],)
        if self.api is None:
            return fallback, UNKNOWN, "", ""
        assert self.api_url is not None  # self.api is opened only with an api_url
        doc = self.api.get(
            self.api_url,
            {
                "action": "query",
                "titles": title,
                "prop": "imageinfo",
                "iiprop": "extmetadata",
                "format": "json",
                "formatversion": "2",
            },
        )
        pages = (doc.get("query") or {}).get("pages") if isinstance(doc, dict) else None
        pages = pages.values() if isinstance(pages, dict) else pages or []
        texts, lic, lic_url, artist = [], UNKNOWN, "", ""
        for page in pages:
            for info in page.get("imageinfo") or []:
                meta = info.get("extmetadata") or {}
                for field in ("ImageDescription", "ObjectName"):
                    text = meta_value(meta, field)
                    if text:
                        texts.append(text)
                if lic == UNKNOWN:
                    lic = normalize(meta_value(meta, "LicenseShortName"))
                    lic_url = meta_value(meta, "LicenseUrl")
                    artist = meta_value(meta, "Artist") or meta_value(meta, "Credit")
        return tuple(dict.fromkeys(texts)) or fallback, lic, lic_url, artist

    def search(self, query: Query) -> list[Candidate]:
        if query.kind != "noun":
            return []
        out = []
        for e in query.entity_ids:
            image = self.images.get(e)
            if not image:
                continue
            name = file_name(image)
            title = f"File:{name}"
            url = "https://commons.wikimedia.org/wiki/Special:FilePath/" + urllib.parse.quote(
                name.replace(" ", "_")
            )
            texts, lic, lic_url, artist = self.file_meta(title)
            out.append(
                Candidate(
                    url=f"{url}?width={self.width}",
                    page_url="https://commons.wikimedia.org/wiki/"
                    + urllib.parse.quote(title.replace(" ", "_"), safe=":/"),
                    alt_texts=texts,
                    query_ids=(query.id,),
                    entity_ids=(e,),
                    backend=self.name,
                    license=lic,
                    license_url=lic_url,
                    attribution=artist,
                    id_entities=(e,),  # the item's own image (P18): the link is exact
                )
            )
        return out


register(
    Backend(
        "commons",
        "the entities' own Wikimedia Commons images (P18)",
        "identifier",
        needs_entities=True,
        modifiers=Commons.modifiers,
        open=lambda spec, entities, queries, url: Commons(
            entities, api_url=url or COMMONS_API, requests_per_second=spec.requests_per_second
        ),
    )
)
