"""A pool of (url, text[, page_url]) rows, as users have from LAION, DataComp or COYO, matched to
the queries' names (noun and alias queries: entity names, aliases, common and taxon names) by
MetaCLIP-style space-delimited substring matching in one Aho-Corasick pass over the pool.

A pool is one or more files or globs (`pool_files`), local or on any Beam filesystem
(`gs://bucket/pool/*.parquet`); the harvest reads it in units (`pool_units`: a Parquet row group,
or a whole JSONL/CSV file) on many workers, each with its own matcher (`PoolMatcher`), so no
process holds the pool or its matches. `Pool` is the same search over a small pool in memory
(tests, tools)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from entitynet.errors import ConfigError
from entitynet.files import LOCAL, LocalStore
from entitynet.records import Candidate, Query
from entitynet.text.matching import Matcher, Prefilter

_URL = ("url", "URL", "image_url")
_TEXT = ("text", "caption", "TEXT", "alt", "alt_text")
_PAGE = ("page_url", "page", "context_url")


def _pick(row: dict, names: tuple[str, ...]):
    return next((row[n] for n in names if row.get(n)), None)


SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv")


def pool_files(patterns, store: LocalStore = LOCAL) -> list[str]:
    """The files of a pool given as paths and globs, sorted (`store`: the local disk, or the
    pipelines' store over any Beam filesystem); a ConfigError naming a pattern that matches
    nothing or a file of an unsupported type."""
    if isinstance(patterns, str):
        patterns = (patterns,)
    files: list[str] = []
    for pattern in patterns:
        found = store.match(pattern)
        if not found:
            raise ConfigError(f"pool {pattern} matches no file; check the path or glob")
        files += found
    for f in files:
        if Path(f).suffix.lower() not in SUFFIXES:
            raise ConfigError(f"pool {f}: unsupported file type; use .jsonl, .parquet, .csv or .tsv")
    return sorted(set(files))


def pool_units(files: list[str], store: LocalStore = LOCAL) -> list[tuple[str, int]]:
    """Units of work over the pool's files: (file, row group) for Parquet (read from its footer),
    (file, -1) for a whole JSONL/CSV/TSV file."""
    import pyarrow.parquet as pq

    units = []
    for f in files:
        if f.lower().endswith(".parquet"):
            try:
                with store.open(f) as fh:
                    groups = pq.ParquetFile(fh).num_row_groups
            except (OSError, ValueError) as e:
                raise ConfigError(f"pool {f} is not a readable Parquet file ({e})") from None
            units += [(f, g) for g in range(groups)]
        else:
            units.append((f, -1))
    return units


BATCH = 65536  # rows per batch


def read_batches(unit: tuple[str, int], store: LocalStore = LOCAL) -> Iterator[tuple]:
    """(urls, texts, page_urls) of one unit (`pool_units`) as pyarrow string arrays of equal length
    (a missing text or page URL is null), a batch at a time; rows without a URL are dropped. Texts stay in Arrow: a matcher converts only
    the rows it needs (`PoolMatcher.candidates`)."""
    import pyarrow as pa

    path, group = unit
    suffix = Path(path).suffix.lower()
    try:
        with store.open(path) as raw:
            if suffix == ".parquet":
                import pyarrow.parquet as pq

                pf = pq.ParquetFile(raw)
                names = set(pf.schema_arrow.names)
                if not names & set(_URL):
                    raise ConfigError(f"pool {path} has no url column (one of {', '.join(_URL)})")
                columns = [c for c in (*_URL, *_TEXT, *_PAGE) if c in names]
                groups = [group] if group >= 0 else list(range(pf.num_row_groups))
                for batch in pf.iter_batches(batch_size=BATCH, row_groups=groups, columns=columns):
                    yield _columns(batch)
            else:
                text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                if suffix in (".jsonl", ".json"):
                    rows: Iterable[dict] = (json.loads(line) for line in text if line.strip())
                elif suffix in (".csv", ".tsv"):
                    rows = csv.DictReader(text, delimiter="\t" if suffix == ".tsv" else ",")
                else:
                    raise ConfigError(
                        f"pool {path}: unsupported file type; use .jsonl, .parquet, .csv or .tsv"
                    )
                chunk: list[tuple[str, str, str]] = []
                for row in _rows(rows, path):
                    chunk.append(row)
                    if len(chunk) == BATCH:
                        yield tuple(pa.array(list(c), pa.string()) for c in zip(*chunk, strict=True))
                        chunk = []
                if chunk:
                    yield tuple(pa.array(list(c), pa.string()) for c in zip(*chunk, strict=True))
    except OSError as e:
        raise ConfigError(f"cannot read pool {path}: {e}") from e
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"pool {path} is malformed: {e}") from e


def _columns(batch) -> tuple:
    """A Parquet batch's (url, text, page_url) string arrays: per row the first non-empty of each
    column group (null where none); rows without a URL dropped."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def pick(names):
        cols = [batch.column(n) for n in names if n in batch.schema.names]
        cols = [c if c.type == pa.string() else pc.cast(c, pa.string()) for c in cols]
        if not cols:
            return pa.nulls(batch.num_rows, pa.string())
        if len(cols) == 1:
            return cols[0]
        return pc.coalesce(*(pc.if_else(pc.equal(c, ""), pa.scalar(None, pa.string()), c) for c in cols))

    url, text, page = pick(_URL), pick(_TEXT), pick(_PAGE)
    has_url = pc.not_equal(url, "")  # null where there is none
    if has_url.null_count or not pc.all(has_url).as_py():
        has_url = has_url.fill_null(False)
        url, text, page = (pc.filter(x, has_url) for x in (url, text, page))
    return url, text, page


def read_unit(unit: tuple[str, int]) -> Iterator[tuple[str, str, str]]:
    """(url, text, page_url) rows of one unit (`pool_units`)."""
    for urls, texts, pages in read_batches(unit):
        for url, text, page in zip(urls.to_pylist(), texts.to_pylist(), pages.to_pylist(), strict=True):
            yield url, text or "", page or ""


def read_pool(path: str | Path) -> Iterator[tuple[str, str, str]]:
    """(url, text, page_url) rows of a .jsonl, .parquet, .csv or .tsv file (all of it)."""
    p = str(path)
    if Path(p).suffix.lower() not in SUFFIXES:
        raise ConfigError(f"pool {p}: unsupported file type; use .jsonl, .parquet, .csv or .tsv")
    yield from read_unit((p, -1))


def _rows(rows: Iterable[dict], path: str) -> Iterator[tuple[str, str, str]]:
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ValueError(f"row {i} is not an object")
        url, text = _pick(row, _URL), _pick(row, _TEXT)
        if url is None:
            if i == 1:
                raise ConfigError(f"pool {path} has no url column (one of {', '.join(_URL)})")
            continue
        yield str(url), str(text or ""), str(_pick(row, _PAGE) or "")


def pool_names(queries: Iterable[Query]) -> list[tuple[str, str, tuple[str, ...]]]:
    """What a pool is matched against: (id, text, entity ids) of the noun and alias queries (entity
    names, aliases, common and taxon names), as plain tuples, cheap to ship to every worker."""
    return [(q.id, q.text, tuple(q.entity_ids)) for q in queries if q.kind in ("noun", "alias")]


class PoolMatcher:
    """The queries' names in one automaton: built once per worker, then row by row."""

    def __init__(self, names: Iterable[tuple[str, str, tuple[str, ...]]]):
        """`names`: (query id, name, entity ids) of the name queries (`pool_names`)."""
        names = list(names)
        self.matcher = Matcher([n[1] for n in names], [(n[0], n[2]) for n in names])
        self.prefilter = Prefilter(n[1] for n in names)

    def candidates(self, urls, texts, pages) -> Iterator[Candidate]:
        """The candidates of a batch (`read_batches`): the prefilter's rows, matched exactly; the
        other rows never leave Arrow."""
        for i in self.prefilter.rows(texts):
            c = self.candidate(urls[i].as_py(), texts[i].as_py() or "", pages[i].as_py() or "")
            if c is not None:
                yield c

    def candidate(self, url: str, text: str, page: str) -> Candidate | None:
        """One row as a candidate of every query whose name its text holds, else None."""
        found = sorted(self.matcher.find(text))
        if not found:
            return None
        return Candidate(
            url=url,
            page_url=page,
            alt_texts=(text,) if text else (),
            query_ids=tuple(qid for qid, _ in found),
            entity_ids=tuple(sorted({e for _, ids in found for e in ids})),
            backend=Pool.name,
            ranks=(0,) * len(found),
        )


class Pool:
    """The pool search over a small pool in memory, query by query (tests and tools)."""

    name = "pool"
    modifiers: frozenset[str] = frozenset()  # no web-search modifiers apply

    def __init__(self, path, queries: Iterable[Query]):
        queries = list(queries)
        matcher = PoolMatcher(pool_names(queries))
        by_id = {q.id: q for q in queries}
        self.by_query: dict[str, list[Candidate]] = {}
        self.rows = self.matched_rows = 0
        for unit in pool_units(pool_files(path if not isinstance(path, Path) else str(path))):
            for url, text, page in read_unit(unit):
                self.rows += 1
                c = matcher.candidate(url, text, page)
                if c is None:
                    continue
                self.matched_rows += 1
                for qid in c.query_ids:
                    self.by_query.setdefault(qid, []).append(
                        Candidate(
                            url=url,
                            page_url=page,
                            alt_texts=c.alt_texts,
                            query_ids=(qid,),
                            entity_ids=by_id[qid].entity_ids,
                            backend=self.name,
                        )
                    )

    def search(self, query: Query) -> list[Candidate]:
        return list(self.by_query.get(query.id, ()))
