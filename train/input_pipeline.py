"""The training input: Grain over the ArrayRecord shards of a harvest (or a curation).

    source (ArrayRecordDataSource of one split) -> this process's slice -> seeded global shuffle
    -> repeat -> [subset filter] -> decode record -> RandomResizedCrop (uint8 pixels: normalised
    on the device, in the step), pick a text, tokenise -> batch -> [multiprocess prefetch]

Text is chosen at load time (DESIGN.md): with probability `alt_text_chance` one of the record's
alt texts, otherwise a knowledge-graph caption of one of its (pruned) entity links, drawn with the
caption function's weights; a caption that names the entity is wrapped, with probability
`template_chance`, in one of the training templates ("a photo of a {c}."), so that a model
evaluated with prompts has seen prompts. Every random choice uses the generator Grain gives the transform, so a seed
fixes the whole stream and the iterator's state (saved in every checkpoint) resumes it exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import io

import grain
import numpy as np
from PIL import Image

from entitynet import records, shards
from entitynet.errors import ConfigError
from entitynet.images.prepare import prepare
from entitynet.records import Entity
from entitynet.text import captions as kg_captions
from entitynet.text.templates import fill
from entitynet.text.tokenizer import encode

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


@dataclasses.dataclass(frozen=True)
class InputConfig:
    shards: str
    split: str = "train"
    batch_size: int = 32  # per process
    image_size: int = 224
    context_length: int = 32
    alt_text_chance: float = 0.5
    template_chance: float = 0.0  # a KG name caption wrapped in one of `templates`
    templates: tuple[str, ...] = ()  # training prompt templates, each with {c}
    crop_scale: tuple[float, float] = (0.4, 1.0)  # the reference's RandomResizedCrop
    crop_ratio: tuple[float, float] = (0.9, 1.11)
    seed: int = 0
    num_workers: int = 0  # multiprocess prefetch; 0 = in this process (tests)
    subset: str = ""  # a curation's subset.npz: only these keys
    train: bool = True  # False: centre crop, no shuffle, no repeat, the alt text or the entity name


def open_source(directory: str, split: str) -> shards.CheckedSource:
    paths = [str(p) for p in shards.shard_paths(directory, split)]  # checks the directory first
    if not paths:
        raise ConfigError(f"{directory} has no {split!r} shards; check the data path and split")
    source = shards.CheckedSource(paths)
    if len(source) == 0:
        raise ConfigError(
            f"the {split!r} split of {directory} is empty; harvest more or choose another split"
        )
    return source


def random_resized_crop(
    im: Image.Image, size: int, rng: np.random.Generator, scale=(0.4, 1.0), ratio=(0.9, 1.11)
) -> Image.Image:
    """torchvision's RandomResizedCrop: an area fraction in `scale` and aspect in `ratio` (log-uniform),
    ten tries, then a centre crop."""
    w, h = im.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = round(np.sqrt(target * aspect)), round(np.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return im.resize((size, size), Image.Resampling.BICUBIC, box=(x, y, x + cw, y + ch))
    return centre_crop(im, size)


def centre_crop(im: Image.Image, size: int) -> Image.Image:
    w, h = im.size
    side = min(w, h)
    x, y = (w - side) // 2, (h - side) // 2
    return im.resize((size, size), Image.Resampling.BICUBIC, box=(x, y, x + side, y + side))


def normalise(im: Image.Image) -> np.ndarray:
    """CLIP's normalisation on the host (evaluation sets); training batches are normalised on the
    device by `to_model_input`, the same arithmetic."""
    return ((np.asarray(im, dtype=np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD).astype(np.float32)


def to_model_input(images):
    """The model's input from a batch's images, inside the jitted step: uint8 pixels (as the loader
    hands them over: 4x fewer bytes to the device than float32) scaled to [0, 1] and normalised
    with CLIP's mean and std; float images are taken as already normalised."""
    import jax.numpy as jnp

    if images.dtype != jnp.uint8:
        return images
    return (images.astype(jnp.float32) / 255.0 - jnp.asarray(CLIP_MEAN)) / jnp.asarray(CLIP_STD)


class TextChooser:
    """An alt text with probability `alt_text_chance`, else a weighted KG caption of one entity,
    a naming caption wrapped in a random template with probability `template_chance`."""

    def __init__(
        self,
        entities: list[Entity],
        alt_text_chance: float,
        template_chance: float = 0.0,
        templates: tuple[str, ...] = (),
    ):
        self.by_id = {e.id: e for e in entities}
        self.alt_text_chance = alt_text_chance
        self.template_chance = template_chance if templates else 0.0
        self.templates = tuple(templates)

    @functools.lru_cache(maxsize=100_000)  # noqa: B019 - one chooser per pipeline
    def candidates(self, entity_id: str):
        e = self.by_id[entity_id]
        parents = [self.by_id[p] for p in e.parents if p in self.by_id]
        return kg_captions.captions(e, None, parents)

    def choose(self, record: records.ImageRecord, rng: np.random.Generator) -> tuple[str, str]:
        """(text, "alt" or "kg")."""
        known = [e for e in record.entity_ids if e in self.by_id]
        if record.alt_texts and (not known or rng.random() < self.alt_text_chance):
            return record.alt_texts[int(rng.integers(len(record.alt_texts)))], "alt"
        if known:
            caption = kg_captions.sample_caption(self.candidates(known[int(rng.integers(len(known)))]), rng)
            text = caption.text
            # no draw at all when templates are off, so such runs keep their random stream
            if self.template_chance and caption.source in kg_captions.NAMING_SOURCES:
                if rng.random() < self.template_chance:
                    text = fill(self.templates[int(rng.integers(len(self.templates)))], text)
            return text, "kg"
        return "", "alt"


class Decode(grain.transforms.Map):
    """Only the fields the step uses (records.TRAINING_FIELDS)."""

    def map(self, raw: bytes) -> records.ImageRecord:
        return records.decode_for_training(raw)


class InSubset(grain.transforms.Filter):
    def __init__(self, keys: frozenset[str]):
        self.keys = keys

    def filter(self, record) -> bool:
        return record.key in self.keys


class Prepare(grain.transforms.RandomMap):
    """Record -> {"image": uint8 (s, s, 3), "tokens": int32 (context,), "kg_text": 0/1}; the
    images are normalised on the device (`to_model_input`)."""

    def __init__(self, cfg: InputConfig, chooser: TextChooser, tokenizer):
        self.cfg, self.chooser, self.tokenizer = cfg, chooser, tokenizer

    def random_map(self, record, rng: np.random.Generator):
        cfg = self.cfg
        im = prepare(Image.open(io.BytesIO(record.jpeg)), (cfg.image_size, cfg.image_size))
        if cfg.train:
            im = random_resized_crop(im, cfg.image_size, rng, cfg.crop_scale, cfg.crop_ratio)
            text, source = self.chooser.choose(record, rng)
        else:
            im = centre_crop(im, cfg.image_size)
            text, source = (record.alt_texts[0] if record.alt_texts else ""), "alt"
        tokens = encode(self.tokenizer, [text], cfg.context_length)[0]
        image = np.asarray(im, dtype=np.uint8)
        return {"image": image, "tokens": tokens, "kg_text": np.int32(source == "kg")}


def make_dataset(
    cfg: InputConfig, entities: list[Entity], tokenizer, process_index: int = 0, process_count: int = 1
) -> grain.IterDataset:
    """The batched dataset for this process (iterate it; save/restore its iterator's state)."""
    if not 0 <= cfg.alt_text_chance <= 1:
        raise ConfigError(f"alt_text_chance must be within 0..1, got {cfg.alt_text_chance}")
    if not 0 <= cfg.template_chance <= 1:
        raise ConfigError(f"template_chance must be within 0..1, got {cfg.template_chance}")
    if cfg.template_chance and not cfg.templates:
        raise ConfigError("template_chance > 0 needs training templates (data.templates)")
    source = open_source(cfg.shards, cfg.split)
    # Decode one record here first: TFDS's first use imports modules under etils' lazy_imports,
    # which patches the import machinery process-wide for a moment; done in a reader thread it can
    # hand other threads (Orbax's restore) a lazy module where they import a real one.
    try:
        records.decode_image(source[0])
    except ValueError as e:
        raise shards.corrupt(source.paths[0], e) from None
    ds = grain.MapDataset.source(source)[process_index::process_count]
    if cfg.train:
        ds = ds.seed(cfg.seed).shuffle().repeat(None)
    else:
        ds = ds.seed(cfg.seed)
    ds = ds.map(Decode())
    if cfg.subset:
        ds = ds.filter(InSubset(records.read_subset(cfg.subset, cfg.split)))
    chooser = TextChooser(entities, cfg.alt_text_chance, cfg.template_chance, cfg.templates)
    ds = ds.random_map(Prepare(cfg, chooser, tokenizer))
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=16))
    it = it.batch(cfg.batch_size, drop_remainder=cfg.train)
    if cfg.num_workers > 0:
        _absl_flags_ready()  # Grain's worker processes read absl flags: a plain script never parsed them
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=cfg.num_workers, per_worker_buffer_size=2)
        )
    return it


def _absl_flags_ready() -> None:
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
