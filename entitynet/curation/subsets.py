"""Entity-based subsets, like the reference's LivingThings-10M: records with at least one entity
whose lineage reaches one of the given roots (e.g. animals Q729 and plants Q756)."""

from __future__ import annotations

from collections.abc import Iterable

from entitynet.errors import ConfigError
from entitynet.kg.ids import qid
from entitynet.records import Entity


def entities_under(entities: Iterable[Entity], roots: Iterable[str]) -> set[str]:
    """Ids of the entities that are a root or have one in their lineage."""
    roots = {qid(r, "subset root") for r in roots}
    return {e.id for e in entities if e.id in roots or roots & set(e.lineage_ids) or e.root in roots}


def check_roots(entities: list[Entity], roots: Iterable[str]) -> set[str]:
    """`entities_under`, refusing roots that select nothing (a typo should not empty a dataset)."""
    roots = list(roots)
    selected = entities_under(entities, roots)
    if not selected:
        raise ConfigError(
            f"no entity has {', '.join(roots)} in its lineage; check the --subset-root ids against entities.jsonl"
        )
    return selected
