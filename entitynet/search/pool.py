"""A local pool of (url, text[, page_url]) rows, as users have from LAION or DataComp, matched to
the queries' names (noun and alias queries: entity names, aliases, common and taxon names) by
MetaCLIP-style space-delimited substring matching in one Aho-Corasick pass over the pool."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from entitynet.errors import ConfigError
from entitynet.records import Candidate, Query
from entitynet.text.matching import Matcher

_URL = ("url", "URL", "image_url")
_TEXT = ("text", "caption", "TEXT", "alt", "alt_text")
_PAGE = ("page_url", "page", "context_url")


def _pick(row: dict, names: tuple[str, ...]):
    return next((row[n] for n in names if row.get(n)), None)


def read_pool(path: str | Path) -> Iterator[tuple[str, str, str]]:
    """(url, text, page_url) rows of a .jsonl, .parquet, .csv or .tsv file."""
    p = Path(path)
    suffix = p.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            with open(p, encoding="utf-8") as f:
                rows: Iterable[dict] = (json.loads(line) for line in f if line.strip())
                yield from _rows(rows, p)
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(p).iter_batches(batch_size=65536):
                yield from _rows(batch.to_pylist(), p)
        elif suffix in (".csv", ".tsv"):
            with open(p, encoding="utf-8", newline="") as f:
                yield from _rows(csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ","), p)
        else:
            raise ConfigError(f"pool {p}: unsupported file type; use .jsonl, .parquet, .csv or .tsv")
    except OSError as e:
        raise ConfigError(f"cannot read pool {p}: {e}") from e
    except ValueError as e:
        raise ConfigError(f"pool {p} is malformed: {e}") from e


def _rows(rows: Iterable[dict], path: Path) -> Iterator[tuple[str, str, str]]:
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ValueError(f"row {i} is not an object")
        url, text = _pick(row, _URL), _pick(row, _TEXT)
        if url is None:
            if i == 1:
                raise ConfigError(f"pool {path} has no url column (one of {', '.join(_URL)})")
            continue
        yield str(url), str(text or ""), str(_pick(row, _PAGE) or "")


class Pool:
    name = "pool"
    modifiers = frozenset()  # no web-search modifiers apply

    def __init__(self, path: str | Path, queries: Iterable[Query]):
        names = [q for q in queries if q.kind in ("noun", "alias")]
        matcher = Matcher([q.text for q in names], names)
        self.by_query: dict[str, list[Candidate]] = {}
        self.rows = self.matched_rows = 0
        for url, text, page in read_pool(path):
            self.rows += 1
            found = matcher.find(text)
            if found:
                self.matched_rows += 1
            for q in found:
                self.by_query.setdefault(q.id, []).append(
                    Candidate(
                        url=url,
                        page_url=page,
                        alt_texts=(text,) if text else (),
                        query_ids=(q.id,),
                        entity_ids=q.entity_ids,
                        backend=self.name,
                    )
                )

    def search(self, query: Query) -> list[Candidate]:
        return list(self.by_query.get(query.id, ()))
