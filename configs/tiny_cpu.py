"""The demo's model: a tiny CLIP (290k parameters, 64 px) trained on a laptop CPU.

    python -m train.train --config configs/tiny_cpu.py --workdir demo-out/train
    entitynet train --config tiny_cpu:siglip --workdir demo-out/train-siglip --config.total_steps=300
    entitynet train --config tiny_cpu --data my/curated --workdir my/run

900 steps of batch 128 take about 4.4 minutes on 2 cores. On the Iconify quality benchmark
(`benchmarks/quality_iconify.py --steps 900`: 78 animal and plant classes drawn in two emoji
styles it never trained on) it reaches 28.8% top-1 on fxemoji and 14.2% on streamline-emojis
(mean of 3 seeds, default templates; benchmarks/README.md, "Model quality");
`make demo` trains it 400 steps per run.

ARG: `loss=clip` (default) or `siglip` (a bare value names the loss). Data paths default to `make
demo`'s outputs; `--data DIR` points a run at a curated directory of your own.
"""

from configs.common import base, parse_arg


def get_config(arg=None):
    a = parse_arg(arg, loss="clip")
    c = base()
    c.loss = a.loss
    c.total_steps = 900
    c.model.preset = "tiny"
    c.model.overrides = {
        "vision_patch_size": 8,
        "vision_width": 64,
        "text_width": 64,
        "embed_dim": 64,
        "vision_heads": 4,
        "text_heads": 4,
    }
    c.data.shards = "demo-out/curated"
    c.data.entities = "demo-out/kg/entities.jsonl"
    c.data.tokenizer = "demo-out/curated/tokenizer.json"
    # 1 reader thread here, where the step needs the other core (2 gave the demo 5-10% fewer images/s)
    c.data.read_threads = 1
    return c
