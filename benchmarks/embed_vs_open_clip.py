"""Benchmark: `entitynet embed`'s throughput against open_clip's `encode_image` on the same export.

    .venv/bin/python benchmarks/embed_vs_open_clip.py               # tiny (64 px) and S/32 (224 px)
    .venv/bin/python benchmarks/embed_vs_open_clip.py --models tiny --records 512 --repeats 1
    .venv/bin/python benchmarks/embed_vs_open_clip.py --models S/32 --image-size 160 --work /tmp/ebench
    .venv/bin/python benchmarks/embed_vs_open_clip.py --cores 1     # both sides pinned to one core

Makes harvest-like shards (benchmarks/harvest_like.py: 320x256 JPEGs, one alt text and one linked
entity a record), trains a run of the model for two steps (throughput does not depend on training)
and exports it (`entitynet export`, open_clip's layout). Then, on the same records and the same
export, batched the same (`--batch`), on the same cores (every core, or the first `--cores`: ours
jax.jit on XLA:CPU with `entitynet embed`'s own decode pool; open_clip with `torch.set_num_threads`
at the core count, its `preprocess` mapped over a thread pool of the same size, under
`torch.inference_mode`, in a process of its own), it times:

  images          JPEG decode + resize + centre crop + normalisation + the image encoder
  encoder only    the image encoder on batches already preprocessed (our preprocessing, both sides)
  images + texts  ours: `ShardEmbedder.shard` (what `entitynet embed` does per shard, incl. reading
                  the shard); open_clip: the images as above, then its tokenizer + `encode_text`
                  over the same texts (each alt text and each linked entity's label)
  whole command   ours only: `train.embed.run` as the CLI calls it (model load, compile, write)

and prints images/s, images/s per core, images per CPU-second (CPU time of the process / images:
it reads through other work on a shared machine better than the wall-clock rate) and the ratios
ours/open_clip. Agreement: the cosine between `entitynet embed`'s stored (float16) embeddings and
open_clip's of the same images and texts, and the largest difference between the two sides'
preprocessed pixels. Each measurement is repeated `--repeats` times, ours and open_clip alternated.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# name -> (training config overrides, default image size, default records)
MODELS = {
    "tiny": ({}, 64, 2000),  # configs/tiny_cpu.py's model (its overrides), at its 64 px
    # open_clip's ViT-S-32; its encoder dominates, so fewer records tell as much
    "S/32": ({"model.preset": "S/32", "model.overrides": "{}"}, 224, 512),
}
WARM_UP = 4  # batches run before the timings, on both sides


# ---------------------------------------------------------------- set-up: shards, run, export


def make_inputs(work: Path, records: int) -> tuple[Path, Path]:
    """Harvest-like shards and their entities file in `work` (made once, reused by later runs)."""
    from harvest_like import write_shards

    from entitynet.records import write_jsonl

    shards = work / f"shards-{records}"
    if not (shards / "entities.jsonl").is_file():
        print(f"writing {records:,} harvest-like records to {shards}...", flush=True)
        entities, _ = write_shards(shards, records)
        write_jsonl(shards / "entities.jsonl", entities)
    return shards, shards / "entities.jsonl"


def make_export(work: Path, shards: Path, name: str, size: int) -> Path:
    """A 2-step run of model `name` at `size` px on `shards`, exported in open_clip's layout."""
    from train import config as config_lib
    from train.export import export_open_clip
    from train.train import train

    tag = f"{name.replace('/', '')}-{size}px"
    run, export = work / f"run-{tag}", work / f"export-{tag}"
    if (export / "open_clip_config.json").is_file():
        return export
    print(f"training {name} at {size} px for 2 steps and exporting it to {export}...", flush=True)
    settings = {
        "data.shards": shards,
        "data.entities": shards / "entities.jsonl",
        "data.tokenizer": shards / "tokenizer.json",
        "data.image_size": size,
        "batch_size": 8,
        "total_steps": 2,
        "log_every": 1,
        "eval_every": 0,
        "progress": False,
        "checkpoint.every_steps": 2,
        "optim.warmup_steps": 1,
        **MODELS[name][0],
    }
    overrides = [f"--config.{k}={v}" for k, v in settings.items()]
    cfg = config_lib.load(str(ROOT / "configs" / "tiny_cpu.py"), overrides)
    train(cfg, run)
    export_open_clip(run, export)
    return export


# ---------------------------------------------------------------- ours


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Clock:
    """Wall and CPU seconds (this process, every thread) of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def embed_texts(records, labels: dict[str, str]) -> list[str]:
    """The texts `entitynet embed` embeds, in its order: each record's alt texts, then the label of
    each entity it is linked to."""
    out = []
    for r in records:
        out += list(r.alt_texts)
        out += [labels[e] for e in dict.fromkeys(r.entity_ids) if e in labels]
    return out


def ours(
    shards_dir: str, shard: str, export: Path, entities: Path, batch: int, records, texts, pixels, out: Path
) -> dict:
    """Our side's timings: {measure: (seconds, cpu seconds)}, with the whole command's output in `out`."""
    import shutil

    import jax

    from entitynet.progress import Progress
    from train import embed
    from train.evaluate import load_model

    loaded = load_model(export)
    labels = embed._entities(str(entities), "")
    embedder = embed.ShardEmbedder(loaded, labels, batch)
    jpegs, keys = [r.jpeg for r in records], [r.key for r in records]
    batches = [range(i, min(i + batch, len(jpegs))) for i in range(0, len(jpegs), batch)]
    # compiled here, not in the timings; a few batches, as the first ones run slower
    for b in batches[:WARM_UP]:
        embedder._images([jpegs[i] for i in b], [keys[i] for i in b], shard)
    embedder._texts(texts[: batch * WARM_UP])
    t = {}
    with Clock() as c:
        for b in batches:
            embedder._images([jpegs[i] for i in b], [keys[i] for i in b], shard)
    t["images"] = (c.wall, c.cpu)
    with Clock() as c:
        for x in pixels:
            jax.block_until_ready(embedder.encode_image(x))
    t["encoder only"] = (c.wall, c.cpu)
    with Clock() as c:
        embedder.shard(shard, "bench", Progress("embed", stream=None))
    t["images + texts"] = (c.wall, c.cpu)
    embedder.pool.shutdown()
    shutil.rmtree(out, ignore_errors=True)
    with Clock() as c:
        embed.run(shards_dir, str(export), str(out), batch=batch, entities=str(entities))
    t["whole command"] = (c.wall, c.cpu)
    return t


# ---------------------------------------------------------------- open_clip (its own process)


def open_clip_side(a: dict) -> dict:
    """open_clip's timings over the same JPEGs and texts; writes its embeddings beside the inputs."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import open_clip
    import torch
    from PIL import Image

    threads = a["threads"]
    torch.set_num_threads(threads)
    work = Path(a["work"])
    jpegs = pickle.loads((work / "jpegs.pkl").read_bytes())
    texts = json.loads((work / "texts.json").read_text())
    pixels = np.load(work / "pixels.npy")  # our preprocessing of the first batches, NHWC
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{a['export']}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{a['export']}")
    model.eval()
    batch, pool = a["batch"], ThreadPoolExecutor(threads)

    def images(chunk):
        x = torch.stack(list(pool.map(lambda b: preprocess(Image.open(io.BytesIO(b))), chunk)))
        return x, model.encode_image(x, normalize=True).numpy()

    def clock(fn):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        return out, (time.perf_counter() - w, time.process_time() - c)

    t = {}
    with torch.inference_mode():
        first, _ = images(jpegs[:batch])  # warm-up, as ours
        for i in range(1, WARM_UP):
            images(jpegs[i * batch : (i + 1) * batch])
        for i in range(WARM_UP):
            model.encode_text(tokenizer(texts[i * batch : (i + 1) * batch]), normalize=True)
        img, t["images"] = clock(
            lambda: [images(jpegs[i : i + batch])[1] for i in range(0, len(jpegs), batch)]
        )
        chunks = [
            torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
            for x in pixels.reshape(-1, batch, *pixels.shape[1:])
        ]
        _, t["encoder only"] = clock(lambda: [model.encode_image(x, normalize=True) for x in chunks])
        txt, t["texts"] = clock(
            lambda: [
                model.encode_text(tokenizer(texts[i : i + batch]), normalize=True).numpy()
                for i in range(0, len(texts), batch)
            ]
        )
    t["images + texts"] = tuple(x + y for x, y in zip(t["images"], t["texts"], strict=True))
    np.save(work / "open_clip_image.npy", np.concatenate(img))
    np.save(work / "open_clip_text.npy", np.concatenate(txt))
    n = min(len(first), len(pixels))
    diff = float(np.max(np.abs(first.numpy().transpose(0, 2, 3, 1)[:n] - pixels[:n])))
    return {"times": t, "pixel_diff": diff, "torch": torch.__version__, "open_clip": open_clip.__version__}


def theirs(work: Path, export: Path, batch: int, threads: int) -> dict:
    args = {"work": str(work), "export": str(export), "batch": batch, "threads": threads}
    command = [sys.executable, __file__, "--open-clip-side", json.dumps(args)]
    r = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    if r.returncode:
        raise SystemExit(f"open_clip side failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- the comparison


def cosines(a, b):
    import numpy as np

    a, b = a.astype(np.float32), b.astype(np.float32)
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def compare(name: str, size: int, args, work: Path, shards: Path, entities: Path) -> list[str]:
    import numpy as np

    from entitynet import shards as shard_io
    from entitynet.records import decode_for_training, read_embeddings
    from train import embed
    from train.input_pipeline import centre_crop, normalise

    export = make_export(work, shards, name, size)
    shard = shard_io.local_shard_paths(str(shards), "train")[0]
    records = list(shard_io.read_shard(shard, decode=decode_for_training))
    texts = embed_texts(records, embed._entities(str(entities), ""))
    side = work / f"side-{name.replace('/', '')}-{size}px"
    side.mkdir(exist_ok=True)
    (side / "jpegs.pkl").write_bytes(pickle.dumps([r.jpeg for r in records]))
    (side / "texts.json").write_text(json.dumps(texts))
    n_pixels = min(len(records), args.encoder_images) // args.batch * args.batch
    from entitynet.images.decode import decode

    flat = np.stack([normalise(centre_crop(decode(r.jpeg), size)) for r in records[:n_pixels]])
    np.save(side / "pixels.npy", flat)
    pixels = list(flat.reshape(-1, args.batch, size, size, 3))
    n, k = len(records), cores()
    print(
        f"\n{name} at {size} px, batch {args.batch}: {n:,} records ({len(texts):,} texts), "
        f"encoder only over {n_pixels:,} images; cores for each side: {k}",
        flush=True,
    )
    runs = []
    for rep in range(args.repeats):
        print(f"  load before run {rep + 1}: {os.getloadavg()[0]:.2f} (1 min)", flush=True)
        mine = ours(
            str(shards), shard, export, entities, args.batch, records, texts, pixels, side / "embeddings"
        )
        them = theirs(side, export, args.batch, k)
        runs.append((mine, them))
        counts = {"images": n, "encoder only": n_pixels, "images + texts": n, "whole command": n}
        print(f"  run {rep + 1}:")
        print(f"    {'':16s} {'ours img/s':>11s} {'per core':>9s} {'per CPU-s':>9s}   "
              f"{'open_clip':>9s} {'per core':>9s} {'per CPU-s':>9s}   ratio (wall, CPU)")  # fmt: skip
        for what, count in counts.items():
            w, c = mine[what]
            line = f"    {what:16s} {count / w:11.1f} {count / w / k:9.1f} {count / c:9.1f}"
            if what in them["times"]:
                tw, tc = them["times"][what]
                line += f"   {count / tw:9.1f} {count / tw / k:9.1f} {count / tc:9.1f}   {tw / w:.2f}x  {tc / c:.2f}x"
            print(line, flush=True)
    # agreement: what `entitynet embed` stored against open_clip's embeddings of the same inputs
    stored = read_embeddings(side / "embeddings" / "train" / (Path(shard).name + ".npz"))
    assert [k.decode() for k in stored.keys] == [r.key for r in records]
    ci = cosines(stored.image, np.load(side / "open_clip_image.npy"))
    ct = cosines(stored.text, np.load(side / "open_clip_text.npy"))
    print(
        f"  agreement (embed's float16 output against open_clip): image cosine mean {ci.mean():.6f} "
        f"(min {ci.min():.6f}), text cosine mean {ct.mean():.6f} (min {ct.min():.6f}); "
        f"largest pixel difference after preprocessing {them['pixel_diff']:.2e} "
        f"(torch {them['torch']}, open_clip {them['open_clip']})",
        flush=True,
    )

    def ratios(what: str) -> str:
        return ", ".join(
            f"{them['times'][what][0] / mine[what][0]:.2f}x ({them['times'][what][1] / mine[what][1]:.2f}x)"
            for mine, them in runs
        )

    return [
        f"{name} at {size} px: images {ratios('images')}; encoder only {ratios('encoder only')}; "
        f"images + texts {ratios('images + texts')}"
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--image-size", type=int, help="for every model (default: each model's own)")
    ap.add_argument("--records", type=int, help="for every model (default: 2,000 for tiny, 512 for S/32)")
    ap.add_argument(
        "--batch", type=int, default=64, help="images and texts per encoder call (embed's default)"
    )
    ap.add_argument(
        "--encoder-images", type=int, default=512, help="images the encoder-only timing runs over"
    )
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--work", help="where the shards, runs and exports go (kept and reused; default: a temporary dir)"
    )
    ap.add_argument("--open-clip-side", help=argparse.SUPPRESS)
    ap.add_argument(
        "--cores",
        type=int,
        help="pin both sides to this many cores (the first ones this process may use), before JAX "
        "starts; on a machine shared with other work, --cores 1 measures the rate per core with "
        "the fewest threads waiting on each other",
    )
    args = ap.parse_args()
    if args.cores:
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])  # the child inherits it
    if args.open_clip_side:
        print(json.dumps(open_clip_side(json.loads(args.open_clip_side))))
        return 0
    work = Path(args.work or tempfile.mkdtemp(prefix="entitynet-embed-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    print(
        f"`entitynet embed` against open_clip's encode_image; cores: {cores()}; "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; work in {work}",
        flush=True,
    )
    summary = []
    for name in args.models:
        shards, entities = make_inputs(work, args.records or MODELS[name][2])
        summary += compare(name, args.image_size or MODELS[name][1], args, work, shards, entities)
    print("\nratios ours/open_clip, wall (CPU time), one per run; above 1: ours faster:")
    for line in summary:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
