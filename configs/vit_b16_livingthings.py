"""ViT-B/16 CLIP on a LivingThings subset (animals Q729 and plants Q756, curated with
`entitynet curate --subset-root Q729 --subset-root Q756 --output subset`).

    entitynet train --config configs/vit_b16_livingthings.py:10000000 --workdir runs/b16-living \\
        --config.data.shards=/mnt/data/entitynet-shards --config.data.subset=/mnt/data/living/subset.npz

ARG: the number of training images (default 10M, the reference's LivingThings-10M).
"""

import ml_collections

from configs.vit_b32_entitynet import get_config as b32_config


def get_config(arg=None):
    c = b32_config(arg or "10000000")
    c.model = ml_collections.ConfigDict({"preset": "B/16", "overrides": {}})
    c.data.subset = "gs://bucket/entitynet/living/subset.npz"
    return c
