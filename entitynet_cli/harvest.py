"""`entitynet harvest`: search, fetch and process images into shards (beam_pipelines/harvest.py)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from entitynet.errors import ConfigError, EntityNetError
from entitynet_cli.common import load_entities, next_command, on_interrupt, sibling, table


def harvest_summary(stats: dict, out: str | Path) -> str:
    dropped = (stats.get("modifiers") or {}).get("dropped") or {}
    note = (
        "search modifiers no backend of this harvest can express, dropped: "
        + ", ".join(f"{k.replace('_', ' ')} ({n:,} queries)" for k, n in dropped.items())
        + "\n"
        if dropped
        else ""
    )
    pb = stats.get("pool_balance")
    if pb:
        note += (
            f"pool balanced at t={pb['t']:,} before fetching: {pb['before']['entries']:,} entries "
            f"({pb['before']['head_entries']:,} above t), {stats['fetched']:,} of {stats['candidates']:,} "
            f"candidates fetched, {pb['fetches_saved']:,} fetches saved; per entry in pool_balance.tsv\n"
        )
    fetched = stats.get("fetched", stats["candidates"])
    reused = min(stats.get("reused_from_earlier_run", 0), fetched)
    got = f"downloaded {fetched - reused:,}" + (f", reused {reused:,} from an earlier run" if reused else "")
    return note + (
        f"{stats['candidates']:,} candidate images: {got}; {stats['written']:,} written "
        f"({stats['success_rate']:.1%} of fetched) in {stats['seconds']:.1f} s\n"
        f"outcomes:\n{table(stats['per_outcome'])}\n"
        f"{link_summary(stats.get('links') or {})}"
        f"{license_summary(stats)}"
        f"records per split:\n{table(stats['per_split'])}\n"
        f"wrote {out}/ (ArrayRecord shards + TFDS metadata, attribution/, candidates/, outcomes/, hosts/, "
        "harvest_stats.json, DATACARD.md)"
    )


def license_summary(stats: dict) -> str:
    """Records per licence and per source, one line each (empty when nothing was written)."""
    from entitynet.datacard import by_count

    per_license, per_source = (
        by_count(stats.get("per_license") or {}),
        by_count(stats.get("per_source") or {}),
    )
    if not per_license:
        return ""
    return (
        "records per licence: " + ", ".join(f"{k} {n:,}" for k, n in per_license.items()) + "\n"
        "records per source: " + ", ".join(f"{k} {n:,}" for k, n in per_source.items()) + "\n"
    )


def link_summary(links: dict) -> str:
    images = links.get("images", 0)
    if not images:
        return ""
    found, kept = links.get("links_found", 0), links.get("links_kept", 0)
    return (
        f"entity links: {found:,} found, {kept:,} kept ({found / images:.2f} -> {kept / images:.2f} per image; "
        f"{links.get('kept_alt_text', 0) / max(kept, 1):.0%} of kept named by the alt text, "
        f"{links.get('kept_identifier', 0) / max(kept, 1):.0%} by identifier); "
        f"{links.get('dropped_generic', 0):,} dropped on {links.get('generic_images', 0):,} generic images, "
        f"{links.get('dropped_contradicted', 0):,} contradicted by the alt text, {links.get('dropped_weak', 0):,} weak\n"
    )


def harvest_options(args, allow_loopback: bool = False):
    """The harvest's options (fetching, images, links, licences) from the flags `add_harvest_flags`
    made of their declarations; `allow_loopback`: the demo's own web is on 127.0.0.1."""
    from dataclasses import replace

    from entitynet.harvest import HarvestOptions
    from entitynet.options import build

    opts = build(HarvestOptions, args)
    if allow_loopback:
        address = replace(opts.fetch.address, allow_loopback=True)
        opts = replace(opts, fetch=replace(opts.fetch, address=address))
    return opts


def cmd_harvest(args, beam_args) -> int:
    from beam_pipelines import harvest as harvest_pipeline
    from entitynet.harvest import SearchSpec, empty_harvest
    from entitynet.options import declared, values

    # the pipeline gets the files' paths (its workers read them); the driver reads the entities
    # only for their labels (the data card)
    labels = {e.id: e.label for e in load_entities(args.entities)} if args.entities else {}
    spec = SearchSpec(
        **values(args, declared(SearchSpec)),
        backend=args.backend,
        url=args.searxng_url or args.api_url or "",
        entities_file=args.entities or "",
        endpoints=tuple(_endpoints(args.endpoint)),
        contact=args.contact or os.environ.get("ENTITYNET_CONTACT", ""),
        **backend_values(args),
    )
    on_interrupt(
        f"the images fetched so far are saved in {args.out.rstrip('/')} (its work units); the same "
        "command fetches only the rest"
    )
    stats = harvest_pipeline.run(
        args.queries, spec, harvest_options(args), args.out, beam_args, labels, entities=args.entities or ""
    )
    out = args.out.rstrip("/")
    print(harvest_summary(stats, out))
    empty = empty_harvest(stats, out)
    if empty:
        raise EntityNetError(empty)
    print(
        next_command(
            "curate",
            f"--shards {out}",
            f"--entities {args.entities or '<entities.jsonl>'}",
            f"--out {sibling(out, 'curated')}",
        )
    )
    return 0


def _endpoints(given) -> list[tuple[str, str]]:
    out = []
    for item in given or ():
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ConfigError(f"--endpoint {item!r}: write it as BACKEND=URL, e.g. gbif=https://api.gbif.org")
        out.append((name.strip(), url.strip()))
    return out


def add_harvest_flags(h: argparse.ArgumentParser) -> None:
    """The search's flags, and the harvest's, made from the declarations of its options
    (`HarvestOptions` and the fetching, image and link options nested in it)."""
    from entitynet.harvest import HarvestOptions, SearchSpec
    from entitynet.options import add_flags, declared

    add_flags(h, [o for o in declared(SearchSpec) if not o.field.startswith("balance_")])
    add_flags(h, declared(HarvestOptions))


def backend_summary() -> str:
    """The backends by how the harvest uses them, for --backend's help (from the registry)."""
    from entitynet.search import registry

    groups: dict[str, list[str]] = {}
    for b in registry.backends():
        groups.setdefault(b.group, []).append(b.name)
    return "; ".join(f"{', '.join(n)} ({registry.GROUPS[g]})" for g, n in groups.items())


def add_backend_options(h: argparse.ArgumentParser) -> None:
    """Each backend's own options, as its module declares them (`entitynet.search.registry`)."""
    from entitynet.options import add_flags
    from entitynet.search import registry

    declared = registry.options()
    add_flags(h, [o for o, _ in declared], {o.flag: f"{', '.join(users)}: " for o, users in declared})


def backend_values(args) -> dict:
    """The backends' options from the parsed flags: `SearchSpec` fields, and the options of
    backends that have no field (`SearchSpec.options`)."""
    from dataclasses import fields

    from entitynet.harvest import SearchSpec
    from entitynet.search import registry

    known = {f.name for f in fields(SearchSpec)}
    out: dict = {}
    extra = []
    for o, _ in registry.options():
        value = getattr(args, o.field)
        value = tuple(value or ()) if o.repeat else (o.default if value is None else value)
        if o.field in known:
            out[o.field] = value
        else:
            extra.append((o.field, value))
    return {**out, "options": tuple(extra)} if extra else out


def add_parser(sub) -> None:
    """The `harvest` subcommand."""
    h = sub.add_parser(
        "harvest",
        help="search, fetch and process images into shards",
        description="Search images for queries.jsonl, fetch them safely, process them and write ArrayRecord "
        "shards with TFDS metadata. Arguments after the known flags are passed to Apache Beam.",
    )
    h.add_argument("--queries", required=True, metavar="FILE")
    h.add_argument(
        "--backend",
        default="searxng",
        metavar="NAME[,NAME...]",
        help="where images come from, one or several comma-separated, merged into one dataset: "
        + backend_summary(),
    )
    h.add_argument("--searxng-url", metavar="URL", help="base URL of a SearXNG instance with JSON output")
    h.add_argument("--api-url", metavar="URL", help="with one backend: override its API URL")
    h.add_argument(
        "--endpoint",
        action="append",
        metavar="BACKEND=URL",
        help="override one backend's API URL (repeatable), e.g. gbif=http://127.0.0.1:8080",
    )
    h.add_argument(
        "--contact",
        metavar="EMAIL_OR_URL",
        help="who runs the harvest, sent in the User-Agent as Wikimedia, GBIF and iNaturalist ask "
        "(default: $ENTITYNET_CONTACT)",
    )
    add_backend_options(h)
    from entitynet.harvest import SearchSpec
    from entitynet.options import add_flags, declared

    add_flags(h, [o for o in declared(SearchSpec) if o.field.startswith("balance_")])
    h.add_argument(
        "--entities",
        metavar="FILE",
        help="entities.jsonl: every name of each entity for the alt-text evidence of entity links "
        "(without it, the noun and alias queries' texts), labels for the data card; needed by --backend commons",
    )
    h.add_argument("--out", required=True, metavar="DIR")
    add_harvest_flags(h)
    h.set_defaults(func=cmd_harvest, beam=True)
