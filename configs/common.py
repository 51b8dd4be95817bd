"""What every training config shares: `base()`, the ConfigDict every field of a run lives in with
neutral defaults (each config file sets what it means), and `parse_arg`, big_vision's habit of
named config arguments (`--config FILE:images=10000000,runlocal=True`).

Data paths may be local, mounted, or bucket paths (gs://, s3://): shards in a bucket are read
from local copies made once per dataset (`entitynet.shards.local_shard_paths`, under
ENTITYNET_CACHE), and a bucket workdir is trained in a local copy pushed back after every
checkpoint (train/workdir.py). A multi-host run needs a workdir every host shares: a gcsfuse mount
(docs/run-at-scale.md).
"""

import ml_collections

MOUNT = "/mnt/entitynet"  # where the big configs expect a harvest's outputs (a mounted bucket)


def parse_arg(arg, **defaults) -> ml_collections.ConfigDict:
    """`"a=1,b=x"` (or a bare value, for the first name) -> the named values, cast to the type of
    each default; an unknown name or a value of another type is a ValueError naming it."""
    out = ml_collections.ConfigDict(defaults)
    if not arg:
        return out
    first = next(iter(defaults))
    for item in str(arg).split(","):
        name, sep, text = item.partition("=")
        if not sep:
            name, text = first, item
        name = name.strip()
        if name not in defaults:
            raise ValueError(f"unknown config argument {name!r}; this config takes {', '.join(defaults)}")
        kind = type(defaults[name])
        if kind is bool:
            if text.strip().lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"config argument {name}={text!r} is not true or false")
            out[name] = text.strip().lower() in ("true", "1")
        elif kind is int:
            out[name] = int(float(text))  # 33e6 reads as 33000000
        else:
            out[name] = kind(text)
    return out


def base() -> ml_collections.ConfigDict:
    """Every field a run has, at neutral defaults (a small CLIP on CPU-sized batches)."""
    c = ml_collections.ConfigDict()
    c.loss = "clip"
    c.seed = 0
    c.total_steps = 1000
    c.batch_size = 128
    c.log_every = 10
    c.eval_every = 100
    c.eval_batches = 3
    c.dtype = "float32"
    c.peak_flops_per_device = 0.0  # set to the accelerator's peak to see MFU
    c.progress = True
    c.init_from = ""  # an open_clip checkpoint (.safetensors, or .pt/.bin with torch) or its directory
    c.init_towers = "both"  # what init_from loads: both towers, or "image" only (LiT: text from scratch)
    # A moving average of the trainable weights, kept in the checkpoint beside them; eval and export
    # use it when on (0: off). Warmed up as (1 + step) / (10 + step) while that is smaller.
    c.ema_decay = 0.0
    c.distributed = False  # True: jax.distributed.initialize() (several hosts or processes)

    # LiT: lock_image freezes the image tower (bitwise; no optimizer state, no gradient) but its last
    # `unlocked_groups` groups (open_clip's: stem, each block, ln_post, proj); needs init_from.
    c.model = ml_collections.ConfigDict(
        {"preset": "tiny", "overrides": {}, "lock_image": False, "unlocked_groups": 0}
    )

    c.data = ml_collections.ConfigDict()
    c.data.shards = ""
    c.data.entities = ""
    c.data.tokenizer = ""
    c.data.subset = ""
    c.data.image_size = 64
    c.data.context_length = 16
    c.data.alt_text_chance = 0.5
    c.data.crop_scale = (0.4, 1.0)  # RandomResizedCrop's area fraction (the reference's)
    c.data.resample = "bilinear"  # the crop's resize (antialiased); also bicubic, lanczos, box
    # Prompt augmentation: a KG name caption ("red fox") becomes "a photo of a red fox." this often,
    # with a template of `data.templates` (a set name or a file); evaluation then defaults to the
    # same templates. The reference trains without (0.0).
    c.data.template_chance = 0.25
    c.data.templates = "openai"
    # Image augmentation after the crop, each field the chance of one transform (train/augment.py):
    # all off here; configs/small_data.py turns on what measured better on unseen drawing styles.
    c.data.augment = ml_collections.ConfigDict(
        {
            "flip": 0.0,  # horizontal flip
            "jitter": 0.0,  # brightness, contrast, saturation each x U(1 - s, 1 + s)
            "jitter_strength": 0.3,  # s
            "greyscale": 0.0,
            "blur": 0.0,  # Gaussian, sigma in pixels drawn from blur_sigma
            "blur_sigma": (0.4, 1.2),  # below 0.4 px a 3x3 kernel changes nothing
            "posterize": 0.0,  # 3 to 5 bits a channel
        }
    )
    # Entity-balanced sampling: "entity" keeps each record with MetaCLIP's chance for its entities,
    # drawn afresh every epoch, so an entity is seen at most about `balance_cap` times an epoch
    # (0: the median entity's record count; counts from the curation's entry_counts.tsv).
    c.data.balance = ""
    c.data.balance_cap = 0
    # How a KG caption is drawn among an entity's names (label, aliases, common and taxon names),
    # its parents' names and the descriptions (entitynet/text/captions.py, the reference's weights):
    # the label (as the query that found the image) gets `noun_query`, the other names share
    # `noun_synonyms`, the parents take `parent_share` of that (`parent_share_living` for taxa).
    # `name_styles`: the share of an entity's KG captions given to its names in BioCLIP's styles
    # (entitynet/text/names.py: "Vulpes vulpes with common name red fox", "Animalia Chordata
    # Mammalia Carnivora Canidae Vulpes vulpes", ...), split over the styles; only entities with a
    # taxon name get them. 0.0 (off, the reference's mix): benchmarks/results-issue32-names.md.
    c.data.caption_weights = ml_collections.ConfigDict(
        {
            "noun_query": 0.4,
            "noun_synonyms": 0.6,
            "noun_descriptions": 0.1,
            "parent_share": 0.2,
            "parent_share_living": 0.1,
            "name_styles": 0.0,
        }
    )
    c.data.split = "train"  # the split trained on
    c.data.eval_split = "validation"  # the split of the validation loss (eval_every)
    c.data.num_workers = 0
    c.data.read_threads = 1  # Grain reader threads per process (decode, crop, tokenise, batch)
    c.data.device_prefetch = 2  # batches on the device ahead of the step (1: none ahead)

    c.optim = ml_collections.ConfigDict()
    c.optim.lr = 2e-3
    c.optim.warmup_steps = 20
    c.optim.decay_steps = 0  # length of the cosine; 0: total_steps
    c.optim.end_lr_ratio = 0.05
    c.optim.b1, c.optim.b2, c.optim.eps = 0.9, 0.98, 1e-6
    c.optim.weight_decay = 0.2
    c.optim.clip_norm = 1.0

    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    c.checkpoint = ml_collections.ConfigDict({"every_steps": 100, "keep": 2, "async": True})
    return c


def runlocal(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The same recipe shrunk to a few steps of a tiny model on a laptop (big_vision's `runlocal`):
    to check a big config's wiring before a real run. The data paths stay as given."""
    c.total_steps = 10
    c.batch_size = 8
    c.log_every = 1
    c.eval_every = 5
    c.eval_batches = 1
    c.dtype = "float32"
    c.model.preset, c.model.overrides = "tiny", {}
    c.data.image_size = 64
    c.data.num_workers = 0
    c.data.read_threads = 1
    c.optim.warmup_steps = 2
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1})
    c.checkpoint = ml_collections.ConfigDict({"every_steps": 5, "keep": 1, "async": False})
    return c
