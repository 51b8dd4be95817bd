"""Input pipeline benchmark: where a record's time goes, the one-thread ceiling, and the Grain
loader at 0, 1 and 2 worker processes.

    .venv/bin/python benchmarks/input_pipeline.py                  # 224 px from 320x256 JPEGs
    .venv/bin/python benchmarks/input_pipeline.py --image-size 96 --seconds 5

Shards like a harvest's (sample-web renders stored at 320x256, shorter side 256, JPEG quality 90)
are written to a temp directory. Then, in one run:

- the breakdown, one thread, per record: shard read, record decode, JPEG decode (reduced by
  libjpeg's DCT scaling where the output size allows), random-resized crop + resize, the float32
  normalisation the host no longer does (images leave it as uint8 and are normalised inside the
  jitted step), text choice, tokenisation, and the small-data augmentation (configs/small_data.py's
  chances, and every transform on every image, the worst case);
- the one-thread ceiling: JPEG decode + crop + resize of the same files and nothing else;
- the loader (`train.input_pipeline.make_dataset`, as training builds it) at 0, 1 and 2 Grain
  worker processes, and the bytes per batch it hands the device (uint8 against float32); at 0
  workers with one reader thread also with the small-data augmentation, printing the ratio.

Targets: 0 workers at least 80% of the one-thread ceiling; 2 workers at least 1.7x 0
workers. The last line reads `input: 0 workers N img/s = P% of the one-thread ceiling; 2 workers
= S.SSx of 0 workers`.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def breakdown(directory: Path, entities, tok, size: int, n: int) -> dict[str, float]:
    """Milliseconds per record of each step, one thread, over the first `n` records."""
    import math

    import numpy as np
    from PIL import Image

    from entitynet import records, shards
    from entitynet.images.prepare import display_size, prepare
    from entitynet.text.tokenizer import encode
    from train.augment import Augment, apply
    from train.input_pipeline import RESAMPLE, TextChooser, crop_box, normalise, resize_box

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

    def open_and_box(r):  # the header only: the box is drawn before any pixel is decoded
        im = Image.open(io.BytesIO(r.jpeg))
        w, h = display_size(im)
        return im, (w, h), crop_box(w, h, rng)

    opened = timed("JPEG header + crop box", open_and_box, recs)

    def decode(item):
        im, (w, h), (x, y, cw, ch) = item
        return prepare(im, (math.ceil(w * size / cw), math.ceil(h * size / ch))), (w, h), (x, y, cw, ch)

    decoded = timed("JPEG decode (DCT-scaled to the crop's needs)", decode, opened)

    def resize(item):
        im, (w, h), (x, y, cw, ch) = item
        sx, sy = im.width / w, im.height / h
        return resize_box(im, (x * sx, y * sy, (x + cw) * sx, (y + ch) * sy), size)

    def resize_pillow(item):
        im, (w, h), (x, y, cw, ch) = item
        sx, sy = im.width / w, im.height / h
        box = (x * sx, y * sy, (x + cw) * sx, (y + ch) * sy)
        return np.asarray(im.resize((size, size), RESAMPLE["bilinear"], box=box))

    crops = timed("crop + resize to uint8 (OpenCV up, Pillow down)", resize, decoded)
    recipe, every = small_data_augment(), Augment(flip=1, jitter=1, greyscale=1, blur=1, posterize=1)
    timed("augment (small_data.py's chances)", lambda a: apply(a, recipe, rng), crops)
    timed("augment, every transform (not in training)", lambda a: apply(a, every, rng), crops)
    timed("crop + resize, Pillow only (not in training)", resize_pillow, decoded)
    timed("float32 normalise (on the device, not here)", lambda a: normalise(Image.fromarray(a)), crops)
    texts = timed("text choice", lambda r: chooser.choose(r, rng)[0], recs)
    timed("tokenise (KG captions: once each, cached)", lambda t: encode(tok, [t], 32)[0], texts)
    return steps


def small_data_augment():
    """The augmentation configs/small_data.py trains with."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from train import config as config_lib
    from train.train import augment_of

    return augment_of(
        config_lib.load(str(Path(__file__).resolve().parent.parent / "configs" / "small_data.py"))
    )


def ceiling(directory: Path, size: int, n: int) -> dict[str, float]:
    """Images/s of one thread doing only JPEG decode + crop + resize of the same records (the same
    crop boxes): as training does it (Pillow's libjpeg-turbo decode, DCT-scaled; OpenCV's resize
    for upsampling, Pillow's antialiased one for downscaling), with Pillow alone, and, where it is
    installed, with simplejpeg's decoder (libjpeg-turbo too, its own DCT scaling)."""
    import numpy as np
    from PIL import Image

    from entitynet import records, shards
    from train import input_pipeline as ip

    source = shards.CheckedSource([str(p) for p in shards.shard_paths(directory, "train")])
    jpegs = [records.decode_image(source[i]).jpeg for i in range(min(n, len(source)))]

    def rate(decode_crop) -> float:
        rng = np.random.default_rng(0)
        box_of = lambda w, h: ip.crop_box(w, h, rng)  # noqa: E731
        t = time.perf_counter()
        for data in jpegs:
            decode_crop(data, box_of, size)
        return len(jpegs) / (time.perf_counter() - t)

    rates = {"training's (Pillow decode, OpenCV/Pillow resize)": rate(ip.decode_crop)}
    fast, ip.augment.opencv = ip.augment.opencv, lambda: None
    try:
        rates["Pillow only"] = rate(ip.decode_crop)
    finally:
        ip.augment.opencv = fast
    try:
        import simplejpeg
    except ImportError:
        return rates

    def simplejpeg_crop(data, box_of, size):
        w, h, _, _ = simplejpeg.decode_jpeg_header(data)
        x, y, cw, ch = box_of(w, h)
        a = simplejpeg.decode_jpeg(
            data, min_width=int(np.ceil(w * size / cw)), min_height=int(np.ceil(h * size / ch)), min_factor=1
        )
        sx, sy = a.shape[1] / w, a.shape[0] / h
        return ip.resize_box(Image.fromarray(a), (x * sx, y * sy, (x + cw) * sx, (y + ch) * sy), size)

    rates["simplejpeg decode, the same resize"] = rate(simplejpeg_crop)
    return rates


def cpu_seconds() -> float:
    """CPU time of this process and its finished children so far."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    from harvest_like import loader_rate, write_shards

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
    tops = ceiling(d, size, min(args.records, 512))
    best = max(tops, key=tops.get)
    top = tops[best]
    print(
        "one-thread ceiling (JPEG decode + crop + resize only): "
        + ", ".join(f"{k} {v:,.0f} img/s" for k, v in tops.items())
        + f"; the fastest, {best}, is the ceiling",
        flush=True,
    )
    rates = {}
    for w in (0, 1, 2):
        c0, t0 = cpu_seconds(), time.perf_counter()
        rate, first = loader_rate(d, entities, tok, size, args.batch, w, args.seconds)
        cores = (cpu_seconds() - c0) / (time.perf_counter() - t0)
        rates[w] = rate
        nbytes, dtype = first["image"].nbytes, first["image"].dtype
        print(
            f"loader, {w} worker process(es): {rate:,.0f} img/s using {cores:.2f} cores "
            f"({rate / max(cores, 1e-9):,.0f} img/s per busy core); a batch's images: {nbytes / 2**20:.1f} MiB "
            f"({dtype}; float32 would be {nbytes * (4 if str(dtype) == 'uint8' else 1) / 2**20:.1f} MiB)",
            flush=True,
        )
    print(f"workers: 1 = {rates[1] / rates[0]:.2f}x, 2 = {rates[2] / rates[0]:.2f}x of 0 (target 2 >= 1.7x)")
    # the same with one reader thread per process, so that 0 workers is one core's worth of work
    # and the processes' scaling shows apart from the threads'
    single = {}
    for w in (0, 2):
        single[w] = loader_rate(d, entities, tok, size, args.batch, w, args.seconds, read_threads=1)[0]
    print(
        f"one reader thread per process: 0 workers {single[0]:,.0f} img/s, 2 workers {single[2]:,.0f} img/s "
        f"= {single[2] / single[0]:.2f}x"
    )
    plain = loader_rate(d, entities, tok, size, args.batch, 0, args.seconds, read_threads=1)[0]
    augmented = loader_rate(
        d, entities, tok, size, args.batch, 0, args.seconds, read_threads=1, augment=small_data_augment()
    )[0]
    print(
        f"small-data augmentation, 0 workers, one reader thread: {augmented:,.0f} img/s against {plain:,.0f} "
        f"without = {augmented / plain:.2f}x"
    )
    print(
        f"input: 0 workers {rates[0]:.0f} img/s = {rates[0] / top:.0%} of the one-thread ceiling; "
        f"2 workers = {rates[2] / rates[0]:.2f}x of 0 workers"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
