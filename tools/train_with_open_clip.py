"""Train with open_clip's own trainer (`open_clip_train.main`) on a WebDataset directory, starting from
an exported model directory, and turn its checkpoint into an open_clip `local-dir:` directory that
`entitynet eval` (train/export.py `load_exported`) reads.

    .venv/bin/python tools/train_with_open_clip.py --data WDS_DIR --model EXPORT_DIR --steps 5 --batch-size 32 --out DIR
    .venv/bin/entitynet eval --workdir DIR/model --imagefolder demo-out/evalset --templates openai

WDS_DIR is img2dataset's layout (`00000.tar`, ... with KEY.jpg, KEY.txt, KEY.json; `sizes.json`
beside them): `entitynet data export --format webdataset`. EXPORT_DIR is an `entitynet export`
(open_clip_config.json, open_clip_model.safetensors, tokenizer.json): it gives the architecture,
the tokenizer (open_clip's HFTokenizer over our SentencePiece model) and, unless `--init random`,
the initial weights. The trainer runs in a subprocess (torch never enters the calling process), on
the CPU in fp32; the command it is given is `trainer_argv()`:

    python -m open_clip_train.main --model local-dir:EXPORT_DIR --dataset-type webdataset
        --train-data 'WDS_DIR/{00000..00002}.tar' --train-num-samples STEPS*BATCH --epochs 1
        --batch-size BATCH --lr 2e-3 --wd 0.2 --beta1 0.9 --beta2 0.98 --eps 1e-6 --warmup 20
        --lr-scheduler cosine --grad-clip-norm 1.0 --aug-cfg 'scale=(0.4, 1.0)' --workers 0
        --device cpu --precision fp32 --logs DIR/logs --name open_clip --save-frequency 1 --seed 0
        --log-every-n-steps 10

Steps: open_clip counts epochs of `--train-num-samples`, `ceil(num_samples / batch)` batches each,
and its WebDataset loader repeats passes over the shards until an epoch has them all
(`with_epoch`), each pass dropping its last partial batch. One epoch of STEPS*BATCH samples is
therefore exactly STEPS steps, and the cosine schedule spans exactly those steps.

Gotchas with open_clip 3.3.0: webdataset 0.2.96 and later end every shard with an end-of-file
sample `{}` that open_clip_train's `group_by_keys_nothrow` does not expect (KeyError: 'fname', on
any tar: open_clip issue #935, webdataset issue #384), so the project's interop extras pin
webdataset below 0.2.96 and the trainer runs as it is, `python -m open_clip_train.main`. `local-dir:` loads the directory's weights and ignores
`--pretrained`; with `--init random` the directory is staged without weights (open_clip's own
random init, seeded by --seed). The context length (16) and the tokenizer come from the export's
text_cfg (`hf_tokenizer_name` makes open_clip load tokenizer.json from that directory; it gives
the same ids as ours on every alt text of the demo). The training crop is always bicubic in
open_clip (ours is bilinear by default), and its aspect range is torchvision's 3/4-4/3 unless it
goes through timm: `--crop-ratio 0.9 1.11` (ours) here passes `--aug-cfg ... use_timm=True
ratio=(0.9, 1.11)` (benchmarks/results-issue33-parity.md measured the difference). open_clip
needs at least as many shards as `--workers` (the demo's export is one shard: `--workers 0`,
loading in the training process).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = "open_clip_model.safetensors"
CONFIG = "open_clip_config.json"
# what a model directory carries beside its weights (open_clip's and ours); others stay behind
MODEL_FILES = (
    CONFIG,
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "entitynet_tokenizer.json",
    "bpe_simple_vocab_16e6.txt.gz",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


@dataclasses.dataclass(frozen=True)
class TrainerOptions:
    """open_clip trainer settings; the defaults are configs/tiny_cpu.py's (train/config.py)."""

    steps: int = 400
    batch_size: int = 128
    lr: float = 2e-3
    wd: float = 0.2
    warmup: int = 20
    beta1: float = 0.9
    beta2: float = 0.98
    eps: float = 1e-6
    grad_clip_norm: float | None = 1.0
    crop_scale: tuple[float, float] | None = (0.4, 1.0)  # None: open_clip's default (0.9, 1.0)
    # the crop's aspect range; None: torchvision's (3/4, 4/3). open_clip takes it only through timm's
    # transforms (use_timm=True: the same crop, bicubic, with no flip, jitter or erasing)
    crop_ratio: tuple[float, float] | None = None
    seed: int = 0
    log_every: int = 10
    precision: str = "fp32"
    device: str = "cpu"
    workers: int = 0


def shards_of(data: str | Path) -> tuple[str, list[Path], int | None]:
    """(the --train-data pattern, the tar files, the sample count from sizes.json or None) of a
    WebDataset directory. Numbered shards of one width become one brace range, others are joined
    with `::`."""
    d = Path(data)
    tars = sorted(d.glob("*.tar"))
    if not tars:
        raise SystemExit(f"{d} holds no .tar shards; give a WebDataset directory (img2dataset's layout)")
    stems = [t.stem for t in tars]
    width = len(stems[0])
    numbered = all(s.isdigit() and len(s) == width for s in stems)
    if numbered and [int(s) for s in stems] == list(range(int(stems[0]), int(stems[0]) + len(stems))):
        pattern = str(d / (f"{{{stems[0]}..{stems[-1]}}}.tar" if len(stems) > 1 else f"{stems[0]}.tar"))
    else:
        pattern = "::".join(str(t) for t in tars)
    count = None
    sizes = d / "sizes.json"
    if sizes.is_file():
        known = json.loads(sizes.read_text())
        count = sum(int(known.get(t.name, 0)) for t in tars)
    return pattern, tars, count


def trainer_argv(
    data: str | Path, model_dir: str | Path, logs: str | Path, name: str, o: TrainerOptions
) -> list[str]:
    """open_clip_train.main's arguments for `o.steps` steps of `o.batch_size` (one epoch of
    steps * batch samples: see the module docstring)."""
    pattern, tars, _ = shards_of(data)
    if o.workers > len(tars):
        raise SystemExit(f"{data} has {len(tars)} shard(s): open_clip's loader needs at least one per worker")
    argv = [
        "--model",
        f"local-dir:{Path(model_dir).resolve()}",
        "--dataset-type",
        "webdataset",
        "--train-data",
        pattern,
        "--train-num-samples",
        str(o.steps * o.batch_size),
        "--epochs",
        "1",
        "--batch-size",
        str(o.batch_size),
        "--lr",
        repr(o.lr),
        "--wd",
        repr(o.wd),
        "--beta1",
        repr(o.beta1),
        "--beta2",
        repr(o.beta2),
        "--eps",
        repr(o.eps),
        "--warmup",
        str(o.warmup),
        "--lr-scheduler",
        "cosine",
    ]
    if o.grad_clip_norm is not None:
        argv += ["--grad-clip-norm", repr(o.grad_clip_norm)]
    aug = []
    if o.crop_scale is not None:
        aug.append(f"scale=({o.crop_scale[0]!r}, {o.crop_scale[1]!r})")
    if o.crop_ratio is not None:
        aug += ["use_timm=True", f"ratio=({o.crop_ratio[0]!r}, {o.crop_ratio[1]!r})"]
    if aug:
        argv += ["--aug-cfg", *aug]
    argv += [
        "--workers",
        str(o.workers),
        "--device",
        o.device,
        "--precision",
        o.precision,
        "--logs",
        str(Path(logs).resolve()),
        "--name",
        name,
        "--save-frequency",
        "1",
        "--seed",
        str(o.seed),
        "--log-every-n-steps",
        str(o.log_every),
    ]
    return argv


def stage_model(model_dir: str | Path, dest: str | Path, weights: bool) -> Path:
    """A copy of a model directory's config and tokenizer files in `dest`, with its weights when
    `weights` (open_clip's `local-dir:` then loads them) or without (a random init)."""
    src, dest = Path(model_dir), Path(dest)
    if not (src / CONFIG).is_file():
        raise SystemExit(f"{src} has no {CONFIG}; give an `entitynet export` directory")
    dest.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)
    if weights:
        shutil.copy2(src / WEIGHTS, dest / WEIGHTS)
    return dest


def shell(argv: list[str]) -> str:
    """`argv` as one shell-quoted line."""
    import shlex

    return " ".join(shlex.quote(a) for a in argv)


def run_trainer(argv: list[str], log_file: Path, python: str = sys.executable) -> float:
    """Run open_clip's trainer (`python -m open_clip_train.main`, unmodified) with `argv` in a subprocess, its output in
    `log_file`; returns the wall time. A failure ends with the log's tail."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log_file, "w") as f:
        r = subprocess.run(
            [python, "-m", "open_clip_train.main", *argv], stdout=f, stderr=subprocess.STDOUT, cwd=ROOT
        )
    wall = time.perf_counter() - t0
    if r.returncode:
        tail = log_file.read_text(errors="replace")[-4000:]
        raise SystemExit(f"open_clip's trainer failed (exit {r.returncode}); {log_file} ends:\n{tail}")
    return wall


def checkpoint_in(run_dir: Path) -> Path:
    """The newest checkpoint open_clip wrote under LOGS/NAME (epoch_latest.pt, else the highest epoch_K.pt)."""
    ckpts = run_dir / "checkpoints"
    latest = ckpts / "epoch_latest.pt"
    if latest.is_file():
        return latest
    found = sorted(ckpts.glob("epoch_*.pt"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    if not found:
        raise SystemExit(f"open_clip's trainer wrote no checkpoint in {ckpts}")
    return found[-1]


def last_log(run_dir: Path) -> dict:
    """Step, loss, logit scale and learning rate of the last `Train Epoch` line of open_clip's out.log."""
    lines = [x for x in (run_dir / "out.log").read_text(errors="replace").splitlines() if "Train Epoch" in x]
    if not lines:
        return {}
    line = lines[-1]

    def num(pattern: str) -> float | None:
        m = re.search(pattern, line)
        return float(m.group(1)) if m else None

    done = re.search(r"\[\s*(\d+)/(\d+)", line)
    return {
        "samples": int(done.group(1)) if done else None,
        "loss": num(r"Contrastive_loss: ([\d.]+)"),
        "logit_scale": num(r"Logit Scale: ([\d.]+)"),
        "lr": num(r"LR: ([\d.e-]+)"),
    }


def convert(
    checkpoint: str | Path, model_dir: str | Path, out: str | Path, python: str = sys.executable
) -> Path:
    """open_clip's training checkpoint ({"state_dict": ...}, maybe "module." prefixes) as an
    open_clip local-dir directory `out`: `model_dir`'s config and tokenizer, the trained weights as
    open_clip_model.safetensors. Runs in a subprocess (torch reads the checkpoint)."""
    cmd = [python, str(Path(__file__).resolve()), "_convert", str(checkpoint), str(model_dir), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"converting {checkpoint} failed:\n{r.stderr[-3000:]}")
    return Path(out)


def _convert_here(checkpoint: str, model_dir: str, out: str) -> None:
    import torch
    from safetensors.torch import save_file

    raw = torch.load(checkpoint, map_location="cpu", weights_only=True)
    sd = raw.get("state_dict", raw) if isinstance(raw, dict) else raw
    sd = {k.removeprefix("module."): v.detach().float().contiguous() for k, v in sd.items()}
    dest = Path(out)
    if dest.exists():
        shutil.rmtree(dest)
    stage_model(model_dir, dest, weights=False)
    save_file(sd, str(dest / WEIGHTS))
    epoch = raw.get("epoch") if isinstance(raw, dict) else None
    provenance = {"checkpoint": str(Path(checkpoint).resolve()), "epoch": epoch, "tensors": len(sd)}
    (dest / "open_clip_train.json").write_text(json.dumps(provenance, indent=2) + "\n")


def check_loadable(model_dir: Path) -> str:
    """`load_exported` on the converted directory, in a subprocess (JAX): its model summary line."""
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from train.export import load_exported\n"
        f"model, cfg, tok = load_exported({str(model_dir)!r})\n"
        "print(f'embed {cfg.embed_dim}, image {cfg.vision.image_size} px, context {cfg.text.context_length}, "
        "vocab {cfg.text.vocab_size}')\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode:
        raise SystemExit(f"load_exported refused {model_dir}:\n{r.stderr[-3000:]}")
    return r.stdout.strip().splitlines()[-1]


def train(
    data: str | Path,
    model: str | Path,
    out: str | Path,
    options: TrainerOptions,
    init: str = "weights",
    python: str = sys.executable,
    check: bool = True,
) -> dict:
    """Train with open_clip's trainer and convert the result: OUT/logs/open_clip (its logs and
    checkpoint), OUT/model (the converted local-dir directory). `init`: "weights" (the model
    directory's weights) or "random". Returns the argv, the paths, the wall time and the last log line."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not (out / "trainer.log").is_file():
            raise SystemExit(
                f"--out {out} holds files this tool did not write; give a new or empty directory"
            )
        shutil.rmtree(out)  # an earlier run of this tool: replaced
    staged = stage_model(model, out / "init", weights=init == "weights")
    logs, name = out / "logs", "open_clip"
    argv = trainer_argv(data, staged, logs, name, options)
    wall = run_trainer(argv, out / "trainer.log", python)
    ckpt = checkpoint_in(logs / name)
    converted = convert(ckpt, staged, out / "model", python)
    result = {
        "argv": [python, "-m", "open_clip_train.main", *argv],
        "checkpoint": str(ckpt),
        "model": str(converted),
        "wall_s": wall,
        "last": last_log(logs / name),
    }
    if check:
        result["loaded"] = check_loadable(converted)
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_convert"]:
        _convert_here(*argv[1:4])
        return 0
    d = TrainerOptions()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a WebDataset directory (00000.tar, ..., sizes.json)")
    ap.add_argument(
        "--model", required=True, help="an `entitynet export` directory (architecture, tokenizer, init)"
    )
    ap.add_argument(
        "--out",
        required=True,
        help="new or empty, or an earlier --out of this tool (replaced): logs/, model/",
    )
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--wd", type=float, default=d.wd)
    ap.add_argument("--warmup", type=int, default=d.warmup)
    ap.add_argument("--beta1", type=float, default=d.beta1)
    ap.add_argument("--beta2", type=float, default=d.beta2)
    ap.add_argument("--eps", type=float, default=d.eps)
    ap.add_argument("--grad-clip-norm", type=float, default=d.grad_clip_norm, help="0: none")
    ap.add_argument("--crop-scale", type=float, nargs=2, default=d.crop_scale, metavar=("LOW", "HIGH"))
    ap.add_argument(
        "--crop-ratio", type=float, nargs=2, metavar=("LOW", "HIGH"), help="aspect range (through timm)"
    )
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--log-every", type=int, default=d.log_every)
    ap.add_argument("--workers", type=int, default=d.workers, help="open_clip's data-loader processes")
    ap.add_argument("--init", choices=("weights", "random"), default="weights")
    ap.add_argument("--python", default=sys.executable, help="the interpreter that has open_clip_torch")
    ap.add_argument("--no-check", action="store_true", help="skip loading the result with load_exported")
    args = ap.parse_args(argv)
    options = TrainerOptions(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        wd=args.wd,
        warmup=args.warmup,
        beta1=args.beta1,
        beta2=args.beta2,
        eps=args.eps,
        grad_clip_norm=args.grad_clip_norm or None,
        crop_scale=tuple(args.crop_scale),
        crop_ratio=tuple(args.crop_ratio) if args.crop_ratio else None,
        seed=args.seed,
        log_every=args.log_every,
        workers=args.workers,
    )
    r = train(args.data, args.model, args.out, options, args.init, args.python, check=not args.no_check)
    print(f"ran ({r['wall_s']:.1f} s): {shell(r['argv'])}")
    last = r["last"]
    if last:
        print(
            f"last step: {last['samples']:,} samples, loss {last['loss']}, logit scale {last['logit_scale']}, "
            f"lr {last['lr']}"
        )
    print(f"checkpoint: {r['checkpoint']}")
    print(f"converted model: {r['model']}" + (f" (load_exported: {r['loaded']})" if "loaded" in r else ""))
    print(f"evaluate: .venv/bin/entitynet eval --workdir {r['model']} --imagefolder DIR --templates openai")
    return 0


if __name__ == "__main__":
    sys.exit(main())
