"""`entitynet queries` and `entitynet captions`: search queries and KG captions of the entities."""

from __future__ import annotations

from entitynet.errors import ConfigError
from entitynet.storage import STORE
from entitynet.text.queries import make_queries
from entitynet_cli.common import load_entities, next_command, sibling, table


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
    from entitynet.locks import claimed_output
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
    with claimed_output(args.out, "queries", ("queries_config.json",)):
        _, stats = make_queries(entities, args.out, cfg, llm, args.llm_top)
    print(
        f"{stats['queries']:,} queries for {stats['entities']:,} entities in {stats['seconds']:.1f} s\n"
        + (
            f"{stats['not_visual']:,} entities judged not visual by `kg classify` got none\n"
            if stats.get("not_visual")
            else ""
        )
        + f"queries per kind:\n{table(stats['per_kind'])}\n"
        f"modifiers: photo type {cfg.photo_type or 'none'}; exclude terms "
        f"{' '.join(cfg.exclude_terms) or 'none'}; or-terms {'on' if cfg.or_terms else 'off'} "
        "(each backend sends what its API can express)\n"
        f"wrote {STORE.join(args.out, 'queries.jsonl')}\n"
        + next_command(
            "harvest",
            f"--queries {STORE.join(args.out, 'queries.jsonl')}",
            f"--entities {args.entities}",
            "--backend BACKEND",
            f"--out {sibling(args.out, 'shards')}",
        )
        + "   (backends: entitynet harvest --help)"
    )
    return 0


def cmd_captions(args, _extra) -> int:
    from entitynet.text.captions import captions, with_name_styles

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
    base = captions(e, query, parents)
    for c in sorted(base, key=lambda c: -c.weight):
        print(f"{c.weight:6.3f}  {c.source:<18}  {c.text}")
    # the name-style captions a config with data.caption_weights.name_styles > 0 mixes in
    styled = [c for c in with_name_styles(base, e, 1.0) if c.source.startswith("style:")]
    print("name styles (off by default; data.caption_weights.name_styles=W gives them W, split evenly):")
    if not styled:
        print(f"  none: {e.label!r} has no taxon name, or its styled names are among the captions already")
    for c in styled:
        print(f"        {c.source:<24}  {c.text}")
    return 0


def add_parser(sub) -> None:
    """The `queries` and `captions` subcommands."""
    q = sub.add_parser("queries", help="search queries from entities.jsonl")
    q.add_argument("--entities", required=True, metavar="FILE")
    q.add_argument("--out", required=True, metavar="DIR")
    q.add_argument("--base-budget", type=int, default=3, help="queries per entity before the sitelinks bonus")
    q.add_argument("--max-per-entity", type=int, default=20)
    q.add_argument(
        "--no-attribute-queries", action="store_true", help="no shared 'attribute + natural type' queries"
    )
    # Search modifiers: fields of each query; every backend sends those its API can express and
    # drops the rest (see entitynet/search/web.py), never pasting them into the query text.
    mod = q.add_mutually_exclusive_group()
    mod.add_argument(
        "--exclude-terms",
        metavar="TERMS",
        help="comma-separated words the results must not show (default: the reference's "
        "drawing,clipart,illustration,cartoon,vector,painting; google-cse sends them as excludeTerms)",
    )
    mod.add_argument("--no-exclude-terms", action="store_true", help="no exclude terms")
    q.add_argument(
        "--photo-type",
        default="photo",
        help="image type for APIs that filter by it (google-cse imgType: photo, clipart, lineart, face, "
        "stock, animated); 'none' for no filter",
    )
    q.add_argument(
        "--no-or-terms",
        action="store_true",
        help="no or-terms (alternative names and the natural type that google-cse may match instead)",
    )
    q.add_argument(
        "--llm-endpoint", metavar="URL", help="OpenAI-compatible base URL (…/v1) for LLM attributes"
    )
    q.add_argument("--llm-model", metavar="NAME")
    q.add_argument("--llm-key-env", metavar="VAR", help="environment variable holding the API key")
    q.add_argument(
        "--llm-top", type=int, default=500, help="LLM attributes for the N entities with most sitelinks"
    )
    q.set_defaults(func=cmd_queries, beam=False)

    c = sub.add_parser("captions", help="show the weighted training texts of one entity")
    c.add_argument("--entities", required=True, metavar="FILE")
    c.add_argument("--entity", required=True, metavar="QID")
    c.add_argument("--query", help="an attribute-noun query text (default: the entity's noun query)")
    c.add_argument("--attribute", help="the attribute inside --query")
    c.set_defaults(func=cmd_captions, beam=False)
