"""The reference recipe: ViT-B/32 CLIP on an EntityNet harvest (context 32, global batch 8192,
18 epochs, lr 5e-4, weight decay 0.2, 2 warm-up epochs).

    entitynet train --config configs/vit_b32_entitynet.py:images=33000000 --workdir gs://BUCKET/runs/b32 \
        --config.data.shards=gs://BUCKET/curated --config.data.entities=gs://BUCKET/kg/entities.jsonl \
        --config.data.tokenizer=gs://BUCKET/tok/tokenizer.json
    entitynet train --config configs/vit_b32_entitynet.py:runlocal=True --workdir /tmp/b32-check

ARG: `images=N` (default 33M, the paper's largest set; a bare number works too), steps follow from
it; `runlocal=True` shrinks the recipe to 10 steps of a tiny model to check its wiring on a laptop.
On a TPU v4-32 or 8x H100: one process per host, `--config.distributed=True` on several hosts,
with the workdir on a gcsfuse mount every host shares (docs/run-at-scale.md).
The paper's B/32 reaches its ImageNet zero-shot figures after ~0.6B samples seen.
"""

import ml_collections

from configs.common import MOUNT, base, parse_arg, runlocal


def get_config(arg=None):
    a = parse_arg(arg, images=33_000_000, runlocal=False)
    c = base()
    c.batch_size = 8192
    epochs, warmup_epochs = 18, 2
    steps_per_epoch = max(1, a.images // c.batch_size)
    c.total_steps = epochs * steps_per_epoch
    c.log_every = 50
    c.eval_every = 2000
    c.eval_batches = 10
    c.dtype = "bfloat16"  # compute; parameters and optimizer state stay float32
    c.peak_flops_per_device = 0.0  # e.g. 275e12 (TPU v4 bf16) or 989e12 (H100 bf16) for MFU
    c.model.preset = "B/32"
    c.data.shards = f"{MOUNT}/curated"
    c.data.entities = f"{MOUNT}/kg/entities.jsonl"
    c.data.tokenizer = f"{MOUNT}/curated/tokenizer.json"
    c.data.image_size = 224
    c.data.context_length = 32
    c.data.template_chance = 0.25
    c.data.num_workers = 8  # one per physical core minus the ones the step and the copies need
    c.data.read_threads = 2
    c.optim.lr = 5e-4
    c.optim.warmup_steps = warmup_epochs * steps_per_epoch
    c.optim.end_lr_ratio = 0.0
    c.optim.weight_decay = 0.2
    c.mesh = ml_collections.ConfigDict({"data": 1, "fsdp": -1, "tensor": 1})
    c.checkpoint = ml_collections.ConfigDict({"every_steps": 1000, "keep": 3, "async": True})
    return runlocal(c) if a.runlocal else c
