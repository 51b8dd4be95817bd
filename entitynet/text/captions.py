"""Training texts from the knowledge graph: for an entity and the query that found an image,
the candidate captions with weights. The training input pipeline samples one of them whenever
it does not use an alt text (see `sample`).

Weights follow the reference implementation (EntityNet's released text-augmentation config):

- noun queries: keep the query 0.4; synonyms 0.6 shared between the entity's names and its
  parents' names (parents get 0.2, or 0.1 for living things); descriptions 0.1 shared the same
  way; if one synonym would be likelier than the query itself, both get 0.5.
- attribute and attribute-noun queries: keep the query 1.0; a synonym alone 0.2; a pseudo-query
  "attribute synonym" 0.2; the query with the entity's name replaced by a synonym 0.2; the
  attribute alone 0.2; the description 0.05.

Texts that differ only in case are merged, keeping the highest weight; weights are normalised.

Name styles (`name_styles`, off by default, as in the reference): that share of the weight goes to
the entity's names in BioCLIP's styles (`entitynet.text.names`: scientific, scientific + common,
taxonomic, taxonomic + common), split evenly over those whose text is not among the captions already
(the scientific name usually is a synonym), the other captions keeping the rest in their proportions.
Only an entity with a taxon name gets them; without one every style is its common name, already a
caption, and its captions are as without the share.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from entitynet.records import Entity, ImageRecord, Query, unique_texts
from entitynet.text.names import STYLES, styled_name
from entitynet.text.templates import fill


@dataclass(frozen=True)
class CaptionWeights:
    noun_query: float = 0.4
    noun_synonyms: float = 0.6
    noun_descriptions: float = 0.1
    parent_share: float = 0.2
    parent_share_living: float = 0.1
    attribute_query: float = 1.0
    attribute_synonym: float = 0.2
    attribute_pseudo_query: float = 0.2
    attribute_replaced_name: float = 0.2
    attribute_alone: float = 0.2
    attribute_description: float = 0.05
    name_styles: float = 0.0  # share given to the name-style captions (0: none, the reference's mix)


@dataclass(frozen=True)
class Caption:
    text: str
    weight: float
    source: str  # query | synonym | parent-synonym | description | parent-description | pseudo-query | ...


def _merge(items: list[tuple[str, float, str]]) -> list[Caption]:
    best: dict[str, Caption] = {}
    for text, w, source in items:
        text = " ".join(text.split())
        if not text or w <= 0:
            continue
        key = text.casefold()
        if key not in best or w > best[key].weight:
            best[key] = Caption(text, w, source)
    total = sum(c.weight for c in best.values())
    return [Caption(c.text, c.weight / total, c.source) for c in best.values()]


def _noun(entity: Entity, query_text: str, parents: Sequence[Entity], w: CaptionWeights) -> list[Caption]:
    share = w.parent_share_living if entity.kind in ("taxon", "fruit") else w.parent_share
    own = entity.synonyms()
    theirs = unique_texts(s for p in parents for s in p.synonyms())
    if not theirs and entity.lineage:
        theirs = [entity.lineage[0]]
    theirs = [t for t in theirs if t.casefold() not in {o.casefold() for o in own}]
    if not theirs:
        share = 0.0
    keep = w.noun_query
    syn = [(s, w.noun_synonyms * (1 - share) / len(own), "synonym") for s in own]
    syn += [(s, w.noun_synonyms * share / len(theirs), "parent-synonym") for s in theirs]
    if any(x > keep for _, x, _ in syn):
        keep = 0.5
        syn = [(s, 0.5 if x > w.noun_query else x, src) for s, x, src in syn]
    items = [(query_text, keep, "query"), *syn]
    parent_desc = next((p.description for p in parents if p.description), "")
    desc_share = share if parent_desc else 0.0
    if entity.description:
        items.append((entity.description, w.noun_descriptions * (1 - desc_share), "description"))
    if parent_desc:
        items.append(
            (
                parent_desc,
                w.noun_descriptions * (desc_share if entity.description else 1.0),
                "parent-description",
            )
        )
    return _merge(items)


def _attribute(entity: Entity, query: Query, w: CaptionWeights) -> list[Caption]:
    own = entity.synonyms()
    attr = query.attribute or ""
    items = [(query.text, w.attribute_query, "query")]
    items += [(s, w.attribute_synonym / len(own), "synonym") for s in own]
    if attr:
        part_like = query.property in ("P527",)
        pseudo = [f"{s} {attr}" if part_like else f"{attr} {s}" for s in own]
        items += [(p, w.attribute_pseudo_query / len(pseudo), "pseudo-query") for p in pseudo]
        items.append((attr, w.attribute_alone, "attribute"))
    pattern = re.compile(re.escape(entity.label), re.IGNORECASE)
    if pattern.search(query.text) and len(own) > 1:
        replaced = [pattern.sub(s, query.text, count=1) for s in own[1:]]
        items += [(r, w.attribute_replaced_name / len(replaced), "replaced-name") for r in replaced]
    if entity.description:
        items.append((entity.description, w.attribute_description, "description"))
    return _merge(items)


def captions(
    entity: Entity,
    query: Query | None = None,
    parents: Sequence[Entity] = (),
    weights: CaptionWeights = CaptionWeights(),
) -> list[Caption]:
    """Candidate training texts for an image of `entity` found by `query` (None: the entity's name).

    `parents` are the entity's parent records when known (their names and description join the
    mix); otherwise the nearest lineage label stands in for the parent's name.
    """
    if query is None or query.kind in ("noun", "alias"):
        out = _noun(entity, query.text if query else entity.label, parents, weights)
    else:
        out = _attribute(entity, query, weights)
    return with_name_styles(out, entity, weights.name_styles)


STYLE_SOURCES = tuple(f"style:{s}" for s in STYLES if s != "common")  # the name-style captions' sources


def with_name_styles(base: list[Caption], entity: Entity, share: float) -> list[Caption]:
    """`base` (normalised) with `share` of the weight moved to the entity's names in the non-common
    styles that are in that style (no fallback) and not among `base` already; `base` as it is when
    there are none or `share` is 0."""
    if share <= 0:
        return base
    seen = {c.text.casefold() for c in base}
    styled = []
    for style in STYLES[1:]:
        name = styled_name(entity, style)
        if not name.fell_back and name.text.casefold() not in seen:
            seen.add(name.text.casefold())
            styled.append((name.text, f"style:{style}"))
    if not styled:
        return base
    rest = [Caption(c.text, c.weight * (1 - share), c.source) for c in base]
    return rest + [Caption(text, share / len(styled), source) for text, source in styled]


# Captions that name the entity (or its parent, or name it with an attribute): what a prompt
# template can wrap. Descriptions are sentences of their own and stay as they are.
NAMING_SOURCES = (
    "query",
    "synonym",
    "parent-synonym",
    "pseudo-query",
    "replaced-name",
    "attribute",
    *STYLE_SOURCES,
)


def sample_caption(candidates: Sequence[Caption], rng: np.random.Generator) -> Caption:
    """Draw one caption by weight with the caller's generator (so the choice is reproducible)."""
    p = np.fromiter((c.weight for c in candidates), dtype=np.float64, count=len(candidates))
    return candidates[int(rng.choice(len(candidates), p=p / p.sum()))]


def sample(candidates: Sequence[Caption], rng: np.random.Generator) -> str:
    return sample_caption(candidates, rng).text


class TextChooser:
    """An alt text with probability `alt_text_chance`, else a weighted KG caption of one entity,
    a naming caption wrapped in a random template with probability `template_chance`."""

    def __init__(
        self,
        entities: list[Entity],
        alt_text_chance: float,
        template_chance: float = 0.0,
        templates: tuple[str, ...] = (),
        weights: CaptionWeights | None = None,  # None: the reference's
    ):
        self.by_id = {e.id: e for e in entities}
        self.alt_text_chance = alt_text_chance
        self.template_chance = template_chance if templates else 0.0
        self.templates = tuple(templates)
        self.weights = weights or CaptionWeights()

    @functools.lru_cache(maxsize=100_000)  # noqa: B019 - one chooser per pipeline
    def candidates(self, entity_id: str):
        e = self.by_id[entity_id]
        parents = [self.by_id[p] for p in e.parents if p in self.by_id]
        return captions(e, None, parents, self.weights)

    def choose(self, record: ImageRecord, rng: np.random.Generator) -> tuple[str, str]:
        """(text, "alt" or "kg")."""
        known = [e for e in record.entity_ids if e in self.by_id]
        if record.alt_texts and (not known or rng.random() < self.alt_text_chance):
            return record.alt_texts[int(rng.integers(len(record.alt_texts)))], "alt"
        if known:
            caption = sample_caption(self.candidates(known[int(rng.integers(len(known)))]), rng)
            text = caption.text
            # no draw at all when templates are off, so such runs keep their random stream
            if self.template_chance and caption.source in NAMING_SOURCES:
                if rng.random() < self.template_chance:
                    text = fill(self.templates[int(rng.integers(len(self.templates)))], text)
            return text, "kg"
        return "", "alt"
