"""An entity's name in a name style, as BioCLIP names taxa (Stevens et al., CVPR 2024) and the
EntityNet reference evaluates them:

    common              red fox
    scientific          Vulpes vulpes
    scientific+common   Vulpes vulpes with common name red fox
    taxonomic           Animalia Chordata Mammalia Carnivora Canidae Vulpes vulpes
    taxonomic+common    Animalia Chordata Mammalia Carnivora Canidae Vulpes vulpes with common name red fox

The common name is the entity's label, unless the label is one of its taxon names (P225) and it has
a common name (P1843) that is not: then that common name ("Homo sapiens" -> "human"). The scientific
name is the first taxon name. The taxonomic name is the taxon names of the Linnaean ancestors,
kingdom first (`Entity.lineage_taxa`), then the entity's own; where the own name repeats the last
ancestor (the genus of a binomial: "Panthera" then "Panthera leo") the ancestor is written once,
as BioCLIP writes the genus and the species epithet.

Fallbacks, so that every entity has a name in every style (`StyledName.used` says which style the
text is really in, `fell_back` whether it differs from the one asked):

- no taxon name (fruits, classes, taxa the graph gives no P225): every style is the common name;
- a taxon name but no known ancestors although the entity has some (an `entities.jsonl` expanded
  before `lineage_taxa` existed): taxonomic is the scientific name (a root, a kingdom, needs none);
- no common name other than the scientific one: "+common" styles drop the "with common name" part.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from entitynet.records import Entity

STYLES = ("common", "scientific", "scientific+common", "taxonomic", "taxonomic+common")
COMMON_JOIN = " with common name "  # BioCLIP's words between the scientific and the common name


@dataclass(frozen=True)
class StyledName:
    text: str
    style: str  # the style asked for
    used: str  # the style the text is in: `style`, or the one it fell back to

    @property
    def fell_back(self) -> bool:
        return self.used != self.style


def check_style(style: str) -> str:
    """`style`, or a ValueError naming the styles there are."""
    if style not in STYLES:
        raise ValueError(f"unknown name style {style!r}; use one of {', '.join(STYLES)}")
    return style


def common_name(entity: Entity) -> str:
    """The label, or the first common name when the label is a taxon name ("Homo sapiens" -> "human")."""
    taxa = {t.casefold() for t in entity.taxon_names}
    if entity.label.casefold() in taxa:
        other = next((c for c in entity.common_names if c.casefold() not in taxa), "")
        if other:
            return other
    return entity.label


def scientific_name(entity: Entity) -> str:
    """The first taxon name (P225); "" for an entity without one."""
    return entity.taxon_names[0] if entity.taxon_names else ""


def taxonomic_name(entity: Entity) -> str:
    """Ancestors' taxon names, kingdom first, then the entity's own, the genus of a binomial once;
    "" for an entity without a taxon name."""
    own = scientific_name(entity)
    if not own:
        return ""
    above = list(entity.lineage_taxa)
    if above and own.split()[0].casefold() == above[-1].casefold() and len(own.split()) > 1:
        above.pop()  # "... Panthera" + "Panthera leo": the genus once
    if above and above[-1].casefold() == own.casefold():
        above.pop()  # a lineage that ends in the entity itself
    return " ".join([*above, own])


def styled_name(entity: Entity, style: str) -> StyledName:
    """The entity's name in `style` (one of STYLES), falling back as the module docstring says."""
    check_style(style)
    common = common_name(entity)
    scientific = scientific_name(entity)
    if style == "common" or not scientific:
        return StyledName(common, style, "common")
    if style.startswith("taxonomic"):
        complete = bool(entity.lineage_taxa) or not entity.lineage_ids
        base, base_style = (taxonomic_name(entity), "taxonomic") if complete else (scientific, "scientific")
    else:
        base, base_style = scientific, "scientific"
    if not style.endswith("+common"):
        return StyledName(base, style, base_style)
    if common.casefold() == scientific.casefold():
        return StyledName(base, style, base_style)
    return StyledName(base + COMMON_JOIN + common, style, f"{base_style}+common")


def styled_names(entity: Entity, styles: Iterable[str] = STYLES) -> dict[str, StyledName]:
    """`styled_name` for each of `styles`."""
    return {s: styled_name(entity, s) for s in styles}


def fallback_counts(entities: Iterable[Entity], style: str) -> Counter:
    """How many of `entities` are named in `style` itself and how many fell back, by the style
    used: e.g. Counter({"taxonomic": 40, "common": 3})."""
    return Counter(styled_name(e, style).used for e in entities)
