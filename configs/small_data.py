"""The small-data recipe: the tiny CPU model of configs/tiny_cpu.py trained for drawings and photos
it has few of (thousands of images, a few hundred entities).

    entitynet train --config configs/small_data.py --workdir runs/small \\
        --config.data.shards=OUT/curated --config.data.entities=OUT/kg/entities.jsonl \\
        --config.data.tokenizer=OUT/curated/tokenizer.json

On top of tiny_cpu (RandomResizedCrop, KG captions with templates): augmentation after the crop
(flip, colour jitter, greyscale, blur, posterize; train/augment.py), entity-balanced sampling
(MetaCLIP's keep chance drawn afresh each epoch; train/balance.py), a moving average of the
weights that eval and export use, and KG captions that draw the entity's other names more often
(the label's weight 0.2 instead of the reference's 0.4). On the Iconify benchmark (900 steps,
seeds 0-2; benchmarks/README.md, "The small-data recipe") it reaches 22.5% ± 2.5 zero-shot top-1 on both unseen
styles merged against 20.9% ± 1.1 for tiny_cpu (streamline-emojis 21.2% against 14.2%).

ARG: as tiny_cpu (`loss=clip` or `siglip`). A pretrained image tower (an `entitynet export` or any
open_clip-layout directory with this preset) can be locked and the text side trained on it (LiT):
`--config.init_from=DIR --config.init_towers=image --config.model.lock_image=True` (and
`--config.model.unlocked_groups=N` to train its last N groups too).
"""

from configs import tiny_cpu


def get_config(arg=None):
    c = tiny_cpu.get_config(arg)
    a = c.data.augment
    a.flip, a.jitter, a.greyscale, a.blur, a.posterize = 0.5, 0.8, 0.2, 0.2, 0.1
    c.data.balance = "entity"
    c.data.caption_weights.noun_query = 0.2
    c.ema_decay = 0.995
    return c
