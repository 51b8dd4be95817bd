"""The CLIP-score filter (DataComp's): a record's score is the best cosine between its image
embedding and its texts' (its alt texts and its entities' KG captions); a record goes when its
score is below an absolute minimum (`--clip-score-min`) or outside the best fraction of the
dataset (`--clip-score-top`, DataComp's top 30%: 0.3). A record the embeddings do not cover goes
as `not_embedded`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from entitynet.curation.filters import CurationFilter, register
from entitynet.errors import ConfigError
from entitynet.options import Option

NOT_EMBEDDED = ("not_embedded", "no embedding of this record in --embeddings")


@dataclass(frozen=True)
class ClipScore:
    """Keep a record whose image matches one of its texts: score >= `min_score`, and (with `top`)
    among the best `top` fraction of the dataset's scores."""

    min_score: float | None = None
    top: float | None = None
    name: str = "clip_score"

    def __post_init__(self):
        if self.top is not None and not 0.0 < self.top <= 1.0:
            raise ConfigError(f"--clip-score-top must be a fraction within (0, 1], got {self.top}")

    @staticmethod
    def score(context: dict) -> float | None:
        """The best cosine between the record's image and its texts (None: not embedded, or no text)."""
        e = context.get("embeddings")
        if e is None or not len(e.texts):
            return None
        return float(np.max(e.texts.astype(np.float32) @ e.image.astype(np.float32)))

    def decide(self, record, context: dict, threshold: float | None = None) -> tuple[str, str] | None:
        """None: keep; else (reason, detail) of the removal."""
        if context.get("embeddings") is None:
            return NOT_EMBEDDED
        s = self.score(context)
        floor = max(x for x in (self.min_score, threshold, -2.0) if x is not None)
        if s is not None and s < floor:
            return self.name, f"{s:.4f} < {floor:.4f}"
        return None


register(
    CurationFilter(
        "clip_score",
        "records whose image matches none of their texts (DataComp's CLIP score)",
        make=lambda v: (
            ClipScore(v["clip_score_min"], v["clip_score_top"])
            if v["clip_score_min"] is not None or v["clip_score_top"] is not None
            else None
        ),
        options=(
            Option(
                "clip_score_min",
                "--clip-score-min",
                "remove a record whose image matches none of its texts (alt texts, KG captions) this well "
                "(DataComp's CLIP score; removal reason clip_score)",
                type=float,
                metavar="COSINE",
                low=-1.0,
                high=1.0,
            ),
            Option(
                "clip_score_top",
                "--clip-score-top",
                "keep only this fraction of the records, those with the best CLIP scores (DataComp's top "
                "30%%: 0.3)",
                type=float,
                metavar="FRACTION",
            ),
        ),
        reasons=(NOT_EMBEDDED[0],),
        order=20,
    )
)
