"""Benchmark: our harvest against img2dataset on a slow web of many hosts, served from loopback.

    .venv/bin/python benchmarks/harvest_slow_web.py                      # 5,000 URLs on 50 hosts
    .venv/bin/python benchmarks/harvest_slow_web.py --urls 500 --repeats 1

Real harvests wait on the network, not on the CPU. This web answers from 127.0.0.1 ... 127.0.0.N
(every address of 127.0.0.0/8 is a distinct host to both tools) with a long-tailed delay chosen
per URL: lognormal around a 300 ms median (capped at 3 s) for 93% of them, 3-8 s for 5%, and 2%
stall until the client gives up. Both tools get the same URLs, the same number of processes (the
cores), a 10 s timeout and no retries; img2dataset fetches with `--threads` threads per process,
ours with one event loop per process holding up to `--in-flight` requests (and 2 image threads).
The server counts, on its side, the requests in flight per host and in all, and how often a host
had more in flight than `--per-host` (our fetcher's per-host limit over all processes;
img2dataset has none). The runs alternate
`--repeats` times with pauses; medians are reported. Its last line reads
`slow web: ours N img/s, img2dataset N img/s, ratio N.NNx, per-host limit exceeded N times`.
Target: at least 1.5x img2dataset's images/s, the per-host limit never exceeded.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from harvest_vs_img2dataset import ensure_img2dataset, run_img2dataset, run_ours  # noqa: E402

SERVER = r"""
import asyncio, hashlib, io, json, math, socket, sys
from statistics import NormalDist
import numpy as np
from PIL import Image

limit, hosts = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
def make(w, h):
    base = rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8)
    out = io.BytesIO(); Image.fromarray(base).resize((w, h)).save(out, "JPEG", quality=90)
    return out.getvalue()
images = [make(400, 300) for _ in range(30)]
NORMAL = NormalDist()

def delay_of(i):
    u = int(hashlib.blake2b(str(i).encode(), digest_size=8).hexdigest(), 16) / 2**64
    if u < 0.02:
        return None  # stalls until the client gives up
    if u < 0.07:
        return 3.0 + (u - 0.02) / 0.05 * 5.0
    z = NORMAL.inv_cdf(min(max((u - 0.07) / 0.93, 1e-9), 1 - 1e-9))
    return min(0.3 * math.exp(0.6 * z), 3.0)

def fresh():
    return {"in_flight": {}, "total": 0, "peak_total": 0, "peak_per_host": {}, "exceeded": 0,
            "served": 0, "stalled": 0}
state = fresh()

def reply(writer, status, body, ctype):
    writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)

async def handle(reader, writer):
    host = writer.get_extra_info("sockname")[0]
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            path = line.split()[1].decode()
            if path == "/__stats":
                reply(writer, "200 OK", json.dumps(state).encode(), "application/json")
            elif path == "/__reset":
                state.clear(); state.update(fresh()); reply(writer, "200 OK", b"{}", "application/json")
            elif path == "/robots.txt":
                reply(writer, "200 OK", b"User-agent: *\nAllow: /\n", "text/plain")
            else:
                i = int(path.rsplit("/", 1)[1].split(".")[0])
                n = state["in_flight"].get(host, 0) + 1
                state["in_flight"][host] = n
                state["total"] += 1
                state["peak_total"] = max(state["peak_total"], state["total"])
                state["peak_per_host"][host] = max(state["peak_per_host"].get(host, 0), n)
                state["exceeded"] += n > limit
                try:
                    d = delay_of(i)
                    if d is None:
                        state["stalled"] += 1
                        try:
                            await asyncio.wait_for(reader.read(1), 120)  # until the client hangs up
                        except asyncio.TimeoutError:
                            pass
                        return
                    await asyncio.sleep(d)
                    body = images[i % len(images)] + i.to_bytes(4, "big")  # distinct bytes per URL
                    reply(writer, "200 OK", body, "image/jpeg")
                    state["served"] += 1
                finally:
                    state["in_flight"][host] -= 1
                    state["total"] -= 1
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()

async def main():
    probe = socket.socket(); probe.bind(("127.0.0.1", 0)); port = probe.getsockname()[1]; probe.close()
    addresses = [f"127.0.0.{k}" for k in range(1, hosts + 1)]
    server = await asyncio.start_server(handle, addresses, port, backlog=4096, reuse_address=True)
    print(port, flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


def stats(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--urls", type=int, default=5000)
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--threads", type=int, default=64, help="img2dataset's fetch threads per process")
    ap.add_argument("--in-flight", type=int, default=256, help="our requests open per process")
    ap.add_argument("--per-host", type=int, default=8, help="our per-host limit, counted on the server")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pause", type=float, default=5.0)
    args = ap.parse_args()
    python = ensure_img2dataset()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(args.per_host), str(args.hosts)], stdout=subprocess.PIPE, text=True
    )
    runs: dict[str, list] = {"ours": [], "img2dataset": []}
    try:
        port = int(server.stdout.readline())
        urls = [f"http://127.0.0.{1 + i % args.hosts}:{port}/img/{i}.jpg" for i in range(args.urls)]
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            for _ in range(args.repeats):
                for name in ("ours", "img2dataset"):
                    d = work / f"run{sum(map(len, runs.values()))}"
                    d.mkdir()
                    stats(port, "/__reset")
                    if name == "ours":
                        secs, cpu, n = run_ours(
                            urls, d, "multi_processing", 2, args.per_host, 10.0, in_flight=args.in_flight
                        )
                    else:
                        secs, cpu, n = run_img2dataset(python, urls, d, args.threads, 10.0)
                    s = stats(port, "/__stats")
                    runs[name].append((n / secs, 1000 * cpu / max(n, 1), n, s))
                    print(
                        f"  {name:11s} {n:5,} images in {secs:5.1f} s = {n / secs:6.1f} img/s, "
                        f"{1000 * cpu / max(n, 1):5.1f} CPU-ms/img; server: peak {s['peak_total']} in flight, "
                        f"{max(s['peak_per_host'].values(), default=0)} on one host, "
                        f"over {args.per_host} per host {s['exceeded']} times, {s['stalled']} stalled",
                        flush=True,
                    )
                    time.sleep(args.pause)
    finally:
        server.terminate()
    med = {k: statistics.median(r[0] for r in v) for k, v in runs.items()}
    exceeded = max(r[3]["exceeded"] for r in runs["ours"])
    cores = os.cpu_count() or 2
    print(
        f"{args.urls:,} URLs on {args.hosts} hosts, long-tailed delays; {cores} processes each: img2dataset "
        f"{args.threads} threads, ours {args.in_flight} in flight; medians of {args.repeats} alternated runs"
    )
    for k in runs:
        cpu = statistics.median(r[1] for r in runs[k])
        peak = max(r[3]["peak_total"] for r in runs[k])
        print(f"{k:11s} {med[k]:7.1f} img/s, {cpu:5.1f} CPU-ms/img, peak {peak} requests in flight")
    print(
        f"slow web: ours {med['ours']:.0f} img/s, img2dataset {med['img2dataset']:.0f} img/s, "
        f"ratio {med['ours'] / med['img2dataset']:.2f}x, per-host limit exceeded {exceeded} times"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
