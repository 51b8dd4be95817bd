"""`entitynet tokenizer train`, `train`, `eval` and `export`: the trainer's commands (train/)."""

from __future__ import annotations

import contextlib
import os

from entitynet.errors import ConfigError
from entitynet.text.tokenizer import train_tokenizer
from entitynet_cli.common import compilation_cache, load_entities, next_command, on_interrupt, sibling


def cmd_tokenizer_train(args, _) -> int:
    entities = load_entities(args.entities)
    path, n = train_tokenizer(args.shards, entities, args.vocab_size, args.out)
    print(
        f"SentencePiece tokenizer ({n['vocab_size']:,} pieces) from {n['alt_texts']:,} alt texts and "
        f"{n['kg_captions']:,} KG captions: {path}"
    )
    data = (args.out or args.shards).rstrip("/")  # where tokenizer.json went
    run = f"--workdir {sibling(data, 'run')}"
    if os.path.exists(os.path.join(data, "curation_config.json")):  # a curated directory
        print(next_command("train", "--config tiny_cpu", f"--data {data}", run))
    else:
        given = (f"--config.data.shards={args.shards}", f"--config.data.tokenizer={path}")
        print(
            next_command("train", "--config tiny_cpu", run, *given, f"--config.data.entities={args.entities}")
        )
    return 0


def cmd_train(args, overrides) -> int:
    from train import config as config_lib
    from train.train import summary, train

    compilation_cache()

    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        raise ConfigError(f"unrecognized arguments: {' '.join(bad)} (overrides look like --config.key=value)")
    cfg = config_lib.load(args.config, overrides, data=args.data or "")
    on_interrupt(lambda: saved_steps(args.workdir))
    print(summary(train(cfg, args.workdir), args.workdir))
    print(next_command("eval", f"--workdir {args.workdir}", "--heldout"))
    return 0


def saved_steps(workdir: str) -> str:
    """What an interrupted training keeps: its latest checkpoint."""
    folder = os.path.join(workdir, "checkpoints")
    steps = [int(n) for n in os.listdir(folder) if n.isdigit()] if os.path.isdir(folder) else []
    step = max(steps, default=None)
    if "://" in workdir:
        return f"the checkpoints saved in {workdir} are kept; the same command resumes from the latest"
    if step is None:
        return f"no checkpoint was saved yet in {workdir}"
    return f"the checkpoint of step {step:,} in {workdir} is kept; the same command resumes from it"


def cmd_eval(args, _) -> int:
    """Runs and exports in a bucket are evaluated in local copies (`train.workdir.Mirror`); the
    results go back into the bucket (the run's eval/ folder, or a bucket --out)."""
    from entitynet.storage import is_remote, staged_dir
    from train.evaluate import run_from_args, summary
    from train.workdir import reader_copy

    compilation_cache()
    mirrors = [reader_copy(w) if is_remote(w) else None for w in args.workdir]
    shown = {}  # local copy -> the bucket path it stands for, in what is printed
    for i, m in enumerate(mirrors):
        if m is not None:
            args.label = args.label or [w.rstrip("/").rsplit("/", 1)[-1] for w in args.workdir]
            args.workdir[i] = m.pull()
            shown[m.local] = m.remote
    with contextlib.ExitStack() as stack:
        if args.out and is_remote(args.out):
            local_out = stack.enter_context(staged_dir(args.out, prefix="entitynet-eval-"))
            shown[local_out], args.out = args.out, local_out
        try:
            lines = summary(run_from_args(args))
            for m in mirrors:
                if m is not None:
                    m.push()  # the results, into the run's eval/ in the bucket
        finally:
            for m in mirrors:
                if m is not None:
                    m.drop()
    for line in lines:
        for local, remote in shown.items():
            line = line.replace(local, remote)
        print(line)
    if len(args.workdir) == 1:
        run = args.workdir[0].rstrip("/")
        run = shown.get(run, run)
        print(next_command("export", f"--workdir {run}", f"--out {sibling(run, 'export')}"))
    return 0


def cmd_export(args, _) -> int:
    """A run in a bucket is exported from a local copy; a bucket --out is written locally, then uploaded."""
    from entitynet.storage import is_remote
    from train.workdir import reader_copy

    if is_remote(args.workdir):
        mirror = reader_copy(args.workdir)
        try:
            return _export(args, mirror.pull())
        finally:
            mirror.drop()
    return _export(args, args.workdir)


def _export(args, workdir: str) -> int:
    from entitynet.storage import is_remote, staged_dir
    from train.export import export_open_clip, export_summary

    if not is_remote(args.out):
        print(export_summary(export_open_clip(workdir, args.out, args.repo_id, args.license)))
        return 0
    with staged_dir(args.out, prefix="entitynet-export-") as local:
        staged = os.path.join(local, args.out.rstrip("/").rsplit("/", 1)[-1])
        text = export_summary(export_open_clip(workdir, staged, args.repo_id, args.license))
        for name in os.listdir(staged):  # the export's files, at the top of --out
            os.replace(os.path.join(staged, name), os.path.join(local, name))
        os.rmdir(staged)
    name = args.out.rstrip("/").rsplit("/", 1)[-1]
    head, _, snippet = text.partition("load it with open_clip:")
    copy = "gcloud storage cp -r" if args.out.startswith("gs://") else "aws s3 cp --recursive"
    print(head.replace(staged, args.out).replace(str(workdir), args.workdir), end="")
    print(
        f"load it with open_clip: copy it down first (`{copy} {args.out} {name}`), then{snippet.replace(staged, name)}"
    )
    return 0


def add_parser(sub) -> None:
    """The `tokenizer train`, `train`, `eval` and `export` subcommands."""
    tk = sub.add_parser("tokenizer", help="text tokenizer").add_subparsers(dest="tok_command", required=True)
    tt = tk.add_parser("train", help="train a SentencePiece model on a harvest's texts")
    tt.add_argument("--shards", required=True, metavar="DIR", help="harvest or curation output")
    tt.add_argument("--entities", required=True, metavar="FILE", help="entities.jsonl (for KG captions)")
    tt.add_argument("--vocab-size", type=int, default=8000)
    tt.add_argument("--out", metavar="DIR", help="where to save tokenizer.json (default: next to the shards)")
    tt.set_defaults(func=cmd_tokenizer_train, beam=False)

    tr = sub.add_parser(
        "train",
        help="train a CLIP from a config",
        description="Train (or resume) a CLIP in a workdir. Config fields are overridden with "
        "--config.key=value after the known flags.",
    )
    tr.add_argument(
        "--config",
        required=True,
        metavar="NAME|FILE[:ARG]",
        help="a shipped config by name (tiny_cpu, small_data, vit_b32_entitynet, vit_b16_livingthings) "
        "or a config file of your own, e.g. configs/tiny_cpu.py:siglip",
    )
    tr.add_argument("--workdir", required=True, metavar="DIR")
    tr.add_argument(
        "--data",
        metavar="DIR",
        help="train on this curated directory: its shards, its tokenizer.json and the entities.jsonl "
        "it was curated with (each overridable with --config.data.*)",
    )
    tr.set_defaults(func=cmd_train, beam=True, extra="config overrides")

    ev = sub.add_parser(
        "eval",
        help="zero-shot classification and retrieval of a run (or an exported model)",
        description="Evaluate a run's latest checkpoint on an ImageFolder, a prepared TFDS dataset or "
        "a held-out split of its shards; writes results.json, report.md and plots. Several --workdir: "
        "a side-by-side comparison in --out.",
    )
    from train.eval_flags import add_arguments

    add_arguments(ev)
    ev.set_defaults(func=cmd_eval, beam=False)

    ex2 = sub.add_parser(
        "export",
        help="export a run's latest checkpoint for open_clip (local-dir: and hf-hub: layout, model card)",
    )
    ex2.add_argument("--workdir", required=True, metavar="DIR")
    ex2.add_argument("--format", choices=("open_clip",), default="open_clip")
    ex2.add_argument("--out", required=True, metavar="DIR")
    ex2.add_argument(
        "--repo-id",
        metavar="ORG/NAME",
        help="the Hub repository it will be published as (names its tokenizer; default: the --out name)",
    )
    ex2.add_argument("--license", default="other", help="the licence the model card declares for the weights")
    ex2.set_defaults(func=cmd_export, beam=False)

    em = sub.add_parser(
        "embed",
        help="image and text embeddings of every record of a dataset, for search and curation",
        description="Embed every record of a harvest or curation (its image, its alt texts and the KG "
        "caption of each linked entity) with a trained run or an open_clip-layout directory; one file "
        "per shard, resumed by a re-run. With --index, also a search index of the image embeddings "
        "(OUT/index/) for `entitynet query` and the explorer's nearest neighbours; an index already "
        "there is built again whenever a shard is embedded anew.",
    )
    em.add_argument("--shards", required=True, metavar="DIR", help="a harvest's or curation's --out")
    em.add_argument("--model", required=True, metavar="DIR", help="a training workdir, or an export")
    em.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="where the embeddings go (local): a new or empty directory, or an earlier `embed` output "
        "of the same model (only the shards not embedded yet are)",
    )
    em.add_argument("--weights", choices=("auto", "ema", "raw"), default="auto", help="a run's weights")
    em.add_argument(
        "--entities", metavar="FILE", help="entities.jsonl for the KG captions (default: the curation's)"
    )
    em.add_argument("--tokenizer", metavar="FILE", help="default: the model's own")
    em.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="images and texts per encoder call"
    )
    from entitynet.embedindex import FLAT_MAX, KINDS

    em.add_argument(
        "--index",
        nargs="?",
        const="auto",
        choices=KINDS,
        metavar="KIND",
        help=f"then build the search index: auto (the default KIND: flat, exact, up to {FLAT_MAX:,} "
        "records; HNSW, approximate, above), flat or hnsw",
    )
    em.set_defaults(func=cmd_embed, beam=False)

    qu = sub.add_parser(
        "query",
        help="the records nearest a text or an image, from `entitynet embed`'s files",
        description="Search an `entitynet embed` output by a text or by an image file (cosine over the "
        "image embeddings): through its index when it has one (`entitynet embed ... --index`; a stale "
        "one is built again first), else by scoring every embedding. Prints score, split, record key, "
        "URL and first alt text, best first.",
    )
    qu.add_argument("text", nargs="?", help="what to search for")
    qu.add_argument("--image", metavar="FILE", help="search by this image instead of a text")
    qu.add_argument("--embeddings", required=True, metavar="DIR", help="an `entitynet embed` --out")
    qu.add_argument("--model", metavar="DIR", help="default: the model the embeddings were made with")
    qu.add_argument("-k", type=int, default=10, help="how many records")
    qu.add_argument(
        "--exact", action="store_true", help="score every embedding, even where an index is there"
    )
    qu.set_defaults(func=cmd_query, beam=False)


def cmd_embed(args, _) -> int:
    from train.embed import run

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    compilation_cache()
    out = args.out.rstrip("/")
    on_interrupt(f"the shards embedded so far are saved in {out}; the same command embeds only the rest")
    stats = run(
        args.shards, args.model, out, args.weights, args.batch_size, args.entities, args.tokenizer, args.index
    )
    n = stats["shards_embedded"]
    got = f"embedded {n:,} shard{'' if n == 1 else 's'}" + (
        f", reused {stats['shards_reused']:,} from an earlier run" if stats["shards_reused"] else ""
    )
    print(
        f"{stats['records']:,} records and {stats['texts']:,} texts of {args.shards} ({got}) with "
        f"{stats['model']} ({stats['dim']}-d, {stats['image_size']} px) in {stats['seconds']:.1f} s\n"
        f"wrote {out}/ (one .npz per shard, embed_config.json)"
    )
    if stats["index"]:
        ix = stats["index"]
        state = "built" if ix["built"] else "up to date"
        print(f"index: {ix['kind']} over {ix['records']:,} records, {state}: {out}/index/")
    print(next_command("query", '"a text"', f"--embeddings {out}"))
    return 0


def cmd_query(args, _) -> int:
    from train.embed import query

    if args.k < 1:
        raise ConfigError(f"-k must be at least 1, got {args.k}")
    compilation_cache()
    hits = query(args.embeddings, args.text, args.image, args.k, args.model, exact=args.exact)
    for h in hits:
        print(f"{h['score']:.4f}  {h['split']:<10}  {h['key']}  {h['url']}  {h['text']}")
    return 0
