"""`entitynet kg expand`: the knowledge graph to entities.jsonl (beam_pipelines/expand_kg.py)."""

from __future__ import annotations

import math
from pathlib import Path

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
    print(next_command("queries", f"--entities {entities}", f"--out {sibling(args.out, 'queries')}"))
    return 0


def add_parser(sub) -> None:
    """The `kg expand` subcommand."""
    kg = sub.add_parser("kg", help="knowledge-graph stage").add_subparsers(dest="kg_command", required=True)
    ex = kg.add_parser(
        "expand",
        help="expand roots into entities.jsonl",
        description="Expand a knowledge graph into entities.jsonl. Arguments after the known flags "
        "(e.g. --runner=DataflowRunner ...) are passed to Apache Beam.",
    )
    src = ex.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--kg-file", action="append", metavar="PATH", help=".ttl, .nt or .nt.gz file (repeatable)"
    )
    src.add_argument("--endpoint", metavar="URL", help="SPARQL endpoint URL, or a preset: wikidata, qlever")
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
    ex.add_argument("--contact", metavar="EMAIL_OR_URL", help="contact for the User-Agent (Wikimedia policy)")
    ex.add_argument("--connect-timeout", type=float, default=10.0)
    ex.add_argument("--read-timeout", type=float, default=120.0, help="seconds per socket read")
    ex.add_argument(
        "--total-timeout",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="the most one query may take, answer and retries included (a trickling endpoint is cut off)",
    )
    ex.add_argument(
        "--max-response-mb",
        type=float,
        default=256.0,
        metavar="MB",
        help="the largest answer one query may get (MiB); a larger one is refused as it arrives",
    )
    ex.add_argument("--retries", type=int, default=5)
    ex.add_argument("--requests-per-second", type=float, help="request rate per worker (presets are polite)")
    ex.add_argument("--out", required=True, metavar="DIR")
    ex.set_defaults(func=cmd_kg_expand, beam=True)
