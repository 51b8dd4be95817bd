"""The per-alt-text CLIP score: an alt text whose embedding is further from its image's than a
minimum cosine (`--alt-text-score-min`) is dropped from the record (the image says something else;
the text would teach the model a wrong pair), and the record is kept when another of its texts —
an alt text or an entity's KG caption — does match; when none does, it goes (reason
`alt_text_score`). An alt text the embeddings have no row for (one a near-duplicate merge brought
from another copy) is kept, not judged. Dropped alt texts are counted in the curation's stats."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from entitynet.curation.filters import Amend, CurationFilter, register
from entitynet.curation.filters.clip_score import NOT_EMBEDDED
from entitynet.options import Option
from entitynet.records import TEXT_KINDS, text_digest


@dataclass(frozen=True)
class AltTextScore:
    min_score: float
    name: str = "alt_text_score"

    def decide(self, record, context: dict, threshold: float | None = None):
        e = context.get("embeddings")
        if e is None:
            return NOT_EMBEDDED
        if not len(e.texts):
            return None
        cos = e.texts.astype(np.float32) @ e.image.astype(np.float32)
        if float(cos.max()) < self.min_score:
            return self.name, f"best text {float(cos.max()):.4f} < {self.min_score:.4f}"
        alt = e.kinds == TEXT_KINDS.index("alt")
        low = {int(d) for d, c in zip(e.digests[alt], cos[alt], strict=True) if c < self.min_score}
        dropped = [t for t in record.alt_texts if text_digest(t) in low]
        if not dropped:
            return None
        kept = tuple(t for t in record.alt_texts if text_digest(t) not in low)
        return Amend(replace(record, alt_texts=kept), len(dropped), "; ".join(dropped))


register(
    CurationFilter(
        "alt_text_score",
        "alt texts that do not match their image (dropped), and records none of whose texts match",
        make=lambda v: AltTextScore(v["alt_text_score_min"]) if v["alt_text_score_min"] is not None else None,
        options=(
            Option(
                "alt_text_score_min",
                "--alt-text-score-min",
                "drop each alt text whose cosine with its image is below this; remove the record when none "
                "of its texts (alt texts, KG captions) reaches it (removal reason alt_text_score)",
                type=float,
                metavar="COSINE",
                low=-1.0,
                high=1.0,
            ),
        ),
        reasons=(NOT_EMBEDDED[0],),
        order=10,
    )
)
