"""`entitynet data export` / `entitynet data import`: a dataset to and from the field's formats
(WebDataset in img2dataset's layout, Parquet with image bytes); beam_pipelines/data_export.py and
data_import.py. (`entitynet export` is the model's export for open_clip.)"""

from __future__ import annotations

import shlex

from entitynet_cli.common import next_command, on_interrupt, sibling, table
from entitynet_cli.harvest import license_summary


def open_clip_command(stats: dict, model: str = "") -> str:
    """The open_clip training command that reads a WebDataset export: with `model` (an `entitynet
    export` as `local-dir:DIR`: its architecture, tokenizer and weights), a few epochs on the CPU;
    else a ViT-B-32 from scratch on GPUs."""
    data = f"--dataset-type webdataset --train-data {shlex.quote(stats['train_data'])} "
    data += f"--train-num-samples {stats['records']}"
    if model:
        return (
            f"python -m open_clip_train.main {data} --model {shlex.quote(model)} --batch-size 64 --epochs 2 "
            "--lr 1e-4 --warmup 10 --workers 0 --device cpu --precision fp32 --logs runs/open_clip"
        )
    workers = min(4, stats["shards"])  # open_clip wants at least as many shards as loader processes
    return (
        f"python -m open_clip_train.main {data} --model ViT-B-32 --batch-size 256 --epochs 32 "
        f"--workers {workers}"
    )


def export_summary(stats: dict, out: str, model: str = "") -> str:
    texts = ", ".join(f"{k} {n:,}" for k, n in stats["text_sources"].items()) or "none"
    lines = [
        f"exported {stats['records']:,} records of the {stats['split']} split of {stats['data']} in "
        f"{stats['seconds']:.1f} s: {stats['shards']} {stats['format']} shard(s), {stats['bytes'] / 1e6:,.1f} MB "
        f"({stats['resumed_shards']} written by an earlier run)",
        f"texts ({stats['text']}): {texts}"
        + (f"; {stats['no_text']:,} records without any text left out" if stats["no_text"] else ""),
    ]
    if stats["format"] == "webdataset":
        lines.append(
            f"wrote {out}/ (NNNNN.tar + .parquet + _stats.json per shard, sizes.json, export_stats.json)"
        )
        lines.append(
            f"train with open_clip (open_clip_torch, webdataset<0.2.96): {open_clip_command(stats, model)}"
        )
    else:
        lines.append(
            f"wrote {out}/ (data/*.parquet with the image bytes, README.md dataset card, export_stats.json)"
        )
        lines.append(f'read with datasets: datasets.load_dataset("{out}", split="{stats["split"]}")')
    return "\n".join(lines)


def cmd_export(args, beam_args) -> int:
    from beam_pipelines import data_export
    from entitynet.interchange.export import ExportOptions
    from entitynet.options import build

    opts = build(ExportOptions, args)
    out = args.out.rstrip("/")
    on_interrupt(
        f"the shards written whole are kept in {out} (a re-run with the same options goes on from them)"
    )
    stats = data_export.run(args.data, args.out, opts, args.entities or "", beam_args)
    print(export_summary(stats, out))
    return 0


def import_summary(stats: dict, out: str, queries: str, entities: str) -> str:
    failed = {k: v for k, v in stats["per_outcome"].items() if k != "written"}
    lines = [
        f"read {stats['samples']:,} samples from {len(stats['inputs'])} file(s) in {stats['seconds']:.1f} s: "
        f"{stats['restored']:,} restored as exported, {stats['matched']:,} matched to entities by their texts; "
        f"{stats['records']:,} records written for {stats['entities']:,} entities",
        "left out:\n" + (table(failed) if failed else "  nothing"),
    ]
    if stats["unreadable_files"]:
        lines.append(
            f"{stats['unreadable_files']} file(s) could not be read to their end: see {out}/outcomes/"
        )
    text = "\n".join(lines) + "\n" + license_summary(stats)
    text += f"wrote {out}/ (shards + TFDS metadata, attribution/, outcomes/, import_stats.json)\n"
    curated = sibling(out, "curated")
    return text + next_command(
        "curate", f"--shards {out}", f"--entities {entities or 'ENTITIES.jsonl'}", f"--out {curated}"
    )


def cmd_import(args, beam_args) -> int:
    from beam_pipelines import data_import
    from entitynet.interchange.foreign import ImportOptions
    from entitynet.options import build

    opts = build(ImportOptions, args)
    out = args.out.rstrip("/")
    on_interrupt(
        f"the import did not finish: {out} is a complete dataset again once the same command has run to its end"
    )
    stats = data_import.run(args.input, args.queries, args.entities or "", opts, args.out, beam_args)
    print(import_summary(stats, out, args.queries, args.entities or ""))
    return 0


def add_parser(sub) -> None:
    """The `data export` and `data import` subcommands."""
    from entitynet.interchange.export import ExportOptions
    from entitynet.interchange.foreign import ImportOptions
    from entitynet.options import add_flags, declared

    data = sub.add_parser("data", help="a dataset to and from WebDataset / Parquet").add_subparsers(
        dest="data_command", required=True
    )
    ex = data.add_parser(
        "export",
        help="write a harvest or curation as WebDataset (img2dataset's layout) or Parquet with image bytes",
        description="Export one split of a harvest or a curation (a subset applied) for open_clip, "
        "webdataset, img2dataset-style readers or Hugging Face datasets. Arguments after the known flags "
        "are passed to Apache Beam. (The model's export for open_clip is `entitynet export`.)",
    )
    ex.add_argument("--data", required=True, metavar="DIR", help="a curate (or harvest) output directory")
    ex.add_argument(
        "--entities",
        metavar="FILE",
        help="entities.jsonl for the KG captions and entity names (default: the one the curation read)",
    )
    ex.add_argument("--out", required=True, metavar="DIR", help="local directory or gs:// / s3:// path")
    add_flags(ex, declared(ExportOptions))
    ex.set_defaults(func=cmd_export, beam=True)

    im = data.add_parser(
        "import",
        help="read WebDataset tars or Parquet with image bytes as a harvest (no download)",
        description="Make harvest shards of samples you already have (img2dataset, DataComp or LAION "
        "tars, Parquet with image bytes, our own exports): each sample matched to the entities by its "
        "texts, its image processed as a fetched one, then ready for `entitynet curate`. Arguments after "
        "the known flags are passed to Apache Beam.",
    )
    im.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="PATH",
        help="a .tar or .parquet file, a glob or a brace range (DIR/{00000..00099}.tar); repeatable",
    )
    im.add_argument("--queries", required=True, metavar="FILE", help="queries.jsonl: the names matched")
    im.add_argument("--entities", metavar="FILE", help="entities.jsonl: names for the entity links' evidence")
    im.add_argument("--out", required=True, metavar="DIR")
    add_flags(im, declared(ImportOptions))
    im.set_defaults(func=cmd_import, beam=True)
