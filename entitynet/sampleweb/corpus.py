"""The sample web's corpus: which images exist, what they show, and what their alt texts say.

Deterministic for a given entity list and seed (built in milliseconds; images are rendered on
demand). Alt texts mimic the web: the common name, the scientific name, an alias, only context
words, or plainly wrong. Some images are distractors of no entity; some links are dead or faulty.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from entitynet.records import Entity
from entitynet.text.matching import normalise

CONTEXT = (
    "wildlife photo",
    "nature walk",
    "IMG_{n}",
    "holiday pictures",
    "field trip",
    "stock photo",
    "untitled",
    "photo by a reader",
    "spring {n}",
    "our garden",
)
# Faults served by the image host, with their share of the corpus.
FAULTS = {"dead": 0.03, "error500": 0.015, "truncated": 0.01, "html": 0.01, "noai": 0.01}


@dataclass(frozen=True)
class WebImage:
    id: str
    entity_id: str | None  # None: a distractor
    seed: int
    alt: str
    width: int
    height: int
    fault: str = ""  # "", or one of FAULTS
    page_text: str = ""  # what the page around the image says (the search index reads it)


def _alt(e: Entity, rng: np.random.Generator, others: list[Entity]) -> str:
    u = rng.random()
    n = int(rng.integers(1000, 9999))
    if u < 0.35:
        return rng.choice([e.label, f"a {e.label}", f"{e.label} photographed in the wild", f"the {e.label}"])
    if u < 0.55 and e.taxon_names:
        return e.taxon_names[0]
    if u < 0.70 and (e.aliases or e.common_names):
        return str(rng.choice(list(e.aliases) + list(e.common_names)))
    if u < 0.85:
        return str(rng.choice(CONTEXT)).format(n=n)
    if u < 0.95:
        return f"{e.natural_type_label}: {e.label}" if e.natural_type_label else e.label
    return rng.choice(others).label if others else e.label  # wrong


def _size(rng: np.random.Generator) -> tuple[int, int]:
    u = rng.random()
    if u < 0.05:
        return 1600, 1200
    if u < 0.07:
        return 48, 40  # too small
    if u < 0.08:
        return 900, 150  # bad aspect ratio
    return int(rng.integers(420, 640)), int(rng.integers(320, 480))


def build_corpus(
    entities: Iterable[Entity],
    seed: int = 0,
    min_images: int = 6,
    max_images: int = 24,
    distractor_share: float = 0.1,
) -> list[WebImage]:
    entities = [e for e in entities if e.depth > 0]
    rng = np.random.default_rng(seed)
    out: list[WebImage] = []
    for e in entities:
        count = int(np.clip(min_images + np.log2(1 + e.sitelinks) * 2, min_images, max_images))
        names = " ".join(e.synonyms())
        for k in range(count):
            fault = ""
            u = rng.random()
            for name, share in FAULTS.items():
                if u < share:
                    fault = name
                    break
                u -= share
            alt = _alt(e, rng, entities)
            w, h = _size(rng)
            out.append(
                WebImage(
                    f"{e.id}-{k:03d}", e.id, int(rng.integers(2**31)), alt, w, h, fault, f"{alt} | {names}"
                )
            )
    for k in range(int(len(out) * distractor_share)):
        alt = str(rng.choice(CONTEXT)).format(n=int(rng.integers(1000, 9999)))
        if rng.random() < 0.3 and entities:  # a distractor that mentions a name: web noise
            alt = f"{alt} {rng.choice(entities).label}"
        w, h = _size(rng)
        out.append(WebImage(f"x-{k:05d}", None, int(rng.integers(2**31)), alt, w, h, "", alt))
    return out


class SearchIndex:
    """Phrase search over the images' page texts (an inverted word index, then a phrase check)."""

    def __init__(self, images: list[WebImage]):
        self.images = images
        self._texts = [normalise(im.page_text) for im in images]
        self._words: dict[str, set[int]] = defaultdict(set)
        for i, text in enumerate(self._texts):
            for w in text.split():
                self._words[w].add(i)

    def search(self, query: str) -> list[WebImage]:
        # search engines ignore "-term" exclusions they cannot honour; so do we, after dropping them
        words = [w for w in query.split() if not w.startswith("-")]
        q = normalise(" ".join(words))
        tokens = q.split()
        if not tokens:
            return []
        hits = set.intersection(*(self._words.get(t, set()) for t in tokens))
        return [self.images[i] for i in sorted(hits) if q in self._texts[i]]
