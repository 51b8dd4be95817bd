"""What the sample web knows and a real web does not: the entity every image shows. With it, the
entity links of a harvest can be scored: a link is right when it names the image's entity or one
of its ancestors (a red fox is also a fox); recall is the share of entity images with a right link.

    link_quality(web.corpus, web.lineage, shards.iter_records(out, "train"))
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping

from entitynet.records import ImageRecord
from entitynet.sampleweb.corpus import WebImage


def image_id(url: str) -> str | None:
    """The corpus id in an image URL of the sample web (`…/img/<id>.jpg`, or an archive photo's
    `…/photos/<id>/<size>.jpg`)."""
    path = urllib.parse.urlsplit(url).path
    if path.startswith("/img/") and path.endswith(".jpg"):
        return path[5:-4]
    parts = path.split("/")
    if len(parts) == 4 and parts[1] == "photos" and parts[3].endswith(".jpg"):
        return parts[2]
    return None


def _score(pairs: list[tuple[str | None, set[str], tuple[str, ...]]], lineage: Mapping) -> dict:
    links = right = images = recalled = 0
    for truth, _, linked in pairs:
        ok = {truth, *lineage.get(truth, ())} if truth else set()
        links += len(linked)
        hits = sum(e in ok for e in linked)
        right += hits
        if truth:
            images += 1
            recalled += hits > 0
    n = len(pairs)
    return {
        "images": n,
        "links": links,
        "links_per_image": round(links / n, 3) if n else 0.0,
        "precision": round(right / links, 4) if links else 0.0,
        "recall": round(recalled / images, 4) if images else 0.0,
    }


def link_quality(
    corpus: Iterable[WebImage], lineage: Mapping[str, tuple[str, ...]], records: Iterable[ImageRecord]
) -> dict:
    """Precision and recall of the records' entity links: "before" pruning (every entity whose query
    found the image) and "after" (the kept links, `entity_ids`)."""
    truth = {im.id: im.entity_id for im in corpus}
    pairs = []
    for r in records:
        ids = [image_id(u) for u in (r.urls or (r.url,))]
        shown = next((truth[i] for i in ids if i in truth and truth[i]), None)
        found = {x.entity for x in r.links} or set(r.entity_ids)
        pairs.append((shown, found, r.entity_ids))
    before = _score([(t, f, tuple(f)) for t, f, _ in pairs], lineage)
    after = _score(pairs, lineage)
    return {"before": before, "after": after}
