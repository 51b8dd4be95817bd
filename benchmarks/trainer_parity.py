"""Benchmark: trainer parity. The same model trained by our trainer (`entitynet train`) and by
open_clip's own (`open_clip_train.main`, through tools/train_with_open_clip.py), both evaluated zero-shot
by our evaluator on the same export layout.

    .venv/bin/python benchmarks/trainer_parity.py                       # 3 seeds a side, 400 steps (about 21 minutes on 2 cores)
    .venv/bin/python benchmarks/trainer_parity.py --seeds 0 --steps 30  # a quick look
    .venv/bin/python benchmarks/trainer_parity.py --arms ours open_clip open_clip-our-aspect ours-fixed-text

Measured figures and what explains the top-5 gap: benchmarks/results-issue33-parity.md.

What is the same on both sides:
- data: the demo's curated set (demo-out/curated), train split, as a WebDataset directory
  (`entitynet data export --data demo-out/curated --format webdataset --text alt` when this
  installation has it, else written here in the same layout with each record's first alt
  text); ours reads the curated shards themselves with `--config.data.alt_text_chance=1.0`, so
  both train on alt texts only. Ours redraws among a record's alt texts each epoch (27% of the
  demo's records have more than one); the export fixes one (the `ours-fixed-text` arm trains ours
  on a copy of the data holding only the export's text).
- architecture: configs/tiny_cpu.py as `entitynet train` builds it (ViT 64 px, patch 8, width 64,
  embed 64, context 16, the curated tokenizer of 1,000 pieces); open_clip builds it from the
  export layout (`local-dir:`), with our SentencePiece tokenizer as its HFTokenizer (the same ids).
- initial weights: for each seed, our model's init of that seed, exported and loaded by both
  (`--config.init_from` for ours, `local-dir:` for open_clip); `--own-init` starts each from its
  own random init instead.
- batch 128, steps, AdamW (lr 2e-3, betas 0.9/0.98, eps 1e-6, weight decay 0.2 on the same 22
  matrices: neither decays gains, biases or the temperature), gradient clipping at global norm
  1.0, fp32; all read from the preset's config, not restated here.
- learning-rate schedule: linear warmup (20 steps) then cosine to 0 over the run (open_clip's
  `--lr-scheduler cosine`); ours is given `--config.optim.end_lr_ratio=0` to match (the preset
  ends at 5% of the peak, which open_clip's cosine cannot). The script prints how far the two
  schedules are apart step by step (open_clip's warmup is one step ahead of ours).
- crop: RandomResizedCrop of 0.4-1.0 of the area, bicubic (ours given `--config.data.resample=bicubic`,
  open_clip `--aug-cfg scale=(0.4, 1.0)`). The aspect ranges differ: ours 0.9-1.11, torchvision's
  3/4-4/3; the `open_clip-our-aspect` arm gives open_clip ours (timm's crop, `use_timm=True`).
- evaluation: `entitynet eval --imagefolder demo-out/evalset --templates openai` on each run's
  export directory (ours: `entitynet export`; open_clip's checkpoint converted by
  tools/train_with_open_clip.py), so both go through the identical code path.

What differs and stays: data order and shuffling (ours: a seeded global shuffle per epoch, batches
running across epochs; open_clip: shards in a seeded order, samples through a 5,000-sample buffer
seeded from the clock, so its runs are not repeatable, each pass over the data dropping its last
partial batch), the logit-scale cap (open_clip clamps the parameter to [0, ln 100] after each step,
ours caps it inside the loss), and the input pipelines' decoding (ours decodes JPEGs at a reduced
DCT scale before the resize).

Printed: per seed top-1/top-5 of every arm and each run's wall time (not asserted), mean ± std,
the paired difference by seed, and for each open_clip arm `trainer parity: ours X% ± s, open_clip
Y% ± s top-1 (N seeds), ratio R x; gap G pp vs spread S pp: within/beyond`, where the spread is
the larger of the two sides' standard deviations over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import json
import math
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
ENTITYNET = str(BIN / "entitynet")


def load_tool():
    """tools/train_with_open_clip.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(
        "entitynet_open_clip_train", ROOT / "tools" / "train_with_open_clip.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run(cmd: list[str], log: Path) -> float:
    """Run `cmd` in the repository root, output to `log`; its wall time; its log's tail on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if r.returncode:
        raise SystemExit(
            f"failed (exit {r.returncode}): {' '.join(cmd)}\n{log.read_text(errors='replace')[-3000:]}"
        )
    return time.perf_counter() - t0


# ---------------------------------------------------------------- data


def has_data_export() -> bool:
    r = subprocess.run([ENTITYNET, "data", "export", "--help"], capture_output=True, cwd=ROOT)
    return r.returncode == 0


def write_webdataset(curated: str, split: str, out: Path, per_shard: int = 1000) -> int:
    """img2dataset's layout from the curated shards (when `entitynet data export` is missing): NNNNN.tar
    with KEY.jpg, KEY.txt (the first alt text), KEY.json; sizes.json. Returns the sample count."""
    from entitynet.shards import iter_records

    out.mkdir(parents=True, exist_ok=True)
    sizes: dict[str, int] = {}
    tar = None

    def add(name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))

    n = 0
    for r in iter_records(curated, split):
        if not r.alt_texts:
            continue
        if n % per_shard == 0:
            if tar is not None:
                tar.close()
            shard = f"{n // per_shard:05d}.tar"
            tar, sizes[shard] = tarfile.open(out / shard, "w"), 0
        meta = {"key": r.key, "caption": r.alt_texts[0], "entity_ids": list(r.entity_ids), "url": r.url}
        add(f"{r.key}.jpg", r.jpeg)
        add(f"{r.key}.txt", r.alt_texts[0].encode())
        add(f"{r.key}.json", json.dumps(meta).encode())
        sizes[shard] += 1
        n += 1
    if tar is not None:
        tar.close()
    (out / "sizes.json").write_text(json.dumps(sizes, indent=1))
    return n


def export_data(curated: str, out: Path) -> tuple[str, int]:
    """The train split as a WebDataset directory: (how it was made, sample count)."""
    if out.exists():
        shutil.rmtree(out)
    if has_data_export():
        cmd = [ENTITYNET, "data", "export", "--data", curated, "--split", "train", "--format", "webdataset"]
        run([*cmd, "--text", "alt", "--seed", "0", "--out", str(out)], out.parent / "data-export.log")
        sizes = json.loads((out / "sizes.json").read_text())
        how = f"entitynet data export --format webdataset --text alt, {len(sizes)} shard(s)"
        return how, sum(int(v) for v in sizes.values())
    return "written by this benchmark (no `entitynet data export` here), first alt text", write_webdataset(
        curated, "train", out
    )


def fixed_text_copy(curated: str, wds: Path, out: Path) -> int:
    """A copy of `curated` whose train records carry one alt text, the one the WebDataset in `wds`
    gave them, so ours trains on exactly open_clip's texts (no redraw); returns how many records
    lost alt texts."""
    from entitynet.records import encode_image
    from entitynet.shards import read_shard, shard_paths, write_shard

    texts = {}
    for path in sorted(wds.glob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                if member.name.endswith(".txt"):
                    texts[member.name[: -len(".txt")]] = tar.extractfile(member).read().decode()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for p in Path(curated).iterdir():
        if p.is_file() and "-train." not in p.name:
            shutil.copy2(p, out / p.name)
    changed = 0
    for path in shard_paths(curated, "train"):
        records = []
        for r in read_shard(path):
            if len(r.alt_texts) > 1:
                changed += 1
            records.append(encode_image(dataclasses.replace(r, alt_texts=(texts[r.key],))))
        write_shard(out / Path(path).name, records)
    return changed


# ---------------------------------------------------------------- our config, init, schedule


def our_config(curated: str, overrides: list[str]):
    from train import config as config_lib

    return config_lib.load("tiny_cpu", overrides, data=curated)


def write_init(cfg, seed: int, out: Path) -> Path:
    """Our model's initial weights for `seed` (the preset built as `entitynet train` builds it) in
    open_clip's local-dir layout, which open_clip's trainer and ours (`init_from`) both load."""
    import jax
    from flax import nnx
    from safetensors.numpy import save_file

    from entitynet.text import tokenizer as tokenizers
    from entitynet.text.hf_tokenizer import write_hf_tokenizer
    from train import sharding
    from train.export import CONFIG, OUR_TOKENIZER, WEIGHTS, open_clip_config, preprocess_cfg
    from train.model import CLIP
    from train.open_clip_weights import to_open_clip
    from train.train import model_config

    tok = tokenizers.load(cfg.data.tokenizer)
    mcfg = model_config(cfg, tok)
    with jax.set_mesh(sharding.make_mesh({"data": -1})):
        model = CLIP(mcfg, rngs=nnx.Rngs(jax.random.key(seed)))
        weights = jax.device_get(to_open_clip(model, logit_bias=False))
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / WEIGHTS))
    model_cfg = open_clip_config(mcfg)
    write_hf_tokenizer(tok.model, mcfg.text.context_length, out)
    model_cfg["text_cfg"]["hf_tokenizer_name"] = out.name
    tokenizers.save(tok, out, OUR_TOKENIZER)
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg(mcfg.vision.image_size)}
    (out / CONFIG).write_text(json.dumps(config, indent=2))
    return out


def schedules(cfg, steps: int) -> tuple[list[float], list[float]]:
    """The learning rate each step 1..steps uses: ours (optax, at update count step - 1) and open_clip's
    cosine_lr (at step index step - 1), from the same config."""
    from open_clip_train.scheduler import cosine_lr

    from train.train import make_optimizer

    _, ours = make_optimizer(cfg)

    class Groups:
        param_groups = [{}]

    theirs = cosine_lr(Groups(), cfg.optim.lr, cfg.optim.warmup_steps, steps)
    return [float(ours(k)) for k in range(steps)], [float(theirs(k)) for k in range(steps)]


# ---------------------------------------------------------------- the two arms


def train_ours(curated: str, overrides: list[str], workdir: Path, export: Path, logs: Path) -> dict:
    if workdir.exists():
        shutil.rmtree(workdir)
    cmd = [ENTITYNET, "train", "--config", "tiny_cpu", "--data", curated, "--workdir", str(workdir)]
    wall = run(cmd + [f"--config.{o}" for o in overrides], logs / "train.log")
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    last = [r for r in rows if "loss" in r][-1]
    if export.exists():
        shutil.rmtree(export)
    export_wall = run(
        [ENTITYNET, "export", "--workdir", str(workdir), "--out", str(export)], logs / "export.log"
    )
    return {
        "wall_s": wall,
        "export_s": export_wall,
        "step": last["step"],
        "loss": last["loss"],
        "logit_scale": last["temperature"],
        "images_per_s": last.get("images_per_s"),
        "model": str(export),
    }


def train_open_clip(tool, wds: Path, init: Path, options, out: Path, own_init: bool) -> dict:
    r = tool.train(wds, init, out, options, init="random" if own_init else "weights", check=False)
    log = (out / "logs" / "open_clip" / "out.log").read_text(errors="replace")
    rates = [
        float(x.split("/s,")[0].split()[-1]) for x in log.splitlines() if "Train Epoch" in x and "/s," in x
    ]
    return {
        "wall_s": r["wall_s"],
        "step": (r["last"].get("samples") or 0) // options.batch_size,
        "loss": r["last"].get("loss"),
        "logit_scale": r["last"].get("logit_scale"),
        "images_per_s": rates[-1] if rates else None,
        "model": r["model"],
        "argv": r["argv"],
    }


def evaluate(model: str, evalset: str, templates: str, out: Path, logs: Path) -> dict:
    cmd = [ENTITYNET, "eval", "--workdir", model, "--imagefolder", evalset, "--templates", templates]
    wall = run([*cmd, "--out", str(out)], logs / "eval.log")
    z = json.loads((out / "results.json").read_text())["zero_shot"]
    return {"top1": z["fixed_templates"]["top1"], "top5": z["fixed_templates"]["top5"], "eval_s": wall}


# ---------------------------------------------------------------- report


def mean_std(xs: list[float]) -> tuple[float, float]:
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def verdict(ours: list[float], theirs: list[float], name: str = "open_clip") -> str:
    """The parity line (top-1 fractions in, percentage points out); `name`: the open_clip arm."""
    (mo, so), (mt, st) = mean_std([100 * x for x in ours]), mean_std([100 * x for x in theirs])
    gap, spread = mo - mt, max(so, st)
    ratio = mo / mt if mt else math.inf
    where = "within" if abs(gap) <= spread else "beyond"
    return (
        f"trainer parity: ours {mo:.2f}% ± {so:.2f}, {name} {mt:.2f}% ± {st:.2f} top-1 ({len(ours)} seeds), "
        f"ratio {ratio:.2f}x; gap {gap:+.2f} pp vs spread {spread:.2f} pp: {where}"
    )


ARMS = ("ours", "open_clip", "ours-fixed-text", "open_clip-our-aspect")


def report(rows: list[dict], arms: list[str]) -> list[str]:
    """The table per seed, mean ± std per arm, paired differences against open_clip, the parity line."""
    out = ["| seed | " + " | ".join(f"{a} top-1 | {a} top-5 | {a} train s" for a in arms) + " |"]
    out.append("|---|" + "---:|---:|---:|" * len(arms))
    for r in rows:
        cells = " | ".join(f"{r[a]['top1']:.2%} | {r[a]['top5']:.2%} | {r[a]['wall_s']:.0f}" for a in arms)
        out.append(f"| {r['seed']} | {cells} |")
    for k in ("top1", "top5"):
        parts = []
        for a in arms:
            m, sd = mean_std([100 * r[a][k] for r in rows])
            parts.append(f"{a} {m:.2f}% ± {sd:.2f}")
        if "ours" in arms:
            for a in arms:
                if a != "ours":
                    md, sd = mean_std([100 * (r["ours"][k] - r[a][k]) for r in rows])
                    parts.append(f"paired Δ ours - {a} {md:+.2f} ± {sd:.2f} pp")
        out.append(f"{k}: " + "; ".join(parts))
    walls = [f"{a} {mean_std([r[a]['wall_s'] for r in rows])[0]:.0f} s" for a in arms]
    out.append("train wall per run (mean): " + ", ".join(walls) + " (not asserted)")
    for a in arms:
        if "ours" in arms and a.startswith("open_clip"):
            out.append(verdict([r["ours"]["top1"] for r in rows], [r[a]["top1"] for r in rows], a))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=400, help="training steps a run (the demo's 400)")
    ap.add_argument(
        "--arms",
        nargs="+",
        choices=ARMS,
        default=["ours", "open_clip"],
        help="ours-fixed-text: ours on a copy of the data whose records carry only the WebDataset's text; "
        "open_clip-our-aspect: open_clip with our crop's aspect range (through timm's transforms)",
    )
    ap.add_argument("--curated", default="demo-out/curated")
    ap.add_argument("--entities", default="demo-out/kg/entities.jsonl", help="the curation's entities.jsonl")
    ap.add_argument("--evalset", default="demo-out/evalset")
    ap.add_argument("--templates", default="openai")
    ap.add_argument(
        "--work", default="/tmp/entitynet-trainer-parity", help="runs, exports and logs (replaced)"
    )
    ap.add_argument("--workers", type=int, default=0, help="open_clip's data-loader processes")
    ap.add_argument(
        "--end-lr-ratio", type=float, default=0.0, help="ours' cosine floor (open_clip's cosine ends at 0)"
    )
    ap.add_argument("--resample", default="bicubic", help="ours' crop resize (open_clip's is bicubic)")
    ap.add_argument("--own-init", action="store_true", help="each side from its own random init")
    args = ap.parse_args()
    from train.input_pipeline import InputConfig

    t_start = time.perf_counter()
    tool = load_tool()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    arms = [a for a in ARMS if a in args.arms]

    how, n = export_data(args.curated, work / "wds")
    print(
        f"data: {args.curated} train split, {n:,} samples as WebDataset in {work / 'wds'} ({how})", flush=True
    )
    data = {"ours": args.curated, "open_clip": str(work / "wds")}
    if "ours-fixed-text" in arms:
        data["ours-fixed-text"] = str(work / "curated-fixed-text")
        changed = fixed_text_copy(args.curated, work / "wds", work / "curated-fixed-text")
        print(
            f"ours-fixed-text: {data['ours-fixed-text']}, the WebDataset's text only ({changed:,} records changed)"
        )

    base = [
        f"total_steps={args.steps}",
        f"data.entities={args.entities}",
        "data.alt_text_chance=1.0",
        f"optim.end_lr_ratio={args.end_lr_ratio}",
        f"data.resample={args.resample}",
        "eval_every=0",
        "progress=false",
    ]
    cfg = our_config(args.curated, base)
    lr_ours, lr_theirs = schedules(cfg, args.steps)
    w = cfg.optim.warmup_steps
    diff = [abs(a - b) for a, b in zip(lr_ours, lr_theirs, strict=True)]
    after = max(diff[w:], default=0.0)
    print(
        f"schedule: peak {cfg.optim.lr:g}, warmup {w}, cosine to {cfg.optim.lr * args.end_lr_ratio:g} (ours) / 0 "
        f"(open_clip); largest step-by-step difference {max(diff):.3g} in warmup (open_clip one step ahead), "
        f"{after:.3g} after it",
        flush=True,
    )

    rows = []
    for seed in args.seeds:
        d = work / f"seed{seed}"
        if d.exists():
            shutil.rmtree(d)
        init = write_init(our_config(args.curated, [*base, f"seed={seed}"]), seed, d / "init")
        overrides = [*base, f"seed={seed}"] + ([] if args.own_init else [f"init_from={init}"])
        o = tool.TrainerOptions(
            steps=args.steps,
            batch_size=cfg.batch_size,
            lr=cfg.optim.lr,
            wd=cfg.optim.weight_decay,
            warmup=cfg.optim.warmup_steps,
            beta1=cfg.optim.b1,
            beta2=cfg.optim.b2,
            eps=cfg.optim.eps,
            grad_clip_norm=cfg.optim.clip_norm,
            crop_scale=tuple(cfg.data.crop_scale),
            seed=seed,
            workers=args.workers,
        )
        row: dict = {"seed": seed}
        for arm in arms:
            a = d / arm
            if arm.startswith("open_clip"):
                if arm == "open_clip-our-aspect":
                    o = dataclasses.replace(o, crop_ratio=InputConfig.crop_ratio)
                r = train_open_clip(tool, work / "wds", init, o, a, args.own_init)
                if seed == args.seeds[0]:
                    print(f"{arm} ran: {tool.shell(r['argv'])}", flush=True)
            else:
                r = train_ours(data[arm], overrides, a / "run", a / "export", a / "logs")
            r.update(evaluate(r["model"], args.evalset, args.templates, a / "eval", a / "logs"))
            row[arm] = r
            print(
                f"seed {seed} {arm:20s}: top-1 {r['top1']:.2%} top-5 {r['top5']:.2%}; {r['step']} steps, "
                f"final loss {r['loss']:.4f}, logit scale {r['logit_scale']:.2f}; train {r['wall_s']:.0f} s "
                f"({r['images_per_s'] or 0:.0f} img/s at the end), eval {r['eval_s']:.0f} s",
                flush=True,
            )
        rows.append(row)
        (d / "result.json").write_text(json.dumps(row, indent=2))

    print(f"\n{len(rows)} seeds, {args.steps} steps, batch {cfg.batch_size}, {args.templates} templates:")
    lines = report(rows, arms)
    total = time.perf_counter() - t_start
    (work / "parity.json").write_text(json.dumps({"rows": rows, "report": lines, "wall_s": total}, indent=2))
    print("\n".join(lines))
    print(f"total wall {total / 60:.1f} min; runs, exports and logs in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
