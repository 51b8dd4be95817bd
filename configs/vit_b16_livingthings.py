"""ViT-B/16 CLIP on a LivingThings subset (animals Q729 and plants Q756, curated with
`entitynet curate --subset-root Q729 --subset-root Q756 --output subset`).

    entitynet train --config configs/vit_b16_livingthings.py:images=10000000 --workdir runs/b16-living \\
        --config.data.shards=/mnt/entitynet/shards --config.data.subset=/mnt/entitynet/living/subset.npz

ARG: `images=N` (default 10M, the reference's LivingThings-10M); `runlocal=True` as in vit_b32.
"""

from configs.common import MOUNT, parse_arg, runlocal
from configs.vit_b32_entitynet import get_config as b32_config


def get_config(arg=None):
    a = parse_arg(arg, images=10_000_000, runlocal=False)
    c = b32_config(f"images={a.images}")
    c.model.preset = "B/16"
    c.data.subset = f"{MOUNT}/living/subset.npz"
    return runlocal(c) if a.runlocal else c
