"""`entitynet curate`: balance, deduplicate and decontaminate shards (beam_pipelines/curate.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from entitynet_cli.common import log, next_command, on_interrupt, sibling, table
from entitynet_cli.harvest import license_summary


def curate_summary(stats: dict, out: str | Path) -> str:
    b, a = stats["balance"]["before"], stats["balance"]["after"]
    read, kept = sum(stats["read"].values()), sum(stats["kept"].values())
    contamination = "".join(
        f"\n  {name}: {n:,} harvested images within the threshold of its {stats['eval_sets'][name]['images']:,}"
        for name, n in stats["contamination"].items()
    )
    amended = "".join(
        f"amended by {name}: {n.get('records', 0):,} records kept with {n.get('dropped', 0):,} texts dropped\n"
        for name, n in (stats.get("amended") or {}).items()
    )
    return (
        f"{read:,} records read, {kept:,} kept in {stats['seconds']:.1f} s "
        f"(per split: {', '.join(f'{s} {n:,}' for s, n in stats['kept'].items())})\n"
        f"removed:\n{table(stats['removed']) if stats['removed'] else '  nothing'}\n"
        f"{amended}"
        f"balancing at t={stats['balance']['t']:,}: {b['entries']:,} entries, {b['head_entries']:,} above t; "
        f"matches {b['matches']:,} -> {a['matches']:,}\n"
        f"  {stats['balance']['explained']}\n"
        f"{stats['unimaged']['summary']}\n"
        f"decontamination:{contamination or ' no evaluation set given'}\n"
        f"{license_summary(stats)}"
        f"wrote {out}/ ({'shards + TFDS metadata, attribution/' if stats['output'] == 'shards' else 'subset.npz'}, "
        "removed/ (why each removed record went), entry_counts.tsv, unimaged_entities.tsv, curation_stats.json, DATACARD.md)"
    )


def curate_options(args):
    """The curation's options from the flags `add_curate_flags` made."""
    from entitynet import options
    from entitynet.curation import filters
    from entitynet.curation.plan import CurateOptions

    return CurateOptions.of(
        **options.values(args, options.declared(CurateOptions)), **options.values(args, filters.options())
    )


def load_eval_sets(specs, tfds_data_dir):
    from entitynet.curation import evalsets

    found = []
    for spec in specs or ():
        ev = evalsets.load(spec, tfds_data_dir=tfds_data_dir)
        log.info("evaluation set %s: %d images hashed (%d unreadable)", spec, len(ev.hashes), ev.unreadable)
        found.append(ev)
    return found


def cmd_curate(args, beam_args) -> int:
    from beam_pipelines import curate

    opts = curate_options(args)
    eval_sets = load_eval_sets(args.decontaminate, args.tfds_data_dir)
    on_interrupt(f"the curation did not finish and published nothing new in {args.out.rstrip('/')}")
    # the path: the pipeline's workers read entities.jsonl themselves
    stats = curate.run(args.shards, args.entities, eval_sets, opts, args.out, beam_args)
    out = args.out.rstrip("/")
    print(curate_summary(stats, out))
    if stats["output"] == "shards":
        print(next_command("tokenizer train", f"--shards {out}", f"--entities {args.entities}"))
    else:  # a subset: the tokenizer learns from the harvest's shards, and goes beside the subset
        tokenize = (f"--shards {args.shards.rstrip('/')}", f"--entities {args.entities}", f"--out {out}")
        print(next_command("tokenizer train", *tokenize))
    print(next_command("train", "--config tiny_cpu", f"--data {out}", f"--workdir {sibling(out, 'run')}"))
    return 0


def add_curate_flags(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The curation's flags, made from the declarations of its options (`CurateOptions`) and of
    its filters' (`entitynet.curation.filters`); `skip`: fields another group of flags sets."""
    from entitynet import options
    from entitynet.curation import filters
    from entitynet.curation.plan import CurateOptions

    own = [o for o in options.declared(CurateOptions) if o.field not in skip]
    options.add_flags(p, own)
    options.add_flags(p.add_argument_group("filters (on `entitynet embed`'s embeddings)"), filters.options())


def add_parser(sub) -> None:
    """The `curate` subcommand."""
    cu = sub.add_parser(
        "curate",
        help="balance, deduplicate and decontaminate harvest shards",
        description="MetaCLIP balancing over the knowledge graph's entities, near-duplicate merging and "
        "evaluation-set decontamination of harvest shards. Arguments after the known flags are passed to "
        "Apache Beam.",
    )
    cu.add_argument("--shards", required=True, metavar="DIR", help="a harvest output directory")
    cu.add_argument("--entities", required=True, metavar="FILE", help="the entities.jsonl of the harvest")
    cu.add_argument(
        "--decontaminate",
        action="append",
        metavar="PATH_OR_TFDS",
        help="evaluation set: ImageFolder dir, TFDS dataset dir, or tfds:NAME[:SPLIT] (repeatable)",
    )
    cu.add_argument("--tfds-data-dir", metavar="DIR", help="where tfds:NAME datasets are prepared")
    cu.add_argument("--out", required=True, metavar="DIR")
    add_curate_flags(cu)
    cu.set_defaults(func=cmd_curate, beam=True)
