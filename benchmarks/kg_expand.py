"""Benchmark: level-by-level Beam expansion against one transitive-closure query.

    .venv/bin/python benchmarks/kg_expand.py                 # 100k taxa (about 1M triples)
    .venv/bin/python benchmarks/kg_expand.py --taxa 20000    # quicker

Generates a Wikidata-shaped graph of taxa under animal (Q729) and plant (Q756) with parent-taxon
links, some second parents (P279), labels, descriptions, taxon names, ranks, common names,
sitelinks on data nodes, and a sprinkling of items the living mode excludes (cultivars, things
with coordinates). It loads the graph into an `oxigraph` server on 127.0.0.1 and times, in one run:

- peer: one closure query (`?e (wdt:P171|wdt:P279|wdt:P31)* ?root` with the same exclusions and
  the sitelinks threshold), which returns the entity ids only;
- ours: the whole `entitynet kg expand` (walk + DirectRunner pipeline) over the same server, which
  also fetches labels, aliases, descriptions, statements and lineage, and writes entities.jsonl;
  once with `--strategy auto` (here: the closure query for the walk) and once with `levels`.

It checks that all three find the same entity set and that both of ours write identical files,
and prints entities/s and the ratios, and a floor: the detail queries alone (what any expansion
that fetches the same details from this server pays, without the walk or Beam). Targets: auto's whole expansion within 2x of the
single query, the levels walk within 3x. The last line reads
`kg: auto N.NNx, levels traversal N.NNx of the closure query`.
"""

from __future__ import annotations

import argparse
import logging
import random
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from beam_pipelines import expand_kg
from entitynet.kg import expand, sparql
from entitynet.kg.client import KGSource
from entitynet.kg.expand import ExpandConfig, fetch_class_sets
from entitynet.kg.remote import RemoteSparql
from entitynet.records import Entity, read_jsonl

WD, WDT = "http://www.wikidata.org/entity/", "http://www.wikidata.org/prop/direct/"
RDFS = "http://www.w3.org/2000/01/rdf-schema#label"
DESC, ABOUT = "http://schema.org/description", "http://schema.org/about"
ALT = "http://www.w3.org/2004/02/skos/core#altLabel"
SITELINKS, DATA = "http://wikiba.se/ontology#sitelinks", "https://www.wikidata.org/wiki/Special:EntityData/"
XSD_INT = "http://www.w3.org/2001/XMLSchema#integer"
RANKS = ["Q36732", "Q38348", "Q37517", "Q36602", "Q35409", "Q34740", "Q7432"]


def generate(path: Path, taxa: int, seed: int = 0) -> int:
    """Write an N-Triples graph with about `taxa` taxa; returns the triple count."""
    rng = random.Random(seed)
    lines: list[str] = []

    def t(s, p, o):
        lines.append(f"<{WD}{s}> <{p}> {o} .")

    def item(q, label, sitelinks, rank, parent=None):
        t(q, RDFS, f'"{label}"@en')
        t(q, DESC, f'"synthetic taxon {label}"@en')
        t(q, WDT + "P31", f"<{WD}Q16521>")
        t(q, WDT + "P225", f'"{label.capitalize()}"')
        t(q, WDT + "P105", f"<{WD}{rank}>")
        if parent:
            t(q, WDT + "P171", f"<{WD}{parent}>")
        lines.append(f"<{DATA}{q}> <{ABOUT}> <{WD}{q}> .")
        lines.append(f'<{DATA}{q}> <{SITELINKS}> "{sitelinks}"^^<{XSD_INT}> .')

    for q, name in (("Q729", "animal"), ("Q756", "plant")):
        item(q, name, 300, RANKS[0])
    for q, name in (("Q16521", "taxon"), *((r, f"rank {r}") for r in RANKS)):
        t(q, RDFS, f'"{name}"@en')
    # geometric level sizes: a deep, bushy taxonomy like Wikidata's parent-taxon tree
    sizes, total, k = [], 0, 0
    while total < taxa:
        n = min(taxa - total, max(2, int(2 * 2.2**k)))
        sizes.append(n)
        total += n
        k += 1
    previous, next_id = ["Q729", "Q756"], 1_000_000
    for depth, n in enumerate(sizes, 1):
        current = []
        for _ in range(n):
            q = f"Q{next_id}"
            next_id += 1
            parent = rng.choice(previous)
            rank = RANKS[min(len(RANKS) - 1, depth * len(RANKS) // len(sizes))]
            sitelinks = int(rng.paretovariate(1.2) * 3) if depth > 2 else 50
            item(q, f"taxon {q}", sitelinks, rank, parent)
            if rng.random() < 0.3:
                t(q, WDT + "P1843", f'"common {q}"@en')
                t(q, ALT, f'"alias of {q}"@en')
            if rng.random() < 0.03 and len(previous) > 1:  # a second parent
                t(q, WDT + "P279", f"<{WD}{rng.choice(previous)}>")
            if depth == len(sizes) and rng.random() < 0.01:
                # excluded leaves: a cultivar or an individual with coordinates (the pipeline never
                # walks through excluded items; the closure query would, so keep them at the leaves)
                if rng.random() < 0.5:
                    t(q, WDT + "P31", f"<{WD}Q4886>")
                else:
                    t(q, WDT + "P625", '"Point(1 2)"^^<http://www.opengis.net/ont/geosparql#wktLiteral>')
            current.append(q)
        previous = current
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def serve(binary: str, nt: Path, workdir: Path) -> tuple[subprocess.Popen, str]:
    db = workdir / "db"
    t = time.time()
    subprocess.run(
        [binary, "load", "--location", str(db), "--file", str(nt)], check=True, capture_output=True
    )
    print(f"loaded into oxigraph in {time.time() - t:.1f} s")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "serve-read-only", "--location", str(db), "--bind", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/query"
    for _ in range(400):
        try:
            with urllib.request.urlopen(url + "?" + urllib.parse.urlencode({"query": "ASK {}"}), timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.05)
    raise SystemExit("oxigraph server did not start")


def detail_floor(client: RemoteSparql, cfg: ExpandConfig, selected: list[str]) -> float:
    """Seconds for the detail queries alone (claims and texts of `selected`, then the labels of the
    items their statements name), on a thread pool with the expansion's batch size and
    concurrency, no Beam: what any expansion that fetches the same details from this server pays."""
    from concurrent.futures import ThreadPoolExecutor

    def batches(entity_ids):
        entity_ids = sorted(entity_ids)
        return [entity_ids[i : i + cfg.batch_size] for i in range(0, len(entity_ids), cfg.batch_size)]

    t = time.time()
    with ThreadPoolExecutor(cfg.concurrency) as pool:
        claims: dict = {}
        for part in pool.map(lambda b: expand.fetch_claims(client, cfg, b), batches(selected)):
            claims.update(part)
        list(pool.map(lambda b: expand.fetch_texts(client, cfg, b), batches(selected)))
        need = expand.referenced_ids(claims, cfg) - set(selected)
        list(pool.map(lambda b: expand.fetch_texts(client, cfg, b, True), batches(need)))
    return time.time() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--taxa", type=int, default=100_000)
    ap.add_argument("--min-sitelinks", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=ExpandConfig.batch_size)
    ap.add_argument("--concurrency", type=int, default=ExpandConfig.concurrency)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR, format="  %(message)s")
    logging.getLogger("entitynet").setLevel(logging.INFO)  # the pipeline's per-level progress lines
    binary = str(Path(sys.executable).parent / "oxigraph")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        nt = work / "taxa.nt"
        t = time.time()
        triples = generate(nt, args.taxa)
        print(f"generated {args.taxa:,} taxa, {triples:,} triples in {time.time() - t:.1f} s")
        proc, url = serve(binary, nt, work)
        try:
            cfg = ExpandConfig(
                roots=("Q729", "Q756"),
                min_sitelinks=args.min_sitelinks,
                batch_size=args.batch_size,
                concurrency=args.concurrency,
            ).resolved()
            # peer: one closure query with the same exclusions and threshold
            client = RemoteSparql(url, read_timeout=600, max_retries=0)
            t = time.time()
            classes = fetch_class_sets(client, cfg)
            q = sparql.closure(cfg.roots, cfg.via, sorted(classes.excluded), cfg.exclude_with)
            q = (
                q.rstrip().rstrip("}") + f"  {{ {sparql.SITELINKS.format(v='?e', n='?n')} }}\n"
                f"  FILTER(?n >= {cfg.min_sitelinks})\n}}"
            )
            rows = client.select(q)
            peer_s = time.time() - t
            peer = {r["e"].value.rsplit("/", 1)[1] for r in rows}
            # ours: the whole expansion, by each strategy
            runs = {}
            for strategy in ("auto", "levels"):
                t = time.time()
                stats = expand_kg.run(
                    KGSource(endpoint=url, read_timeout=600), cfg, str(work / strategy), strategy=strategy
                )
                runs[strategy] = (time.time() - t, stats, (work / strategy / "entities.jsonl").read_bytes())
            ours = {e.id for e in read_jsonl(work / "auto" / "entities.jsonl", Entity)}
            levels_ids = {e.id for e in read_jsonl(work / "levels" / "entities.jsonl", Entity)}
            floor_s = detail_floor(client, cfg, sorted(ours))
        finally:
            proc.terminate()
    same = ours == peer == levels_ids
    identical = runs["auto"][2] == runs["levels"][2]
    stats = runs["auto"][1]
    print(
        f"traversed {stats['traversed']:,} taxa to depth {stats['max_depth_reached']}; "
        f"{len(ours):,} entities with >= {args.min_sitelinks} sitelinks"
    )
    print(
        f"same entity set as the closure query (auto and levels): {same}; auto and levels entities.jsonl identical: {identical}"
    )
    print(
        f"peer  one closure query (ids only)             {peer_s:7.1f} s  {len(peer) / peer_s:9,.0f} entities/s"
    )
    for strategy, (secs, st, _) in runs.items():
        walk_s = st["traversal_seconds"]
        print(
            f"ours  --strategy {strategy:6s} (ids + all details)  {secs:7.1f} s  {len(ours) / secs:9,.0f} entities/s; "
            f"walked by {st['strategy']} in {walk_s:.1f} s ({st['traversal_queries']:,} queries, {st['traversed'] / walk_s:,.0f} taxa/s)"
        )
    print(
        f"floor: the detail queries alone (claims, texts, labels; thread pool, no Beam) {floor_s:7.1f} s = "
        f"{floor_s / peer_s:.2f}x the closure query"
    )
    auto_s, levels_walk = runs["auto"][0], runs["levels"][1]["traversal_seconds"]
    print(
        f"targets: auto whole expansion <= 2x the closure query, levels traversal <= 3x; "
        f"auto {'under' if auto_s < 120 else 'OVER'} 2 minutes"
    )
    print(
        f"kg: auto {auto_s / peer_s:.2f}x, levels traversal {levels_walk / peer_s:.2f}x of the closure query"
    )
    return 0 if same and identical else 1


if __name__ == "__main__":
    sys.exit(main())
