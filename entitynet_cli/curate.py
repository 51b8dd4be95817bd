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
    return (
        f"{read:,} records read, {kept:,} kept in {stats['seconds']:.1f} s "
        f"(per split: {', '.join(f'{s} {n:,}' for s, n in stats['kept'].items())})\n"
        f"removed:\n{table(stats['removed']) if stats['removed'] else '  nothing'}\n"
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
    from entitynet.curation.plan import CurateOptions

    return CurateOptions(
        t=args.t,
        seed=args.seed,
        near_dup_threshold=None if args.no_near_dup else args.near_dup_threshold,
        decontam_threshold=args.decontam_threshold,
        subset_roots=tuple(args.subset_root or ()),
        balance_splits=tuple(args.balance_split or ("train",)),
        output=args.output,
        num_shards=args.num_shards,
        embeddings=args.embeddings or "",
        clip_score_min=args.clip_score_min,
        clip_score_top=args.clip_score_top,
        semdedup_threshold=args.semdedup_threshold,
        semdedup_clusters=args.semdedup_clusters,
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


def add_curate_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--t", type=int, default=20_000, help="MetaCLIP's per-entry threshold")
    p.add_argument("--seed", type=int, default=0, help="seed of the balancing draws")
    p.add_argument(
        "--near-dup-threshold",
        type=int,
        default=4,
        metavar="BITS",
        help="Hamming distance of near-duplicates",
    )
    p.add_argument("--no-near-dup", action="store_true", help="do not merge near-duplicates")
    p.add_argument(
        "--decontam-threshold", type=int, default=4, metavar="BITS", help="Hamming distance to an eval image"
    )
    p.add_argument(
        "--subset-root",
        action="append",
        metavar="QID",
        help="keep records with an entity below this root (repeatable), e.g. Q729 Q756",
    )
    p.add_argument(
        "--balance-split", action="append", metavar="SPLIT", help="splits to balance (default: train)"
    )
    p.add_argument("--output", choices=("shards", "subset"), default="shards")
    p.add_argument(
        "--embeddings",
        metavar="DIR",
        help="an `entitynet embed` output of the input shards: the context of the model filters",
    )
    p.add_argument(
        "--clip-score-min",
        type=float,
        metavar="COSINE",
        help="remove a record whose image matches none of its texts (alt texts, KG captions) this well "
        "(DataComp's CLIP score; removal reason clip_score)",
    )
    p.add_argument(
        "--clip-score-top",
        type=float,
        metavar="FRACTION",
        help="keep only this fraction of the records, those with the best CLIP scores (DataComp's top 30%%: 0.3)",
    )
    p.add_argument(
        "--semdedup-threshold",
        type=float,
        metavar="COSINE",
        help="semantic deduplication: of records whose image embeddings are this close, keep one "
        "(the largest image, then the smallest key; removal reason semantic_duplicate)",
    )
    p.add_argument(
        "--semdedup-clusters",
        type=int,
        default=0,
        help="k-means clusters (0: about the square root of the records)",
    )


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
    cu.add_argument("--num-shards", type=int, default=4, help="shards per split of the output")
    cu.add_argument("--out", required=True, metavar="DIR")
    add_curate_flags(cu)
    cu.set_defaults(func=cmd_curate, beam=True)
