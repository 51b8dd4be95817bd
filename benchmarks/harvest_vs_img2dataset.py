"""Benchmark: our harvest against img2dataset on the same URL list, served from loopback.

    .venv/bin/python benchmarks/harvest_vs_img2dataset.py            # 5,000 images
    .venv/bin/python benchmarks/harvest_vs_img2dataset.py --images 1000

The images are mostly ~500x400 JPEGs with some 1600x1200 ones, every URL serving distinct bytes,
from a server in its own process on 127.0.0.1. Both tools resize the shorter side to 256 (never
upscaling) and write JPEG quality 90. img2dataset is installed into its own environment
(benchmarks/.venv-img2dataset) when absent. The two run alternately `--repeats` times (default 3),
pausing between runs so closed sockets drain; printed: every run's images/s, and for the median
run of each: images/s, their ratio, CPU-ms per image, and this machine's Pillow
decode+resize+encode ceiling measured in the same run.
Targets: at least 1.0x img2dataset and 70% of the ceiling; aim for 1.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

I2D_VENV = ROOT / "benchmarks" / ".venv-img2dataset"

SERVER = r"""
import io, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
def make(w, h):
    base = rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8)
    im = Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)
    out = io.BytesIO(); im.save(out, "JPEG", quality=90); return out.getvalue()
small = [make(500, 400) for _ in range(40)]
large = [make(1600, 1200) for _ in range(8)]
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"; disable_nagle_algorithm = True
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/robots.txt":
            body, ctype = b"User-agent: *\nAllow: /\n", "text/plain"
        else:
            i = int(self.path.rsplit("/", 1)[1].split(".")[0])
            data = large[i % len(large)] if i % 20 == 0 else small[i % len(small)]
            body, ctype = data + i.to_bytes(4, "big"), "image/jpeg"  # distinct bytes per URL
        self.send_response(200); self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
class S(ThreadingHTTPServer):
    daemon_threads = True; request_queue_size = 1024
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def ensure_img2dataset() -> Path:
    python = I2D_VENV / "bin" / "python"
    if not python.exists():
        print("installing img2dataset into benchmarks/.venv-img2dataset (once)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(I2D_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "img2dataset"], check=True)
    return python


def pillow_ceiling(samples: list[bytes], seconds: float = 5.0) -> float:
    """Images/s of decode + resize + encode on one core, times the cores (the GIL is released)."""
    from entitynet.images.process import ImageOptions, process_image

    opts = ImageOptions(size=256, quality=90)
    n, t = 0, time.process_time()
    while time.process_time() - t < seconds:
        process_image(samples[n % len(samples)], opts)
        n += 1
    return n / (time.process_time() - t) * (os.cpu_count() or 1)


def run_ours(
    urls: list[str],
    work: Path,
    mode: str,
    threads: int = 2,  # image threads per worker (fetches: in_flight on one event loop)
    per_host: int = 64,
    timeout: float = 30.0,
    robots: bool = True,
    in_flight: int = 128,
) -> tuple[float, float, int]:
    from beam_pipelines import harvest as hp
    from entitynet import harvest
    from entitynet.fetch.fetcher import FetchOptions
    from entitynet.fetch.policy import AddressPolicy
    from entitynet.images.process import ImageOptions
    from entitynet.records import Query, query_id

    pool = work / "pool.jsonl"
    pool.write_text("\n".join(json.dumps({"url": u, "text": f"thing {i}"}) for i, u in enumerate(urls)))
    queries = [Query(id=query_id("noun", "thing"), text="thing", kind="noun", entity_ids=("Q1",))]
    opts = harvest.HarvestOptions(
        fetch=FetchOptions(
            address=AddressPolicy(allow_loopback=True),
            per_host_concurrency=per_host,
            total_timeout=timeout,
            retries=0,
            robots_txt=robots,
            in_flight=in_flight,
        ),
        image=ImageOptions(size=256, quality=90),
        num_shards=4,
        threads=threads,
        work_units=64,
    )
    t, c = time.time(), cpu_seconds()
    beam_args = [f"--direct_running_mode={mode}", f"--direct_num_workers={os.cpu_count() or 2}"]
    stats = hp.run(
        queries, harvest.SearchSpec(backend="pool", pool=str(pool)), opts, str(work / "ours"), beam_args
    )
    return time.time() - t, cpu_seconds() - c, stats["written"]


def run_img2dataset(
    python: Path, urls: list[str], work: Path, threads: int = 32, timeout: float = 10.0
) -> tuple[float, float, int]:
    listing = work / "urls.txt"
    listing.write_text("\n".join(urls))
    out = work / "i2d"
    cmd = [
        str(python.parent / "img2dataset"),
        "--url_list",
        str(listing),
        "--input_format",
        "txt",
        "--output_folder",
        str(out),
        "--output_format",
        "files",
        "--processes_count",
        str(os.cpu_count() or 2),
        "--thread_count",
        str(threads),
        "--image_size",
        "256",
        "--resize_mode",
        "keep_ratio",
        "--resize_only_if_bigger",
        "True",
        "--encode_quality",
        "90",
        "--number_sample_per_shard",
        "1000",
        "--disallowed_header_directives",
        "[]",
        "--timeout",
        str(timeout),
        "--retries",
        "0",
    ]
    t, c = time.time(), cpu_seconds()
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}  # no update check over the network
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    written = sum(1 for _ in out.rglob("*.jpg"))
    return time.time() - t, cpu_seconds() - c, written


def _median_run(runs: list[tuple[float, float, int]]) -> tuple[float, float, int]:
    """The run with the median images/s (its time, CPU and count together)."""
    ranked = sorted(runs, key=lambda r: r[2] / r[0])
    return ranked[len(ranked) // 2]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3, help="alternated runs of each; medians are reported")
    ap.add_argument("--pause", type=float, default=5.0, help="seconds between runs (sockets drain)")
    ap.add_argument(
        "--mode",
        default="multi_processing",
        choices=("in_memory", "multi_threading", "multi_processing"),
        help="DirectRunner mode for our harvest (worker processes = cores)",
    )
    args = ap.parse_args()
    python = ensure_img2dataset()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        urls = [f"http://127.0.0.1:{port}/img/{i}.jpg" for i in range(args.images)]
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            import urllib.request

            samples = [urllib.request.urlopen(u).read() for u in urls[:40]]
            ceiling = pillow_ceiling(samples)
            ours_runs, i2d_runs = [], []
            for _ in range(args.repeats):  # alternated, with a pause so closed sockets drain
                for runs, fn in (
                    (ours_runs, lambda d: run_ours(urls, d, args.mode)),
                    (i2d_runs, lambda d: run_img2dataset(python, urls, d)),
                ):
                    d = work / f"run{len(ours_runs) + len(i2d_runs)}"
                    d.mkdir()
                    runs.append(fn(d))
                    time.sleep(args.pause)
    finally:
        server.terminate()
    for name, runs in (("ours", ours_runs), ("img2dataset", i2d_runs)):
        print(f"{name:12s} runs: " + ", ".join(f"{n / s:.1f}" for s, _, n in runs) + " img/s")
    ours_s, ours_cpu, ours_n = _median_run(ours_runs)
    i2d_s, i2d_cpu, i2d_n = _median_run(i2d_runs)
    ours_rate, i2d_rate = ours_n / ours_s, i2d_n / i2d_s
    print(
        f"{args.images:,} URLs on 127.0.0.1 (1 in 20 at 1600x1200), shorter side -> 256, JPEG q90; "
        f"ours on the DirectRunner in {args.mode} mode"
    )
    print(
        f"ours        {ours_n:6,} images in {ours_s:6.1f} s = {ours_rate:7.1f} img/s, "
        f"{1000 * ours_cpu / max(ours_n, 1):5.1f} CPU-ms/img"
    )
    print(
        f"img2dataset {i2d_n:6,} images in {i2d_s:6.1f} s = {i2d_rate:7.1f} img/s, "
        f"{1000 * i2d_cpu / max(i2d_n, 1):5.1f} CPU-ms/img"
    )
    print(f"Pillow decode+resize+encode ceiling on {os.cpu_count()} cores: {ceiling:7.1f} img/s")
    print(
        f"median of {args.repeats} alternated runs each; ratio ours/img2dataset: {ours_rate / i2d_rate:.2f}x (target >= 1.0x, aim 1.5x); "
        f"ours at {ours_rate / ceiling:.0%} of the ceiling (target >= 70%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
