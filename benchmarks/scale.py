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
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import os
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


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_stage(cmd: list[str]) -> tuple[float, int, int]:
    """Run a command; (wall seconds, peak RSS of the driver, peak RSS of its largest child)."""
    start = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    peaks: dict[int, int] = {}
    done = threading.Event()

    def poll():
        while not done.is_set():
            for p in _tree(proc.pid):
                peaks[p] = max(peaks.get(p, 0), _rss(p))
            time.sleep(0.2)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    _, err = proc.communicate()
    done.set()
    t.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {err.decode()[-2000:]}")
    driver = peaks.pop(proc.pid, 0)
    return time.time() - start, driver, max(peaks.values(), default=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="5000,20000,80000")
    ap.add_argument("--pool-sizes", default="1000000,8000000")
    ap.add_argument(
        "--only", choices=("web", "pool"), help="run only the web (harvest, curate) or pool stages"
    )
    ap.add_argument("--keep", help="keep the outputs under this directory")
    ap.add_argument("--pool-stage", nargs=2, metavar=("STAGE", "DIR"), help=argparse.SUPPRESS)
    args, beam_args = ap.parse_known_args()
    if args.pool_stage:
        return pool_stage(args.pool_stage[0], Path(args.pool_stage[1]), beam_args)
    sizes = [int(x) for x in args.sizes.split(",")] if args.only != "pool" else []
    pool_sizes = [int(x) for x in args.pool_sizes.split(",")] if args.only != "web" else []
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
    finally:
        server.terminate()
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
    print(f"scale: time exponent {worst_exp:.2f}, memory ratio {worst_mem:.2f}")


if __name__ == "__main__":
    main()
