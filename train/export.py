"""Export a training run's latest checkpoint to open_clip: a state dict and its model config.

    entitynet export --workdir runs/tiny --format open_clip --out exported/tiny
    python -m train.export --workdir runs/tiny --out exported/tiny

Writes `open_clip_model.safetensors` (open_clip's parameter names and layouts) and
`open_clip_config.json` (`embed_dim`, `vision_cfg`, `text_cfg` as open_clip's model configs spell
them), loadable with `open_clip.model.CLIP(**config)` and `load_state_dict`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import ml_collections
import orbax.checkpoint as ocp
from flax import nnx

from entitynet.errors import ConfigError, EntityNetError
from entitynet.files import temp_name, write_json
from entitynet.text import tokenizer as tokenizers
from train import sharding
from train.model import CLIPConfig
from train.open_clip_weights import to_open_clip


def open_clip_config(m: CLIPConfig) -> dict:
    v, t = m.vision, m.text
    if v.pool == "map" or v.posemb != "learn":
        raise ConfigError(
            "only class-token/average pooling with learned positions has an open_clip equivalent"
        )
    return {
        "embed_dim": m.embed_dim,
        "quick_gelu": m.quick_gelu,
        "vision_cfg": {
            "image_size": v.image_size,
            "layers": v.layers,
            "width": v.width,
            "head_width": v.width // v.heads,
            "patch_size": v.patch_size,
            "mlp_ratio": v.mlp_ratio,
            "pool_type": "avg" if v.pool == "gap" else "tok",
        },
        "text_cfg": {
            "context_length": t.context_length,
            "vocab_size": t.vocab_size,
            "width": t.width,
            "heads": t.heads,
            "layers": t.layers,
            "mlp_ratio": t.mlp_ratio,
            "no_causal_mask": not t.causal,
            # "eos": the first end-of-text id, as ours (CLIP's BPE puts it last, where "argmax" agrees)
            "pool_type": "eos" if t.pool == "eot" else "last",
            "eos_id": t.eot_id,
            "pad_id": t.pad_id,
        },
    }


def load_run(workdir: str | Path):
    """(model, config, step) of a workdir's latest checkpoint."""
    from train.train import create_state, make_optimizer, model_config

    workdir = Path(workdir)
    try:
        cfg = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{workdir} is not a training workdir ({e}); give the --workdir of `entitynet train`"
        ) from None
    with ocp.CheckpointManager((workdir / "checkpoints").absolute()) as mngr:
        step = mngr.latest_step()
    if step is None:
        raise ConfigError(f"{workdir} holds no checkpoint yet")
    mcfg = model_config(cfg, tokenizers.load(cfg.data.tokenizer))
    tx, _ = make_optimizer(cfg)
    mesh = sharding.make_mesh({"data": -1})
    graphdef, state = create_state(mcfg, tx, mesh, cfg.seed)
    with ocp.StandardCheckpointer() as ckpt:
        try:
            state = ckpt.restore((workdir / "checkpoints" / str(step) / "state").absolute(), state)
        except (ValueError, KeyError) as e:
            raise ConfigError(
                f"the checkpoint at step {step} does not fit the model of {workdir}/config.json: {e}"
            ) from None
    model, _ = nnx.merge(graphdef, state)
    return model, mcfg, step


def export_open_clip(workdir: str | Path, out: str | Path) -> dict:
    from safetensors.numpy import save_file

    model, mcfg, step = load_run(workdir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    weights = jax.device_get(to_open_clip(model))
    tmp = Path(temp_name(out / "open_clip_model.safetensors"))
    try:
        save_file(weights, str(tmp))  # safetensors writes by path: a temp name, then renamed
        tmp.replace(out / "open_clip_model.safetensors")
    finally:
        tmp.unlink(missing_ok=True)
    config = open_clip_config(mcfg)
    write_json(out / "open_clip_config.json", config)
    return {"step": step, "tensors": len(weights), "out": str(out), "config": config}


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        r = export_open_clip(args.workdir, args.out)
    except EntityNetError as e:
        print(f"entitynet: error: {e}", file=sys.stderr)
        return 2
    print(
        f"exported step {r['step']} ({r['tensors']} tensors) to {r['out']}/open_clip_model.safetensors + open_clip_config.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
