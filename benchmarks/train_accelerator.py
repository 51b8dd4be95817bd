"""The accelerator check: ViT-B/32 and ViT-B/16 CLIP training steps at 224 px in bf16 on this
host's devices, first on synthetic batches, then fed by the real input pipeline.

    .venv/bin/python benchmarks/train_accelerator.py             # on a GPU or TPU host (< 8 minutes)
    .venv/bin/python benchmarks/train_accelerator.py --smoke     # a tiny model on the CPU (the test suite)
    .venv/bin/python benchmarks/train_accelerator.py --models B/32 --shards /data/harvest --workers 12

For each model: the largest batch that fits (a power of two, from XLA's memory analysis of a small
batch, then halved on an out-of-memory error), the step's time and images/s on synthetic uint8
images (normalised inside the step, as in training), MFU (the FLOPs XLA's cost analysis counts for
the step, against the device's peak: a table of known devices, or --peak-tflops), and the time to
copy one batch to the devices. Then the same step fed by `train.input_pipeline.make_dataset` over
shards (harvest-like ones written here unless --shards names a harvest) through the device prefetch
training uses; printed: its images/s, the loader's own rate, and the input-bound fraction (the
share of the wall time the step loop spent waiting for the next batch). The last line per model
reads `accelerator: MODEL on DEVICE: N img/s (synthetic), N img/s (fed), MFU P%, input-bound P%`.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# dense bf16 peak FLOP/s per device, by a substring of jax's device_kind (vendor data sheets)
PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "V100": 125e12,
    "TPU v6": 918e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v4": 275e12,
}

FULL = {"B/32": ({}, 224), "B/16": ({}, 224)}
SMOKE = {"tiny": ({"vision_patch_size": 8, "vision_width": 64, "text_width": 64, "embed_dim": 64}, 32)}


def peak_flops(kind: str, override_tflops: float) -> float:
    if override_tflops:
        return override_tflops * 1e12
    for name, flops in PEAK_BF16.items():
        if name.lower() in kind.lower():
            return flops
    return 0.0


def build(name: str, overrides: dict, size: int, dtype: str, mesh):
    import optax

    from train.model import preset
    from train.train import create_state, make_steps

    cfg = preset(name, vision_image_size=size, text_vocab_size=49408, dtype=dtype, **overrides)
    tx = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(1e-4, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.2)
    )
    graphdef, state = create_state(cfg, tx, mesh, 0)
    train_step, _ = make_steps(graphdef, state, mesh, "clip")
    return cfg, graphdef, state, train_step


def synthetic(cfg, batch: int):
    import numpy as np

    rng = np.random.default_rng(0)
    size, ctx = cfg.vision.image_size, cfg.text.context_length
    tokens = rng.integers(4, 49407, (batch, ctx)).astype(np.int32)
    tokens[:, -1] = cfg.text.eot_id
    return {"image": rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8), "tokens": tokens}


def time_steps(step, state, batch, mesh, warmup: int, steps: int):
    """(seconds per step, the state after) of `steps` calls of `step` after `warmup` ones."""
    import jax

    with jax.set_mesh(mesh):
        for _ in range(warmup):
            state, m = step(state, batch)
        jax.block_until_ready(m)
        t = time.perf_counter()
        for _ in range(steps):
            state, m = step(state, batch)
        jax.block_until_ready(m)
    return (time.perf_counter() - t) / steps, state


def compile_at(train_step, state, mesh, cfg, batch: int):
    from train import sharding

    b = sharding.global_batch(mesh, synthetic(cfg, batch))
    return train_step.lower(state, b).compile(), b


def device_memory() -> int:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return int(stats.get("bytes_limit", 0))


def largest_batch(name, overrides, size, dtype, mesh, start: int, cap: int) -> int:
    """The largest power-of-two batch whose step XLA says fits in 85% of a device's memory,
    extrapolated from the step compiled at `start` (activations grow linearly with the batch)."""
    import jax

    limit = device_memory()
    if not limit:
        return start  # the CPU: no memory limit to fill
    cfg, _, state, train_step = build(name, overrides, size, dtype, mesh)
    compiled, _ = compile_at(train_step, state, mesh, cfg, start)
    mem = compiled.memory_analysis()
    fixed = mem.argument_size_in_bytes + mem.output_size_in_bytes - mem.alias_size_in_bytes
    per_image = mem.temp_size_in_bytes / (start / jax.device_count())
    batch = start
    while batch * 2 <= cap and fixed + per_image * batch * 2 / jax.device_count() <= 0.85 * limit:
        batch *= 2
    return batch


def measure(name, overrides, size, dtype, mesh, batch, steps, peak):
    """Step time, images/s and MFU on synthetic batches at `batch`, halving it on out-of-memory."""
    import jax

    from train import sharding
    from train.train import compiled_flops

    while True:
        try:
            cfg, graphdef, state, train_step = build(name, overrides, size, dtype, mesh)
            compiled, b = compile_at(train_step, state, mesh, cfg, batch)
            step_s, state = time_steps(compiled, state, b, mesh, 3, steps)
            break
        except Exception as e:
            if "RESOURCE_EXHAUSTED" not in str(e) and "out of memory" not in str(e).lower() or batch <= 8:
                raise
            print(f"  batch {batch} does not fit; trying {batch // 2}", flush=True)
            batch //= 2
    flops = compiled_flops(compiled)
    host = synthetic(cfg, batch)
    t = time.perf_counter()
    for _ in range(5):
        jax.block_until_ready(sharding.global_batch(mesh, host))
    transfer_s = (time.perf_counter() - t) / 5
    nbytes = sum(v.nbytes for v in host.values())
    return {
        "cfg": cfg,
        "batch": batch,
        "state": state,
        "compiled": compiled,
        "step_s": step_s,
        "images_per_s": batch / step_s,
        "flops": flops,
        "mfu": flops / step_s / (peak * jax.device_count()) if peak and flops else float("nan"),
        "transfer_s": transfer_s,
        "batch_bytes": nbytes,
    }


def fed(r, mesh, shards_dir: Path, entities, tok, workers: int, steps: int, seconds: float):
    """The same compiled step fed by the training loader through the device prefetch."""
    import jax
    from harvest_like import loader_rate

    from train import sharding
    from train.input_pipeline import DevicePrefetch, InputConfig, make_dataset

    cfg, batch = r["cfg"], r["batch"]
    size, ctx = cfg.vision.image_size, cfg.text.context_length
    own, _ = loader_rate(shards_dir, entities, tok, size, batch, workers, seconds, ctx)
    icfg = InputConfig(
        shards=str(shards_dir), batch_size=batch, image_size=size, context_length=ctx, num_workers=workers
    )
    loader = iter(make_dataset(icfg, entities, tok))
    it = DevicePrefetch(
        loader, lambda b: sharding.global_batch(mesh, {"image": b["image"], "tokens": b["tokens"]})
    )
    state, compiled = r["state"], r["compiled"]
    try:
        with jax.set_mesh(mesh):
            for _ in range(2):  # warm the workers and the queue up
                state, m = compiled(state, next(it))
            jax.block_until_ready(m)
            waited, t = 0.0, time.perf_counter()
            for _ in range(steps):
                w = time.perf_counter()
                b = next(it)
                waited += time.perf_counter() - w
                state, m = compiled(state, b)
            jax.block_until_ready(m)
        wall = time.perf_counter() - t
    finally:
        it.close()
    return {"images_per_s": steps * batch / wall, "loader_images_per_s": own, "input_bound": waited / wall}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="a tiny model at 32 px on the CPU, a few steps")
    ap.add_argument("--models", nargs="+", default=None, help="presets (default B/32 B/16)")
    ap.add_argument(
        "--batch", type=int, default=0, help="per step, all devices (default: the largest that fits)"
    )
    ap.add_argument("--max-batch", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    ap.add_argument(
        "--peak-tflops", type=float, default=0.0, help="per device, when the table does not know it"
    )
    ap.add_argument("--shards", type=Path, default=None, help="a harvest's output (default: written here)")
    ap.add_argument("--records", type=int, default=4096, help="harvest-like records to write")
    ap.add_argument("--workers", type=int, default=-1, help="Grain workers (default: cores - 1, at most 16)")
    args = ap.parse_args()
    if args.smoke:
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    from train import sharding

    models = SMOKE if args.smoke else {m: FULL.get(m, ({}, 224)) for m in (args.models or FULL)}
    steps = 3 if args.smoke else args.steps
    workers = (
        args.workers
        if args.workers >= 0
        else (0 if args.smoke else max(0, min(16, (os.cpu_count() or 1) - 1)))
    )
    dev = jax.devices()[0]
    kind = dev.device_kind
    peak = peak_flops(kind, args.peak_tflops)
    mesh = sharding.make_mesh({"data": -1})
    print(
        f"{jax.device_count()} x {kind} ({dev.platform}), peak {peak / 1e12:.0f} TFLOP/s bf16 per device"
        if peak
        else f"{jax.device_count()} x {kind} ({dev.platform}), peak unknown (MFU needs --peak-tflops)",
        flush=True,
    )
    if args.shards is None:
        from harvest_like import write_shards

        shards_dir = Path(tempfile.mkdtemp(prefix="entitynet-accel-"))
        entities, tok = write_shards(shards_dir, 64 if args.smoke else args.records)
    else:
        from entitynet.records import Entity, read_jsonl
        from entitynet.text import tokenizer as tokenizers

        shards_dir = args.shards
        tok = tokenizers.load(str(shards_dir / tokenizers.TOKENIZER_FILE))
        ents = shards_dir.parent / "kg" / "entities.jsonl"
        entities = list(read_jsonl(ents, Entity)) if ents.exists() else []
    for name, (overrides, size) in models.items():
        t0 = time.perf_counter()
        start = max(jax.device_count(), 8 if args.smoke else 64 * jax.device_count())
        batch = args.batch or largest_batch(name, overrides, size, args.dtype, mesh, start, args.max_batch)
        r = measure(name, overrides, size, args.dtype, mesh, batch, steps, peak)
        print(
            f"{name} at {size} px, {args.dtype}, batch {r['batch']}: step {r['step_s'] * 1000:.1f} ms, "
            f"{r['images_per_s']:,.0f} img/s (synthetic), {r['flops'] / 1e9:,.1f} GFLOP per step, "
            + (f"MFU {r['mfu']:.1%}" if not math.isnan(r["mfu"]) else "MFU n/a")
            + f"; host->device copy of a batch ({r['batch_bytes'] / 2**20:.1f} MiB) {r['transfer_s'] * 1000:.1f} ms",
            flush=True,
        )
        f = fed(r, mesh, shards_dir, entities, tok, workers, steps, 3.0 if args.smoke else 10.0)
        keeps_up = "keeps up" if f["loader_images_per_s"] >= r["images_per_s"] else "does not keep up"
        print(
            f"  fed by the loader ({workers} workers): {f['images_per_s']:,.0f} img/s; loader alone "
            f"{f['loader_images_per_s']:,.0f} img/s ({keeps_up}); input-bound {f['input_bound']:.0%} of the step loop; "
            f"{time.perf_counter() - t0:.0f} s for this model",
            flush=True,
        )
        mfu = f"MFU {r['mfu']:.1%}" if not math.isnan(r["mfu"]) else "MFU n/a"
        print(
            f"accelerator: {name} on {kind}: {r['images_per_s']:.0f} img/s (synthetic), "
            f"{f['images_per_s']:.0f} img/s (fed), {mfu}, input-bound {f['input_bound']:.0%}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
