"""Evaluation sets for zero-shot classification and retrieval, and the names of their classes.

    ImageFolder   a directory of class folders; names from folder names or `labels.tsv`
                  (folder<TAB>name or entity id); hidden folders and files (".ipynb_checkpoints",
                  ".DS_Store") are not part of it, and two folders naming one class (one entity,
                  or one name up to case, spaces and underscores) are refused
    TFDS          a prepared dataset by NAME:SPLIT (read with `tfds.data_source`, no TensorFlow);
                  names from its ClassLabel feature or a --class-names file
    held-out      a split of the run's own shards: its entities as classes and its alt texts for
                  retrieval; a prediction is right when it is any entity the image is linked to
                  (ancestors included when linked), and exact-entity accuracy beside it counts only
                  the image's most specific linked entities (`most_specific`)

How a prediction is counted is said in words by `COUNTING[data.counting]` (and `EXACT_RULE` for
the exact-entity accuracy of the held-out split), which the summary, results.json and report.md
repeat, so the numbers of two kinds of set are not read as one.

A class is a list of names, display name first. A name that is an entity id of the knowledge graph
becomes the entity's label, or with `synonyms` every name it has (label, aliases, common and taxon
names), whose template embeddings are averaged.

Images are decoded by `images.decode` (as harvest decodes them); one that cannot be decoded, whatever
its decoder raises, is skipped by `image_embeddings`, counted in `EvalData.unreadable` and named in
one line, and the set is scored on the others.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from array import array
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from entitynet.curation.evalsets import IMAGE_SUFFIXES, hidden
from entitynet.errors import ConfigError, EntityNetError
from entitynet.images.decode import ImageRejected, decode
from entitynet.kg.ids import is_qid
from entitynet.records import Entity, unique_texts
from train.input_pipeline import centre_crop, normalise

# how a prediction is counted right, in words (EvalData.counting -> the rule)
COUNTING = {
    "label": "right only when the prediction is exactly the image's labelled class "
    "(a broader class, e.g. felid for a lion image, is wrong)",
    "linked": "right when the prediction is any entity the image is linked to, ancestors included "
    "(felid for a lion image linked to both lion and felid)",
}
EXACT_RULE = (
    "exact entity: right only when the prediction is the image's most specific linked entity "
    "(one none of its other linked entities descends from; an image linked to two unrelated "
    "entities has two)"
)


class Answers:
    """Every right answer of each image of a multi-label set, as class indices (compressed rows):
    image i's classes are `indices[indptr[i]:indptr[i + 1]]`, ascending. Memory is a few bytes per
    (image, class) pair, never a row over all the classes per image."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, classes: int):
        self.indptr = np.asarray(indptr, np.int64)
        self.indices = np.asarray(indices, np.int32 if classes < 2**31 else np.int64)
        self.classes = classes

    @classmethod
    def from_pairs(cls, images: np.ndarray, classes: np.ndarray, size: int, count: int) -> Answers:
        """From (image, class) pairs in any order; a pair given twice counts once."""
        pairs = np.unique(np.asarray(images, np.int64) * count + np.asarray(classes, np.int64))
        rows = pairs // max(count, 1)
        indptr = np.zeros(size + 1, np.int64)
        np.cumsum(np.bincount(rows, minlength=size), out=indptr[1:])
        return cls(indptr, pairs - rows * count, count)

    @classmethod
    def from_dense(cls, dense: np.ndarray) -> Answers:
        """From an (images, classes) bool array."""
        rows, cols = np.nonzero(np.asarray(dense, bool))
        return cls.from_pairs(rows, cols, dense.shape[0], dense.shape[1])

    def __len__(self) -> int:
        return len(self.indptr) - 1

    def __getitem__(self, i):
        """Image i's classes; or, for an index array or slice, the answers of those images."""
        if isinstance(i, (int, np.integer)):
            return self.indices[self.indptr[i] : self.indptr[i + 1]]
        rows = np.arange(len(self))[i]
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        indptr = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(stops - starts, out=indptr[1:])
        take = np.repeat(starts - indptr[:-1], stops - starts) + np.arange(indptr[-1])
        return Answers(indptr, self.indices[take], self.classes)

    def first(self) -> np.ndarray:
        """(images,) each image's first (lowest) class, -1 where it has none."""
        has = self.indptr[1:] > self.indptr[:-1]
        out = np.full(len(self), -1, np.int64)
        out[has] = self.indices[self.indptr[:-1][has]]
        return out

    def dense(self, rows: np.ndarray | None = None) -> np.ndarray:
        """(len(rows), classes) bool: the right answers of images `rows` (default all) as rows
        over the classes; for a chunk of images at a time."""
        sub = self if rows is None else self[np.asarray(rows, np.int64)]
        out = np.zeros((len(sub), self.classes), bool)
        out[np.repeat(np.arange(len(sub)), np.diff(sub.indptr)), sub.indices] = True
        return out


class Texts(Sequence):
    """Texts kept as one UTF-8 buffer and their end offsets: a text costs its bytes and 8 more, not
    a Python string (about 60 bytes over its characters) and a list slot each. Reads as a sequence
    of str (a slice: a list of them); equal to any sequence of the same texts."""

    def __init__(self, texts: Iterable[str] = ()):
        self._data = bytearray()
        self._ends = array("q")
        self.extend(texts)

    def extend(self, texts: Iterable[str]) -> None:
        for t in texts:
            self._data += t.encode("utf-8")
            self._ends.append(len(self._data))

    def __len__(self) -> int:
        return len(self._ends)

    def _one(self, i: int) -> str:
        start = self._ends[i - 1] if i else 0
        return self._data[start : self._ends[i]].decode("utf-8")

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._one(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("text index out of range")
        return self._one(i)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # mutable, like a list

    def __repr__(self) -> str:
        return f"Texts({len(self)} texts)"


@dataclass
class EvalData:
    name: str  # how reports name the set, e.g. "evalset", "tfds:oxford_flowers102:test", "heldout:test"
    size: int  # images
    # the i-th image, decoded (upright 8-bit RGB); ImageRejected if it cannot be
    load: Callable[[int], Image.Image]
    labels: np.ndarray | None = None  # (size,) the class of each image (the first, when several)
    classes: list[list[str]] = field(default_factory=list)  # names of each class, display name first
    correct: Answers | None = None  # every right answer of each image (multi-label sets)
    # "label" (right: the labelled class, exactly) or "linked" (any linked entity): COUNTING
    counting: str = "label"
    exact: Answers | None = None  # each image's most specific entities ("linked" sets): exact accuracy
    texts: Sequence[str] = field(default_factory=list)  # retrieval captions (a list or `Texts`)
    text_image: np.ndarray | None = None  # (texts,) the image each text belongs to
    origin: str = ""  # what the set was read from (absolute path, TFDS spec + data dir)
    class_entities: dict[str, str] = field(default_factory=dict)  # class display name -> entity id
    unresolved: list[str] = field(default_factory=list)  # class names no single entity matched
    ref: Callable[[int], str] = str  # how to name the i-th image to a user (its path in the set)
    unreadable: list[str] = field(default_factory=list)  # images skipped: "ref (reason)"


def result_dir(data: EvalData) -> str:
    """The directory name of a set's results: readable name + a digest of where it came from, so two
    sets that share a name (two `evalset` folders) never overwrite each other."""
    digest = hashlib.sha1((data.origin or data.name).encode()).hexdigest()[:8]
    return f"{slug(data.name)}-{digest}"


def slug(name: str) -> str:
    """A directory name for an evaluation set's results."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "eval"


def pixels(
    data: EvalData, indices: range, size: int, pool: ThreadPoolExecutor, failed: dict[int, str] | None = None
) -> np.ndarray:
    """Images `indices`, prepared as harvest prepares them (orientation, alpha matted on white ...),
    centre-cropped to `size` and normalised as in training: (n, size, size, 3). An image that cannot
    be decoded is left at zeros and recorded in `failed` (index -> reason); without `failed` it is a
    ConfigError naming it."""
    out = np.zeros((len(indices), size, size, 3), np.float32)

    def one(k: int) -> tuple[int, str] | None:
        i = indices[k]
        try:
            out[k] = normalise(centre_crop(data.load(i), size))  # full decode: as open_clip sees it
        except ImageRejected as e:
            return i, str(e)
        return None

    bad = [f for f in pool.map(one, range(len(indices))) if f is not None]
    if bad and failed is None:
        i, why = bad[0]
        raise ConfigError(f"{data.name}: image {data.ref(i)} is not readable ({why}); re-encode or remove it")
    if failed is not None:
        failed.update(bad)
    return out


def empty_aligned(shape: tuple, dtype) -> np.ndarray:
    """`np.empty`, its data 64-byte aligned: an array JAX's CPU device can use in place
    (`jax.device_put(x, may_alias=True)`) instead of copying, as embeddings are used for retrieval."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start : start + size].view(dtype).reshape(shape)


def image_embeddings(data: EvalData, encode, size: int, batch: int = 64) -> np.ndarray:
    """`encode` over every image, decoded batch by batch on a thread pool (memory stays at one
    batch of pixels, whatever the size of the set); `encode` sees one batch shape.

    Images that cannot be decoded are skipped: they leave `data` (its size, labels and texts shrink
    to the rest, so what follows scores only decoded images), are listed in `data.unreadable` and
    named in one line on stderr. None decodable is a ConfigError."""
    from tqdm import tqdm

    embeddings, failed = None, {}
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        for start in tqdm(
            range(0, data.size, batch), desc=f"images of {data.name}", unit="batch", leave=False, disable=None
        ):
            idx = range(start, min(start + batch, data.size))
            x = pixels(data, idx, size, pool, failed)
            if len(idx) < batch:
                x = np.concatenate([x, np.zeros((batch - len(idx), *x.shape[1:]), x.dtype)])
            z = np.asarray(encode(x))[: len(idx)]
            if embeddings is None:  # filled in place: never a list of batches and a copy of them
                embeddings = empty_aligned((data.size, *z.shape[1:]), z.dtype)
            embeddings[start : start + len(idx)] = z
    if embeddings is None:
        raise ConfigError(f"{data.name}: no images to embed")
    if not failed:
        return embeddings
    keep = np.setdiff1d(np.arange(data.size), np.fromiter(failed, np.int64))
    skipped = [f"{data.ref(i)} ({why.split(':')[0]})" for i, why in sorted(failed.items())]
    if not len(keep):
        raise ConfigError(
            f"{data.name}: none of its {data.size} images can be decoded ({'; '.join(skipped[:3])}); "
            "check that it holds image files"
        )
    drop_images(data, keep)
    data.unreadable = skipped
    print(f"entitynet: {data.name}: {unreadable_line(skipped, data.size)}", file=sys.stderr)
    kept = empty_aligned((len(keep), *embeddings.shape[1:]), embeddings.dtype)
    np.take(embeddings, keep, axis=0, out=kept)
    return kept


def drop_images(data: EvalData, keep: np.ndarray) -> None:
    """Keep only images `keep` (sorted indices) of `data`, in place: loader, labels, right answers
    and the texts of the dropped images."""
    kept = [int(i) for i in keep]
    load, ref, total = data.load, data.ref, data.size
    data.load = lambda j: load(kept[j])
    data.ref = lambda j: ref(kept[j])
    data.size = len(kept)
    if data.labels is not None:
        data.labels = data.labels[keep]
    if data.correct is not None:
        data.correct = data.correct[keep]
    if data.exact is not None:
        data.exact = data.exact[keep]
    if data.text_image is not None:
        new = np.full(total, -1, np.int64)
        new[keep] = np.arange(len(kept))
        mapped = new[data.text_image]
        data.texts = Texts(t for t, m in zip(data.texts, mapped, strict=True) if m >= 0)
        data.text_image = mapped[mapped >= 0]


def unreadable_line(skipped: list[str], scored: int) -> str:
    """One line for the images evaluation skipped because they could not be decoded."""
    shown = "; ".join(skipped[:5]) + (f"; and {len(skipped) - 5} more" if len(skipped) > 5 else "")
    return (
        f"{len(skipped)} image(s) cannot be decoded and were skipped, {scored} scored: {shown} "
        "(re-encode or remove them)"
    )


# ---------------------------------------------------------------- class names


def entity_names(entity: Entity, synonyms: bool) -> list[str]:
    return entity.synonyms() if synonyms else [entity.label]


def _key(name: str) -> str:
    return " ".join(name.replace("_", " ").casefold().split())


class ClassNames:
    """Turns the classes of an evaluation set into names: entity ids become the entity's label (or,
    with `synonyms`, every name it has); plain names (folder names, TFDS labels) are matched to the
    knowledge graph by label, then by alias, common or taxon name, so that `synonyms` works for them
    too. Names that match no entity, or several, stay as given and are listed in `unresolved`."""

    def __init__(self, entities: dict[str, Entity], synonyms: bool):
        self.entities, self.synonyms = entities, synonyms
        self.by_label: dict[str, list[str]] = {}
        self.by_name: dict[str, list[str]] = {}
        for e in entities.values():
            self.by_label.setdefault(_key(e.label), []).append(e.id)
            for n in e.synonyms()[1:]:
                ids = self.by_name.setdefault(_key(n), [])
                if e.id not in ids:
                    ids.append(e.id)
        self.entity_of: dict[str, str] = {}  # display name -> entity id, for the report
        self.unresolved: list[str] = []

    def _match(self, name: str) -> tuple[str | None, str]:
        """(entity id or None, why not)."""
        for index in (self.by_label, self.by_name):
            ids = index.get(_key(name), [])
            if len(ids) == 1:
                return ids[0], ""
            if len(ids) > 1:
                return None, f"{name!r} is ambiguous ({', '.join(sorted(ids)[:4])})"
        return None, f"{name!r} matches no entity"

    def resolve(self, name: str, where: str) -> list[str]:
        """The names of one class given as a name or an entity id (tab-separated synonyms allowed)."""
        out: list[str] = []
        entity_id = None
        for part in (p.strip() for p in name.split("\t")):
            if not part:
                continue
            if part in self.entities:
                entity_id = entity_id or part
                out.extend(entity_names(self.entities[part], self.synonyms))
            elif is_qid(part):
                raise ConfigError(
                    f"{where}: {part} is not an entity of the knowledge graph given "
                    "(--entities); expand the graph that holds it or write the class name instead"
                )
            else:
                out.append(part)
                if self.entities:
                    found, why = self._match(part)
                    if found:
                        entity_id = entity_id or found
                        if self.synonyms:
                            out.extend(self.entities[found].synonyms())
                    elif self.synonyms:
                        self.unresolved.append(why)
        if not out:
            raise ConfigError(f"{where}: an empty class name")
        names = unique_texts(out)
        if entity_id:
            self.entity_of[names[0]] = entity_id
        return names


def unresolved_line(unresolved: list[str]) -> str:
    """One line for the class names that kept only their own name under --synonyms."""
    shown = "; ".join(unresolved[:5]) + (f"; and {len(unresolved) - 5} more" if len(unresolved) > 5 else "")
    return (
        f"{len(unresolved)} class name(s) not matched to one entity, evaluated by their own name only: "
        f"{shown} (give entity ids in labels.tsv or --class-names to fix)"
    )


def read_class_names(path: str, count: int, names: ClassNames) -> list[list[str]]:
    """A --class-names file: one line per class in label order (a name, an entity id, or
    tab-separated synonyms)."""
    try:
        lines = [x for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]
    except OSError as e:
        raise ConfigError(f"class names {path}: {e.strerror}") from None
    if len(lines) != count:
        raise ConfigError(
            f"class names {path} has {len(lines)} lines for {count} classes; give one line per class, in label order"
        )
    return [names.resolve(x, f"{path}:{n}") for n, x in enumerate(lines, 1)]


def _finish(data: EvalData, names: ClassNames) -> EvalData:
    data.class_entities = dict(names.entity_of)
    data.unresolved = list(names.unresolved)
    return data


# ---------------------------------------------------------------- ImageFolder


def image_folder(
    path: str, entities: dict[str, Entity], synonyms: bool = False, class_names: str | None = None
) -> EvalData:
    root = Path(path)
    if not root.is_dir():
        raise ConfigError(f"evaluation folder {root} does not exist; give a directory of class folders")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not hidden(p.name))
    given = {f: f for f in folders}
    mapping = root / "labels.tsv"
    if mapping.exists():
        for n, line in enumerate(mapping.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            folder, sep, name = line.partition("\t")
            if not sep or not name.strip():
                raise ConfigError(f"{mapping}:{n}: expected folder<TAB>class name or entity id")
            if folder not in given:
                raise ConfigError(f"{mapping}:{n}: no folder {folder!r} in {root}")
            given[folder] = name
    files, labels = [], []
    for i, c in enumerate(folders):
        for f in sorted((root / c).iterdir()):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not hidden(f.name):
                files.append(f)
                labels.append(i)
    if len(folders) < 2 or not files:
        raise ConfigError(
            f"{root} is not an ImageFolder: it needs at least two class folders holding images "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    names = ClassNames(entities, synonyms)
    if class_names:
        classes = read_class_names(class_names, len(folders), names)
    else:
        classes = [names.resolve(given[c], f"{root}/{c}") for c in folders]
    _refuse_one_class_twice(root, folders, classes, names, class_names)
    data = EvalData(
        name=root.name,
        size=len(files),
        load=lambda i: decode(files[i]),
        labels=np.asarray(labels),
        classes=classes,
        origin=f"imagefolder:{root.resolve()}",
        ref=lambda i: files[i].relative_to(root).as_posix(),
    )
    return _finish(data, names)


def _refuse_one_class_twice(
    root: Path, folders: list[str], classes: list[list[str]], names: ClassNames, class_names: str | None
) -> None:
    """Two folders that resolve to one class (one entity, or one name up to case, whitespace and
    underscores: `Q140` and `lion`, `Lion` and `lion `) would be scored as two classes, each
    "wrong" for the other's images: a ConfigError naming both and the fix."""
    seen: dict[tuple[str, str], str] = {}
    for folder, names_of in zip(folders, classes, strict=True):
        display = names_of[0]
        entity = names.entity_of.get(display)
        for key in (("entity", entity or ""), ("name", _key(display))):
            if not key[1]:
                continue
            other = seen.setdefault(key, folder)
            if other != folder:
                same = f"both are entity {entity}" if key[0] == "entity" else f"both are named {display!r}"
                fix = (
                    f"give them different lines in {class_names}"
                    if class_names
                    else f"merge them into one folder, or name them apart in {root / 'labels.tsv'} "
                    "(folder<TAB>class name or entity id)"
                )
                raise ConfigError(f"{root}: folders {other!r} and {folder!r} are one class ({same}); {fix}")


# ---------------------------------------------------------------- TFDS


def tfds_split(
    spec: str,
    data_dir: str | None,
    entities: dict[str, Entity],
    synonyms: bool = False,
    class_names: str | None = None,
) -> EvalData:
    """NAME:SPLIT of a prepared TFDS dataset (or a dataset directory DIR:SPLIT)."""
    import tensorflow_datasets as tfds

    name, _, split = spec.partition(":")
    split = split or "test"
    try:
        local = Path(name).is_dir()
        builder = tfds.builder_from_directory(name) if local else tfds.builder(name, data_dir=data_dir)
        features = builder.info.features
        image_key = next((k for k, f in features.items() if isinstance(f, tfds.features.Image)), None)
        label_key = next((k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)), None)
        if image_key is None or label_key is None:
            raise ConfigError(f"TFDS dataset {name} needs an Image and a ClassLabel feature for zero-shot")
        # JPEG bytes, decoded by Pillow in our threads (and not at all when reading the labels)
        decoders = {image_key: tfds.decode.SkipDecoding()}
        if local:
            source = builder.as_data_source(split, decoders=decoders)
        else:
            source = tfds.data_source(name, split=split, data_dir=data_dir, download=False, decoders=decoders)
        labels = np.asarray([int(source[i][label_key]) for i in range(len(source))], np.int64)
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - tfds raises many kinds for "not there"
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(
            f"TFDS evaluation set {spec}: cannot open it ({type(e).__name__}: {first[:200]}); "
            "prepare it with `tfds build` and give --tfds-data-dir, or check NAME:SPLIT"
        ) from None
    label_feature = features[label_key]
    count = label_feature.num_classes
    names = ClassNames(entities, synonyms)
    if class_names:
        classes = read_class_names(class_names, count, names)
    else:
        classes = [
            names.resolve(n.replace("_", " "), f"{name} class {i}") for i, n in enumerate(label_feature.names)
        ]
    where = str(Path(name).resolve()) if Path(name).is_dir() else f"{name}@{data_dir or ''}"
    data = EvalData(
        name=f"tfds:{Path(name).name}:{split}",
        size=len(source),
        load=lambda i: decode(source[i][image_key]),
        labels=labels,
        classes=classes,
        origin=f"tfds:{where}:{split}",
        ref=lambda i: f"{split}/{i}",
    )
    return _finish(data, names)


# ---------------------------------------------------------------- held-out split of the shards


def heldout(
    shards: str,
    split: str,
    entities: dict[str, Entity],
    synonyms: bool = False,
    class_names: str | None = None,
) -> EvalData:
    """A split of the run's shards: zero-shot over the entities its images show, retrieval over
    their alt texts (every alt text of an image is one of its captions).

    A prediction is right when it is any entity the image is linked to (`correct`, ancestors
    included when the image is linked to them); `exact` holds only the image's most specific
    linked entities (`most_specific`), for exact-entity accuracy; an image's label (what per-class
    accuracy and confused pairs group it by) is its most specific entity, the first of them.

    Streamed: one pass over the split reads what scoring needs (each record's entities and alt
    texts, not its image), and `load` reads an image from the shards again when its batch is
    embedded, so no more than a batch of images is in memory however large the split."""
    from entitynet import shards as shard_io
    from entitynet.records import decode_for_training

    try:
        paths = shard_io.local_shard_paths(shards, split)  # a bucket's: cached local copies
        source = shard_io.CheckedSource(paths) if paths else None
    except EntityNetError as e:
        raise ConfigError(str(e)) from None
    if source is None or len(source) == 0:
        raise ConfigError(f"{shards} has no {split!r} split to evaluate on; give --split (e.g. validation)")

    def records(start: int, stop: int):
        """Records start..stop-1 (the fields training reads); ConfigError for a damaged shard."""
        try:  # one record: a plain read (a read of several starts threads of its own)
            raw = [source[start]] if stop == start + 1 else source.__getitems__(range(start, stop))
        except EntityNetError as e:
            raise ConfigError(str(e)) from None
        out = []
        for i, data in enumerate(raw, start):
            try:
                out.append(decode_for_training(data))
            except ValueError as e:
                raise ConfigError(
                    f"record {i} of the {split!r} split of {shards} cannot be read ({e}); "
                    "re-run the stage that wrote the shards into a fresh --out"
                ) from None
        return out

    size = len(source)
    first_seen: dict[str, int] = {}  # entity id -> its column in the order first seen
    rows, cols = array("q"), array("q")  # the (image, entity) pairs, compact
    leaf = array("b")  # per pair: the entity is one of the image's most specific
    texts = Texts()  # compact: one buffer, not a string object per text
    owner = array("q")
    above = Ancestors(entities)
    for start in range(0, size, 1024):
        for n, r in enumerate(records(start, min(size, start + 1024)), start):
            linked = [e for e in dict.fromkeys(r.entity_ids) if e in entities]
            specific = set(most_specific(linked, above))
            for e in linked:
                rows.append(n)
                cols.append(first_seen.setdefault(e, len(first_seen)))
                leaf.append(e in specific)
            texts.extend(r.alt_texts)
            owner.extend([n] * len(r.alt_texts))
    ids = sorted(first_seen)
    column = np.empty(len(ids), np.int64)  # first-seen column -> sorted column
    column[np.asarray([first_seen[e] for e in ids], np.int64)] = np.arange(len(ids))
    images, classes_of = np.frombuffer(rows, np.int64), column[np.frombuffer(cols, np.int64)]
    correct = Answers.from_pairs(images, classes_of, size, len(ids))
    is_leaf = np.frombuffer(leaf, np.int8).astype(bool)
    exact = Answers.from_pairs(images[is_leaf], classes_of[is_leaf], size, len(ids))
    del rows, cols, leaf, images, classes_of
    names = ClassNames(entities, synonyms)
    if class_names:
        classes = read_class_names(class_names, len(ids), names)
    else:
        classes = [names.resolve(e, f"entity {e}") for e in ids]
    data = EvalData(
        name=f"heldout:{split}",
        size=size,
        load=lambda i: decode(records(i, i + 1)[0].jpeg),
        labels=exact.first(),  # the image's most specific entity (the first, when several)
        classes=classes,
        correct=correct,
        counting="linked",
        exact=exact,
        texts=texts,
        text_image=np.asarray(owner, np.int64),
        origin=f"heldout:{Path(shards).resolve() if '://' not in shards else shards}:{split}",
        ref=lambda i: records(i, i + 1)[0].key,
    )
    return _finish(data, names)


class Ancestors:
    """Every ancestor of an entity in the knowledge graph given (its `parents`, their parents ...,
    and its `lineage_ids`), worked out once per entity."""

    def __init__(self, entities: dict[str, Entity]):
        self.entities = entities
        self.known: dict[str, frozenset[str]] = {}

    def __call__(self, entity: str) -> frozenset[str]:
        if entity in self.known:
            return self.known[entity]
        found: set[str] = set()
        todo = [entity]
        while todo:  # iterative: a deep graph is no recursion limit
            e = self.entities.get(todo.pop())
            if e is None:
                continue
            for p in (*e.parents, *e.lineage_ids):
                if p not in found and p != entity:
                    found.add(p)
                    if p in self.known:
                        found |= self.known[p]
                    else:
                        todo.append(p)
        self.known[entity] = frozenset(found)
        return self.known[entity]


def most_specific(linked: Sequence[str], ancestors: Callable[[str], frozenset[str]]) -> list[str]:
    """The entities of `linked` that are no ancestor of another of them: a lion image linked to
    lion and felid has lion; one linked to lion and zebra has both. All of them when that leaves
    none (a cycle in the graph)."""
    above = set().union(*(ancestors(e) for e in linked)) if linked else set()
    return [e for e in linked if e not in above] or list(linked)
