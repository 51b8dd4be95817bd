"""`entitynet kg expand`: the knowledge graph to entities.jsonl (beam_pipelines/expand_kg.py)."""

from __future__ import annotations

from pathlib import Path

from entitynet_cli.common import table


def _kg_source(args):
    from entitynet.kg.client import KGSource

    return KGSource(
        endpoint=args.endpoint,
        kg_files=tuple(args.kg_file or ()),
        contact=args.contact,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        max_retries=args.retries,
        requests_per_second=args.requests_per_second,
    )


def expand_summary(stats: dict, source: str, min_sitelinks: int, out: Path) -> str:
    below = stats["traversed"] - stats["selected"]
    return (
        f"expanded {stats['entities']:,} entities from {source} in {stats['seconds']:.1f} s "
        f"({stats['traversed']:,} traversed, {stats['products']:,} fruits, {below:,} below {min_sitelinks} "
        f"sitelinks, depth {stats['max_depth_reached']}; walked by {_walked(stats)})\n"
        f"entities per natural type:\n{table(stats['per_natural_type'])}\n"
        f"wrote {out / 'entities.jsonl'}"
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
    print(expand_summary(stats, source.describe(), cfg.min_sitelinks, Path(args.out)))
    return 0
