"""iNaturalist research-grade observation photos of an entity's taxon (Wikidata P3151), from the API
or from iNaturalist's open-data metadata files.

API (`INaturalist`): for each noun query, every entity of the query with an iNaturalist taxon id
yields up to `max_results` photos: `GET /v1/observations?taxon_id=T&photos=true&quality_grade=research
&order_by=id&order=asc&per_page=200&id_above=N`, paged by `id_above` (the last id seen, as the API
asks for deep paging); each photo with its licence code (`cc-by-nc`, ...; none: all rights
reserved, kept as `unknown`), its attribution string, the taxon's name and common name as texts,
the observation page to credit, and the URL of the chosen size (`square` 75 px, `small` 240,
`medium` 500, `large` 1024, `original`). iNaturalist asks API users for about one request a second.

Open data (`read_observations`, `read_photos`, `read_taxa`, `photo_candidate`): the metadata files
of iNaturalist's open-data bucket (`observations.csv.gz`, `photos.csv.gz`, `taxa.csv.gz`, and
`observers.csv.gz` for credits; tab-separated despite the name, hundreds of millions of rows) are
streamed row by row on workers and joined by the harvest (a Beam CoGroupByKey on the observation
uuid, then on the observer id), keeping research-grade observations of the entities' taxa. The
entity link is by taxon id, so it is exact.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import sys
from collections.abc import Iterable, Iterator

from entitynet.errors import ConfigError, SearchError
from entitynet.licenses import normalize
from entitynet.records import Candidate, Entity, Query, unique_texts
from entitynet.search.base import JsonApi, by_identifier, file_stamp
from entitynet.search.registry import Backend, Option, register

INATURALIST_API = "https://api.inaturalist.org"
OPEN_DATA_PHOTOS = "https://inaturalist-open-data.s3.amazonaws.com/photos"
SIZES = ("square", "small", "medium", "large", "original")
PAGE = 200  # the API's largest page
OBSERVATION_PAGE = "https://www.inaturalist.org/observations/{}"


def sized(url: str, size: str) -> str:
    """A photo URL (the API gives `.../square.jpg`) at another size."""
    head, _, tail = url.rpartition("/")
    ext = tail.rsplit(".", 1)[-1] if "." in tail else "jpg"
    return f"{head}/{size}.{ext}" if head else url


class INaturalist:
    name = "inaturalist"
    modifiers: frozenset[str] = frozenset()

    def __init__(
        self,
        entities: Iterable[Entity],
        api_url: str = INATURALIST_API,
        max_results: int = 20,
        size: str = "medium",
        requests_per_second: float = 1.0,
        contact: str = "",
        **api,
    ):
        if size not in SIZES:
            raise ConfigError(f"iNaturalist photo size {size!r}: use one of {', '.join(SIZES)}")
        self.taxa = {e.id: e.inaturalist_id for e in entities if e.inaturalist_id}
        self.url = api_url.rstrip("/") + "/v1/observations"
        self.max_results, self.size = max_results, size
        self.api = JsonApi(self.name, requests_per_second, contact=contact, **api)

    def photos(self, taxon: str, query: Query, entity: str) -> list[Candidate]:
        out: list[Candidate] = []
        above = 0
        while len(out) < self.max_results:
            doc = self.api.get(
                self.url,
                {
                    "taxon_id": taxon,
                    "photos": "true",
                    "quality_grade": "research",
                    "order_by": "id",
                    "order": "asc",
                    "per_page": str(PAGE),
                    "id_above": str(above),
                },
            )
            results = doc.get("results") if isinstance(doc, dict) else None
            if not isinstance(results, list):
                raise SearchError(
                    f"inaturalist API at {self.url} answered without a results list; check --endpoint inaturalist="
                )
            ids = [o["id"] for o in results if isinstance(o, dict) and isinstance(o.get("id"), int)]
            for obs in results:
                if isinstance(obs, dict):
                    out += self._observation(obs, query, entity)[: self.max_results - len(out)]
            per_page = doc.get("per_page") if isinstance(doc.get("per_page"), int) else PAGE
            if not ids or max(ids) <= above or len(results) < per_page:
                break  # the last page (a server may cap per_page below what was asked)
            above = max(ids)
        return out

    def _observation(self, obs: dict, query: Query, entity: str) -> list[Candidate]:
        taxon = got if isinstance(got := obs.get("taxon"), dict) else {}
        texts = unique_texts([str(taxon.get("preferred_common_name") or ""), str(taxon.get("name") or "")])
        page = OBSERVATION_PAGE.format(obs.get("id")) if obs.get("id") else str(obs.get("uri") or "")
        out = []
        for photo in obs.get("photos") or []:
            url = str(photo.get("url") or "") if isinstance(photo, dict) else ""
            if not url.startswith(("http://", "https://")):
                continue
            out.append(
                Candidate(
                    url=sized(url, self.size),
                    page_url=page,
                    alt_texts=tuple(texts),
                    query_ids=(query.id,),
                    entity_ids=(entity,),
                    backend=self.name,
                    license=normalize(photo.get("license_code")),
                    attribution=str(photo.get("attribution") or ""),
                    id_entities=(entity,),
                )
            )
        return out

    def search(self, query: Query) -> list[Candidate]:
        return by_identifier(query, self.taxa, self.photos)


# ---------------------------------------------------------------- open-data files (offline)

FILES = ("observations", "photos", "taxa", "observers")


def data_file(directory: str, name: str) -> str:
    """`DIR/<name>.csv.gz` (or `.csv`); a ConfigError naming the directory when it is missing."""
    for suffix in (".csv.gz", ".csv", ".tsv.gz", ".tsv"):
        path = os.path.join(directory, name + suffix)
        if os.path.exists(path):
            return path
    raise ConfigError(
        f"iNaturalist open data {directory}: no {name}.csv.gz; download the metadata files "
        f"({', '.join(f + '.csv.gz' for f in FILES)}) into it"
    )


def _rows(path: str, required: tuple[str, ...]) -> Iterator[dict]:
    """Rows of a (gzipped) tab- or comma-separated file as dicts, streamed; a ConfigError naming
    the file when it is not one or lacks a column."""
    csv.field_size_limit(sys.maxsize)
    try:
        raw = gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
        with raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
            first = text.readline()
            delimiter = "\t" if "\t" in first else ","
            header = next(csv.reader([first], delimiter=delimiter))
            missing = [c for c in required if c not in header]
            if missing:
                raise ConfigError(
                    f"iNaturalist open data {path}: no column {', '.join(missing)}; is it the right file?"
                )
            for row in csv.reader(text, delimiter=delimiter):
                if len(row) == len(header):
                    yield dict(zip(header, row, strict=True))
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ConfigError(
            f"iNaturalist open data {path} is truncated or not gzip ({e}); download it again"
        ) from None


def taxon_entities(entities: Iterable[Entity]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in entities:
        if e.inaturalist_id:
            out.setdefault(e.inaturalist_id, []).append(e.id)
    return out


def read_observations(path: str, taxa: dict[str, list[str]]) -> Iterator[tuple[str, tuple[str, str]]]:
    """(observation uuid, (entity, taxon id)) for research-grade observations of a wanted taxon."""
    for row in _rows(path, ("observation_uuid", "taxon_id", "quality_grade")):
        if row["quality_grade"] == "research":
            for e in taxa.get(row["taxon_id"], ()):
                yield row["observation_uuid"], (e, row["taxon_id"])


def read_photos(path: str) -> Iterator[tuple[str, dict]]:
    """(observation uuid, photo fields) for every photo."""
    for row in _rows(path, ("photo_id", "observation_uuid", "extension", "license")):
        yield (
            row["observation_uuid"],
            {
                "photo_id": row["photo_id"],
                "extension": row["extension"] or "jpg",
                "license": row["license"],
                "observer_id": row.get("observer_id", ""),
            },
        )


def read_taxa(path: str, taxa: dict[str, list[str]]) -> Iterator[tuple[str, str]]:
    """(taxon id, name) for the wanted taxa (a side input: bounded by the entities)."""
    for row in _rows(path, ("taxon_id", "name")):
        if row["taxon_id"] in taxa:
            yield row["taxon_id"], row["name"]


def read_observers(path: str) -> Iterator[tuple[str, str]]:
    """(observer id, the name to credit: name, else login)."""
    for row in _rows(path, ("observer_id", "login")):
        yield row["observer_id"], row.get("name") or row["login"]


def photo_candidate(
    entity: str,
    taxon_id: str,
    photo: dict,
    names: dict[str, str],
    size: str,
    observer: str = "",
    base: str = OPEN_DATA_PHOTOS,
) -> Candidate:
    """One photo of a joined observation (`base`: where the photos are, the open-data bucket)."""
    lic = normalize(photo["license"])
    credit = f"(c) {observer}" if observer else ""
    return Candidate(
        url=f"{base.rstrip('/')}/{photo['photo_id']}/{size}.{photo['extension']}",
        page_url=f"https://www.inaturalist.org/photos/{photo['photo_id']}",
        alt_texts=tuple(unique_texts([names.get(taxon_id, "")])),
        entity_ids=(entity,),
        backend="inaturalist-open-data",
        license=lic,
        attribution=credit,
        id_entities=(entity,),
    )


PHOTO_SIZE = Option(
    "photo_size", "--photo-size", "photo size fetched (medium: 500 px)", str, "medium", choices=SIZES
)

register(
    Backend(
        "inaturalist",
        "iNaturalist research-grade observation photos by taxon id (P3151)",
        "identifier",
        needs_entities=True,
        modifiers=INaturalist.modifiers,
        options=(PHOTO_SIZE,),
        open=lambda spec, entities, queries, url: INaturalist(
            entities,
            api_url=url or INATURALIST_API,
            size=spec.photo_size,
            max_results=spec.max_results,
            contact=spec.contact,
            requests_per_second=spec.requests_per_second,
        ),
        settings=lambda spec, store: {"photo_size": spec.photo_size},
    )
)
register(
    Backend(
        "inaturalist-open-data",
        "iNaturalist's open-data metadata files",
        "whole",
        needs_entities=True,
        options=(
            PHOTO_SIZE,
            Option(
                "inaturalist_data",
                "--inaturalist-data",
                "the directory of observations.csv.gz, photos.csv.gz, taxa.csv.gz (and observers.csv.gz "
                "for credits)",
                default="",
                metavar="DIR",
            ),
        ),
        check=lambda spec: (
            ""
            if spec.inaturalist_data
            else "the inaturalist-open-data backend needs --inaturalist-data DIR (its metadata files)"
        ),
        settings=lambda spec, store: {
            "photo_size": spec.photo_size,
            "inaturalist_data": [file_stamp(data_file(spec.inaturalist_data, f), store) for f in FILES[:3]],
        },
    )
)
