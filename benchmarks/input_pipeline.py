"""Input pipeline benchmark: where a record's time goes, the one-thread ceiling, and the Grain
loader at 0, 1 and 2 worker processes.

    .venv/bin/python benchmarks/input_pipeline.py                  # 224 px from 320x256 JPEGs
    .venv/bin/python benchmarks/input_pipeline.py --image-size 96 --seconds 5

Shards like a harvest's (sample-web renders stored at 320x256, shorter side 256, JPEG quality 90)
are written to a temp directory. Then, in one run:

- the breakdown, one thread, per record: shard read, record decode, JPEG decode (reduced by
  libjpeg's DCT scaling where the output size allows), random-resized crop + resize, the float32
  normalisation the host no longer does (images leave it as uint8 and are normalised inside the
  jitted step), text choice, tokenisation;
- the one-thread ceiling: JPEG decode + crop + resize of the same files and nothing else;
- the loader (`train.input_pipeline.make_dataset`, as training builds it) at 0, 1 and 2 Grain
  worker processes, and the bytes per batch it hands the device (uint8 against float32).

Targets (issue 14): 0 workers at least 80% of the one-thread ceiling; 2 workers at least 1.7x 0
workers. The last line reads `input: 0 workers N img/s = P% of the one-thread ceiling; 2 workers
= S.SSx of 0 workers`.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_shards(directory: Path, n: int):
    """`n` harvest-like records (320x256 renders of 50 entities) in one shard, and a tokenizer."""
    from entitynet import shards
    from entitynet.records import Entity, ImageRecord, encode_image, image_key
    from entitynet.sampleweb.render import jpeg_bytes, render
    from entitynet.text import tokenizer as tokenizers

    entities = [Entity(id=f"Q{i + 1}", label=f"thing number {i}", sitelinks=10) for i in range(50)]
    recs = []
    for i in range(n):
        e = entities[i % 50]
        data = jpeg_bytes(render(("Q729", f"Q{i % 7}"), e.id, i, (320, 256)))
        sha = hashlib.sha256(data).hexdigest()
        recs.append(
            ImageRecord(
                key=image_key(sha),
                jpeg=data,
                width=320,
                height=256,
                url=f"http://x/{i}.jpg",
                alt_texts=(f"a photo of {e.label}",),
                entity_ids=(e.id,),
                sha256=sha,
            )
        )
    recs.sort(key=lambda r: r.key)
    shards.write_shard(directory / shards.shard_filename("train", 0, 1), (encode_image(r) for r in recs))
    shards.write_metadata(directory, {"train": [len(recs)]}, {})
    texts = [t for r in recs for t in r.alt_texts] + [e.label for e in entities] * 3
    tok = tokenizers.SentencePieceTokenizer.train(texts, vocab_size=200)
    tokenizers.save(tok, directory)
    return entities, tok


def breakdown(directory: Path, entities, tok, size: int, n: int) -> dict[str, float]:
    """Milliseconds per record of each step, one thread, over the first `n` records."""
    import numpy as np
    from PIL import Image

    from entitynet import records, shards
    from entitynet.images.prepare import prepare
    from entitynet.text.tokenizer import encode
    from train.input_pipeline import TextChooser, normalise, random_resized_crop

    source = shards.CheckedSource([str(p) for p in shards.shard_paths(directory, "train")])
    n = min(n, len(source))
    rng = np.random.default_rng(0)
    chooser = TextChooser(entities, 0.5)
    steps: dict[str, float] = {}

    def timed(name, fn, items):
        t = time.perf_counter()
        out = [fn(x) for x in items]
        steps[name] = (time.perf_counter() - t) * 1000 / len(items)
        return out

    raw = timed("shard read", lambda i: source[i], range(n))
    timed("record decode, every field (not in training)", records.decode_image, raw)
    recs = timed("record decode, the step's fields", records.decode_for_training, raw)
    ims = timed("JPEG decode", lambda r: prepare(Image.open(io.BytesIO(r.jpeg)), (size, size)), recs)
    crops = timed("crop + resize", lambda im: random_resized_crop(im, size, rng), ims)
    timed("float32 normalise (now on the device)", normalise, crops)
    timed("uint8 array", np.asarray, crops)
    texts = timed("text choice", lambda r: chooser.choose(r, rng)[0], recs)
    timed("tokenise", lambda t: encode(tok, [t], 32)[0], texts)
    return steps


def ceiling(directory: Path, size: int, n: int) -> float:
    """Images/s of one thread doing only JPEG decode + crop + resize of the same records."""
    import numpy as np
    from PIL import Image

    from entitynet import records, shards
    from entitynet.images.prepare import prepare
    from train.input_pipeline import random_resized_crop

    source = shards.CheckedSource([str(p) for p in shards.shard_paths(directory, "train")])
    jpegs = [records.decode_image(source[i]).jpeg for i in range(min(n, len(source)))]
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    for data in jpegs:
        np.asarray(random_resized_crop(prepare(Image.open(io.BytesIO(data)), (size, size)), size, rng))
    return len(jpegs) / (time.perf_counter() - t)


def loader(directory: Path, entities, tok, size: int, batch: int, workers: int, seconds: float):
    """(images/s, bytes of one batch's images) of the training loader with `workers` processes."""
    from train.input_pipeline import InputConfig, make_dataset

    cfg = InputConfig(
        shards=str(directory), batch_size=batch, image_size=size, context_length=32, num_workers=workers
    )
    it = iter(make_dataset(cfg, entities, tok))
    first = next(it)
    for _ in range(2):  # warm the workers up
        next(it)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        n += len(next(it)["image"])
    rate = n / (time.perf_counter() - t)
    close = getattr(it, "close", None)
    if close:
        close()
    return rate, first["image"].nbytes, first["image"].dtype


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--records", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="entitynet-input-"))
    entities, tok = write_shards(d, args.records)
    size = args.image_size
    print(f"input pipeline at {size} px from 320x256 JPEGs; {os.cpu_count()} cores", flush=True)
    steps = breakdown(d, entities, tok, size, min(args.records, 512))
    on_host = {k: v for k, v in steps.items() if "(not in training)" not in k and not k.startswith("float32")}
    total = sum(on_host.values())
    print("per record, one thread (ms):")
    for k, v in steps.items():
        share = f"{v / total:6.1%}" if k in on_host else "  (not on the host)"
        print(f"  {k:46s} {v:7.3f}  {share}")
    print(f"  {'sum of the host steps':46s} {total:7.3f}  = {1000 / total:,.0f} img/s per core")
    top = ceiling(d, size, min(args.records, 512))
    print(f"one-thread ceiling (JPEG decode + crop + resize only): {top:,.0f} img/s", flush=True)
    rates = {}
    for w in (0, 1, 2):
        rate, nbytes, dtype = loader(d, entities, tok, size, args.batch, w, args.seconds)
        rates[w] = rate
        print(
            f"loader, {w} worker process(es): {rate:,.0f} img/s; a batch's images: {nbytes / 2**20:.1f} MiB "
            f"({dtype}; float32 would be {nbytes * (4 if str(dtype) == 'uint8' else 1) / 2**20:.1f} MiB)",
            flush=True,
        )
    print(f"workers: 1 = {rates[1] / rates[0]:.2f}x, 2 = {rates[2] / rates[0]:.2f}x of 0 (target 2 >= 1.7x)")
    print(
        f"input: 0 workers {rates[0]:.0f} img/s = {rates[0] / top:.0%} of the one-thread ceiling; "
        f"2 workers = {rates[2] / rates[0]:.2f}x of 0 workers"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
