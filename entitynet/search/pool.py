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
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from entitynet.errors import ConfigError
from entitynet.records import Candidate, Query
from entitynet.search.base import file_stamp
from entitynet.search.registry import Backend, Option, register
from entitynet.storage import STORE, Store
from entitynet.text.matching import Matcher, Prefilter

_URL = ("url", "URL", "image_url")
_TEXT = ("text", "caption", "TEXT", "alt", "alt_text")
_PAGE = ("page_url", "page", "context_url")

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".tsv")

# What a pool's row may hold (the README's "Pools" section says the same):
# - the URL: the first non-empty of `_URL`; a row without one is skipped;
# - the text: the first non-empty of `_TEXT`, a string or a list of strings (JSON array, Parquet list
#   column): each string of a list is one alt text of the image (one row per text reaches the matcher);
# - the page URL: the first non-empty of `_PAGE`.
# A file without a URL column or without a text column is refused (it could only give an empty
# harvest); so is a value that is neither text nor a list of texts (a JSON object, a Parquet struct).


def _columns_error(path: str, names) -> None:
    """A ConfigError when the columns `names` of pool file `path` lack a URL or a text column."""
    names = [str(n) for n in names]
    for role, wanted in (("url", _URL), ("text", _TEXT)):
        if not set(names) & set(wanted):
            shown = ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
            raise ConfigError(
                f"pool {path} has no {role} column (one of {', '.join(wanted)}); its columns are "
                f"{shown or 'none'}: rename the column that holds the {role}s"
            )


def pool_files(patterns, store: Store = STORE) -> list[str]:
    """The files of a pool given as paths and globs, sorted (`store`: the local disk, or the
    pipelines' store over any Beam filesystem); a ConfigError naming a pattern that matches
    nothing or a file of an unsupported type."""
    if isinstance(patterns, str):
        patterns = (patterns,)
    files: list[str] = []
    for pattern in patterns:
        _regular_file(pattern)
        found = store.match(pattern)
        if not found:
            raise ConfigError(f"pool {pattern} matches no file; check the path or glob")
        files += found
    for f in files:
        _regular_file(f)
        if Path(f).suffix.lower() not in SUFFIXES:
            raise ConfigError(f"pool {f}: unsupported file type; use .jsonl, .parquet, .csv or .tsv")
    return sorted(set(files))


def _regular_file(path: str) -> None:
    """A ConfigError for a local path that exists but is not a regular file (reading a pipe would
    block the harvest for ever)."""
    if "://" in path or not os.path.exists(path) or os.path.isfile(path):
        return
    if os.path.isdir(path):
        raise ConfigError(
            f"pool {path} is a directory; give its files, or a glob such as {path.rstrip('/')}/*.parquet"
        )
    raise ConfigError(f"pool {path} is not a regular file (a pipe, a device); give a file")


def pool_units(files: list[str], store: Store = STORE) -> list[tuple[str, int]]:
    """Units of work over the pool's files: (file, row group) for Parquet (read from its footer),
    (file, -1) for a whole JSONL/CSV/TSV file. The columns of Parquet, CSV and TSV files are checked
    here, before any worker starts (a JSONL file's rows are checked as they are read)."""
    import pyarrow.parquet as pq

    units = []
    for f in files:
        suffix = Path(f).suffix.lower()
        try:
            if suffix == ".parquet":
                with store.open(f) as fh:
                    pf = pq.ParquetFile(fh)
                    _check_schema(f, pf.schema_arrow)
                    groups = pf.num_row_groups
                units += [(f, g) for g in range(groups)]
                continue
            if suffix in (".csv", ".tsv"):
                with store.open(f) as fh:
                    header = next(_csv_rows(fh, suffix), None)
                if header is not None:
                    _columns_error(f, header)
        except (OSError, ValueError, UnicodeDecodeError, csv.Error) as e:
            raise ConfigError(f"pool {f} is not a readable {suffix[1:]} file ({_first_line(e)})") from None
        units.append((f, -1))
    return units


BATCH = 65536  # rows per batch


def read_batches(unit: tuple[str, int], store: Store = STORE) -> Iterator[tuple]:
    """(urls, texts, page_urls) of one unit (`pool_units`) as pyarrow string arrays of equal length
    (a missing text or page URL is null), a batch at a time; rows without a URL are dropped, a row
    with a list of texts gives one row per text. Texts stay in Arrow: a matcher converts only the
    rows it needs (`PoolMatcher.candidates`)."""
    path, group = unit
    suffix = Path(path).suffix.lower()
    try:
        with store.open(path) as raw:
            if suffix == ".parquet":
                import pyarrow.parquet as pq

                pf = pq.ParquetFile(raw)
                _check_schema(path, pf.schema_arrow)
                names = set(pf.schema_arrow.names)
                columns = [c for c in (*_URL, *_TEXT, *_PAGE) if c in names]
                groups = [group] if group >= 0 else list(range(pf.num_row_groups))
                for batch in pf.iter_batches(batch_size=BATCH, row_groups=groups, columns=columns):
                    yield _columns(batch, path)
            elif suffix in (".jsonl", ".json"):
                text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
                yield from _arrays(_json_rows(text, path))
            elif suffix in (".csv", ".tsv"):
                yield from _arrays(_csv_table(raw, suffix, path))
            else:
                raise ConfigError(f"pool {path}: unsupported file type; use .jsonl, .parquet, .csv or .tsv")
    except OSError as e:
        raise ConfigError(f"cannot read pool {path}: {e}") from e
    except (ValueError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"pool {path} is malformed: {_first_line(e)}") from e


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def _arrays(rows: Iterable[tuple[str, str, str]]) -> Iterator[tuple]:
    """(url, text, page) rows -> batches of three pyarrow string arrays."""
    import pyarrow as pa

    chunk: list[tuple[str, str, str]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == BATCH:
            yield tuple(pa.array(list(c), pa.string()) for c in zip(*chunk, strict=True))
            chunk = []
    if chunk:
        yield tuple(pa.array(list(c), pa.string()) for c in zip(*chunk, strict=True))


CSV_FIELD_LIMIT = 16 << 20  # characters in one CSV field (Python's default, 128 Ki, is below some captions)


def _csv_rows(raw, suffix: str):
    """A csv reader over a CSV/TSV file's bytes."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    # utf-8-sig: a byte-order mark (as spreadsheet programs write) is not part of the first column's name
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    # strict: a quote left open is an error, not a row that swallows the rest of the file
    return csv.reader(text, delimiter="\t" if suffix == ".tsv" else ",", strict=True)


def _csv_table(raw, suffix: str, path: str) -> Iterator[tuple[str, str, str]]:
    lines = _csv_rows(raw, suffix)
    try:
        header = next(lines, None)
        if header is None:
            return
        _columns_error(path, header)
        for row in lines:
            yield from _row(dict(zip(header, row, strict=False)), path)
    except csv.Error as e:
        raise ValueError(f"line {lines.line_num}: {e}") from None


def _json_rows(text, path: str) -> Iterator[tuple[str, str, str]]:
    keys: set[str] = set()
    line = 0
    for line, raw_line in enumerate(text, 1):
        if not raw_line.strip():
            continue
        try:
            row = json.loads(raw_line)
        except ValueError as e:
            raise ValueError(f"line {line} is not JSON ({e})") from None
        if not isinstance(row, dict):
            raise ValueError(f"line {line} is not a JSON object")
        keys.update(row)
        yield from _row(row, f"{path}:{line}")
    if line:
        _columns_error(path, sorted(keys))


def _text_values(value, where: str, role: str) -> list[str]:
    """The strings a cell holds: none (null, empty), one, or a list's; a ConfigError for a value that
    is not text (an object, a nested list)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, bool) or not isinstance(value, (int, float, list, tuple)):
        raise ConfigError(
            f"pool {where}: the {role} is {_kind(value)}, not text; give a string"
            + (" or a list of strings" if role == "text" else "")
        )
    if isinstance(value, (int, float)):
        return [repr(value)]
    if role != "text":
        raise ConfigError(f"pool {where}: the {role} is a list; give one string")
    out = []
    for item in value:
        if isinstance(item, (list, tuple, dict)) or isinstance(item, bool):
            raise ConfigError(f"pool {where}: the text list holds {_kind(item)}; give a list of strings")
        out += _text_values(item, where, role)
    return out


def _kind(value) -> str:
    return {dict: "an object", list: "a list", tuple: "a list", bool: "a boolean", bytes: "bytes"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _first(row: dict, names: tuple[str, ...], where: str, role: str) -> list[str]:
    """The strings of the first column of `names` that holds any."""
    for name in names:
        found = _text_values(row.get(name), where, role)
        if found:
            return found
    return []


def _row(row: dict, where: str) -> Iterator[tuple[str, str, str]]:
    """(url, text, page_url) of one row (`where`: the file, and line where known), once per text;
    nothing for a row without a URL."""
    urls = _first(row, _URL, where, "url")
    if not urls:
        return
    pages = _first(row, _PAGE, where, "page url")
    page = pages[0] if pages else ""
    for text in _first(row, _TEXT, where, "text") or [""]:
        yield urls[0], text, page


def _check_schema(path: str, schema) -> None:
    """A ConfigError for a Parquet pool without a URL or text column, or with one of a type that
    is not text (a struct, a map; a list for the URL or page URL)."""
    import pyarrow as pa

    _columns_error(path, schema.names)
    for name in schema.names:
        role = "text" if name in _TEXT else "url" if name in _URL else "page url" if name in _PAGE else None
        if role is None:
            continue
        t = schema.field(name).type
        if _is_list(t) and role == "text":
            t = t.value_type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if not (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_binary(t)
            or pa.types.is_large_binary(t)
            or pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_null(t)
        ):
            want = "strings" + (" or lists of strings" if role == "text" else "")
            raise ConfigError(
                f"pool {path}: column {name!r} is of type {schema.field(name).type}, not text; "
                f"the {role} column must hold {want}"
            )


def _is_list(t) -> bool:
    import pyarrow as pa

    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _as_string(column, path: str, name: str):
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.type == pa.string():
        return column
    try:
        return pc.cast(column, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ConfigError(
            f"pool {path}: column {name!r} does not hold UTF-8 text ({_first_line(e)})"
        ) from None


def _columns(batch, path: str = "") -> tuple:
    """A Parquet batch's (url, text, page_url) string arrays: per row the first non-empty of each
    column group (null where none); rows without a URL dropped; a list column of texts gives one
    row per text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if any(_is_list(batch.column(n).type) for n in _TEXT if n in batch.schema.names):
        # rare: rows of lists go the JSONL way, row by row (the same rules, `_rows`)
        rows = batch.select([n for n in (*_URL, *_TEXT, *_PAGE) if n in batch.schema.names]).to_pylist()
        found = [x for row in rows for x in _row(row, path)]
        if not found:
            return tuple(pa.array([], pa.string()) for _ in range(3))
        return tuple(pa.array(list(c), pa.string()) for c in zip(*found, strict=True))

    def pick(names):
        cols = [_as_string(batch.column(n), path, n) for n in names if n in batch.schema.names]
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


def _pool_settings(spec, store: Store) -> dict:
    out: dict = {"pool": [file_stamp(f, store) for f in pool_files(spec.pool, store)]}
    if spec.balance_t:
        out["balance"] = {"t": spec.balance_t, "seed": spec.balance_seed}
    return out


register(
    Backend(
        "pool",
        "url+text files matched to the entities' names",
        "whole",
        modifiers=Pool.modifiers,
        options=(
            Option(
                "pool",
                "--pool",
                "url+text rows (.jsonl, .parquet, .csv, .tsv); repeat it, or give globs "
                "(gs://bucket/pool/*.parquet): read in parallel, a Parquet row group at a time",
                metavar="FILE_OR_GLOB",
                repeat=True,
            ),
        ),
        # opened in memory for tests and tools; the harvest reads a pool in parallel instead
        open=lambda spec, entities, queries, url: Pool(spec.pool, queries),
        check=lambda spec: (
            "" if spec.pool else "the pool backend needs --pool FILE (.jsonl, .parquet, .csv or .tsv)"
        ),
        settings=_pool_settings,
    )
)
