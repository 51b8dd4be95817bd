"""Evaluation sets whose images must not be trained on: loaded and hashed the way harvested images
are (the same `images.prepare`, resize and 64-bit perceptual hash), so a harvested copy of an evaluation
image (re-encoded, resized, slightly edited) lands within the Hamming threshold of it.

An evaluation set is named by one string:
  PATH                an ImageFolder directory (class sub-directories of image files; any depth;
                      hidden files and folders, named with a leading ".", are not part of it)
  PATH                a TFDS dataset directory (it holds dataset_info.json): every split
  tfds:NAME[:SPLIT]   a prepared TFDS dataset by name (`--tfds-data-dir`), default split "test"
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from entitynet.errors import ConfigError
from entitynet.images.decode import ImageRejected
from entitynet.images.process import ImageOptions, perceptual_hash

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class EvalSet:
    name: str
    hashes: np.ndarray  # uint64, one per readable image
    unreadable: int = 0
    refs: tuple[str, ...] = ()  # aligned with hashes: the image's path in the set, or "split/index"

    def ref(self, i: int) -> str:
        return self.refs[i] if i < len(self.refs) else str(i)


def hidden(name: str) -> bool:
    """A file or folder no dataset means to hold: `.ipynb_checkpoints`, `.DS_Store`, `.git` ..."""
    return name.startswith(".")


def image_files(root: Path) -> list[Path]:
    """The image files under `root`, at any depth, sorted; hidden files and folders left out (and not
    walked into), symbolic links followed once."""
    found, seen = [], set()
    for top, dirs, names in os.walk(root, followlinks=True):
        real = os.path.realpath(top)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not hidden(d)]
        for name in names:
            path = Path(top) / name
            if not hidden(name) and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                found.append(path)
    return sorted(found)


def hash_image(image: bytes | Path, opts: ImageOptions) -> int | None:
    """The perceptual hash of one evaluation image (bytes or a file), None when it cannot be read
    or decoded (whatever the decoder raises: `images.decode`)."""
    try:
        return perceptual_hash(image, opts)
    except ImageRejected:
        return None


def _hash_all(items, fn, threads: int, ref=str) -> tuple[np.ndarray, int, list[str]]:
    """The hashes of the readable items, how many were not, and `ref(item)` of each readable one."""
    with ThreadPoolExecutor(threads) as pool:
        found = list(pool.map(fn, items))
    good = [(h, ref(item)) for item, h in zip(items, found, strict=True) if h is not None]
    return np.asarray([h for h, _ in good], dtype=np.uint64), len(found) - len(good), [r for _, r in good]


def _image_feature(builder) -> str:
    import tensorflow_datasets as tfds

    for name, feature in builder.info.features.items():
        if isinstance(feature, tfds.features.Image):
            return name
    raise ConfigError(f"TFDS dataset {builder.info.name} has no image feature to decontaminate against")


def _tfds_hashes(
    builder, splits: list[str], opts: ImageOptions, threads: int
) -> tuple[np.ndarray, int, list[str]]:
    import tensorflow_datasets as tfds

    feature = _image_feature(builder)
    hashes, bad, refs = [], 0, []
    for split in splits:
        # the encoded bytes, opened by Pillow like any other image (TFDS's own decoding drops alpha)
        source = builder.as_data_source(split, decoders={feature: tfds.decode.SkipDecoding()})

        def one(i, source=source):
            return hash_image(source[i][feature], opts)

        h, b, r = _hash_all(range(len(source)), one, threads, lambda i, split=split: f"{split}/{i}")
        hashes.append(h)
        bad += b
        refs += r
    return (np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)), bad, refs


def load(spec: str, opts: ImageOptions | None = None, tfds_data_dir: str | None = None) -> EvalSet:
    """Hash every image of the evaluation set `spec` (see the module docstring)."""
    opts = opts or ImageOptions()
    threads = os.cpu_count() or 2
    if spec.startswith("tfds:"):
        import tensorflow_datasets as tfds

        name, _, split = spec[5:].partition(":")
        try:
            builder = tfds.builder(name, data_dir=tfds_data_dir)
            hashes, bad, refs = _tfds_hashes(builder, [split or "test"], opts, threads)
        except Exception as e:  # noqa: BLE001 - tfds raises many kinds for "not there"
            raise ConfigError(
                f"evaluation set {spec}: cannot read it from TFDS ({type(e).__name__}: {str(e).splitlines()[0]}); "
                "prepare it first (tfds build) or give --tfds-data-dir"
            ) from None
        return EvalSet(spec, hashes, bad, tuple(refs))
    path = Path(spec)
    if not path.is_dir():
        raise ConfigError(
            f"evaluation set {spec} does not exist or is not a directory; give an ImageFolder directory, "
            "a TFDS dataset directory or tfds:NAME:SPLIT"
        )
    if (path / "dataset_info.json").exists():
        import tensorflow_datasets as tfds

        builder = tfds.builder_from_directory(str(path))
        hashes, bad, refs = _tfds_hashes(builder, sorted(builder.info.splits), opts, threads)
        return EvalSet(spec, hashes, bad, tuple(refs))
    files = image_files(path)
    if not files:
        raise ConfigError(f"evaluation set {spec} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    hashes, bad, refs = _hash_all(
        files, lambda f: hash_image(f, opts), threads, lambda f: f.relative_to(path).as_posix()
    )
    return EvalSet(spec, hashes, bad, tuple(refs))


def contaminated(keys: list[str], hashes, eval_sets: list[EvalSet], k: int) -> dict[str, list[str]]:
    """key -> names of the evaluation sets holding an image within Hamming distance `k` of it."""
    from entitynet.curation.neardup import pairs_between

    found: dict[str, list[str]] = {}
    for ev in eval_sets:
        if not len(ev.hashes) or not len(keys):
            continue
        for i in np.unique(pairs_between(hashes, ev.hashes, k)[:, 0]):
            found.setdefault(keys[int(i)], []).append(ev.name)
    return found
