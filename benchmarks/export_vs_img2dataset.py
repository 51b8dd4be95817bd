"""Benchmark: our WebDataset export against img2dataset's writer on the same records.

    .venv/bin/python benchmarks/export_vs_img2dataset.py                 # 30,000 records (433 MB of JPEGs), ~3 min
    .venv/bin/python benchmarks/export_vs_img2dataset.py --records 5000 --repeats 1

The input is harvest-like: the demo's curated train split (`demo-out/curated`, 2,708 records with
their real alt texts, links and provenance) replicated to `--records` records, each copy's JPEG
made distinct by bytes after its end marker (new sha256, new key), written as ArrayRecord shards
with the pipelines' own writers (`beam_pipelines.common.write_shard_records`, `complete_dataset`).
The records are then made into samples once, as the export makes them (`SampleMaker`, `--text alt`,
grouped into the export's output shards, sorted by key), and pickled; each writer run loads that
pickle in a fresh process, writes one sample elsewhere (lazy imports), and is timed from the first
sample on, as img2dataset's downloader hands its writer images already in memory:

- img2dataset: `img2dataset.writer.WebDatasetSampleWriter` (tar through webdataset's TarWriter,
  Parquet sidecar in buffers of 100 rows), with the meta its downloader gives it (url, caption,
  key, status, error_message, width, height, original_width/height, sha256), in its own
  environment (benchmarks/.venv-img2dataset, made when absent), one writer per output shard;
- ours, writer alone: `entitynet.interchange.webdataset.write_shard` over the same samples;
- ours, whole command: `entitynet data export --format webdataset --text alt` on the ArrayRecord
  input (DirectRunner as the CLI runs it by default: reading, text choice, Beam included).

The three run alternately `--repeats` times (default 3, the order rotated each round); printed:
every run's records/s, and for the median run of each: records/s, MB/s of JPEG (and of tar +
Parquet bytes written), CPU seconds (in the child: the timed part for the writers, everything for
the command), and the ratios ours/img2dataset. The outputs of the first round are checked:
the same number of samples, every tar readable by `webdataset` with .jpg, .txt and .json for every
sample, the same keys, images and texts in all three, and the writer's tar byte-identical to the
command's. Its last line reads `export throughput: ours (writer) N rec/s, img2dataset writer M
rec/s, ratio R.RRx; whole export command K rec/s (ratio to img2dataset writer Q.QQx)`.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

DEMO = ROOT / "demo-out" / "curated"
DEMO_ENTITIES = ROOT / "demo-out" / "kg" / "entities.jsonl"


# ---------------------------------------------------------------- the input and the samples


def make_input(source: Path, out: Path, n: int, input_shards: int) -> int:
    """`n` records like `source`'s train split (copies made distinct) as ArrayRecord shards of a
    dataset in `out`; returns the JPEG bytes written."""
    from dataclasses import replace

    from beam_pipelines.common import complete_dataset, shard_lengths, write_shard_records
    from entitynet import shards
    from entitynet.records import image_key

    base = [r for p in shards.shard_paths(str(source), "train") for r in shards.read_shard(p)]
    base.sort(key=lambda r: r.key)
    groups: list[list] = [[] for _ in range(input_shards)]
    size = 0
    for i in range(n):
        r, copy = base[i % len(base)], i // len(base)
        if copy:
            jpeg = r.jpeg + f"copy {copy}".encode()  # after the end marker: decoders ignore it
            sha = hashlib.sha256(jpeg).hexdigest()
            url = f"{r.url}#copy{copy}"
            r = replace(r, key=image_key(sha), jpeg=jpeg, sha256=sha, url=url, urls=(url,))
        size += len(r.jpeg)
        groups[shards.shard_of(r.key, input_shards)].append(r)
    out.mkdir(parents=True)
    stats = [write_shard_records(str(out), "train", i, input_shards, g)[1] for i, g in enumerate(groups)]
    lengths, sizes = shard_lengths(stats, ["train"], input_shards)
    complete_dataset(str(out), str(out), lengths, sizes, input_shards, stats)
    return size


def dump_samples(data: Path, entities: Path, dump: Path) -> tuple[int, int]:
    """The export's samples of `data` (text alt), grouped into its output shards and sorted by key as
    `data export` writes them, pickled into `dump` as [(shard, [(jpeg, fields)])]; returns (records,
    shards)."""
    from beam_pipelines.data_export import resolve
    from entitynet import shards
    from entitynet.interchange.export import ExportOptions, SampleMaker, plan_shards
    from entitynet.records import Entity, read_jsonl

    opts = ExportOptions(format="webdataset", text="alt")
    source = resolve(str(data))
    split = next(s for s in shards.check_directory(source.shards)["splits"] if s["name"] == "train")
    total = sum(int(n) for n in split["shardLengths"])
    num_shards = plan_shards(total, int(split["numBytes"]), opts)
    maker = SampleMaker(list(read_jsonl(str(entities), Entity)), opts)
    groups: list[list] = [[] for _ in range(num_shards)]
    for p in shards.shard_paths(source.shards, "train"):
        for r in shards.read_shard(p):
            groups[shards.shard_of(r.key, num_shards)].append(r)
    out = []
    for i, recs in enumerate(groups):
        recs.sort(key=lambda r: r.key)
        out.append((i, [(r.jpeg, s) for r in recs if (s := maker.sample(r)) is not None]))
    with open(dump, "wb") as f:
        pickle.dump(out, f, protocol=5)
    return sum(len(s) for _, s in out), num_shards


# ---------------------------------------------------------------- the writers (child processes)


def _written(out: Path) -> int:
    return sum(p.stat().st_size for p in out.iterdir() if p.suffix in (".tar", ".parquet"))


def child_ours(dump: Path, out: Path) -> dict:
    """Our writer over the pickled samples: load, then time `write_shard` of every shard."""
    from entitynet.interchange import webdataset as wds

    with open(dump, "rb") as f:
        groups = pickle.load(f)
    warm = out.with_name(out.name + "-warm-up")  # one sample first: lazy imports (pyarrow) untimed
    wds.write_shard(str(warm), 0, groups[0][1][:1])
    gc.collect()
    out.mkdir(parents=True, exist_ok=True)
    t, c = time.perf_counter(), time.process_time()
    n = 0
    for index, samples in groups:
        n += wds.write_shard(str(out), index, samples)["count"]
    return {"seconds": time.perf_counter() - t, "cpu": time.process_time() - c, "records": n}


I2D_FIELDS = ("url", "caption", "key", "status", "error_message", "width", "height")


def child_img2dataset(dump: Path, out: Path) -> dict:
    """img2dataset's writer over the same samples, each with the meta its downloader would give it
    (built before timing); runs in img2dataset's environment (no entitynet imports)."""
    import pyarrow as pa
    from img2dataset.writer import WebDatasetSampleWriter

    schema = pa.schema(
        [(f, pa.string()) for f in ("url", "caption", "key", "status", "error_message")]
        + [(f, pa.int32()) for f in ("width", "height", "original_width", "original_height")]
        + [("sha256", pa.string())]
    )
    with open(dump, "rb") as f:
        groups = [
            (
                index,
                [
                    (
                        jpeg,
                        s["key"],
                        s["caption"],
                        {
                            "url": s["url"],
                            "caption": s["caption"],
                            "key": s["key"],
                            "status": "success",
                            "error_message": None,
                            "width": s["width"],
                            "height": s["height"],
                            "original_width": s["width"],
                            "original_height": s["height"],
                            "sha256": s["sha256"],
                        },
                    )
                    for jpeg, s in samples
                ],
            )
            for index, samples in pickle.load(f)
        ]
    warm = out.with_name(out.name + "-warm-up")  # one sample first, as ours
    warm.mkdir(parents=True, exist_ok=True)
    writer = WebDatasetSampleWriter(0, str(warm), True, 5, schema, "jpg")
    writer.write(*groups[0][1][0])
    writer.close()
    gc.collect()
    out.mkdir(parents=True, exist_ok=True)
    t, c = time.perf_counter(), time.process_time()
    n = 0
    for index, samples in groups:
        writer = WebDatasetSampleWriter(index, str(out), True, 5, schema, "jpg")
        for jpeg, key, caption, meta in samples:
            writer.write(jpeg, key, caption, meta)
            n += 1
        writer.close()
    return {"seconds": time.perf_counter() - t, "cpu": time.process_time() - c, "records": n}


def run_child(python: Path, which: str, dump: Path, out: Path) -> dict:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    if which == "ours":
        env["PYTHONPATH"] = str(ROOT)
    cmd = [str(python), str(Path(__file__).resolve()), "--child", which, str(dump), str(out)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "bytes": _written(out)}


def run_export(data: Path, entities: Path, out: Path) -> dict:
    """The whole `entitynet data export` command: wall and CPU seconds of the child process."""
    cmd = [str(Path(sys.executable).parent / "entitynet"), "data", "export", "--data", str(data)]
    cmd += ["--entities", str(entities), "--out", str(out), "--format", "webdataset", "--text", "alt"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    records = json.loads((out / "export_stats.json").read_text())["records"]
    return {"seconds": seconds, "cpu": cpu, "records": records, "bytes": _written(out)}


# ---------------------------------------------------------------- checks


def read_back(out: Path) -> tuple[dict[str, tuple[str, str]], int]:
    """(key -> (sha256 of the .jpg, the .txt), bytes of the .json members) of every sample of the
    tars in `out`, read by webdataset; every sample must have .jpg, .txt and .json."""
    import webdataset as wds

    tars = sorted(str(p) for p in out.glob("*.tar"))
    found: dict[str, tuple[str, str]] = {}
    meta = 0
    for sample in wds.WebDataset(tars, shardshuffle=False):
        missing = {"jpg", "txt", "json"} - set(sample)
        if missing:
            raise SystemExit(f"{out}: sample {sample['__key__']} has no {', '.join(sorted(missing))}")
        json.loads(sample["json"])
        meta += len(sample["json"])
        found[sample["__key__"]] = (hashlib.sha256(sample["jpg"]).hexdigest(), sample["txt"].decode())
    return found, meta


def check(outs: dict[str, Path], expected: int) -> list[str]:
    import pyarrow.parquet as pq

    lines, seen = [], {}
    for name, out in outs.items():
        tars = sorted(p.name for p in out.glob("*.tar"))
        rows = sum(pq.read_metadata(out / t.replace(".tar", ".parquet")).num_rows for t in tars)
        seen[name], meta = read_back(out)
        if len(seen[name]) != expected or rows != expected:
            raise SystemExit(f"{name}: {len(seen[name])} samples, {rows} sidecar rows (expected {expected})")
        size = {ext: sum(p.stat().st_size for p in out.glob(f"*.{ext}")) / 1e6 for ext in ("tar", "parquet")}
        lines.append(
            f"{name}: {len(tars)} tar(s), {len(seen[name]):,} samples, {rows:,} sidecar rows; "
            f"tars {size['tar']:.1f} MB, sidecars {size['parquet']:.2f} MB, "
            f".json {meta / len(seen[name]):.0f} B a sample"
        )
    first, *rest = seen.values()
    for name, other in zip(list(seen)[1:], rest, strict=True):
        if other != first:
            differ = sum(1 for k in first.keys() | other.keys() if first.get(k) != other.get(k))
            raise SystemExit(
                f"{name} differs from {next(iter(seen))} in {differ} samples (key, image or text)"
            )
    ours = outs["ours writer"]
    same = all(
        (ours / t.name).read_bytes() == t.read_bytes() for t in sorted(outs["ours export"].glob("*.tar"))
    )
    lines.append(
        "all three: the same keys, JPEG bytes and texts; .jpg/.txt/.json in every sample (read by "
        f"webdataset); our writer's tars {'byte-identical to' if same else 'DIFFERENT from'} the command's"
    )
    return lines


# ---------------------------------------------------------------- the run


def _median_run(runs: list[dict]) -> dict:
    ranked = sorted(runs, key=lambda r: r["records"] / r["seconds"])
    return ranked[len(ranked) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=30_000, help="records of the harvest-like input")
    ap.add_argument("--input-shards", type=int, default=4, help="ArrayRecord shards of the input")
    ap.add_argument("--repeats", type=int, default=3, help="alternated runs of each; medians are reported")
    ap.add_argument("--source", type=Path, default=DEMO, help="the dataset whose train split is replicated")
    ap.add_argument("--entities", type=Path, default=DEMO_ENTITIES)
    ap.add_argument("--child", nargs=3, metavar=("WHICH", "DUMP", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        which, dump, out = args.child
        fn = child_ours if which == "ours" else child_img2dataset
        print(json.dumps(fn(Path(dump), Path(out))))
        return 0

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(ROOT))
    from harvest_vs_img2dataset import ensure_img2dataset

    i2d_python = ensure_img2dataset()
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        jpeg_bytes = make_input(args.source, work / "input", args.records, args.input_shards)
        made = time.perf_counter() - t
        t = time.perf_counter()
        n, num_shards = dump_samples(work / "input", args.entities, work / "samples.pkl")
        dumped = time.perf_counter() - t
        print(
            f"input: {args.records:,} records ({jpeg_bytes / 1e6:.0f} MB of JPEGs) in {args.input_shards} "
            f"ArrayRecord shards, made in {made:.1f} s; {n:,} samples in {num_shards} output shard(s) "
            f"pickled in {dumped:.1f} s",
            flush=True,
        )
        runners = {
            "img2dataset writer": lambda out: run_child(i2d_python, "img2dataset", work / "samples.pkl", out),
            "ours writer": lambda out: run_child(Path(sys.executable), "ours", work / "samples.pkl", out),
            "ours export": lambda out: run_export(work / "input", args.entities, out),
        }
        names = list(runners)
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for rnd in range(args.repeats):
            for name in names[rnd % 3 :] + names[: rnd % 3]:  # the order rotated each round
                out = work / "out" / name.replace(" ", "-")
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(out.with_name(out.name + "-warm-up"), ignore_errors=True)
                os.sync()  # the previous run's writes are not flushed during this one
                runs[name].append(runners[name](out))
                r = runs[name][-1]
                print(
                    f"round {rnd + 1}: {name:18s} {r['records'] / r['seconds']:8.0f} rec/s, "
                    f"{r['cpu']:5.1f} CPU-s",
                    flush=True,
                )
            if rnd == 0:
                for line in check({name: work / "out" / name.replace(" ", "-") for name in names}, n):
                    print("check: " + line, flush=True)
    print(
        f"{n:,} samples ({jpeg_bytes / 1e6:.0f} MB of JPEGs) into {num_shards} shard(s); "
        f"median of {args.repeats} alternated runs each, {os.cpu_count()} cores"
    )
    med = {name: _median_run(rs) for name, rs in runs.items()}
    rate = {name: r["records"] / r["seconds"] for name, r in med.items()}
    for name, r in med.items():
        spread = ", ".join(f"{x['records'] / x['seconds']:.0f}" for x in runs[name])
        print(
            f"{name:18s} {r['records']:7,} rec in {r['seconds']:6.2f} s = {rate[name]:7.0f} rec/s, "
            f"{jpeg_bytes / 1e6 / r['seconds']:6.1f} MB/s of JPEG ({r['bytes'] / 1e6 / r['seconds']:6.1f} "
            f"MB/s written), {r['cpu']:6.2f} CPU-s "
            f"({1e6 * r['cpu'] / r['records']:5.0f} CPU-us/rec); runs: {spread} rec/s"
        )
    cpu = {name: statistics.median(x["cpu"] for x in rs) for name, rs in runs.items()}
    i2d = "img2dataset writer"
    print(
        f"CPU seconds (medians): ours writer {cpu['ours writer'] / cpu[i2d]:.2f}x img2dataset's, "
        f"whole export command {cpu['ours export'] / cpu[i2d]:.2f}x"
    )
    print(
        f"export throughput: ours (writer) {rate['ours writer']:.0f} rec/s, img2dataset writer "
        f"{rate[i2d]:.0f} rec/s, ratio {rate['ours writer'] / rate[i2d]:.2f}x; whole export command "
        f"{rate['ours export']:.0f} rec/s (ratio to img2dataset writer {rate['ours export'] / rate[i2d]:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
