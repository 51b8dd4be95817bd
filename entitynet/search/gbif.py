"""GBIF occurrence photos of an entity's taxon (Wikidata P846, the GBIF taxon key), from the API or
from a downloaded Darwin Core Archive.

API (`Gbif`): for each noun query, every entity of the query with a GBIF key yields up to
`max_results` images: `GET /v1/occurrence/search?taxonKey=K&mediaType=StillImage&limit=L&offset=O`
paged until `endOfRecords`; each `StillImage` media item of an occurrence is a candidate with the
media item's licence (else the occurrence's), rights holder (else creator, else recorder), the
occurrence's scientific and vernacular names as texts, and its GBIF page to credit.

Archive (`read_occurrences`, `read_multimedia`, `archive_candidate`): a GBIF download in Darwin
Core Archive form (a zip holding `occurrence.txt` and `multimedia.txt`, tab-separated, joined on
`gbifID`; many GB) is streamed row by row, never loaded: the harvest reads both members on
workers, keeps the occurrences of the entities' taxon keys (`taxonKey`, `acceptedTaxonKey` or
`speciesKey`), and joins them with their media by `gbifID` (a Beam CoGroupByKey), so users who
downloaded once can harvest without the API. The entity link is by taxon key, so it is exact.
"""

from __future__ import annotations

import csv
import io
import sys
import zipfile
from collections.abc import Iterable, Iterator

from entitynet.errors import ConfigError, SearchError
from entitynet.licenses import normalize
from entitynet.records import Candidate, Entity, Query, unique_texts
from entitynet.search.base import JsonApi, by_identifier, file_stamp
from entitynet.search.registry import Backend, Option, register

GBIF_API = "https://api.gbif.org"
PAGE = 300  # the API's largest page
OCCURRENCE_PAGE = "https://www.gbif.org/occurrence/{}"


def media_candidate(
    occurrence: dict, media: dict, entity: str, query_ids: tuple[str, ...] = (), backend: str = "gbif"
) -> Candidate | None:
    """One StillImage media item of an occurrence (API JSON or archive row, same field names) as a
    candidate; None for other media or one without a URL."""
    kind = str(media.get("type") or "StillImage")
    url = str(media.get("identifier") or "")
    if kind != "StillImage" or not url.startswith(("http://", "https://")):
        return None
    key = str(occurrence.get("key") or occurrence.get("gbifID") or "")
    texts = [
        str(occurrence.get(f) or "")
        for f in ("vernacularName", "scientificName", "acceptedScientificName", "species")
    ]
    texts += [str(media.get("title") or ""), str(media.get("description") or "")]
    license_text = media.get("license") or occurrence.get("license")
    credit = media.get("rightsHolder") or media.get("creator") or occurrence.get("rightsHolder")
    credit = credit or occurrence.get("recordedBy") or ""
    return Candidate(
        url=url,
        page_url=OCCURRENCE_PAGE.format(key) if key else str(media.get("references") or ""),
        alt_texts=tuple(unique_texts(texts)),
        query_ids=query_ids,
        entity_ids=(entity,),
        backend=backend,
        license=normalize(str(license_text or "")),
        license_url=str(license_text or "") if str(license_text or "").startswith("http") else "",
        attribution=str(credit),
        id_entities=(entity,),
    )


class Gbif:
    name = "gbif"
    modifiers: frozenset[str] = frozenset()

    def __init__(
        self,
        entities: Iterable[Entity],
        api_url: str = GBIF_API,
        max_results: int = 20,
        requests_per_second: float = 1.0,
        contact: str = "",
        **api,
    ):
        self.keys = {e.id: e.gbif_id for e in entities if e.gbif_id}
        self.url = api_url.rstrip("/") + "/v1/occurrence/search"
        self.max_results = max_results
        self.api = JsonApi(self.name, requests_per_second, contact=contact, **api)

    def images(self, key: str, query: Query, entity: str) -> list[Candidate]:
        out: list[Candidate] = []
        offset = 0
        while len(out) < self.max_results:
            doc = self.api.get(
                self.url,
                {"taxonKey": key, "mediaType": "StillImage", "limit": str(PAGE), "offset": str(offset)},
            )
            results = doc.get("results") if isinstance(doc, dict) else None
            if not isinstance(results, list):
                raise SearchError(
                    f"gbif API at {self.url} answered without a results list; check --endpoint gbif="
                )
            for occ in results:
                for media in (occ.get("media") or []) if isinstance(occ, dict) else []:
                    c = media_candidate(occ, media, entity, (query.id,)) if isinstance(media, dict) else None
                    if c is not None and len(out) < self.max_results:
                        out.append(c)
            offset += len(results)
            if doc.get("endOfRecords", True) or not results:
                break
        return out

    def search(self, query: Query) -> list[Candidate]:
        return by_identifier(query, self.keys, self.images)


# ---------------------------------------------------------------- Darwin Core Archive (offline)

OCCURRENCE_MEMBER = "occurrence.txt"
MULTIMEDIA_MEMBER = "multimedia.txt"
_TAXON_FIELDS = ("taxonKey", "acceptedTaxonKey", "speciesKey")
_OCCURRENCE_FIELDS = (
    "gbifID", "scientificName", "acceptedScientificName", "species", "vernacularName", "license",
    "rightsHolder", "recordedBy",
)  # fmt: skip
_MEDIA_FIELDS = (
    "type",
    "identifier",
    "references",
    "title",
    "description",
    "creator",
    "license",
    "rightsHolder",
)


def _rows(path: str, member: str) -> Iterator[dict]:
    """Rows of one tab-separated member of the archive as dicts, streamed (a member of many GB
    never sits in memory); a ConfigError naming the archive when it is not one."""
    csv.field_size_limit(sys.maxsize)
    try:
        z = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise ConfigError(f"GBIF archive {path} is not a readable zip ({e}); download it again") from None
    with z:
        names = {n.rsplit("/", 1)[-1]: n for n in z.namelist()}
        if member not in names:
            raise ConfigError(
                f"GBIF archive {path} has no {member} (a Darwin Core Archive download holds "
                f"{OCCURRENCE_MEMBER} and {MULTIMEDIA_MEMBER}); download it again as DWCA"
            )
        with z.open(names[member]) as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
            reader = csv.reader(text, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader, None)
            if not header or "gbifID" not in header:
                raise ConfigError(
                    f"GBIF archive {path}: {member} has no gbifID column; is it a GBIF download?"
                )
            try:
                for row in reader:
                    if len(row) == len(header):
                        yield dict(zip(header, row, strict=True))
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise ConfigError(f"GBIF archive {path}: {member} is truncated or corrupt ({e})") from None


def read_occurrences(path: str, keys: dict[str, list[str]]) -> Iterator[tuple[str, tuple[str, dict]]]:
    """(gbifID, (entity, occurrence fields)) for every occurrence of a wanted taxon key
    (`keys`: GBIF key -> the entities that have it)."""
    for row in _rows(path, OCCURRENCE_MEMBER):
        found = {e for f in _TAXON_FIELDS for e in keys.get(row.get(f, ""), ())}
        for e in sorted(found):
            yield row["gbifID"], (e, {f: row.get(f, "") for f in _OCCURRENCE_FIELDS})


def read_multimedia(path: str) -> Iterator[tuple[str, dict]]:
    """(gbifID, media fields) for every StillImage row."""
    for row in _rows(path, MULTIMEDIA_MEMBER):
        if row.get("type", "StillImage") in ("StillImage", ""):
            yield row["gbifID"], {f: row.get(f, "") for f in _MEDIA_FIELDS}


def archive_keys(entities: Iterable[Entity]) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for e in entities:
        if e.gbif_id:
            keys.setdefault(e.gbif_id, []).append(e.id)
    return keys


def archive_candidates(occurrences: Iterable[tuple[str, dict]], media: Iterable[dict]) -> Iterator[Candidate]:
    """The joined rows of one gbifID: every media item for every entity of the occurrence."""
    media = list(media)  # one occurrence's media: a handful
    for entity, occ in occurrences:
        for m in media:
            c = media_candidate(
                occ, {**m, "type": m.get("type") or "StillImage"}, entity, backend="gbif-archive"
            )
            if c is not None:
                yield c


register(
    Backend(
        "gbif",
        "GBIF occurrence photos by taxon key (P846)",
        "identifier",
        needs_entities=True,
        modifiers=Gbif.modifiers,
        open=lambda spec, entities, queries, url: Gbif(
            entities,
            api_url=url or GBIF_API,
            max_results=spec.max_results,
            contact=spec.contact,
            requests_per_second=spec.requests_per_second,
        ),
    )
)
register(
    Backend(
        "gbif-archive",
        "a GBIF Darwin Core Archive download",
        "whole",
        needs_entities=True,
        options=(
            Option(
                "gbif_archive",
                "--gbif-archive",
                "a GBIF Darwin Core Archive download",
                default="",
                metavar="FILE.zip",
            ),
        ),
        check=lambda spec: (
            ""
            if spec.gbif_archive
            else "the gbif-archive backend needs --gbif-archive FILE.zip (a Darwin Core Archive)"
        ),
        settings=lambda spec, store: {"gbif_archive": file_stamp(spec.gbif_archive, store)},
    )
)
