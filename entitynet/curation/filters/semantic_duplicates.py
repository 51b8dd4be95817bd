"""Semantic deduplication as a group filter (`entitynet.curation.semdedup`, SemDeDup as NeMo
Curator runs it): the records' image embeddings clustered by k-means (centroids fitted on a fixed
sample), and inside each cluster, of records closer than `--semdedup-threshold`, the largest image
kept (then the smallest key); the others go as `semantic_duplicate`, naming the one kept. A record
near a cluster boundary is searched in its two nearest clusters (99.99% of planted copies found at
1M against 98.25% with the nearest alone: benchmarks/semdedup_scale.py); when both decide, the
decision naming the smallest key stands."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from entitynet.curation import semdedup
from entitynet.curation.filters import CurationFilter, register
from entitynet.errors import ConfigError
from entitynet.options import Option


@dataclass(frozen=True)
class SemanticDuplicates:
    threshold: float
    clusters: int = 0  # 0: about the square root of the records
    name: str = semdedup.REASON

    def __post_init__(self):
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"--semdedup-threshold must be a cosine within (0, 1], got {self.threshold}")
        semdedup.clusters_for(1, self.clusters)  # refuses a negative count

    @staticmethod
    def member(key: str, record, context: dict):
        """(vector, weight) of a record: its image embedding, its pixels; None: not embedded."""
        e = context.get("embeddings")
        return None if e is None else (e.image, record.width * record.height)

    sample_rank = staticmethod(semdedup.sample_rank)

    def sample_size(self, total: int) -> int:
        """Rows the centroids are fitted on: 20,000, or 40 per cluster when there are more."""
        return max(20_000, 40 * semdedup.clusters_for(total, self.clusters))

    def fit(self, vectors: np.ndarray, total: int):
        return semdedup.kmeans(vectors, semdedup.clusters_for(total, self.clusters))

    @staticmethod
    def groups_of(vectors: np.ndarray, centroids) -> list[list[int]]:
        """Each row's clusters: its nearest, and its second nearest when that is within
        `semdedup.SECOND_MARGIN` of it (copies either side of a boundary meet)."""
        found = semdedup.nearest(vectors, centroids, 2, semdedup.SECOND_MARGIN)
        return [[int(j) for j in row if j >= 0] for row in found]

    def within(self, members: list) -> dict[str, tuple[str, str]]:
        return {k: (self.name, kept) for k, kept in semdedup.duplicates(members, self.threshold).items()}


register(
    CurationFilter(
        semdedup.REASON,
        "semantic near-copies: images whose embeddings are within a cosine of one kept",
        make=lambda v: (
            SemanticDuplicates(v["semdedup_threshold"], v["semdedup_clusters"])
            if v["semdedup_threshold"] is not None
            else None
        ),
        options=(
            Option(
                "semdedup_threshold",
                "--semdedup-threshold",
                "semantic deduplication: of records whose image embeddings are this close, keep one "
                "(the largest image, then the smallest key; removal reason semantic_duplicate)",
                type=float,
                metavar="COSINE",
            ),
            Option(
                "semdedup_clusters",
                "--semdedup-clusters",
                "k-means clusters of semantic deduplication (0: about the square root of the records)",
                type=int,
                default=0,
                metavar="K",
            ),
        ),
        group=True,
    )
)
