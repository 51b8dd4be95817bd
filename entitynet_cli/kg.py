"""`entitynet kg expand`: the knowledge graph to entities.jsonl (beam_pipelines/expand_kg.py);
`entitynet kg classify`: which entities can be photographed (entitynet/kg/classify.py)."""

from __future__ import annotations

import math
from pathlib import Path

from entitynet.errors import ConfigError
from entitynet.storage import STORE
from entitynet_cli.common import next_command, sibling, table


def _kg_source(args):
    from entitynet.kg.client import KGSource

    return KGSource(
        endpoint=args.endpoint,
        kg_files=tuple(args.kg_file or ()),
        contact=args.contact,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        total_timeout=args.total_timeout,
        max_response_bytes=_mib(args.max_response_mb),
        max_retries=args.retries,
        requests_per_second=args.requests_per_second,
    )


def _mib(value: float) -> int:
    """--max-response-mb in bytes (what is not a finite number becomes 0, which is refused)."""
    return int(value * (1 << 20)) if math.isfinite(value) else 0


def expand_summary(stats: dict, source: str, min_sitelinks: int, out: str | Path) -> str:
    below = stats["traversed"] - stats["selected"]
    return (
        f"expanded {stats['entities']:,} entities from {source} in {stats['seconds']:.1f} s "
        f"({stats['traversed']:,} traversed, {stats['products']:,} fruits, {below:,} below {min_sitelinks} "
        f"sitelinks, depth {stats['max_depth_reached']}; walked by {_walked(stats)})\n"
        f"entities per natural type:\n{table(stats['per_natural_type'])}\n"
        f"wrote {STORE.join(out, 'entities.jsonl')}"
    )


def _walked(stats: dict) -> str:
    how = f"{stats.get('strategy', '?')}, {stats.get('traversal_queries', 0):,} queries"
    if stats.get("closure_fallback_reason"):
        how += "; the closure query did not answer"
    return how


def cmd_kg_expand(args, beam_args: list[str]) -> int:
    from beam_pipelines import expand_kg
    from entitynet.kg.expand import ExpandConfig

    source = _kg_source(args)
    cfg = ExpandConfig(
        mode=args.mode,
        roots=tuple(args.root or ()),
        min_sitelinks=args.min_sitelinks,
        languages=tuple(args.language or ("en",)),
        natural_types=tuple(args.natural_type) if args.natural_type else None,
        max_depth=args.max_depth,
        batch_size=args.batch_size,
    )
    stats = expand_kg.run(source, cfg, args.out, beam_args, args.strategy, args.closure_timeout)
    print(expand_summary(stats, source.describe(), cfg.min_sitelinks, args.out))
    entities = STORE.join(args.out, "entities.jsonl")
    graph = (
        f"--endpoint {args.endpoint}" if args.endpoint else " ".join(f"--kg-file {f}" for f in args.kg_file)
    )
    print(
        "then leave out what cannot be photographed (the KG rule decides; add --llm-endpoint URL "
        "--llm-model NAME to ask an LLM):\n"
        + next_command(
            "kg classify", f"--entities {entities}", graph, f"--out {sibling(args.out, 'kg-classified')}"
        )
    )
    return 0


def classify_summary(st: dict, left_out: list, out: str) -> str:
    """What `kg classify` decided, the entities it left out (the first 12) and where it wrote."""
    by = ", ".join(f"{n:,} by {who}" for who, n in st["decided_by"].items())
    asked = ""
    if st["requests"] or st["cached_answers"]:
        asked = (
            f"; {st['requests']:,} requests to the model, {st['cached_answers']:,} answers from the cache, "
            f"{st['invalid_answers']:,} invalid, {st['refused']:,} refused"
        )
    lines = [
        f"classified {st['entities']:,} entities in {st['seconds']:.1f} s ({by}{asked}): "
        f"{st['kept']:,} kept, {st['left_out']:,} left out as not visual"
        + (
            f", {st['natural_types_changed']:,} natural types chosen by the model"
            if st["natural_types_changed"]
            else ""
        )
    ]
    for e in left_out[:12]:
        lines.append(f"  left out  {e.id:<11} {e.label[:30]:<30}  {e.visual_by}: {e.visual_reason}")
    if st["left_out"] > 12:
        lines.append(f"  ... and {st['left_out'] - 12:,} more in {STORE.join(out, 'left_out.jsonl')}")
    lines.append(f"wrote {STORE.join(out, 'entities.jsonl')} (kept) and {STORE.join(out, 'left_out.jsonl')}")
    return "\n".join(lines)


def cmd_kg_classify(args, _extra) -> int:
    import sys

    from entitynet.kg import classify
    from entitynet.locks import claimed_output
    from entitynet.progress import Progress
    from entitynet_cli.common import load_entities

    cfg = classify.ClassifyConfig(
        hops=args.hops,
        candidates=args.candidates,
        batch_size=args.llm_batch_size,
        concurrency=args.llm_concurrency,
        requests_per_second=args.llm_requests_per_second,
        tries=args.llm_tries,
    ).check()
    llm = None
    if args.llm_endpoint:
        from entitynet.text.llm import LLMClient

        if not args.llm_model:
            raise ConfigError("--llm-endpoint needs --llm-model NAME (the model the server serves)")
        llm = LLMClient(
            args.llm_endpoint,
            args.llm_model,
            api_key_env=args.llm_key_env,
            temperature=0.0,
            max_retries=args.llm_retries,
            timeout=args.llm_timeout,
            total_timeout=args.llm_total_timeout,
        )
    elif args.llm_model:
        raise ConfigError("--llm-model needs --llm-endpoint URL (an OpenAI-compatible server)")
    from entitynet.records import Entity, read_jsonl

    if next(read_jsonl(args.entities, Entity), None) is None:
        load_entities(args.entities)  # its one line: the file holds no entities
    entities = read_jsonl(args.entities, Entity)  # read as they are classified, never held whole
    source = _kg_source(args)
    progress = Progress("classify", unit="entities", made_unit="", stream=sys.stderr)
    with claimed_output(args.out, "kg classify", (classify.CONFIG,)):
        try:
            st = classify.run(
                entities,
                args.entities,
                source.open(),
                source.describe(),
                args.out,
                cfg,
                llm,
                endpoint=args.llm_endpoint or "",
                progress=lambda n: progress.add(done=n - progress.done),
            )
        finally:
            progress.close()
    left = classify.read_left_out(STORE.join(args.out, classify.ENTITIES), limit=12)
    print(classify_summary(st, left, args.out))
    print(
        next_command(
            "queries",
            f"--entities {STORE.join(args.out, classify.ENTITIES)}",
            f"--out {sibling(args.out, 'queries')}",
        )
    )
    return 0


def add_parser(sub) -> None:
    """The `kg expand` and `kg classify` subcommands."""
    kg = sub.add_parser("kg", help="knowledge-graph stage").add_subparsers(dest="kg_command", required=True)
    ex = kg.add_parser(
        "expand",
        help="expand roots into entities.jsonl",
        description="Expand a knowledge graph into entities.jsonl. Arguments after the known flags "
        "(e.g. --runner=DataflowRunner ...) are passed to Apache Beam.",
    )
    add_source_flags(ex)
    ex.add_argument("--mode", choices=("living", "world"), default="living")
    ex.add_argument(
        "--root", action="append", metavar="QID", help="root entity (repeatable; default by mode)"
    )
    ex.add_argument("--min-sitelinks", type=int, default=5)
    ex.add_argument("--language", action="append", metavar="LANG", help="label languages in order")
    ex.add_argument(
        "--natural-type", action="append", metavar="QID", help="natural-type candidates (repeatable)"
    )
    ex.add_argument("--max-depth", type=int, default=64, help="levels below the roots")
    ex.add_argument("--batch-size", type=int, default=200, help="ids per VALUES query")
    ex.add_argument(
        "--strategy",
        choices=("auto", "closure", "levels"),
        default="auto",
        help="how the walk learns the graph: one closure query, batched queries level by level, or "
        "auto : the closure query, and level by level if the endpoint times out or refuses it",
    )
    ex.add_argument(
        "--closure-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="auto: how long the closure query may take before the walk goes level by level",
    )
    add_connection_flags(ex)
    ex.add_argument("--out", required=True, metavar="DIR")
    ex.set_defaults(func=cmd_kg_expand, beam=True)

    cl = kg.add_parser(
        "classify",
        help="natural type and visuality of each entity (an LLM, or the KG rule); leaves out what "
        "cannot be photographed",
        description="Decide for each entity of an expansion whether photos can show it, and (with an LLM) "
        "its natural type among its top super-types. Without --llm-endpoint a deterministic rule from the "
        "graph decides (world mode: under physical object, or has an image and is not under abstract "
        "object; living mode: a taxon or a fruit). Writes OUT/entities.jsonl (the kept entities, each "
        "with its decision), OUT/left_out.jsonl (the others, with why) and OUT/classify_stats.json; the "
        "model's answers are cached in OUT/llm_cache, so a re-run asks nothing twice.",
    )
    cl.add_argument("--entities", required=True, metavar="FILE", help="the entities.jsonl of `kg expand`")
    add_source_flags(cl)
    add_connection_flags(cl)
    cl.add_argument("--hops", type=int, default=3, help="natural-type candidates: super-types within N steps")
    cl.add_argument("--candidates", type=int, default=10, help="... the N with the most sitelinks")
    cl.add_argument("--llm-endpoint", metavar="URL", help="OpenAI-compatible base URL (…/v1)")
    cl.add_argument("--llm-model", metavar="NAME", help="the model the server serves")
    cl.add_argument("--llm-key-env", metavar="VAR", help="environment variable holding the API key")
    cl.add_argument("--llm-batch-size", type=int, default=10, help="entities per request")
    cl.add_argument("--llm-concurrency", type=int, default=4, help="requests in flight")
    cl.add_argument("--llm-requests-per-second", type=float, help="request rate (default: no limit)")
    cl.add_argument(
        "--llm-tries",
        type=int,
        default=3,
        help="requests per batch before its entities fall back to the KG rule",
    )
    cl.add_argument(
        "--llm-retries",
        type=int,
        default=3,
        help="retries of a request that failed (HTTP 429/5xx, no answer)",
    )
    cl.add_argument("--llm-timeout", type=float, default=120.0, help="seconds per socket read")
    cl.add_argument(
        "--llm-total-timeout",
        type=float,
        default=600.0,
        help="the most one request may take, retries included",
    )
    cl.add_argument("--out", required=True, metavar="DIR")
    cl.set_defaults(func=cmd_kg_classify, beam=False)


def add_source_flags(parser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--kg-file", action="append", metavar="PATH", help=".ttl, .nt or .nt.gz file (repeatable)"
    )
    src.add_argument("--endpoint", metavar="URL", help="SPARQL endpoint URL, or a preset: wikidata, qlever")


def add_connection_flags(parser) -> None:
    parser.add_argument(
        "--contact", metavar="EMAIL_OR_URL", help="contact for the User-Agent (Wikimedia policy)"
    )
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    parser.add_argument("--read-timeout", type=float, default=120.0, help="seconds per socket read")
    parser.add_argument(
        "--total-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="the most one query may take, answer and retries included (a trickling endpoint is cut off)",
    )
    parser.add_argument(
        "--max-response-mb",
        type=float,
        default=256.0,
        metavar="MB",
        help="the largest answer one query may get (MiB); a larger one is refused as it arrives",
    )
    parser.add_argument("--retries", type=int, default=5)
    parser.add_argument(
        "--requests-per-second", type=float, help="request rate per worker (presets are polite)"
    )
