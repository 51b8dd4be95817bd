"""Benchmark: our training step (JAX/Flax NNX, jax.jit) against open_clip's (PyTorch) on this CPU.

    .venv/bin/python benchmarks/train_vs_open_clip.py
    .venv/bin/python benchmarks/train_vs_open_clip.py --models tiny --steps 30
    .venv/bin/python benchmarks/train_vs_open_clip.py --models S/32 --profile

Same architecture (our presets have open_clip's layout and sizes: `tiny`, and `S/32` at a small
image size), same batch, same CLIP loss, AdamW, on random inputs (uint8 images for ours, normalised
inside the step as in training). open_clip comes from this environment when installed (`make test`
installs it), else from the benchmark's own (benchmarks/.venv-open-clip, made when absent). Also the
training loader's images/s over harvest-like shards (benchmarks/harvest_like.py) against what the
step consumes; with --profile, our step under a few XLA:CPU settings, each in a fresh process.
Printed: images/s for both steps and their ratio, and the loader/step ratio.
Targets: at least 1.0x open_clip; the loader at least 2x the step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
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
    """This interpreter when it has open_clip (`make test` installs it: the interop extras), else
    the benchmark's own environment, made once."""
    import importlib.util

    if importlib.util.find_spec("open_clip") is not None:
        return Path(sys.executable)
    python = VENV / "bin" / "python"
    if not python.exists():
        print("installing open_clip and torch into benchmarks/.venv-open-clip (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "open_clip_torch"], check=True)
    return python


def ours(name: str, steps: int, warmup: int) -> tuple[float, dict]:
    from train_accelerator import build, synthetic, time_steps

    from train import sharding

    overrides, size, batch = MODELS[name]
    mesh = sharding.make_mesh({"data": -1})
    cfg, _, state, train_step = build(name, overrides, size, "float32", mesh)
    b = sharding.global_batch(mesh, synthetic(cfg, batch))
    step_s, _ = time_steps(train_step, state, b, mesh, warmup, steps)
    dt = step_s * steps
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


def loader_rate(image_size: int, batch: int, workers: int = 0, seconds: float = 10.0) -> float:
    """Images/s of the training loader over harvest-like shards (benchmarks/harvest_like.py)."""
    from harvest_like import loader_rate as rate
    from harvest_like import write_shards

    d = Path(tempfile.mkdtemp(prefix="entitynet-loader-"))
    entities, tok = write_shards(d, 512)
    return rate(d, entities, tok, image_size, batch, workers, seconds)[0]


# XLA:CPU settings tried on our step (a profile of it): each runs in its own process, since
# XLA reads its flags once, at start-up
XLA_VARIANTS = {
    "default": "",
    "no thunk runtime": "--xla_cpu_use_thunk_runtime=false",
    "concurrency-optimised scheduler": "--xla_cpu_enable_concurrency_optimized_scheduler=true",
    "fast min/max": "--xla_cpu_enable_fast_min_max=true",
}


def ours_with_flags(name: str, flags: str, steps: int, warmup: int) -> float | None:
    """Our step's images/s in a fresh process with XLA_FLAGS=`flags`; None where XLA refuses them."""
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    code = (
        f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
        "from train_vs_open_clip import ours\n"
        f"print(json.dumps(ours({name!r}, {steps}, {warmup})[0]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode:
        return None
    return float(r.stdout.strip().splitlines()[-1])


def profile(name: str, steps: int, warmup: int) -> None:
    print(f"{name}: our step under XLA:CPU settings (images/s, each in a fresh process):", flush=True)
    base = None
    for label, flags in XLA_VARIANTS.items():
        rate = ours_with_flags(name, flags, steps, warmup)
        if rate is None:
            print(f"  {label:34s} not accepted by this XLA ({flags})", flush=True)
            continue
        base = base or rate
        print(f"  {label:34s} {rate:8.1f}  {rate / base:.2f}x of default  {flags}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="also try XLA:CPU settings on our step")
    args = ap.parse_args()
    python = ensure_open_clip()
    print(f"CPU training steps, CLIP loss, AdamW; {os.cpu_count()} cores", flush=True)
    for name in args.models:
        ours_rate, arch = ours(name, args.steps, args.warmup)
        them = theirs(python, arch, args.steps, args.warmup)
        size, batch = arch["vision"]["image_size"], arch["batch"]
        print(f"{name} at {size}px, batch {batch} ({them['params']:,} parameters in open_clip):")
        print(f"  ours (jax.jit, uint8 in)  {ours_rate:8.1f} images/s")
        print(f"  open_clip (torch)         {them['images_per_s']:8.1f} images/s")
        print(f"  ratio ours/open_clip: {ours_rate / them['images_per_s']:.2f}x (target >= 1.0x)")
        feed = loader_rate(size, batch)
        print(
            f"  loader (Grain, 0 workers) {feed:8.1f} images/s = {feed / ours_rate:.1f}x what our step consumes (target >= 2x)",
            flush=True,
        )
        if args.profile:
            profile(name, args.steps, args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
