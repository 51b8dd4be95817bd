"""The training input: Grain over the ArrayRecord shards of a harvest (or a curation).

    source (ArrayRecordDataSource of one split) -> this process's slice -> seeded global shuffle
    -> repeat -> decode the step's fields -> [subset filter] -> [entity balance: MetaCLIP's keep
    chance, drawn per record and epoch] -> RandomResizedCrop box from the JPEG header, decode at
    the crop's DCT scale, crop + resize (bilinear, antialiased; uint8 pixels, normalised on the
    device in the step) -> pick a text, tokenise (a KG caption once) -> [augment: flip, colour,
    greyscale, blur, posterize] -> batch (in the reader threads, unless a filter drops records)
    -> [worker processes]
    -> [DevicePrefetch: the next batches already on the device, in train.py]

Text is chosen at load time (records carry no baked-in caption): with probability `alt_text_chance` one of the record's
alt texts, otherwise a knowledge-graph caption of one of its (pruned) entity links, drawn with the
caption function's weights; a caption that names the entity is wrapped, with probability
`template_chance`, in one of the training templates ("a photo of a {c}."), so that a model
evaluated with prompts has seen prompts. Every random choice uses the generator Grain gives the transform, so a seed
fixes the whole stream and the iterator's state (saved in every checkpoint) resumes it exactly.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
import math

import grain
import numpy as np
from PIL import Image

from entitynet import records, shards
from entitynet.errors import ConfigError, EntityNetError
from entitynet.images.decode import ImageRejected, decode, open_image
from entitynet.images.prepare import display_size
from entitynet.records import Entity
from entitynet.text import captions as kg_captions
from entitynet.text.captions import TextChooser  # the library's: data export draws texts with it too
from entitynet.text.tokenizer import encode
from train import augment
from train.balance import Balancer, entity_counts, keep

log = logging.getLogger("entitynet.train")

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
    resample: str = "bilinear"  # the crop's resize filter (RESAMPLE); antialiased when downscaling
    seed: int = 0
    num_workers: int = 0  # multiprocess prefetch; 0 = in this process (tests)
    read_threads: int = 2  # Grain's threads per process that read, decode and crop records
    read_buffer: int = 16  # records each process prepares ahead
    subset: str = ""  # a curation's subset.npz: only these keys
    augment: augment.Augment = augment.Augment()  # off by default (train/augment.py)
    balance: str = ""  # "entity": MetaCLIP's keep chance per record and epoch (train/balance.py)
    balance_cap: int = 0  # records per entity an epoch; 0: the median entity's count
    caption_weights: kg_captions.CaptionWeights = kg_captions.CaptionWeights()  # the KG captions' mix
    train: bool = True  # False: centre crop, no shuffle, no repeat, the alt text or the entity name


def open_source(directory: str, split: str) -> shards.CheckedSource:
    paths = shards.local_shard_paths(directory, split)  # checks the directory first; bucket: cached copies
    if not paths:
        raise ConfigError(f"{directory} has no {split!r} shards; check the data path and split")
    source = shards.CheckedSource(paths)
    if len(source) == 0:
        raise ConfigError(
            f"the {split!r} split of {directory} is empty; harvest more or choose another split"
        )
    return source


RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}
# Box = (x, y, width, height) in the image as displayed (after EXIF orientation), full resolution.
Box = tuple[int, int, int, int]


def crop_box(w: int, h: int, rng: np.random.Generator, scale=(0.4, 1.0), ratio=(0.9, 1.11)) -> Box:
    """torchvision's RandomResizedCrop box in a `w` x `h` image: an area fraction in `scale` and
    an aspect in `ratio` (log-uniform), ten tries, then the centre square."""
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = round(np.sqrt(target * aspect)), round(np.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1)), cw, ch
    return centre_box(w, h)


def centre_box(w: int, h: int) -> Box:
    side = min(w, h)
    return (w - side) // 2, (h - side) // 2, side, side


def decode_crop(data: bytes, box_of, size: int, resample: str = "bilinear") -> np.ndarray:
    """JPEG/PNG/... bytes -> the `size` x `size` uint8 RGB crop `box_of(w, h)` picks in the
    displayed image, decoded at the smallest DCT scale (libjpeg's 1/2, 1/4, 1/8) that still gives
    the crop at least `size` pixels on each side, so nothing is decoded that the resize would throw
    away and no crop is upsampled from a coarser decode than it needs. An image that cannot be
    decoded (whatever its decoder raises) means damaged shards: an EntityNetError in one line."""
    try:
        im = open_image(data)
        w, h = display_size(im)
        x, y, cw, ch = box_of(w, h)
        im = decode(im, (math.ceil(w * size / cw), math.ceil(h * size / ch)))
    except ImageRejected as e:
        raise EntityNetError(
            f"an image in the training shards cannot be decoded ({e}); the shards are damaged: "
            "re-run `entitynet harvest` (or `entitynet curate`) into a fresh --out"
        ) from None
    sx, sy = im.width / w, im.height / h  # 1 unless the decode was reduced
    return resize_box(im, (x * sx, y * sy, (x + cw) * sx, (y + ch) * sy), size, resample)


def resize_box(im: Image.Image, box, size: int, resample: str = "bilinear") -> np.ndarray:
    """The `box` (x0, y0, x1, y1) of `im` resized to `size` x `size`, as a uint8 array. Pillow's
    filters widen their support when downscaling, so every `resample` is antialiased. A bilinear
    upsampling (the box no larger than `size` either way, where antialiasing changes nothing) goes
    through OpenCV when it is installed: the same interpolation, about 6x faster than Pillow's
    (benchmarks/input_pipeline.py), on the box rounded to whole pixels."""
    x0, y0, x1, y1 = box
    cv2 = augment.opencv()
    if resample == "bilinear" and cv2 is not None and x1 - x0 <= size and y1 - y0 <= size:
        ix0, iy0 = round(x0), round(y0)
        ix1, iy1 = max(ix0 + 1, round(x1)), max(iy0 + 1, round(y1))
        return cv2.resize(np.asarray(im)[iy0:iy1, ix0:ix1], (size, size), interpolation=cv2.INTER_LINEAR)
    return np.asarray(im.resize((size, size), RESAMPLE[resample], box=box))


def centre_crop(im: Image.Image, size: int, resample: str = "bicubic") -> Image.Image:
    """Evaluation's crop, open_clip's (and torchvision's) `Resize(size)` + `CenterCrop(size)`
    pixel for pixel: the shorter side resized to `size` (bicubic), then the centre square, its
    offset rounded as torchvision rounds it. An export declares it as its preprocess_cfg."""
    w, h = im.size
    if w <= h:
        nw, nh = size, int(size * h / w)
    else:
        nw, nh = int(size * w / h), size
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), RESAMPLE[resample])
    left, top = int(round((nw - size) / 2.0)), int(round((nh - size) / 2.0))
    return im.crop((left, top, left + size, top + size))


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


class Decode(grain.transforms.Map):
    """Only the fields the step uses (records.TRAINING_FIELDS)."""

    def map(self, raw: bytes) -> records.ImageRecord:
        return records.decode_for_training(raw)


class InSubset(grain.transforms.Filter):
    """Records whose key is in a curation's subset (`records.Subset`: its sorted key array, 16
    bytes a key; a worker process receives a local file's path and maps the file itself)."""

    def __init__(self, keys: records.Subset):
        self.keys = keys

    def filter(self, record) -> bool:
        return record.key in self.keys


class Balance(grain.transforms.RandomMap):
    """Keeps a record with MetaCLIP's chance for its entities (`Balancer.keep_chance`), one draw per
    record and epoch (the index after `repeat` differs every epoch); a dropped record becomes None,
    which Grain skips."""

    def __init__(self, balancer: Balancer):
        self.balancer = balancer

    def random_map(self, record, rng: np.random.Generator):
        if record is None:
            return None
        return record if keep(self.balancer.keep_chance(record.entity_ids), rng) else None


class Prepare(grain.transforms.RandomMap):
    """Record -> {"image": uint8 (s, s, 3), "tokens": int32 (context,), "kg_text": 0/1}; the
    images are normalised on the device (`to_model_input`)."""

    def __init__(self, cfg: InputConfig, chooser: TextChooser, tokenizer):
        self.cfg, self.chooser, self.tokenizer = cfg, chooser, tokenizer

    def random_map(self, record, rng: np.random.Generator):
        cfg = self.cfg
        if cfg.train:
            box_of = functools.partial(crop_box, rng=rng, scale=cfg.crop_scale, ratio=cfg.crop_ratio)
            image = decode_crop(record.jpeg, box_of, cfg.image_size, cfg.resample)
            text, source = self.chooser.choose(record, rng)
            if cfg.augment.active():  # after the text's draws: runs without it keep their stream
                image = augment.apply(image, cfg.augment, rng)
        else:
            image = decode_crop(record.jpeg, centre_box, cfg.image_size, cfg.resample)
            text, source = (record.alt_texts[0] if record.alt_texts else ""), "alt"
        return {"image": image, "tokens": self.tokens(text, source), "kg_text": np.int32(source == "kg")}

    def tokens(self, text: str, source: str) -> np.ndarray:
        """Token ids; a knowledge-graph caption's are computed once per distinct caption (there are
        a few per entity, drawn again and again), an alt text's every time (they are mostly unique)."""
        if source == "kg":
            return self._kg_tokens(text)
        return encode(self.tokenizer, [text], self.cfg.context_length)[0]

    @functools.lru_cache(maxsize=200_000)  # noqa: B019 - one Prepare per pipeline (per worker)
    def _kg_tokens(self, text: str) -> np.ndarray:
        ids = encode(self.tokenizer, [text], self.cfg.context_length)[0]
        ids.setflags(write=False)  # shared by every batch that draws this caption
        return ids


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
    if cfg.balance and cfg.train:
        balancer = Balancer(entity_counts(cfg.shards, cfg.split), cfg.balance_cap)
        if process_index == 0:
            log.info(balancer.describe())
        balance_seed = int(np.random.SeedSequence([cfg.seed, 2]).generate_state(1)[0])
        ds = ds.random_map(Balance(balancer), seed=balance_seed)
    chooser = TextChooser(
        entities, cfg.alt_text_chance, cfg.template_chance, cfg.templates, cfg.caption_weights
    )
    # its own seed, so the draws are the same whether or not a filter sits above it (Grain derives
    # a default seed from the transform's depth below `seed()`)
    prepare_seed = int(np.random.SeedSequence([cfg.seed, 1]).generate_state(1)[0])
    ds = ds.random_map(Prepare(cfg, chooser, tokenizer), seed=prepare_seed)
    if batched_in_threads(cfg.subset, cfg.balance if cfg.train else ""):
        # Whole batches are made in the reader threads: a thread hands over one batch, not 64
        # records (15-20% more images/s here); the same batches as batching after the threads.
        ds = ds.batch(cfg.batch_size, drop_remainder=cfg.train)
        ahead = max(cfg.read_threads, math.ceil(cfg.read_buffer / cfg.batch_size))
        it = ds.to_iter_dataset(grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=ahead))
    else:  # a filter may drop records, so batches are formed after it, from what passes
        read = grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=cfg.read_buffer)
        it = ds.to_iter_dataset(read).batch(cfg.batch_size, drop_remainder=cfg.train)
    if cfg.num_workers > 0:
        _absl_flags_ready()  # Grain's worker processes read absl flags: a plain script never parsed them
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=cfg.num_workers, per_worker_buffer_size=2)
        )
    return it


def batched_in_threads(subset: str, balance: str = "") -> bool:
    """Whether batches are made in the reader threads: unless a subset or the entity balance drops
    records. The loader's saved position then counts batches, not records, so checkpoints record
    which (`state_counts`)."""
    return not (subset or balance)


def state_counts(subset: str, balance: str = "") -> str:
    return "batches" if batched_in_threads(subset, balance) else "records"


def _absl_flags_ready() -> None:
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


class DevicePrefetch:
    """Batches on the device, `depth` ahead of the step: `next()` hands over a batch whose transfer
    was started a call earlier, while the previous step ran (`put`, e.g. `sharding.global_batch`,
    returns before the copy is done), so the step does not wait for host-to-device copies.

    The loader has then produced more batches than the step consumed, so the loader's own state
    would resume past batches never trained on; `get_state` is the state from before the first
    batch still queued (the next one the step will see), which is what checkpoints must hold, and
    `set_state` drops the queue and restores the loader there. Grain's checkpoint handler takes
    this object in place of the iterator."""

    def __init__(self, it, put, depth: int = 2):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self.it, self.put, self.depth = it, put, depth
        self.queue: collections.deque = collections.deque()

    def __iter__(self):
        return self

    def __next__(self):
        # Fill before handing over: the loading and the transfer started here overlap the step
        # dispatched after the previous call, which is still running on the device.
        while len(self.queue) < self.depth:
            state = self.it.get_state()
            try:
                batch = next(self.it)
            except StopIteration:
                break
            self.queue.append((state, self.put(batch)))
        if not self.queue:
            raise StopIteration
        return self.queue.popleft()[1]

    def get_state(self) -> bytes:
        """The loader's state at the next batch `next()` returns, as JSON bytes (the form Grain's
        checkpoint handler takes from an iterator that is not its own)."""
        state = self.queue[0][0] if self.queue else self.it.get_state()
        return json.dumps(state, indent=4).encode()

    def set_state(self, state: bytes) -> None:
        self.queue.clear()
        self.it.set_state(json.loads(state))

    def start_prefetch(self) -> None:  # Grain's handler calls it after a restore
        start = getattr(self.it, "start_prefetch", None)
        if start is not None:
            start()

    def snapshot(self) -> Snapshot:
        """The state now, for a checkpoint that may be written after the loop has moved on."""
        return Snapshot(self.get_state())

    def close(self) -> None:
        self.queue.clear()
        close = getattr(self.it, "close", None)
        if close is not None:
            close()


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """A loader state frozen at one step, in the shape Grain's checkpoint handler saves."""

    state: bytes

    def get_state(self) -> bytes:
        return self.state
