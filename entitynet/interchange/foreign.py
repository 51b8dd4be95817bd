"""Samples of shards a user already has, as records of a harvest (`entitynet data import`).

A sample that one of our exports wrote, with its image unchanged, is restored exactly
(`records.record_from_sample`). Any other (img2dataset, DataComp, LAION, a Parquet with image
bytes) is matched to the entities by its texts as a pool's rows are (`search.pool.PoolMatcher`:
the entities' names in its `.txt`, caption or alt texts), and its bytes go through the harvest's
image processing (decode, validate, resize, hash), exactly as a fetched image does, with no
download. Its URL, licence and attribution are taken from its JSON when present.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from entitynet import harvest
from entitynet.errors import ConfigError
from entitynet.images.process import ImageOptions
from entitynet.interchange.webdataset import Sample
from entitynet.licenses import UNKNOWN, normalize
from entitynet.links import LinkRule
from entitynet.options import option
from entitynet.records import ImageRecord, Outcome, merge_candidates, record_from_sample, unique_texts
from entitynet.search.pool import PoolMatcher
from entitynet.urls import public_url

_URL = ("url", "URL", "image_url")
_PAGE = ("page_url", "page", "context_url")
_TEXT = ("caption", "text", "TEXT", "alt", "alt_text")
_LICENSE = ("license", "LICENSE", "licence", "license_name")
_LICENSE_URL = ("license_url", "LICENSE_URL")
_CREDIT = ("attribution", "author", "credit", "creator", "artist")


SUFFIXES = (".tar", ".parquet")


@dataclass(frozen=True)
class ImportOptions:
    source: str = option(
        "import", "the name the records credit as their source (e.g. datacomp, laion)", metavar="NAME"
    )
    relink: bool = option(
        False, "match our own exports' samples to the entities again too (default: restore them as exported)"
    )
    num_shards: int = option(4, "ArrayRecord shards per split", metavar="N")
    splits: tuple[tuple[str, float], ...] = (("train", 0.9), ("validation", 0.05), ("test", 0.05))
    image: ImageOptions = field(default_factory=ImageOptions)
    links: LinkRule = field(default_factory=LinkRule)

    def __post_init__(self):
        if not 1 <= self.num_shards <= 100_000:
            raise ConfigError(f"--num-shards must be between 1 and 100000, got {self.num_shards}")
        if not self.source.strip() or any(c.isspace() for c in self.source):
            raise ConfigError(f"--source must be one word (e.g. datacomp), got {self.source!r}")


def _first(meta: dict, names: tuple[str, ...]) -> str:
    for n in names:
        v = meta.get(n)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return ""


def sample_texts(sample: Sample) -> list[str]:
    """Every text of a sample: its `.txt` files, its caption-like JSON fields and its alt texts."""
    meta = sample.meta
    texts = [*sample.texts, *(meta.get(n) for n in _TEXT)]
    alts = meta.get("alt_texts")
    if isinstance(alts, list):
        texts += alts
    return unique_texts(t.strip() for t in texts if isinstance(t, str) and t.strip())


@dataclass
class _Bytes:
    """A fetch result that did not need a fetch (what `harvest.to_result` takes)."""

    data: bytes
    ok: bool = True
    reason: str = ""
    detail: str = ""


class Importer:
    """Samples to records: restored (ours) or matched and processed (anyone's). Made once per worker
    from the name queries (`search.pool.pool_names`)."""

    def __init__(self, names: Iterable[tuple[str, str, tuple[str, ...]]], image: ImageOptions, source: str):
        self.matcher = PoolMatcher(names)
        self.image, self.source = image, source

    def url_of(self, sample: Sample, origin: str) -> str:
        """The sample's URL from its JSON, else where it was read (`FILE#KEY`)."""
        return public_url(_first(sample.meta, _URL)) or f"{public_url(origin)}#{sample.key}"

    def record(self, sample: Sample, origin: str, relink: bool = False) -> tuple[bool, ImageRecord | Outcome]:
        """(restored, the sample's record) or (False, its outcome): `no_image`, `skipped`,
        `unmatched` (no entity named in its texts) or an image rejection of the harvest's."""
        url = self.url_of(sample, origin)
        if sample.skipped:
            return False, harvest.outcome(url, "skipped", sample.skipped)
        if not sample.image:
            return False, harvest.outcome(url, "no_image", "the sample has no .jpg/.png/.webp image")
        if not relink:
            ours = record_from_sample(sample.meta, sample.image)
            if ours is not None:
                return True, ours
        page = public_url(_first(sample.meta, _PAGE))
        texts = sample_texts(sample)
        found = [c for text in texts if (c := self.matcher.candidate(url, text, page)) is not None]
        if not found:
            return False, harvest.outcome(url, "unmatched", "its texts name no entity")
        (candidate,) = merge_candidates(found)
        lic = normalize(_first(sample.meta, _LICENSE)) or UNKNOWN
        candidate = replace(
            candidate,
            alt_texts=tuple(texts),
            backend=self.source,
            license=lic,
            license_url=_first(sample.meta, _LICENSE_URL),
            attribution=_first(sample.meta, _CREDIT),
        )
        return False, harvest.to_result(candidate, _Bytes(sample.image), self.image)
