"""The demo's model: a tiny CLIP (290k parameters, 64 px) trained on a laptop CPU.

    python -m train.train --config configs/tiny_cpu.py --workdir demo-out/train
    entitynet train --config configs/tiny_cpu.py:siglip --workdir demo-out/train-siglip --config.total_steps=300

900 steps of batch 128 take about 4.4 minutes on 2 cores. On the Iconify quality benchmark
(`benchmarks/quality_iconify.py --steps 900`: 78 animal and plant classes drawn in two emoji
styles it never trained on) it reaches 24.6% top-1 / 66.9% top-5 on fxemoji and 18.0% / 51.4%
on streamline-emojis (mean of 3 seeds, training templates; README, "Model quality");
`make demo` trains it 400 steps per run.

ARG: "clip" (default) or "siglip" picks the loss. Data paths default to `make demo`'s outputs.
"""

import ml_collections


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.loss = arg or "clip"
    c.seed = 0
    c.total_steps = 900
    c.batch_size = 128
    c.log_every = 10
    c.eval_every = 100
    c.eval_batches = 3
    c.dtype = "float32"
    c.peak_flops_per_device = 0.0  # set to the accelerator's peak to see MFU
    c.progress = True
    c.init_from = ""  # an open_clip checkpoint (.safetensors, or .pt/.bin with torch) to fine-tune
    c.distributed = False  # True: jax.distributed.initialize() (several hosts or processes)

    c.model = ml_collections.ConfigDict()
    c.model.preset = "tiny"
    c.model.overrides = ml_collections.ConfigDict(
        {
            "vision_patch_size": 8,
            "vision_width": 64,
            "text_width": 64,
            "embed_dim": 64,
            "vision_heads": 4,
            "text_heads": 4,
        }
    )

    c.data = ml_collections.ConfigDict()
    c.data.shards = "demo-out/curated"
    c.data.entities = "demo-out/kg/entities.jsonl"
    c.data.tokenizer = "demo-out/curated/tokenizer.json"
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
    c.data.num_workers = 0
    # Grain reader threads per process (decode, crop, tokenise, batch): 1 here, where the step needs
    # the other core (2 gave the demo 5-10% fewer images/s); more on hosts with cores to spare
    c.data.read_threads = 1
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
