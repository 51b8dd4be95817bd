"""The reference recipe: ViT-B/32 CLIP on an EntityNet harvest (context 32, global batch 8192,
18 epochs, lr 5e-4, weight decay 0.2, 2 warm-up epochs).

    entitynet train --config configs/vit_b32_entitynet.py:33000000 --workdir gs://bucket/runs/b32 \\
        --config.data.shards=/mnt/data/entitynet-curated --config.data.tokenizer=/mnt/data/tokenizer.json

ARG: the number of training images (default 33M, the paper's largest set); steps follow from it.
On a TPU v4-32 or 8x H100: one process per host, `--config.distributed=True` on several hosts.
The paper's B/32 reaches its ImageNet zero-shot figures after ~0.6B samples seen.
"""

import ml_collections

from configs.tiny_cpu import get_config as base_config


def get_config(arg=None):
    images = int(float(arg)) if arg else 33_000_000
    c = base_config("clip")
    c.batch_size = 8192
    epochs, warmup_epochs = 18, 2
    steps_per_epoch = max(1, images // c.batch_size)
    c.total_steps = epochs * steps_per_epoch
    c.log_every = 50
    c.eval_every = 2000
    c.eval_batches = 10
    c.dtype = "bfloat16"  # compute; parameters and optimizer state stay float32
    c.peak_flops_per_device = 0.0  # e.g. 275e12 (TPU v4 bf16) or 989e12 (H100 bf16) for MFU
    c.model = ml_collections.ConfigDict({"preset": "B/32", "overrides": {}})
    c.data.shards = "gs://bucket/entitynet/curated"
    c.data.entities = "gs://bucket/entitynet/kg/entities.jsonl"
    c.data.tokenizer = "gs://bucket/entitynet/curated/tokenizer.json"
    c.data.image_size = 224
    c.data.context_length = 32
    c.data.num_workers = 8  # one per physical core minus the ones the step and the copies need
    c.data.read_threads = 2
    c.optim.lr = 5e-4
    c.optim.warmup_steps = warmup_epochs * steps_per_epoch
    c.optim.end_lr_ratio = 0.0
    c.optim.weight_decay = 0.2
    c.mesh = ml_collections.ConfigDict({"data": 1, "fsdp": -1, "tensor": 1})
    c.checkpoint = ml_collections.ConfigDict({"every_steps": 1000, "keep": 3, "async": True})
    return c
