"""Curation's filters: one protocol, one registry, one chain; each filter is one module of this
package that declares itself with `register`, and nothing else lists filters.

A declaration (`CurationFilter`) names the filter, its options (`entitynet.options.Option`: the
`curate` command's flags are made from them, and `CurateOptions.filter_options` holds their
values), what context it needs joined to each record by key (`embeddings`: `entitynet embed`'s
files), and how its options make it (`make(values)`: the filter, or None when they leave it off).
The curation's Beam graph runs the chain (`beam_pipelines/curate.py`, `RunFilters`): every removal
goes where curation's removals go — `removed/`, the counts, the data card's table of reasons and
the explorer — and every amendment is counted, without code of the filter's own there.

Two kinds of filter:

- a record filter judges one record: `decide(record, context, threshold)` answers None (keep it),
  a `(reason, detail)` removal, or an `Amend` (keep it changed: an alt text dropped, say). One
  with a `top` fraction ranks the whole dataset: its `score(context)` of every record is combined
  into quantiles, and `decide` gets the threshold;
- a group filter compares records with each other (semantic deduplication): `member` gives a
  record's vector, `fit` makes a model (k-means centroids) from a fixed sample (`sample_size`
  records, those whose `sample_rank` is lowest), `groups_of` puts a batch of records in their
  groups (one or more each), and `within(members)` decides inside one group (memory bounded by a
  group).

    register(CurationFilter("my_filter", "what it removes", options=(Option(...),),
                            make=lambda v: MyFilter(v["my_min"]) if v["my_min"] is not None else None))
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from entitynet.errors import ConfigError
from entitynet.options import Option
from entitynet.records import ImageRecord, read_embeddings


@dataclass(frozen=True)
class Amend:
    """A record kept, changed: `record` replaces it; `count` things were dropped from it (`detail`
    names what), counted per filter in the curation's stats."""

    record: ImageRecord
    count: int
    detail: str = ""


@dataclass(frozen=True)
class EmbeddingRow:
    """One record's embeddings: its image's, and each of its texts' (`kinds`: an index of
    records.TEXT_KINDS; `digests`: `records.text_digest` of each text, to find an alt text's row)."""

    image: np.ndarray
    texts: np.ndarray
    kinds: np.ndarray
    digests: np.ndarray


@dataclass(frozen=True)
class CurationFilter:
    """A filter as the curation sees it (see the module's docstring)."""

    name: str
    describes: str
    make: Callable[[dict[str, Any]], Any | None]
    options: tuple[Option, ...] = ()
    needs: tuple[str, ...] = ("embeddings",)
    reasons: tuple[str, ...] = ()  # the removal reasons it gives besides its name
    order: int = 50  # place in the chain: record filters by order, then group filters by order
    group: bool = False

    def values(self, given: dict[str, Any]) -> dict[str, Any]:
        found = {o.field: given.get(o.field, o.default) for o in self.options}
        for o in self.options:
            o.check(found[o.field])
        return found


_REGISTRY: dict[str, CurationFilter] = {}
_LOADED = False


def register(f: CurationFilter) -> CurationFilter:
    """Declare a filter (at the end of its module). A name, and an option's field, once."""
    known = _REGISTRY.get(f.name)
    if known is not None and known is not f:
        raise ValueError(f"curation filter {f.name!r} is declared twice")
    taken = {o.field: other.name for other in _REGISTRY.values() if other is not f for o in other.options}
    for o in f.options:
        if o.field in taken:
            raise ValueError(f"filter {f.name}: option {o.field} is already {taken[o.field]}'s")
    _REGISTRY[f.name] = f
    return f


def load() -> None:
    """Import every module of this package, so that each filter has declared itself."""
    global _LOADED
    if _LOADED:
        return
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    _LOADED = True


def declared() -> list[CurationFilter]:
    """Every declared filter, in chain order."""
    load()
    return sorted(_REGISTRY.values(), key=lambda f: (f.group, f.order, f.name))


def options() -> list[Option]:
    """Every filter's options, in chain order (the `curate` command's filter flags)."""
    return [o for f in declared() for o in f.options]


@dataclass(frozen=True)
class Chain:
    """The filters some options turn on, in order, with the declarations that made them."""

    filters: tuple[Any, ...] = ()
    declarations: tuple[CurationFilter, ...] = field(default=(), compare=False, repr=False)

    def __bool__(self) -> bool:
        return bool(self.filters)

    def __iter__(self):
        return iter(self.filters)

    def __len__(self) -> int:
        return len(self.filters)

    @property
    def record_filters(self) -> tuple[Any, ...]:
        return tuple(f for f, d in zip(self.filters, self.declarations, strict=True) if not d.group)

    @property
    def group_filters(self) -> tuple[Any, ...]:
        return tuple(f for f, d in zip(self.filters, self.declarations, strict=True) if d.group)

    @property
    def needs(self) -> set[str]:
        return {n for d in self.declarations for n in d.needs}


def chain(given: dict[str, Any], embeddings: str = "") -> Chain:
    """The filters `given` (option field -> value) turns on, in order. A ConfigError for an option
    no filter declares, a value outside its range, or a filter whose context is missing."""
    fields = {o.field for o in options()}
    unknown = sorted(set(given) - fields)
    if unknown:
        raise ConfigError(
            f"unknown curation filter option {unknown[0]!r}: use one of {', '.join(sorted(fields))}"
        )
    made, decls = [], []
    for d in declared():
        values = d.values(given)
        f = d.make(values)
        if f is None:
            continue
        if "embeddings" in d.needs and not embeddings:
            flags = " and ".join(o.flag for o in d.options if values[o.field] not in (None, o.default))
            raise ConfigError(f"{flags or d.name} needs --embeddings DIR (`entitynet embed`)")
        made.append(f)
        decls.append(d)
    return Chain(tuple(made), tuple(decls))


# ---------------------------------------------------------------- the embeddings context


def embedding_files(directory: str) -> list[str]:
    """The files of an `entitynet embed` output (`<split>/*.npz`), sorted; a ConfigError when it is
    not one."""
    if not os.path.isfile(os.path.join(directory, "embed_config.json")):
        raise ConfigError(
            f"--embeddings {directory} is not an `entitynet embed` output (no embed_config.json)"
        )
    found = []
    for split in sorted(os.listdir(directory)):
        folder = os.path.join(directory, split)
        if os.path.isdir(folder):
            found += [os.path.join(folder, f) for f in sorted(os.listdir(folder)) if f.endswith(".npz")]
    if not found:
        raise ConfigError(f"--embeddings {directory} holds no embeddings files; run `entitynet embed` again")
    return found


def embedding_rows(path: str) -> Iterator[tuple[str, EmbeddingRow]]:
    """(key, its EmbeddingRow) for every record of one embeddings file."""
    try:
        e = read_embeddings(path)
    except ValueError as err:
        raise ConfigError(f"{path}: {err}; run `entitynet embed` again") from None
    order = np.argsort(e.text_owner, kind="stable")
    owners = e.text_owner[order]
    starts = np.searchsorted(owners, np.arange(len(e.keys)), side="left")
    stops = np.searchsorted(owners, np.arange(len(e.keys)), side="right")
    for row, key in enumerate(e.keys):
        mine = order[starts[row] : stops[row]]
        yield (
            key.decode(),
            EmbeddingRow(
                np.array(e.image[row]),
                np.array(e.text[mine]),
                np.array(e.text_kind[mine]),
                np.array(e.text_digest[mine]),
            ),
        )
