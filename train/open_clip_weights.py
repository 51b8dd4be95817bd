"""Weights between our CLIP and open_clip's state-dict layout (names, and PyTorch's (out, in) matrices).

    state_dict = to_open_clip(model)           # {"visual.conv1.weight": array, ...}, numpy
    load_open_clip(model, state_dict)          # in place; shapes checked, one clear error otherwise
    read_state_dict("open_clip_model.safetensors")

Our module tree mirrors open_clip's (`train/model.py`), so a name maps by rule: the text tower's
parameters sit at open_clip's top level, LayerNorm `scale` is `weight`, Linear `kernel` is the
transposed `weight`, the fused attention projection is `attn.in_proj_weight`/`in_proj_bias`, and
the patch embedding's kernel (p, p, 3, w) is open_clip's conv weight (w, 3, p, p).
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from entitynet.errors import ConfigError


def _their_name(path: tuple) -> tuple[str, str] | None:
    """(open_clip key, how to convert) for one of our parameter paths; None: ours only."""
    parts = [str(p) for p in path]
    if parts[0] == "logit_bias":
        return "logit_bias", "same"
    if parts[0] == "text":
        parts = parts[1:]
    if parts[0] == "visual" and len(parts) > 1 and parts[1] == "attn_pool":
        raise ConfigError("attention pooling ('map') has no open_clip counterpart; use pool 'tok' or 'gap'")
    leaf = parts[-1]
    if parts[-2:] == ["in_proj", "kernel"]:
        return ".".join(parts[:-2]) + ".in_proj_weight", "T"
    if parts[-2:] == ["in_proj", "bias"]:
        return ".".join(parts[:-2]) + ".in_proj_bias", "same"
    if parts[-2:] == ["conv1", "kernel"]:
        return ".".join(parts[:-1]) + ".weight", "conv"
    if leaf == "kernel":
        return ".".join(parts[:-1]) + ".weight", "T"
    if leaf in ("scale", "embedding"):
        return ".".join(parts[:-1]) + ".weight", "same"
    return ".".join(parts), "same"


def _convert(value: np.ndarray, how: str, to_theirs: bool) -> np.ndarray:
    if how == "T":
        return value.T
    if how == "conv":
        return value.transpose(3, 2, 0, 1) if to_theirs else value.transpose(2, 3, 1, 0)
    return value


def _params(model) -> list:
    return list(nnx.to_flat_state(nnx.state(model, nnx.Param)))


def to_open_clip(model, logit_bias: bool = True) -> dict[str, np.ndarray]:
    """Our parameters as an open_clip state dict (float32 numpy arrays); `logit_bias=False` leaves
    out SigLIP's bias, which open_clip's CLIP models (trained with the softmax loss) do not have."""
    out = {}
    for path, var in _params(model):
        name, how = _their_name(path)
        if name == "logit_bias" and not logit_bias:
            continue
        out[name] = np.array(_convert(np.asarray(var[...], dtype=np.float32), how, True), order="C")
    return out


def load_open_clip(
    model, state_dict: dict[str, np.ndarray], source: str = "the open_clip weights", only: str = ""
) -> list[str]:
    """Set `model`'s parameters from an open_clip state dict; returns the keys it did not use.
    `only`: a key prefix ("visual.": the image tower alone, for LiT; the rest keeps its values).
    The text positional embedding is cut to our context length (open_clip's models use 77).
    Weights holding NaN or infinity (a run that diverged) are refused; `source` names them."""
    used = set()
    for path, var in _params(model):
        name, how = _their_name(path)
        if not name.startswith(only):
            continue
        if name not in state_dict:
            if name == "logit_bias":
                continue  # CLIP checkpoints have no sigmoid-loss bias: keep ours
            raise ConfigError(f"the open_clip weights lack {name}; they are not of this model preset")
        value = _convert(np.asarray(state_dict[name], dtype=np.float32), how, False)
        if name == "positional_embedding" and value.shape[0] > var[...].shape[0]:
            value = value[: var[...].shape[0]]
        if value.shape != var[...].shape:
            raise ConfigError(
                f"open_clip weight {name} has shape {tuple(value.shape)}, this model needs "
                f"{tuple(var[...].shape)}; choose the preset the checkpoint was trained with"
            )
        if not np.isfinite(value).all():
            raise ConfigError(
                f"{source}: {name} holds NaN or infinite values; the model they come from diverged in "
                "training; use weights from before it diverged, or train it again with a lower learning rate"
            )
        var[...] = value.astype(var[...].dtype)
        used.add(name)
    if only and not used:
        raise ConfigError(f"{source} hold no {only.rstrip('.')} tower weights ({only}*)")
    return sorted(set(state_dict) - used)


def read_state_dict(path: str) -> dict[str, np.ndarray]:
    """An open_clip checkpoint: `.safetensors` (no torch needed) or a `.pt`/`.bin` (needs torch)."""
    try:
        if path.endswith(".safetensors"):
            from safetensors.numpy import load_file

            sd = load_file(path)
        else:
            import torch

            raw = torch.load(path, map_location="cpu", weights_only=True)
            raw = raw.get("state_dict", raw)
            sd = {k.removeprefix("module."): v.float().numpy() for k, v in raw.items()}
    except (OSError, ImportError, RuntimeError, ValueError) as e:
        raise ConfigError(f"cannot read open_clip weights {path}: {e}") from None
    return sd
