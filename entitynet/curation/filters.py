"""Curation's record filters: one protocol, one chain, each filter in the module that declares it.

A filter sees a record and its context (what the chain joined to the record by key: its
embeddings, `entitynet embed`'s files) and answers None (keep it) or why it goes: a removal's
reason (the filter's name, or another it documents) and detail. The curation's Beam graph runs the chain in one step
(`beam_pipelines/curate.py`, `RunFilters`): every removal goes where curation's removals go —
`removed/`, the counts, the data card's table of reasons and the explorer — without code of the
filter's own there. A filter whose threshold is a share of the dataset (`top`) gets it from the
scores of every record, combined into quantiles, as a side input.

    chain = filter_chain(opts)            # the filters the options turn on, in order
    why = f.decide(record, context, threshold)   # None, or (reason, detail)

Filters here: `clip_score` (DataComp's CLIP score: the cosine between a record's image embedding
and the best of its texts' — its alt texts and its entities' KG captions; an absolute minimum
and/or the top fraction kept). A record the embeddings do not cover goes as `not_embedded`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from entitynet.errors import ConfigError
from entitynet.records import read_embeddings


@dataclass(frozen=True)
class ClipScore:
    """Keep a record whose image matches one of its texts: score >= `min_score`, and (with `top`)
    among the best `top` fraction of the dataset's scores."""

    min_score: float | None = None
    top: float | None = None
    name: str = "clip_score"
    needs: tuple[str, ...] = ("embeddings",)

    def __post_init__(self):
        if self.min_score is not None and not -1.0 <= self.min_score <= 1.0:
            raise ConfigError(f"--clip-score-min must be a cosine within -1..1, got {self.min_score}")
        if self.top is not None and not 0.0 < self.top <= 1.0:
            raise ConfigError(f"--clip-score-top must be a fraction within (0, 1], got {self.top}")

    @staticmethod
    def score(context: dict) -> float | None:
        """The best cosine between the record's image and its texts (None: not embedded, or no text)."""
        e = context.get("embeddings")
        if e is None or not len(e[1]):
            return None
        image, texts = e
        return float(np.max(texts.astype(np.float32) @ image.astype(np.float32)))

    def decide(self, record, context: dict, threshold: float | None = None) -> tuple[str, str] | None:
        """None: keep; else (reason, detail) of the removal."""
        if context.get("embeddings") is None:
            return "not_embedded", "no embedding of this record in --embeddings"
        s = self.score(context)
        floor = max(x for x in (self.min_score, threshold, -2.0) if x is not None)
        if s is not None and s < floor:
            return self.name, f"{s:.4f} < {floor:.4f}"
        return None


def filter_chain(clip_min: float | None = None, clip_top: float | None = None) -> tuple[Any, ...]:
    """The filters the options turn on, in the order they run."""
    chain: list[Any] = []
    if clip_min is not None or clip_top is not None:
        chain.append(ClipScore(clip_min, clip_top))
    return tuple(chain)


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


def embedding_rows(path: str) -> Iterator[tuple[str, tuple[np.ndarray, np.ndarray]]]:
    """(key, (image embedding, its texts' embeddings)) for every record of one embeddings file."""
    try:
        e = read_embeddings(path)
    except ValueError as err:
        raise ConfigError(f"{path}: {err}; run `entitynet embed` again") from None
    order = np.argsort(e.text_owner, kind="stable")
    owners = e.text_owner[order]
    starts = np.searchsorted(owners, np.arange(len(e.keys)), side="left")
    stops = np.searchsorted(owners, np.arange(len(e.keys)), side="right")
    for row, key in enumerate(e.keys):
        texts = e.text[order[starts[row] : stops[row]]]
        yield key.decode(), (np.array(e.image[row]), np.array(texts))
