"""Benchmark: our training step (JAX/Flax NNX, jax.jit) against open_clip's (PyTorch) on this CPU.

    .venv/bin/python benchmarks/train_vs_open_clip.py
    .venv/bin/python benchmarks/train_vs_open_clip.py --models tiny --steps 30

Same architecture (our presets have open_clip's layout and sizes: `tiny`, and `S/32` at a small
image size), same batch, same CLIP loss, AdamW, on random inputs. open_clip and a CPU-capable torch
live in the benchmark's own environment (benchmarks/.venv-open-clip, made when absent). Also the
input pipeline's images/s (Grain over ArrayRecord shards: decode, crop, tokenise) against what the
step consumes. Printed: images/s for both steps and their ratio, and the loader/step ratio.
Targets (issue 5): at least 1.0x open_clip; the loader at least 2x the step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VENV = ROOT / "benchmarks" / ".venv-open-clip"

# name -> (our preset overrides, image size, batch)
MODELS = {
    "tiny": ({}, 32, 64),
    "S/32": ({}, 96, 32),
}

TORCH_STEP = r"""
import json, sys, time, torch, open_clip
from open_clip.model import CLIP, CLIPVisionCfg, CLIPTextCfg
a = json.loads(sys.argv[1])
torch.set_num_threads(a["threads"]); torch.manual_seed(0)
v, t = a["vision"], a["text"]
model = CLIP(a["embed_dim"],
             CLIPVisionCfg(layers=v["layers"], width=v["width"], head_width=v["width"] // v["heads"],
                           patch_size=v["patch_size"], image_size=v["image_size"], mlp_ratio=v["mlp_ratio"]),
             CLIPTextCfg(context_length=t["context_length"], vocab_size=t["vocab_size"], width=t["width"],
                         heads=t["heads"], layers=t["layers"], mlp_ratio=t["mlp_ratio"]))
loss_fn = open_clip.ClipLoss()
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2)
b = a["batch"]
images = torch.randn(b, 3, v["image_size"], v["image_size"])
tokens = torch.randint(4, t["vocab_size"] - 1, (b, t["context_length"]))
tokens[:, -1] = t["vocab_size"] - 1
def step():
    opt.zero_grad(set_to_none=True)
    zi, zt, scale = model(images, tokens)
    loss = loss_fn(zi, zt, scale)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return float(loss)
for _ in range(a["warmup"]): step()
t0 = time.perf_counter()
for _ in range(a["steps"]): step()
dt = time.perf_counter() - t0
print(json.dumps({"images_per_s": a["steps"] * b / dt, "params": sum(p.numel() for p in model.parameters())}))
"""


def ensure_open_clip() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        print("installing open_clip and torch into benchmarks/.venv-open-clip (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "open_clip_torch"], check=True)
    return python


def ours(name: str, steps: int, warmup: int) -> tuple[float, dict]:
    import jax
    import optax

    from train import sharding
    from train.model import preset
    from train.train import create_state, make_steps

    overrides, size, batch = MODELS[name]
    cfg = preset(name, vision_image_size=size, text_vocab_size=49408, **overrides)
    mesh = sharding.make_mesh({"data": -1})
    tx = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(1e-4, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.2)
    )
    graphdef, state = create_state(cfg, tx, mesh, 0)
    train_step, _ = make_steps(graphdef, state, mesh, "clip")
    rng = np.random.default_rng(0)
    tokens = rng.integers(4, 49407, (batch, cfg.text.context_length)).astype(np.int32)
    tokens[:, -1] = cfg.text.eot_id
    b = sharding.global_batch(
        mesh, {"image": rng.normal(size=(batch, size, size, 3)).astype(np.float32), "tokens": tokens}
    )
    with jax.set_mesh(mesh):
        for _ in range(warmup):
            state, m = train_step(state, b)
        jax.block_until_ready(m)
        t = time.perf_counter()
        for _ in range(steps):
            state, m = train_step(state, b)
        jax.block_until_ready(m)
    dt = time.perf_counter() - t
    return steps * batch / dt, {
        "embed_dim": cfg.embed_dim,
        "vision": {**cfg.vision.__dict__},
        "text": {**cfg.text.__dict__, "vocab_size": 49408},
        "batch": batch,
    }


def theirs(python: Path, arch: dict, steps: int, warmup: int) -> dict:
    args = {**arch, "steps": steps, "warmup": warmup, "threads": os.cpu_count() or 2}
    r = subprocess.run(
        [str(python), "-c", TORCH_STEP, json.dumps(args)], capture_output=True, text=True, timeout=1800
    )
    if r.returncode:
        raise SystemExit(f"open_clip step failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def loader_rate(image_size: int, batch: int, seconds: float = 10.0) -> float:
    """Images/s of the Grain input pipeline (0 workers, 2 threads) over sample-web shards."""
    import hashlib

    from entitynet import shards
    from entitynet.records import ImageRecord, encode_image, image_key
    from entitynet.sampleweb.render import jpeg_bytes, render
    from entitynet.text import tokenizer as tokenizers
    from train.input_pipeline import InputConfig, make_dataset

    d = Path(tempfile.mkdtemp(prefix="entitynet-loader-"))
    recs = []
    for i in range(512):
        data = jpeg_bytes(render(("Q729", f"Q{i % 7}"), f"Q{i % 50}", i, (320, 256)))
        sha = hashlib.sha256(data).hexdigest()
        recs.append(
            ImageRecord(
                key=image_key(sha),
                jpeg=data,
                width=320,
                height=256,
                url=f"http://x/{i}",
                alt_texts=(f"a photo of thing number {i % 50}",),
                entity_ids=(),
                sha256=sha,
            )
        )
    shards.write_shard(d / shards.shard_filename("train", 0, 1), (encode_image(r) for r in recs))
    shards.write_metadata(d, {"train": [len(recs)]}, {})
    tok = tokenizers.SentencePieceTokenizer.train([t for r in recs for t in r.alt_texts], vocab_size=100)
    it = iter(
        make_dataset(
            InputConfig(shards=str(d), batch_size=batch, image_size=image_size, context_length=32), [], tok
        )
    )
    next(it)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        n += len(next(it)["image"])
    return n / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    python = ensure_open_clip()
    print(f"CPU training steps, CLIP loss, AdamW; {os.cpu_count()} cores", flush=True)
    for name in args.models:
        ours_rate, arch = ours(name, args.steps, args.warmup)
        them = theirs(python, arch, args.steps, args.warmup)
        size, batch = arch["vision"]["image_size"], arch["batch"]
        print(f"{name} at {size}px, batch {batch} ({them['params']:,} parameters in open_clip):")
        print(f"  ours (jax.jit)     {ours_rate:8.1f} images/s")
        print(f"  open_clip (torch)  {them['images_per_s']:8.1f} images/s")
        print(f"  ratio ours/open_clip: {ours_rate / them['images_per_s']:.2f}x (target >= 1.0x)")
        feed = loader_rate(size, batch)
        print(
            f"  loader (Grain, 0 workers) {feed:8.1f} images/s = {feed / ours_rate:.1f}x what our step consumes (target >= 2x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
