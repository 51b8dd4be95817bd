"""`entitynet queries` and `entitynet captions`: search queries and KG captions of the entities."""

from __future__ import annotations

from pathlib import Path

from entitynet.errors import ConfigError
from entitynet.text.queries import make_queries
from entitynet_cli.common import load_entities, table


def exclude_terms(args) -> tuple[str, ...]:
    from entitynet.text.queries import EXCLUDE_TERMS

    if args.no_exclude_terms:
        return ()
    if args.exclude_terms is None:
        return EXCLUDE_TERMS
    terms = tuple(t.strip() for t in args.exclude_terms.split(",") if t.strip())
    if not terms or any(" " in t or t.startswith("-") for t in terms):
        raise ConfigError(
            f"--exclude-terms {args.exclude_terms!r}: give comma-separated single words without '-' "
            "(e.g. drawing,clipart), or --no-exclude-terms"
        )
    return terms


def cmd_queries(args, _extra) -> int:
    from entitynet.text.llm import LLMClient
    from entitynet.text.queries import QueryConfig

    entities = load_entities(args.entities)
    cfg = QueryConfig(
        base_budget=args.base_budget,
        max_per_entity=args.max_per_entity,
        attribute_queries=not args.no_attribute_queries,
        living=any(e.kind in ("taxon", "fruit") for e in entities),
        photo_type=None if args.photo_type.strip().lower() in ("", "none") else args.photo_type.strip(),
        exclude_terms=exclude_terms(args),
        or_terms=not args.no_or_terms,
    )
    llm = None
    if args.llm_endpoint:
        if not args.llm_model:
            raise ConfigError("--llm-endpoint needs --llm-model NAME")
        llm = LLMClient(args.llm_endpoint, args.llm_model, api_key_env=args.llm_key_env)
    _, stats = make_queries(entities, args.out, cfg, llm, args.llm_top)
    print(
        f"{stats['queries']:,} queries for {stats['entities']:,} entities in {stats['seconds']:.1f} s\n"
        f"queries per kind:\n{table(stats['per_kind'])}\n"
        f"modifiers: photo type {cfg.photo_type or 'none'}; exclude terms "
        f"{' '.join(cfg.exclude_terms) or 'none'}; or-terms {'on' if cfg.or_terms else 'off'} "
        "(each backend sends what its API can express)\n"
        f"wrote {Path(args.out) / 'queries.jsonl'}"
    )
    return 0


def cmd_captions(args, _extra) -> int:
    from entitynet.text.captions import captions

    entities = {e.id: e for e in load_entities(args.entities)}
    if args.entity not in entities:
        raise ConfigError(f"entity {args.entity} is not in {args.entities}")
    e = entities[args.entity]
    query = None
    if args.query:
        from entitynet.records import Query, query_id

        query = Query(
            id=query_id("attribute-noun", args.query),
            text=args.query,
            kind="attribute-noun",
            entity_ids=(e.id,),
            attribute=args.attribute,
        )
    parents = [entities[p] for p in e.parents if p in entities]
    for c in sorted(captions(e, query, parents), key=lambda c: -c.weight):
        print(f"{c.weight:6.3f}  {c.source:<18}  {c.text}")
    return 0
