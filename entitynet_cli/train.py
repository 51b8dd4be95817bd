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
