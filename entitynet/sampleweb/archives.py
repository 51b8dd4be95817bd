"""The sample web's open archives: for each entity with the identifier, a few openly licensed
photos in Wikimedia Commons (its category), GBIF (occurrences of its taxon key) and iNaturalist
(research-grade observations of its taxon id), answered in the real APIs' documented shapes
(`commons_answer`, `gbif_answer`, `inaturalist_answer`), and written as a GBIF Darwin Core Archive
and iNaturalist open-data files (`write_gbif_archive`, `write_inaturalist_open_data`) for the
offline readers. Deterministic for an entity list and seed; the photos are rendered on demand
like the web's, and show their entity (the link is by identifier, so it is right).

Licences are drawn per source from the mixes those archives have (Commons mostly CC BY-SA,
GBIF mostly CC BY and CC0, iNaturalist mostly CC BY-NC, some all rights reserved)."""

from __future__ import annotations

import csv
import gzip
import io
import os
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from entitynet.files import write_bytes
from entitynet.records import Entity
from entitynet.sampleweb.corpus import WebImage

SOURCES = ("commons", "gbif", "inaturalist")
# (licence as the source writes it, share); None: all rights reserved
LICENSES = {
    "commons": (("CC BY-SA 4.0", 0.55), ("CC BY 4.0", 0.2), ("CC0", 0.15), ("Public domain", 0.1)),
    "gbif": (
        ("http://creativecommons.org/licenses/by/4.0/legalcode", 0.5),
        ("http://creativecommons.org/publicdomain/zero/1.0/legalcode", 0.3),
        ("http://creativecommons.org/licenses/by-nc/4.0/legalcode", 0.2),
    ),
    "inaturalist": (("cc-by-nc", 0.55), ("cc-by", 0.2), ("cc0", 0.1), ("cc-by-sa", 0.05), (None, 0.1)),
}
AUTHORS = ("A. Naturalist", "B. Fieldworker", "C. Observer", "D. Botanist", "E. Birder", "F. Curator")
_PREFIX = {"commons": "c", "gbif": "o", "inaturalist": "n"}
_KEY = {"commons": "commons_category", "gbif": "gbif_id", "inaturalist": "inaturalist_id"}


@dataclass(frozen=True)
class ArchivePhoto:
    image: WebImage  # rendered like a web image; its id is also the file / occurrence / photo id
    source: str
    license: str | None
    author: str
    number: int  # a numeric id (GBIF occurrence key, iNaturalist observation and photo id, page id)


def build_archives(
    entities: Iterable[Entity], seed: int = 0, per_entity: int = 3
) -> dict[str, dict[str, list[ArchivePhoto]]]:
    """source -> identifier (category, taxon key, taxon id) -> its photos."""
    rng = np.random.default_rng(seed + 7919)
    out: dict[str, dict[str, list[ArchivePhoto]]] = {s: {} for s in SOURCES}
    number = 1000
    for e in entities:
        if e.depth == 0:
            continue
        for source in SOURCES:
            key = getattr(e, _KEY[source])
            if not key or per_entity <= 0:
                continue
            names, shares = zip(*LICENSES[source], strict=True)
            photos = []
            for k in range(per_entity):
                number += 1
                lic = names[int(rng.choice(len(names), p=np.array(shares) / sum(shares)))]
                w, h = int(rng.integers(480, 800)), int(rng.integers(360, 600))
                name = e.taxon_names[0] if e.taxon_names else e.label
                im = WebImage(f"{e.id}-{_PREFIX[source]}{k:02d}", e.id, int(rng.integers(2**31)), name, w, h)
                photos.append(ArchivePhoto(im, source, lic, str(rng.choice(AUTHORS)), number))
            out[source].setdefault(key, []).extend(photos)
    return out


def _page(items: list, offset: int, limit: int) -> list:
    return items[max(offset, 0) : max(offset, 0) + max(limit, 0)]


def gbif_answer(
    photos: dict[str, list[ArchivePhoto]], entities: dict[str, Entity], params: dict, base: str, cap: int
) -> dict:
    """`/v1/occurrence/search`: one occurrence per photo, with one StillImage media item."""
    items = (
        photos.get(params.get("taxonKey", ""), [])
        if params.get("mediaType", "StillImage") == "StillImage"
        else []
    )
    offset, limit = int(params.get("offset", 0) or 0), min(int(params.get("limit", 20) or 20), cap)
    chunk = _page(items, offset, limit)
    results = []
    for p in chunk:
        e = entities[p.image.entity_id or ""]
        results.append(
            {
                "key": p.number,
                "scientificName": p.image.alt,
                "vernacularName": e.label,
                "taxonKey": int(e.gbif_id) if e.gbif_id.isdigit() else e.gbif_id,
                "basisOfRecord": "HUMAN_OBSERVATION",
                "license": p.license,
                "recordedBy": p.author,
                "media": [
                    {
                        "type": "StillImage",
                        "format": "image/jpeg",
                        "identifier": f"{base}/img/{p.image.id}.jpg",
                        "references": f"{base}/page/{p.image.id}",
                        "license": p.license,
                        "rightsHolder": p.author,
                        "creator": p.author,
                    }
                ],
            }
        )
    return {
        "offset": offset,
        "limit": limit,
        "endOfRecords": offset + len(chunk) >= len(items),
        "count": len(items),
        "results": results,
    }


def inaturalist_answer(
    photos: dict[str, list[ArchivePhoto]], entities: dict[str, Entity], params: dict, base: str, cap: int
) -> dict:
    """`/v1/observations`: research-grade observations (one photo each) with id > id_above, by id."""
    ok = params.get("quality_grade", "research") == "research"
    items = sorted(photos.get(params.get("taxon_id", ""), []) if ok else [], key=lambda p: p.number)
    above = int(params.get("id_above", 0) or 0)
    per_page = min(int(params.get("per_page", 30) or 30), cap)
    left = [p for p in items if p.number > above]
    results = []
    for p in left[:per_page]:
        e = entities[p.image.entity_id or ""]
        results.append(
            {
                "id": p.number,
                "uri": f"{base}/page/{p.image.id}",
                "quality_grade": "research",
                "taxon": {"id": int(e.inaturalist_id), "name": p.image.alt, "preferred_common_name": e.label},
                "user": {"login": p.author.lower().replace(" ", "").replace(".", "")},
                "photos": [
                    {
                        "id": p.number,
                        "license_code": p.license,
                        "attribution": f"(c) {p.author}, "
                        + (
                            "all rights reserved"
                            if p.license is None
                            else f"some rights reserved ({p.license.upper()})"
                        ),
                        "url": f"{base}/photos/{p.image.id}/square.jpg",
                    }
                ],
            }
        )
    return {"total_results": len(left), "page": 1, "per_page": per_page, "results": results}


def commons_answer(
    photos: dict[str, list[ArchivePhoto]], entities: dict[str, Entity], params: dict, base: str, cap: int
) -> dict:
    """The MediaWiki action API: `list=categorymembers` (files; continuation by offset),
    `prop=imageinfo` with extmetadata, and `wbgetentities` captions."""
    by_title = {f"File:{p.image.id}.jpg": p for ps in photos.values() for p in ps}
    by_page = {p.number: p for p in by_title.values()}
    action = params.get("action")
    if action == "wbgetentities":
        ents = {}
        for mid in params.get("ids", "").split("|"):
            p = by_page.get(int(mid[1:])) if mid[1:].isdigit() else None
            if p:
                label = entities[p.image.entity_id or ""].label
                ents[mid] = {
                    "type": "mediainfo",
                    "id": mid,
                    "labels": {"en": {"language": "en", "value": f"a {label}"}},
                }
        return {"entities": ents, "success": 1}
    if action != "query":
        return {
            "error": {"code": "badvalue", "info": f'Unrecognized value for parameter "action": {action}.'}
        }
    if params.get("list") == "categorymembers":
        cat = params.get("cmtitle", "").removeprefix("Category:")
        files = [f"File:{p.image.id}.jpg" for p in photos.get(cat, [])]
        start = int((params.get("cmcontinue") or "page|0").rsplit("|", 1)[-1])
        limit = min(int(params.get("cmlimit", 10) or 10), cap)
        chunk = files[start : start + limit]
        doc: dict = {
            "batchcomplete": True,
            "query": {"categorymembers": [{"ns": 6, "title": t} for t in chunk]},
        }
        if start + limit < len(files):
            doc["continue"] = {"cmcontinue": f"page|{start + limit}", "continue": "-||"}
        return doc
    if params.get("prop") == "imageinfo":
        width = int(params.get("iiurlwidth", 0) or 0)
        pages = []
        for title in params.get("titles", "").split("|"):
            p = by_title.get(title)
            if p is None:
                pages.append({"ns": 6, "title": title, "missing": True})
                continue
            w, h = p.image.width, p.image.height
            tw = min(width, w) if width else w
            pages.append(
                {
                    "pageid": p.number,
                    "ns": 6,
                    "title": title,
                    "imageinfo": [
                        {
                            "url": f"{base}/img/{p.image.id}.jpg",
                            "descriptionurl": f"{base}/page/{p.image.id}",
                            "thumburl": f"{base}/img/{p.image.id}.jpg?width={tw}",
                            "thumbwidth": tw,
                            "thumbheight": h * tw // w,
                            "width": w,
                            "height": h,
                            "mime": "image/jpeg",
                            "extmetadata": {
                                "ImageDescription": {"value": f"<p>{p.image.alt} in its habitat</p>"},
                                "ObjectName": {"value": p.image.alt},
                                "LicenseShortName": {"value": p.license},
                                "Artist": {"value": f'<a href="{base}/user/{p.number}">{p.author}</a>'},
                                "Credit": {"value": "Own work"},
                            },
                        }
                    ],
                }
            )
        return {"batchcomplete": True, "query": {"pages": pages}}
    return {"error": {"code": "badvalue", "info": "unsupported query"}}


# ---------------------------------------------------------------- offline files


def _tsv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar="\\")
    w.writerows(rows)
    return out.getvalue().encode()


def write_gbif_archive(
    photos: dict[str, list[ArchivePhoto]], entities: dict[str, Entity], path: str | os.PathLike, base: str
) -> int:
    """A GBIF Darwin Core Archive download (occurrence.txt + multimedia.txt + meta.xml) of the
    GBIF photos; returns the number of media rows."""
    occ = [
        [
            "gbifID",
            "taxonKey",
            "acceptedTaxonKey",
            "speciesKey",
            "scientificName",
            "vernacularName",
            "license",
            "rightsHolder",
            "recordedBy",
        ]
    ]
    media = [
        [
            "gbifID",
            "type",
            "format",
            "identifier",
            "references",
            "title",
            "description",
            "creator",
            "license",
            "rightsHolder",
        ]
    ]
    for key, ps in sorted(photos.items()):
        for p in ps:
            e = entities[p.image.entity_id or ""]
            occ.append([str(p.number), key, key, key, p.image.alt, e.label, "CC_BY_4_0", p.author, p.author])
            media.append(
                [
                    str(p.number),
                    "StillImage",
                    "image/jpeg",
                    f"{base}/img/{p.image.id}.jpg",
                    f"{base}/page/{p.image.id}",
                    "",
                    "",
                    p.author,
                    p.license or "",
                    p.author,
                ]
            )
    occ.append([str(10**9), "1", "1", "1", "Other thing", "", "CC0_1_0", "", ""])  # of no entity
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("occurrence.txt", _tsv(occ))
        z.writestr("multimedia.txt", _tsv(media))
        z.writestr(
            "meta.xml",
            b'<archive xmlns="http://rs.tdwg.org/dwc/text/"><core rowType="http://rs.tdwg.org/dwc/terms/Occurrence"/></archive>',
        )
    write_bytes(path, buf.getvalue())
    return len(media) - 1


def write_inaturalist_open_data(
    photos: dict[str, list[ArchivePhoto]], entities: dict[str, Entity], directory: str | os.PathLike
) -> int:
    """iNaturalist's open-data metadata files (tab-separated, gzipped) of the iNaturalist photos,
    plus a casual-grade observation that must be left out; returns the number of photos."""
    obs = [
        [
            "observation_uuid",
            "observer_id",
            "latitude",
            "longitude",
            "positional_accuracy",
            "taxon_id",
            "quality_grade",
            "observed_on",
        ]
    ]
    pics = [
        [
            "photo_uuid",
            "photo_id",
            "observation_uuid",
            "observer_id",
            "extension",
            "license",
            "width",
            "height",
            "position",
        ]
    ]
    taxa = [["taxon_id", "ancestry", "rank_level", "rank", "name", "active"]]
    observers = [["observer_id", "login", "name"]]
    authors = {a: i + 1 for i, a in enumerate(AUTHORS)}
    for taxon, ps in sorted(photos.items()):
        name = ps[0].image.alt if ps else ""
        taxa.append([taxon, "48460/1", "10", "species", name, "true"])
        for p in ps:
            uuid = f"obs-{p.number}"
            obs.append([uuid, str(authors[p.author]), "0", "0", "", taxon, "research", "2024-05-01"])
            lic = {None: "", "cc-by-nc": "CC-BY-NC", "cc-by": "CC-BY", "cc0": "CC0", "cc-by-sa": "CC-BY-SA"}[
                p.license
            ]
            pics.append(
                [
                    f"ph-{p.number}",
                    p.image.id,
                    uuid,
                    str(authors[p.author]),
                    "jpg",
                    lic,
                    str(p.image.width),
                    str(p.image.height),
                    "0",
                ]
            )
    if len(obs) > 1:  # a casual observation of a wanted taxon: not research grade, left out
        first = obs[1]
        obs.append(["obs-casual", first[1], "0", "0", "", first[5], "casual", "2024-05-02"])
        pics.append(["ph-casual", "casual-photo", "obs-casual", first[1], "jpg", "CC0", "10", "10", "0"])
    observers += [[str(i), a.lower().replace(" ", "").replace(".", ""), a] for a, i in authors.items()]
    os.makedirs(directory, exist_ok=True)
    for name, rows in (("observations", obs), ("photos", pics), ("taxa", taxa), ("observers", observers)):
        write_bytes(os.path.join(directory, f"{name}.csv.gz"), gzip.compress(_tsv(rows), mtime=0))
    return len(pics) - 1 - (len(obs) > 1)
