"""An embedded SPARQL store: pyoxigraph bulk-loaded from .ttl / .nt / .nt.gz files."""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path
from typing import IO, cast

import pyoxigraph as ox

from entitynet.errors import KGError
from entitynet.kg.results import Row, parse_results

_FORMATS = {
    ".ttl": ox.RdfFormat.TURTLE,
    ".nt": ox.RdfFormat.N_TRIPLES,
    ".n3": ox.RdfFormat.N3,
}

# One loaded store per set of files per process: Beam creates a DoFn instance per stage,
# and each would otherwise parse the whole graph again.
_STORES: dict[tuple[tuple[str, int, int], ...], ox.Store] = {}
_LOCK = threading.Lock()


def _format_of(path: Path) -> tuple[ox.RdfFormat, bool]:
    name = path.name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    fmt = _FORMATS.get(os.path.splitext(name)[1])
    if fmt is None:
        raise KGError(
            f"unsupported knowledge-graph file {path}: use .ttl, .nt or .nt.gz (optionally gzipped)"
        )
    return fmt, gz


def load_store(paths: list[str] | tuple[str, ...]) -> ox.Store:
    """A read-only-by-convention in-memory store holding every triple of `paths`."""
    files = [Path(p) for p in paths]
    stats: list[tuple[str, int, int]] = []
    for p in files:
        try:
            st = p.stat()
        except OSError as e:
            raise KGError(f"cannot read knowledge-graph file {p}: {e.strerror}") from e
        stats.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    key = tuple(stats)
    with _LOCK:
        store = _STORES.get(key)
        if store is None:
            store = ox.Store()
            for p in files:
                fmt, gz = _format_of(p)
                try:
                    if gz:
                        with gzip.open(p, "rb") as f:
                            # the stub's IO[bytes] is narrower than the binary file objects it reads
                            store.bulk_load(input=cast(IO[bytes], f), format=fmt)
                    else:
                        store.bulk_load(path=str(p), format=fmt)
                except SyntaxError as e:
                    raise KGError(
                        f"malformed knowledge-graph file {p}: {e}; fix the file or re-export it"
                    ) from e
                except (OSError, EOFError) as e:
                    raise KGError(f"cannot read knowledge-graph file {p}: {e}") from e
            _STORES[key] = store
    return store


class EmbeddedSparql:
    """`select(query) -> rows` over an in-process Oxigraph store."""

    def __init__(self, paths: list[str] | tuple[str, ...]):
        self.source = ", ".join(str(p) for p in paths)
        self.store = load_store(paths)

    def select(self, query: str) -> list[Row]:
        payload = self._serialized(query)
        return parse_results(payload, self.source)

    def _serialized(self, query: str) -> bytes:
        # pyoxigraph's solutions may only be dropped on the thread that made them: they live only in
        # this frame, never in one an error's traceback keeps (a parse error is raised from `select`)
        try:
            # select() is given SELECT queries, whose results are QuerySolutions
            solutions = cast(ox.QuerySolutions, self.store.query(query))
        except SyntaxError as e:  # our query builders produce valid SPARQL: this is a bug
            raise RuntimeError(f"invalid SPARQL generated: {e}\n{query}") from e
        payload = solutions.serialize(format=ox.QueryResultsFormat.JSON)
        assert payload is not None  # serialize() without an output returns the bytes
        return payload
