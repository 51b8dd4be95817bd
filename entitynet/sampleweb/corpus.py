"""The sample web's corpus: which images exist, what they show, and what their alt texts say.

Deterministic for a given entity list and seed (built in milliseconds; images are rendered on
demand). Alt texts mimic the web: the common name, the scientific name, an alias, only context
words, or plainly wrong. Some images are distractors of no entity; some are generic (a collage or
poster whose page lists dozens of species, which a search engine returns for every one of them);
some links are dead or faulty.
"""

from __future__ import annotations

import zlib
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
GENERIC = (
    "wildlife collage",
    "species poster",
    "nature wallpaper",
    "field guide cover",
    "biodiversity infographic",
    "animals and plants of the world",
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
    names: tuple[
        str, ...
    ] = ()  # its entity's names, or the names a generic page lists (an engine's best match)


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
    # numpy's stub takes no list of arbitrary objects; choice() returns one of them
    return rng.choice(others).label if others else e.label  # type: ignore[arg-type]  # wrong


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
    generic_share: float = 0.03,
    generic_names: tuple[int, int] = (30, 90),
) -> list[WebImage]:
    entities = [e for e in entities if e.depth > 0]
    rng = np.random.default_rng(seed)
    out: list[WebImage] = []
    for e in entities:
        count = int(np.clip(min_images + np.log2(1 + e.sitelinks) * 2, min_images, max_images))
        synonyms = tuple(e.synonyms())
        names = " ".join(synonyms)
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
                    f"{e.id}-{k:03d}",
                    e.id,
                    int(rng.integers(2**31)),
                    alt,
                    w,
                    h,
                    fault,
                    f"{alt} | {names}",
                    synonyms,
                )
            )
    n_entity_images = len(out)
    for k in range(int(n_entity_images * generic_share) if entities else 0):
        listed = rng.choice(
            len(entities), size=min(len(entities), int(rng.integers(*generic_names))), replace=False
        )
        alt = f"{rng.choice(GENERIC)} {int(rng.integers(1000, 9999))}"
        page = f"{alt} | " + ", ".join(entities[int(i)].label for i in listed)
        w, h = _size(rng)
        listed_names = tuple(entities[int(i)].label for i in listed)
        out.append(WebImage(f"g-{k:04d}", None, int(rng.integers(2**31)), alt, w, h, "", page, listed_names))
    for k in range(int(n_entity_images * distractor_share)):
        alt = str(rng.choice(CONTEXT)).format(n=int(rng.integers(1000, 9999)))
        if rng.random() < 0.3 and entities:  # a distractor that mentions a name: web noise
            # numpy's stub takes no list of arbitrary objects; choice() returns one of them
            alt = f"{alt} {rng.choice(entities).label}"  # type: ignore[arg-type]
        w, h = _size(rng)
        out.append(WebImage(f"x-{k:05d}", None, int(rng.integers(2**31)), alt, w, h, "", alt))
    return out


class SearchIndex:
    """Phrase search over the images' page texts (an inverted word index, then a phrase check),
    ranked as an engine would: the phrase in the title (alt text) first, then pages that name it
    exactly (an entity's own page, or a generic page listing it among dozens), then pages that
    merely mention it; ties in a fixed pseudo-random order per query."""

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
        tokens = normalise(" ".join(words)).split()
        if not tokens:
            return []
        q = " ".join(tokens)
        hits = set.intersection(*(self._words.get(t, set()) for t in tokens))
        found = [i for i in sorted(hits) if f" {q} " in f" {self._texts[i]} "]
        return [self.images[i] for i in sorted(found, key=lambda i: self._rank(q, i))]

    def _rank(self, q: str, i: int) -> tuple[int, int]:
        im = self.images[i]
        if f" {q} " in f" {' '.join(normalise(im.alt).split())} ":
            tier = 0
        elif q in (" ".join(normalise(n).split()) for n in im.names):
            tier = 1
        else:
            tier = 2
        tie = zlib.crc32(f"{q}\x1f{im.id}".encode())
        return tier, tie
