"""What the explorer shows of one record, one candidate and one entity: plain functions that the
explore pipeline maps over the data, and that the tests call directly.

Counts are `Counter`s keyed by tuples, summed over the data by the pipeline:
    ("images", entity)             harvested records linked to the entity
    ("kept", entity)               of those, kept by the curation
    ("removed", entity, reason)    of those, removed, by reason
    ("after", entity)              curated records linked to the entity (merged records included)
    ("link", entity, why)          candidate links of the entity's records, by decision
    ("candidates", entity)         candidate URLs that named the entity
    ("outcome", entity, outcome)   what became of those candidates
    ("embedded", entity)           harvested records linked to the entity that have an image
                                   embedding (a site built with --embeddings)
    ("records_embedded", "")       harvested records that have one (no entity's row)

Every entity given is in the index; one without images (none harvested, or none left after the
curation) says why in its row's `no_images` (`entitynet.curation.unimaged.why`, the words of the
curation's data card).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from entitynet.curation.unimaged import why as no_image_why
from entitynet.explore.site import slug
from entitynet.links import KEEP
from entitynet.records import Candidate, Entity, ImageRecord, Outcome, Removal

MAX_TEXTS = 8  # alt texts shown per image
MAX_TEXT = 300  # characters per alt text
NEIGHBOURS = 6  # nearest images shown per image (a site built with --embeddings)
MAP_MAX = 400  # images on an entity's map: a fixed sample (by key digest) of a larger entity's


def _short(text: str, n: int = MAX_TEXT) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def image_row(
    record: ImageRecord,
    thumb: str,
    kept: bool | None,
    removals: Iterable[Removal] = (),
    queries: dict[str, str] | None = None,
) -> dict:
    """One image as the entity pages show it. `kept`: None for a harvest not curated. `queries`:
    query id -> text, to show the texts that found it (else their ids)."""
    queries = queries or {}
    ranks = dict(zip(record.query_ids, record.query_ranks, strict=False))
    return {
        "key": record.key,
        "thumb": thumb,
        "size": [record.width, record.height],
        "url": record.url,
        "urls": len(record.urls),
        "page": record.page_url,
        "texts": [_short(t) for t in record.alt_texts[:MAX_TEXTS]],
        "more_texts": max(0, len(record.alt_texts) - MAX_TEXTS),
        "license": record.license,
        "license_url": record.license_url,
        "attribution": _short(record.attribution, 160),
        "sources": list(record.sources),
        "queries": [[queries.get(q, q), ranks.get(q, -1)] for q in record.query_ids[:12]],
        "links": [
            {
                "entity": x.entity,
                "why": x.why,
                "kept": x.why in KEEP,
                "kinds": list(x.kinds),
                "rank": x.rank,
                "alt_text": x.alt_text,
                "identifier": x.identifier,
            }
            for x in record.links
        ],
        "entities": list(record.entity_ids),
        "status": "harvested" if kept is None else "kept" if kept else "removed",
        "removed": [
            {"reason": r.reason, "detail": r.detail} for r in sorted(removals, key=lambda r: r.reason)
        ],
    }


def record_counts(record: ImageRecord, kept: bool | None, removals: Iterable[Removal] = ()) -> Counter:
    """The counts one harvested record adds (see the module docstring)."""
    c: Counter = Counter()
    reasons = sorted({r.reason for r in removals})
    for e in record.entity_ids:
        c["images", e] += 1
        if kept:
            c["kept", e] += 1
        for reason in reasons:
            c["removed", e, reason] += 1
    for x in record.links:
        c["link", x.entity, x.why] += 1
    return c


def embedded_counts(record: ImageRecord) -> Counter:
    """The counts of a harvested record that has an image embedding (and ("records_embedded", ""):
    the records, whatever their entities)."""
    return Counter([("embedded", e) for e in record.entity_ids] + [("records_embedded", "")])


def map_rank(key: str) -> int:
    """The order in which an entity's images are taken for its map (the first MAP_MAX): a digest of
    the key, so the sample is fixed and spread over the whole entity."""
    return int(hashlib.sha1(key.encode()).hexdigest()[:12], 16)


def entity_map(entity: str, points: Sequence[tuple[str, str, Sequence[float]]]) -> dict:
    """An entity's map: each image (key, status, its image embedding) placed in 2-D by the first two
    principal components of the embeddings (deterministic: the images in key order, each
    component's sign fixed by its largest loading), scaled together into [0, 1] (distances keep
    their proportions; the narrower axis is centred). `explained`: the share of the variance each
    axis shows."""
    points = sorted(points, key=lambda p: p[0])
    x = np.asarray([p[2] for p in points], np.float64).reshape(len(points), -1)
    xy = np.full((len(points), 2), 0.5)
    explained = [0.0, 0.0]
    if len(points) > 1:
        centred = x - x.mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        comps = vt[:2]
        comps = comps * np.sign(comps[np.arange(len(comps)), np.abs(comps).argmax(axis=1)])[:, None]
        c = centred @ comps.T
        if c.shape[1] < 2:
            c = np.concatenate([c, np.zeros((len(c), 1))], axis=1)
        span = (c.max(axis=0) - c.min(axis=0)).max()
        if span > 0:
            xy = (c - c.min(axis=0)) / span
            xy += (1 - xy.max(axis=0)) / 2  # the narrower axis centred
        total = float((s**2).sum())
        if total > 0:
            explained = [round(float(v) / total, 4) for v in (s[:2] ** 2)] + [0.0] * (2 - len(s[:2]))
    return {
        "entity": entity,
        "points": [
            [k, round(float(a), 4), round(float(b), 4), status]
            for (k, status, _), (a, b) in zip(points, xy, strict=True)
        ],
        "explained": explained,
    }


def curated_counts(record: ImageRecord) -> Counter:
    return Counter(("after", e) for e in record.entity_ids)


def candidate_counts(candidate: Candidate, outcome: Outcome | None) -> Counter:
    """The counts of one candidate URL and what became of it ("unknown" when the harvest wrote no
    outcome for it)."""
    c: Counter = Counter()
    for e in candidate.entity_ids:
        c["candidates", e] += 1
        c["outcome", e, outcome.outcome if outcome else "unknown"] += 1
    return c


def status_of(kept: bool | None) -> str:
    """The grid an image goes to: "kept" (also every image of a harvest not curated) or "removed"."""
    return "kept" if kept or kept is None else "removed"


def no_images(row: dict, curated: bool, candidates_known: bool = True) -> str | None:
    """Why an index row's entity has no image (None: it has some): in a curated dataset no curated
    record is linked to it, in a harvest no harvested one. `candidates_known`: the harvest listed
    its candidates files (else "no candidates" could not be told from "not known")."""
    if row["after"] if curated else row["images"]:
        return None
    return no_image_why(
        row["candidates"] if candidates_known else None,
        row["images"],
        row["removed"] if curated else None,
        row["outcomes"],
    )[1]


def left_out(entities) -> list[dict]:
    """The rows of the index's "left out before the search" table: what `kg classify` judged not visual."""
    return [
        {
            "id": e.id,
            "label": e.label,
            "description": e.description,
            "type": e.natural_type_label,
            "by": e.visual_by,
            "reason": e.visual_reason,
        }
        for e in entities
    ]


def entity_index(
    entities: Iterable[Entity],
    counts: dict,
    pages: dict,
    entries: dict | None,
    curated: bool | None = None,
    candidates_known: bool = True,
) -> list[dict]:
    """The index rows: one per entity, those without images included (`no_images` says why).
    `pages`: (entity, status) -> its number of pages; `entries`: entity -> (before, after) of the
    curation's balancing entries (None: a harvest); `curated`: the dataset is a curated one
    (default: `entries` is not None)."""
    curated = entries is not None if curated is None else curated
    per: dict[str, dict] = {}
    for key, n in counts.items():
        kind, e = key[0], key[1]
        row = per.setdefault(e, {"removed": {}, "links": {}, "outcomes": {}})
        if kind in ("images", "kept", "after", "candidates", "embedded"):
            row[kind] = row.get(kind, 0) + n
        elif kind == "removed":
            row["removed"][key[2]] = n
        elif kind == "link":
            row["links"][key[2]] = n
        elif kind == "outcome":
            row["outcomes"][key[2]] = n
    rows, seen = [], set()
    for ent in entities:
        if ent.id in seen:  # an id listed twice is one row
            continue
        seen.add(ent.id)
        row = per.get(ent.id, {"removed": {}, "links": {}, "outcomes": {}})
        out = {
            "id": ent.id,
            "label": ent.label,
            "description": ent.description[:200],
            "type": ent.natural_type_label or ent.natural_type,
            "lineage": list(ent.lineage),
            "rank": ent.rank,
            "images": row.get("images", 0),
            "kept": row.get("kept", 0),
            "after": row.get("after", 0),
            "candidates": row.get("candidates", 0),
            "embedded": row.get("embedded", 0),
            "map": min(row.get("embedded", 0), MAP_MAX),
            "removed": dict(sorted(row["removed"].items())),
            "links": dict(sorted(row["links"].items())),
            "outcomes": dict(sorted(row["outcomes"].items(), key=lambda kv: (-kv[1], kv[0]))),
            "entries": list(entries[ent.id]) if entries and ent.id in entries else None,
            "pages": {s: pages.get((ent.id, s), 0) for s in ("kept", "removed")},
            "slug": slug(ent.id),
        }
        out["no_images"] = no_images(out, curated, candidates_known)
        rows.append(out)
    return rows
