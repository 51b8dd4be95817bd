"""The breadth-first walk from the roots to every entity below them, as plain functions.

Two ways to learn each level's children, one walk over them, so both give the same graph:

- `levels`: one batched `VALUES` query per `batch_size` parents of the frontier (several in flight),
  level after level. Every query stays small, which public endpoints (WDQS) need.
- `closure`: one query for every edge below the roots (`?parent (via)* ?root . ?child via ?parent`),
  then the same walk over the answer. On an endpoint that can take it (Oxigraph, QLever, a file)
  it replaces thousands of round trips with one.
- `auto` (the default) asks the closure query with a timeout and walks level by level when the
  endpoint times out or refuses; the stats record which one ran.

The walk stops at the first level that finds nothing new, so its cost follows the graph's real
depth, not `max_depth`; one level past `max_depth` is only probed (anything new there means the
expansion was cut short, an error). The walk runs in the driver on a thread pool: it waits on the
endpoint, not on CPU; the details of the selected entities are fetched by the Beam pipeline.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from entitynet.errors import ConfigError, KGError
from entitynet.kg import expand, ids, sparql
from entitynet.kg.client import KGSource, SparqlClient

log = logging.getLogger("entitynet.expand")

STRATEGIES = ("auto", "closure", "levels")
Node = tuple[str, int, str, int]  # (id, BFS depth, root, sitelinks)


@dataclass
class Walk:
    nodes: list[Node]
    hops: list[expand.Hop]  # every edge from a reached parent (a node's parents are all its hops)
    unexplored: int  # new entities one level below max_depth (0: the walk ended on its own)
    strategy: str = ""  # what ran: closure or levels
    fallback_reason: str = ""  # auto: why the closure query was not used
    queries: int = 0


def walk(
    roots: tuple[str, ...],
    root_links: dict[str, int],
    children_of: Callable[[list[str]], list[expand.Hop]],
    max_depth: int,
    started: float | None = None,
) -> Walk:
    """Breadth-first from `roots`; `children_of(parents)` gives the hops down from those parents.
    A node's depth is its first level, its root the first configured root among the roots of the
    parents that reached it there, its sitelinks the largest any hop reported."""
    rank = {r: i for i, r in enumerate(roots)}
    frontier: list[Node] = [(r, 0, r, root_links.get(r, 0)) for r in roots]
    nodes, seen = list(frontier), set(roots)
    hops: list[expand.Hop] = []
    started = time.time() if started is None else started
    for depth in range(1, max_depth + 2):
        root_of = {n[0]: n[2] for n in frontier}
        level = children_of(sorted(root_of, key=ids.numeric))
        found: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for h in level:
            found[h.child].append((h.sitelinks, root_of[h.parent]))
        new = []
        for child in sorted(found, key=ids.numeric):
            if child not in seen:
                via = found[child]
                new.append(
                    (child, depth, min((r for _, r in via), key=rank.__getitem__), max(n for n, _ in via))
                )
        if depth > max_depth:
            return Walk(nodes, hops, len(new))
        hops.extend(level)
        if not new:
            break
        seen.update(n[0] for n in new)
        nodes.extend(new)
        frontier = new
        log.info(
            "depth %2d: %7d new entities, %8d so far (%.1f s)",
            depth,
            len(new),
            len(nodes),
            time.time() - started,
        )
    return Walk(nodes, hops, 0)


def by_levels(client: SparqlClient, cfg: expand.ExpandConfig, classes: expand.ClassSets):
    """`children_of` asking one batched query per `batch_size` parents, `concurrency` at a time;
    also returns a counter of the queries made."""
    pool = ThreadPoolExecutor(cfg.concurrency)
    count = [0]

    def children_of(parents: list[str]) -> list[expand.Hop]:
        batches = [parents[i : i + cfg.batch_size] for i in range(0, len(parents), cfg.batch_size)]
        count[0] += len(batches)
        return [
            h
            for part in pool.map(lambda b: expand.fetch_hops(client, cfg, b, classes), batches)
            for h in part
        ]

    return children_of, count, pool


def closure_hops(
    client: SparqlClient, cfg: expand.ExpandConfig, classes: expand.ClassSets
) -> dict[str, list]:
    """Every hop below the roots from one closure query, by parent (excluded children dropped as
    the level queries drop them: the same parsing over the same rows)."""
    assert cfg.exclude_with is not None  # the traversal runs on a resolved() config
    rows = client.select(sparql.closure_children(cfg.roots, cfg.via, cfg.exclude_with))
    by_parent: dict[str, list[expand.Hop]] = defaultdict(list)
    for h in expand.parse_hops(rows, classes.excluded):
        by_parent[h.parent].append(h)
    return by_parent


def traverse(
    source: KGSource,
    client: SparqlClient,
    cfg: expand.ExpandConfig,
    root_links: dict[str, int],
    classes: expand.ClassSets,
    strategy: str = "auto",
    closure_timeout: float = 60.0,
    started: float | None = None,
) -> Walk:
    """The walk by `strategy` (see the module docstring)."""
    check_strategy(strategy)
    reason = ""
    if strategy in ("auto", "closure"):
        try:
            quick = (
                client if source.kg_files or strategy == "closure" else _impatient(source, closure_timeout)
            )
            by_parent = closure_hops(quick, cfg, classes)
        except KGError as e:
            if strategy == "closure":
                raise
            reason = str(e)
            log.warning("the closure query did not answer (%s); walking the graph level by level", reason)
        else:
            result = walk(
                cfg.roots,
                root_links,
                lambda ps: [h for p in ps for h in by_parent.get(p, ())],
                cfg.max_depth,
                started,
            )
            return dataclasses.replace(result, strategy="closure", queries=1)
    children_of, count, pool = by_levels(client, cfg, classes)
    try:
        result = walk(cfg.roots, root_links, children_of, cfg.max_depth, started)
    finally:
        pool.shutdown(wait=False)
    return dataclasses.replace(result, strategy="levels", fallback_reason=reason, queries=count[0])


def check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")


def _impatient(source: KGSource, timeout: float) -> SparqlClient:
    """A client for the one closure query: `timeout` for the whole answer (a trickling one too), no
    retries (a timeout is the answer auto waits for: it means walk level by level)."""
    total = min(timeout, source.total_timeout)
    return dataclasses.replace(source, read_timeout=timeout, total_timeout=total, max_retries=0).open()


def product_hops(client: SparqlClient, cfg: expand.ExpandConfig, classes: expand.ClassSets, nodes) -> list:
    """Living mode: the fruits of the plant taxa reached (batched queries, `concurrency` at a time)."""
    if cfg.mode != "living" or not (cfg.product_classes and cfg.product_roots):
        return []
    roots = set(cfg.product_roots)
    taxa = sorted((n[0] for n in nodes if n[2] in roots), key=ids.numeric)
    batches = [taxa[i : i + cfg.batch_size] for i in range(0, len(taxa), cfg.batch_size)]
    with ThreadPoolExecutor(cfg.concurrency) as pool:
        return [
            h for part in pool.map(lambda b: expand.fetch_products(client, b, classes), batches) for h in part
        ]
