"""Scaling benchmark: harvest and curate at three sizes; time should grow linearly and the peak
memory of every process should stay flat.

    .venv/bin/python benchmarks/scale.py                       # 5k, 20k, 80k candidates
    .venv/bin/python benchmarks/scale.py --sizes 2000,8000     # a quick look

A synthetic world: N small JPEGs (96x64, distinct bytes, 2% near copies of others) served from a
loopback server in its own process, a pool of N url+text rows naming 1,000 synthetic entities,
then `entitynet harvest --backend pool` and `entitynet curate` (with near-duplicate merging), each
as its own command on the DirectRunner in multi-process mode (2 workers). While a stage runs, the
peak resident memory of its driver and of every worker process is read from /proc.

Printed per stage and size: wall time, rows/s, peak RSS of the driver and of the largest worker;
then per stage the growth exponent of time (log time ratio over log size ratio, smallest to
largest) and the ratio of peak memory (largest process) between the largest and smallest size.
Targets: exponent <= 1.1, memory ratio <= 1.25. The last line reads
`scale: time exponent X.XX, memory ratio Y.YY` for the worst stage.

A third line per size, "floor", is the runner's own: as many 2 KB elements through one bare
GroupByKey. The DirectRunner holds shuffled data in its processes, so its memory grows with the
data whatever a pipeline does; flat memory needs a runner with an external shuffle (Dataflow,
Flink).

The pool stages (`--pool-sizes`, default 1M and 8M rows in 16 Parquet files, 100,000 entity names,
5% of the rows naming one, Zipf-distributed): "pool match" reads and matches the pool with the
harvest's own transform (`beam_pipelines.harvest.pool_matches`) and counts the candidates; "pool
balance" goes on as `harvest --backend pool --balance-t 20` does up to the fetch (merge by URL,
count entries over the pool, draw); "pool floor" reads the same text column into Python strings
and counts them, on the same runner. Target: pool match at least 50% of the floor's rows/s.

    .venv/bin/python benchmarks/scale.py --only pool --pool-sizes 1000000,8000000

The memory stages (`--memory-sizes`, default 100k and 1M records): synthetic harvest shards of
N records written with the project's own codec and writer (`records.encode_image`, sped up 15x
by re-using one encoded record per JPEG and replacing its text fields, checked byte for byte;
`shards.write_shard`; a "train" split of 90% in 16 shards and a "test" split of 10% in 4, 32x32
JPEGs of which 64 distinct ones are shared, one alt text each naming one of 1,000 entities), and
three consumers, each in its own process: "loader", the trainer's Grain input
(`train.input_pipeline.make_dataset`, 2 worker processes) iterating 50 batches of 64 with a
subset of every other training key applied; "tokenizer", `train_tokenizer` over every split and
the entities' captions (its text sample bounded by `--tokenizer-sample`, default 50,000, below
both sizes' text counts); "heldout", `entitynet eval --heldout` over the "test" split
(`train.evaluate.evaluate_model` on `train.eval_data.heldout`: embeddings, zero-shot with the
bare class names, retrieval over the alt texts, predictions, thumbnails, the report) with a
stand-in model (64 numbers per image, its first pixel values, and per text, its bag of token
ids: the model is not what is measured). Peak RSS is VmHWM from /proc of the component's process
and of its largest worker. Target: ratio of the largest process between the sizes <= 1.25. The
evaluation keeps per image what scoring needs (its embedding, its right answers as class
indices, its alt texts and their embeddings), so its line prints the growth per held-out image
as well.

    .venv/bin/python benchmarks/scale.py --only memory --memory-sizes 100000,1000000

After the web stages, two lines divide the growth of harvest's and curate's largest worker
(largest size over smallest) by the floor's: target <= 1.5.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ENTITIES = 1000
BEAM = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]

# The runner's own floor: N elements of 2 KB (about one stored image) through one GroupByKey on
# the same runner. The DirectRunner keeps shuffled data in its own processes, so this grows with
# N whatever the pipeline does; ours is judged beside it.
FLOOR = """
import os, sys, apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
n = int(sys.argv[1])
with beam.Pipeline(options=PipelineOptions(sys.argv[2:])) as p:
    (p | beam.Create(list(range(0, n, 1000)))
       | beam.FlatMap(lambda s: ((i % 8, os.urandom(2000)) for i in range(s, min(s + 1000, n))))
       | beam.GroupByKey() | beam.MapTuple(lambda k, v: (k, sum(len(x) for x in v))))
"""


def image_bytes(i: int) -> bytes:
    """A distinct 96x64 JPEG for index i; every 50th is a near copy of the one before."""
    import numpy as np
    from PIL import Image

    base = i - 1 if i % 50 == 49 else i
    rng = np.random.default_rng(base)
    blocks = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    arr = np.kron(blocks, np.ones((16, 16, 1), dtype=np.uint8))
    if base != i:
        arr = arr.copy()
        arr[0, 0] ^= 1  # one pixel off: a near duplicate, not the same bytes
    out = io.BytesIO()
    Image.fromarray(arr).save(out, "JPEG", quality=85)
    return out.getvalue()


def serve(port_queue):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            if self.path == "/robots.txt":
                body, ctype = b"User-agent: *\nAllow: /\n", "text/plain"
            else:
                try:
                    body, ctype = image_bytes(int(self.path.rsplit("/", 1)[1].split(".")[0])), "image/jpeg"
                except ValueError:
                    body, ctype = b"", "text/plain"
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 512

    server = Server(("127.0.0.1", 0), Handler)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def write_world(directory: Path, n: int, base_url: str) -> tuple[Path, Path]:
    from entitynet.records import Entity, write_jsonl
    from entitynet.text.queries import build_queries

    entities = [Entity(id=f"Q{i + 1}", label=f"species {i:04d}", sitelinks=10) for i in range(ENTITIES)]
    write_jsonl(directory / "entities.jsonl", entities)
    write_jsonl(directory / "queries.jsonl", build_queries(entities))
    with open(directory / "pool.jsonl", "w", encoding="utf-8") as f:
        for i in range(n):
            name = entities[(i * 7919) % ENTITIES].label
            f.write(json.dumps({"url": f"{base_url}/img/{i}.jpg", "text": f"a photo of a {name}"}) + "\n")
    return directory / "entities.jsonl", directory / "queries.jsonl"


POOL_ENTITIES = 100_000
POOL_FILES = 16
POOL_MATCH_RATE = 0.05
POOL_T = 20
_SYL = ["ka", "lo", "mi", "ra", "tu", "ne", "so", "vi", "pe", "da", "gu", "ri", "zo", "fa", "be", "xu"]
_WORDS = (
    "the a photo of in with on at beautiful stock image free vector background red blue green old new "
    "house car dog man woman city street art design logo icon black white summer winter view close up "
    "portrait wall paper card shirt print poster drawing illustration sale cheap best top style"
).split()


def _name(i: int) -> str:
    """A synthetic binomial-like name, distinct per i (e.g. "kalomius rapeta")."""
    a = "".join(_SYL[(i // 16**k) % 16] for k in range(3))
    b = "".join(_SYL[(i // 16 ** (k + 3)) % 16] for k in range(2)) + _SYL[i % 7]
    return f"{a}us {b}a"


def write_pool(directory: Path, n: int) -> tuple[Path, Path, Path]:
    """`n` url+text rows in POOL_FILES Parquet files (row groups of 65,536), texts of 6-10 common
    words; POOL_MATCH_RATE of them also name one of POOL_ENTITIES entities, drawn Zipf-like."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from entitynet.records import Entity, write_jsonl
    from entitynet.text.queries import build_queries

    directory.mkdir(parents=True, exist_ok=True)
    entities = [Entity(id=f"Q{i + 1}", label=_name(i), sitelinks=10) for i in range(POOL_ENTITIES)]
    write_jsonl(directory / "entities.jsonl", entities)
    write_jsonl(directory / "queries.jsonl", build_queries(entities))
    rng = np.random.default_rng(n)
    phrases = [" ".join(rng.choice(_WORDS, size=rng.integers(6, 11)).tolist()) for _ in range(20_000)]
    per_file = -(-n // POOL_FILES)
    for f in range(POOL_FILES):
        lo, hi = f * per_file, min(n, (f + 1) * per_file)
        texts = [phrases[j] for j in rng.integers(0, len(phrases), size=hi - lo)]
        hits = np.flatnonzero(rng.random(hi - lo) < POOL_MATCH_RATE)
        which = (rng.zipf(1.2, size=len(hits)) - 1) % POOL_ENTITIES
        for i, e in zip(hits.tolist(), which.tolist(), strict=True):
            texts[i] = f"{texts[i]} {entities[e].label}"
        table = pa.table({"url": [f"http://pool.test/{i}.jpg" for i in range(lo, hi)], "text": texts})
        pq.write_table(table, directory / f"part-{f:05d}.parquet", row_group_size=65536)
    return directory / "entities.jsonl", directory / "queries.jsonl", directory / "*.parquet"


def pool_stage(stage: str, directory: Path, beam_args: list[str]) -> None:
    """One pool stage as its own Beam pipeline (run in a subprocess by `main`, so its processes'
    memory can be read); writes its counts to DIRECTORY/result-STAGE.json."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.harvest import BalanceBeforeFetch, _merge_url, pool_matches
    from entitynet.harvest import SearchSpec
    from entitynet.records import Entity, Query, read_jsonl
    from entitynet.search.pool import pool_files, pool_units

    pattern = str(directory / "*.parquet")
    result = directory / f"result-{stage}.json"

    def save(key):
        def write(n):
            result.write_text(json.dumps({key: n}))

        return write

    with beam.Pipeline(options=PipelineOptions(beam_args)) as p:
        if stage == "floor":

            def texts(unit):
                import pyarrow.parquet as pq

                path, group = unit
                n = 0
                for b in pq.ParquetFile(path).iter_batches(
                    batch_size=65536, row_groups=[group], columns=["text"]
                ):
                    n += len(b.column(0).to_pylist())
                yield n

            (
                p
                | beam.Create(pool_units(pool_files(pattern)))
                | beam.FlatMap(texts)
                | beam.CombineGlobally(sum)
                | beam.Map(save("rows"))
            )
            return
        queries = list(read_jsonl(directory / "queries.jsonl", Query))
        spec = SearchSpec(backend="pool", pool=pattern)
        found = pool_matches(p, queries, spec)
        if stage == "match":
            found | beam.combiners.Count.Globally() | beam.Map(save("candidates"))
            return
        entities = tuple(read_jsonl(directory / "entities.jsonl", Entity))
        candidates = found | "ByUrl" >> beam.GroupByKey() | "MergeUrl" >> beam.Map(_merge_url)
        balanced = candidates | BalanceBeforeFetch(entities, POOL_T, 0)
        balanced["kept"] | "CountKept" >> beam.combiners.Count.Globally() | beam.Map(save("kept"))


MEMORY_ENTITIES = 1000
MEMORY_SHARDS = 16
MEMORY_JPEGS = 64  # distinct 32x32 JPEGs the records share (a million distinct ones add nothing here)
LOADER_BATCHES, LOADER_BATCH = 50, 64
EMBED_DIM = 64


def _tiny_jpegs() -> list[bytes]:
    import numpy as np
    from PIL import Image

    out = []
    for i in range(MEMORY_JPEGS):
        arr = np.random.default_rng(i).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=80)
        out.append(buf.getvalue())
    return out


def memory_key(i: int) -> str:
    from entitynet.records import image_key

    return image_key(hashlib.sha256(b"memory-%d" % i).hexdigest())


def memory_index(split: str, position: int) -> int:
    """Record i of the world at `position` in its split: every tenth record (i % 10 == 9) is in
    "test", the others in "train"."""
    return position * 10 + 9 if split == "test" else position + position // 9


def memory_record(i: int, jpegs: list[bytes]):
    from entitynet.records import ImageRecord

    key = memory_key(i)
    e = (i + i // 10) % MEMORY_ENTITIES  # every entity in either split
    return ImageRecord(
        key=key,
        jpeg=jpegs[i % MEMORY_JPEGS],
        width=32,
        height=32,
        url=f"http://memory.test/{i}.jpg",
        alt_texts=(f"a photo of a species {e:04d} seen at site {i}",),
        entity_ids=(f"Q{e + 1}",),
        sha256=key * 2,
    )


def memory_encoder(jpegs: list[bytes]):
    """`records.encode_image` of `memory_record(i)` at 15x its speed: the encoded record of the
    same JPEG with the fields that differ (key, URL, hash, alt texts, entity ids) replaced in its
    proto (TFDS's per-record feature encoding is what takes the time). `_write_memory_shard`
    checks the first records of every shard against `encode_image`, byte for byte."""
    from tensorflow_datasets.proto import tf_example_pb2

    from entitynet.records import encode_image

    templates = [
        tf_example_pb2.Example.FromString(encode_image(memory_record(j, jpegs))) for j in range(len(jpegs))
    ]

    def encode(i: int) -> bytes:
        r = memory_record(i, jpegs)
        example = templates[i % MEMORY_JPEGS]
        f = example.features.feature
        for name in ("key", "url", "sha256"):
            f[name].bytes_list.value[:] = [getattr(r, name).encode()]
        for name in ("alt_texts", "entity_ids"):
            f[name].bytes_list.value[:] = [t.encode() for t in getattr(r, name)]
        return example.SerializeToString(deterministic=True)

    return encode


def _write_memory_shard(job: tuple[str, str, int, int, int, int]) -> tuple[str, int, int, int]:
    """One shard of a split's records at positions lo..hi-1 (in a pool process):
    (split, index, records, bytes)."""
    directory, split, index, num_shards, lo, hi = job
    from entitynet import shards
    from entitynet.records import encode_image

    jpegs = _tiny_jpegs()
    encode = memory_encoder(jpegs)
    for i in (memory_index(split, p) for p in range(lo, min(hi, lo + 100))):
        if encode(i) != encode_image(memory_record(i, jpegs)):
            raise SystemExit(f"the fast encoder differs from records.encode_image on record {i}")
    path = Path(directory) / shards.shard_filename(split, index, num_shards)
    count, size = shards.write_shard(path, (encode(memory_index(split, p)) for p in range(lo, hi)))
    return split, index, count, size


def write_memory_world(directory: Path, n: int) -> None:
    """N records (90% "train" in MEMORY_SHARDS shards, 10% "test" in a quarter as many) + metadata,
    a subset of every other training key, the entities; reused when a complete one of the same
    size is there (`--keep`)."""
    import numpy as np

    from entitynet import shards
    from entitynet.records import Entity, encode_subset, write_jsonl

    done = directory / "complete.json"
    if done.exists() and json.loads(done.read_text()).get("n") == n:
        return
    (directory / "shards").mkdir(parents=True, exist_ok=True)
    counts = {"train": n - n // 10, "test": n // 10}
    num = {"train": MEMORY_SHARDS, "test": MEMORY_SHARDS // 4}
    jobs = []
    for split, total in counts.items():
        per = -(-total // num[split])
        jobs += [
            (str(directory / "shards"), split, k, num[split], k * per, min(total, (k + 1) * per))
            for k in range(num[split])
        ]
    lengths = {split: [0] * num[split] for split in counts}
    sizes = dict.fromkeys(counts, 0)
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        for split, index, count, size in pool.imap_unordered(_write_memory_shard, jobs):
            lengths[split][index] = count
            sizes[split] += size
    shards.write_metadata(directory / "shards", lengths, sizes)
    kept = (memory_key(memory_index("train", p)) for p in range(0, counts["train"], 2))
    np.savez(directory / "subset.npz", **encode_subset({"train": kept}))
    entities = [
        Entity(id=f"Q{i + 1}", label=f"species {i:04d}", sitelinks=10) for i in range(MEMORY_ENTITIES)
    ]
    write_jsonl(directory / "entities.jsonl", entities)
    done.write_text(json.dumps({"n": n, "bytes": sum(sizes.values()), **counts}))


def write_loader_tokenizer(directory: Path) -> None:
    """The small tokenizer the loader tokenises with (the same at every size)."""
    from entitynet.text import tokenizer as tokenizers

    texts = [
        f"a photo of a species {e:04d} seen at site {i}" for e in range(MEMORY_ENTITIES) for i in range(3)
    ]
    tokenizers.save(tokenizers.SentencePieceTokenizer.train(texts, vocab_size=500), directory)


def memory_stage(stage: str, directory: Path, tokenizer: Path, sample: int) -> None:
    """One consumer of the synthetic shards (run in a subprocess by `main`); prints, last, a JSON
    line with the peak RSS (VmHWM) of this process and of its largest descendant."""
    from entitynet.records import Entity, read_jsonl

    entities = list(read_jsonl(directory / "entities.jsonl", Entity))
    shard_dir = str(directory / "shards")
    started = time.time()
    info: dict = {}
    workers = 0
    if stage == "loader":
        from entitynet.text import tokenizer as tokenizers
        from train.input_pipeline import InputConfig, make_dataset

        cfg = InputConfig(
            shards=shard_dir,
            batch_size=LOADER_BATCH,
            image_size=32,
            context_length=32,
            subset=str(directory / "subset.npz"),
            num_workers=2,
        )
        it = iter(make_dataset(cfg, entities, tokenizers.load(tokenizer)))
        try:
            for _ in range(LOADER_BATCHES):
                next(it)
            workers = max((_hwm(p) for p in _tree(os.getpid()) if p != os.getpid()), default=0)
        finally:
            getattr(it, "close", lambda: None)()
        info["examples"] = LOADER_BATCHES * LOADER_BATCH
    elif stage == "tokenizer":
        from entitynet.text.tokenizer import train_tokenizer

        _, info = train_tokenizer(shard_dir, entities, 1000, str(directory / "tokenizer"), sample=sample)
    elif stage == "heldout":
        from types import SimpleNamespace

        import jax

        from entitynet.text import tokenizer as tokenizers
        from train.eval_data import heldout
        from train.evaluate import evaluate_model

        class StandIn:  # the model: EMBED_DIM floats per image and per text (not what is measured)
            def encode_image(self, x):  # its first pixel values
                return x.reshape(len(x), -1)[:, :EMBED_DIM]

            def encode_text(self, tokens):  # its bag of token ids
                return jax.nn.one_hot(tokens % EMBED_DIM, EMBED_DIM).sum(axis=1)

        size = SimpleNamespace(context_length=32, image_size=32)
        m = {
            "model": StandIn(),
            "config": SimpleNamespace(text=size, vision=size),
            "step": 0,
            "tokenizer": tokenizers.load(tokenizer),
            "run": {},
        }
        by_id = {e.id: e for e in entities}
        result = evaluate_model(
            m, "stand-in", lambda run: heldout(shard_dir, "test", by_id), "bare", directory / "heldout-eval"
        )
        info = {
            "images": result["images"],
            "classes": result["zero_shot"]["classes"],
            "texts": result["retrieval"]["texts"],
        }
    else:
        raise SystemExit(f"unknown memory stage {stage}")
    info.update(seconds=time.time() - started, peak=_hwm(os.getpid()), workers=workers)
    print(json.dumps(info), flush=True)


def run_memory(work: Path, sizes: list[int], sample: int) -> list[dict]:
    rows = []
    tokenizer = work / "loader-tokenizer"
    write_loader_tokenizer(tokenizer)
    for n in sizes:
        d = work / f"memory{n}"
        started = time.time()
        write_memory_world(d, n)
        size = json.loads((d / "complete.json").read_text())["bytes"]
        print(
            f"(memory world of {n:,} records, {size / 2**20:,.0f} MiB of shards, ready in {time.time() - started:.0f} s)",
            flush=True,
        )
        for stage in ("loader", "tokenizer", "heldout"):
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--memory-stage",
                stage,
                str(d),
                str(tokenizer),
                str(sample),
            ]
            seconds, driver, worker, out = run_stage(cmd, capture=True)
            got = json.loads(out.strip().splitlines()[-1])
            driver, worker = max(driver, got.pop("peak")), max(worker, got.pop("workers"))
            rows.append(
                {"stage": stage, "n": n, "seconds": seconds, "driver": driver, "worker": worker, **got}
            )
            extra = ", ".join(f"{k} {v:,}" for k, v in got.items() if k != "seconds" and isinstance(v, int))
            print(
                f"{stage:9s} {n:>9,} records  {seconds:6.1f} s  peak RSS process {driver / 2**20:6.0f} MiB, "
                f"largest worker {worker / 2**20:6.0f} MiB  ({extra})",
                flush=True,
            )
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(f"\npeak memory, {large:,} records over {small:,} (largest process; target <= 1.25):")
        for stage in ("loader", "tokenizer", "heldout"):
            a = next(r for r in rows if r["stage"] == stage and r["n"] == small)
            b = next(r for r in rows if r["stage"] == stage and r["n"] == large)
            pa, pb = max(a["driver"], a["worker"]), max(b["driver"], b["worker"])
            if stage == "heldout":  # what grows is per image of the split evaluated
                per, unit = (pb - pa) / (b["images"] - a["images"]), "held-out image"
            else:
                per, unit = (pb - pa) / (large - small), "record"
            print(
                f"  {stage:9s} {pa / 2**20:6.0f} -> {pb / 2**20:6.0f} MiB  ratio {pb / pa:.2f}  "
                f"({per:+.0f} bytes per {unit})"
            )
    return rows


def _hwm(pid: int) -> int:
    """Peak resident memory (VmHWM) of a process so far, in bytes; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """pid and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def run_stage(cmd: list[str], capture: bool = False):
    """Run a command; (wall seconds, peak RSS of the driver, peak RSS of its largest child), and
    its stdout when `capture`. Peaks are each process's VmHWM (its high-water mark), read every
    0.2 s while it runs: exact but for growth in a process's last 0.2 s."""
    start = time.time()
    out = subprocess.PIPE if capture else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, cwd=ROOT)
    peaks: dict[int, int] = {}
    done = threading.Event()

    def poll():
        while not done.is_set():
            for p in _tree(proc.pid):
                peaks[p] = max(peaks.get(p, 0), _hwm(p))
            time.sleep(0.2)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    stdout, err = proc.communicate()
    done.set()
    t.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {err.decode()[-2000:]}")
    driver = peaks.pop(proc.pid, 0)
    result = time.time() - start, driver, max(peaks.values(), default=0)
    return (*result, stdout.decode()) if capture else result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="5000,20000,80000")
    ap.add_argument("--pool-sizes", default="1000000,8000000")
    ap.add_argument("--memory-sizes", default="100000,1000000", help="records of the memory stages")
    ap.add_argument(
        "--tokenizer-sample",
        type=int,
        default=50_000,
        help="the tokenizer's text sample in the memory stages",
    )
    ap.add_argument(
        "--only",
        choices=("web", "pool", "memory"),
        help="run only the web (harvest, curate), pool or memory (loader, tokenizer, held-out) stages",
    )
    ap.add_argument("--keep", help="keep the outputs under this directory (and reuse its memory worlds)")
    ap.add_argument("--pool-stage", nargs=2, metavar=("STAGE", "DIR"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--memory-stage", nargs=4, metavar=("STAGE", "DIR", "TOK", "SAMPLE"), help=argparse.SUPPRESS
    )
    args, beam_args = ap.parse_known_args()
    if args.pool_stage:
        return pool_stage(args.pool_stage[0], Path(args.pool_stage[1]), beam_args)
    if args.memory_stage:
        stage, d, tok, sample = args.memory_stage
        return memory_stage(stage, Path(d), Path(tok), int(sample))
    sizes = [int(x) for x in args.sizes.split(",")] if args.only in (None, "web") else []
    pool_sizes = [int(x) for x in args.pool_sizes.split(",")] if args.only in (None, "pool") else []
    memory_sizes = [int(x) for x in args.memory_sizes.split(",")] if args.only in (None, "memory") else []
    q: multiprocessing.Queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(q,), daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{q.get(timeout=30)}"
    work = Path(args.keep or tempfile.mkdtemp(prefix="entitynet-scale-"))
    exe = [sys.executable, "-m", "entitynet_cli"]
    rows = []
    try:
        for n in sizes:
            d = work / f"n{n}"
            d.mkdir(parents=True, exist_ok=True)
            entities, queries = write_world(d, n, base_url)
            harvest = [
                *exe,
                "harvest",
                "--queries",
                str(queries),
                "--backend",
                "pool",
                "--pool",
                str(d / "pool.jsonl"),
                "--entities",
                str(entities),
                "--out",
                str(d / "shards"),
                "--allow-loopback",
                "--image-size",
                "64",
                "--min-image-size",
                "32",
                "--num-shards",
                "8",
                "--in-flight",
                "64",
                "--per-host-concurrency",
                "64",  # one loopback host: let it take what the threaded fetcher gave it
                *BEAM,
            ]
            curate = [
                *exe,
                "curate",
                "--shards",
                str(d / "shards"),
                "--entities",
                str(entities),
                "--t",
                "20000",
                "--out",
                str(d / "curated"),
                "--num-shards",
                "8",
                *BEAM,
            ]
            floor = [sys.executable, "-c", FLOOR, str(n), *BEAM]
            for stage, cmd in (("harvest", harvest), ("curate", curate), ("floor", floor)):
                seconds, driver, worker = run_stage(cmd)
                rows.append({"stage": stage, "n": n, "seconds": seconds, "driver": driver, "worker": worker})
                print(
                    f"{stage:8s} {n:>8,} candidates  {seconds:7.1f} s  {n / seconds:8.0f} rows/s  "
                    f"peak RSS driver {driver / 2**20:6.0f} MiB, largest worker {worker / 2**20:6.0f} MiB",
                    flush=True,
                )
            stats = json.loads((d / "shards" / "harvest_stats.json").read_text())
            print(f"         (harvest wrote {stats['written']:,} of {stats['candidates']:,})", flush=True)
        for n in pool_sizes:
            d = work / f"pool{n}"
            started = time.time()
            write_pool(d, n)
            print(f"(pool of {n:,} rows written in {time.time() - started:.0f} s)", flush=True)
            for stage in ("floor", "match", "balance"):
                cmd = [sys.executable, str(Path(__file__).resolve()), "--pool-stage", stage, str(d), *BEAM]
                seconds, driver, worker = run_stage(cmd)
                got = json.loads((d / f"result-{stage}.json").read_text())
                name = f"pool {stage}"
                rows.append({"stage": name, "n": n, "seconds": seconds, "driver": driver, "worker": worker})
                print(
                    f"{name:13s} {n:>10,} rows  {seconds:7.1f} s  {n / seconds:9.0f} rows/s  "
                    f"peak RSS driver {driver / 2**20:6.0f} MiB, largest worker {worker / 2**20:6.0f} MiB  {got}",
                    flush=True,
                )
            by = {r["stage"]: r for r in rows if r["n"] == n and r["stage"].startswith("pool")}
            print(
                f"pool match {n / by['pool match']['seconds']:,.0f} rows/s = "
                f"{by['pool floor']['seconds'] / by['pool match']['seconds']:.2f}x of reading the text column "
                f"alone ({n / by['pool floor']['seconds']:,.0f} rows/s; target >= 0.50)",
                flush=True,
            )
        if memory_sizes:
            rows += run_memory(work, memory_sizes, args.tokenizer_sample)
    finally:
        server.terminate()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    worst_exp, worst_mem = 0.0, 0.0
    print()
    for stage in ("harvest", "curate", "floor", "pool match", "pool balance", "pool floor"):
        mine = [r for r in rows if r["stage"] == stage]
        if not mine:
            continue
        small, large = mine[0], mine[-1]
        if small["n"] == large["n"]:
            continue
        exponent = math.log(large["seconds"] / small["seconds"]) / math.log(large["n"] / small["n"])
        memory = max(large["driver"], large["worker"]) / max(small["driver"], small["worker"])
        if "floor" not in stage:
            worst_exp, worst_mem = max(worst_exp, exponent), max(worst_mem, memory)
        print(
            f"{stage:12s} time exponent {exponent:.2f} (target <= 1.1), peak memory ratio {memory:.2f} "
            f"(target <= 1.25) from {small['n']:,} to {large['n']:,}"
        )
    floor = [r for r in rows if r["stage"] == "floor"]
    if len(floor) > 1 and floor[0]["n"] != floor[-1]["n"]:
        for stage in ("harvest", "curate"):
            mine = [r for r in rows if r["stage"] == stage]
            for who in ("worker", "driver"):
                growth = mine[-1][who] / mine[0][who]
                floor_growth = floor[-1][who] / floor[0][who]
                print(
                    f"{stage:12s} {'largest worker' if who == 'worker' else 'driver'} grew {growth:.2f}x from "
                    f"{mine[0]['n']:,} to {mine[-1]['n']:,}, the floor's {floor_growth:.2f}x: "
                    f"{growth / floor_growth:.2f} of the floor's growth"
                    + (" (target <= 1.5)" if who == "worker" else "")
                )
    for stage in ("loader", "tokenizer", "heldout"):
        mine = [r for r in rows if r["stage"] == stage]
        if len(mine) > 1:
            small, large = mine[0], mine[-1]
            memory = max(large["driver"], large["worker"]) / max(small["driver"], small["worker"])
            worst_mem = max(worst_mem, memory)
    print(f"scale: time exponent {worst_exp:.2f}, memory ratio {worst_mem:.2f}")


if __name__ == "__main__":
    main()
