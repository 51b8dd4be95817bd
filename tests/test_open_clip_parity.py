"""Parity with open_clip in PyTorch, both ways: an open_clip model imported into ours, and ours
exported and loaded by open_clip, give the same image and text embeddings on the same inputs.

open_clip and torch are the `interop` extras, which `make test` installs; without them this module
fails to import (on purpose: interoperability is a feature, not an optional test).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

try:
    import open_clip
    import torch
except ImportError as e:  # pragma: no cover - a broken install, reported as a failure
    raise ImportError(
        f"{e}: install the test extras with `pip install -e '.[test,interop]'` (make test does)"
    ) from e

import jax
from flax import nnx

from train import sharding
from train.export import config_from_open_clip, export_open_clip, load_exported, open_clip_config
from train.model import CLIP, preset
from train.open_clip_weights import load_open_clip, to_open_clip

TOL = 1e-4


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Random noise on every parameter, so that zero biases and unit norms cannot hide a mix-up."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


def inputs(image_size: int, context: int, vocab: int, sot: int, eot: int, pad: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(3, image_size, image_size, 3)).astype(np.float32)
    tokens = np.full((3, context), pad, np.int64)
    for i, n in enumerate((3, context - 2, 7)):
        tokens[i, 0] = sot
        tokens[i, 1 : n + 1] = rng.integers(4, eot if eot > 4 else vocab, n)  # never eot or pad
        tokens[i, n + 1] = eot
    return images, tokens


def theirs(model, images: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    with torch.no_grad():
        img = model.encode_image(torch.from_numpy(images.transpose(0, 3, 1, 2)), normalize=True)
        txt = model.encode_text(torch.from_numpy(tokens), normalize=True)
    return img.numpy(), txt.numpy()


def ours(model, images: np.ndarray, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    img, txt = jax.jit(lambda m, i, t: m(i, t))(model, images, tokens.astype(np.int32))
    return np.asarray(img), np.asarray(txt)


def state_dict_numpy(model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()}


def new_model(mcfg, seed=0):
    with jax.set_mesh(sharding.make_mesh({"data": -1})):
        return CLIP(mcfg, rngs=nnx.Rngs(seed))


@pytest.mark.slow
def test_open_clip_architectures_import_with_the_same_embeddings():
    """open_clip's own ViT-S-32 config (with the QuickGELU of OpenAI's checkpoints; GELU is covered
    by the export tests) and random weights -> our config and model: same embeddings."""
    quick_gelu = True
    torch.manual_seed(0)
    theirs_model = open_clip.create_model("ViT-S-32", pretrained=None, force_quick_gelu=quick_gelu)
    perturb(theirs_model, 1)
    mcfg = config_from_open_clip({**open_clip.get_model_config("ViT-S-32"), "quick_gelu": quick_gelu})
    assert mcfg.vision.patch_size == 32 and mcfg.text.context_length == 77 and mcfg.text.eot_id == 49407
    assert mcfg.quick_gelu == quick_gelu
    model = new_model(mcfg)
    assert load_open_clip(model, state_dict_numpy(theirs_model)) == []
    images, tokens = inputs(224, 77, 49408, 49406, 49407, 0)
    a_img, a_txt = theirs(theirs_model, images, tokens)
    b_img, b_txt = ours(model, images, tokens)
    assert np.max(np.abs(a_img - b_img)) < TOL
    assert np.max(np.abs(a_txt - b_txt)) < TOL
    # and a model that differs (the weights of another seed) is far off: the comparison can fail
    other = new_model(mcfg, seed=5)
    assert np.max(np.abs(ours(other, images, tokens)[0] - a_img)) > 0.1


@pytest.mark.parametrize("variant", ["clip", "siglip"])
@pytest.mark.slow
def test_our_models_export_to_open_clip_with_the_same_embeddings(variant):
    """Ours (random weights) -> open_clip state dict + config -> open_clip.model.CLIP: same embeddings."""
    overrides = dict(
        vision_patch_size=8, vision_width=64, text_width=64, embed_dim=48, vision_heads=4, text_heads=4
    )
    if variant == "siglip":  # bidirectional text tower pooled at the last token, and the logit bias
        overrides.update(text_causal=False, text_pool="last")
    mcfg = preset("tiny", **overrides)
    model = new_model(mcfg, seed=3)
    for i, (_, var) in enumerate(nnx.to_flat_state(nnx.state(model, nnx.Param))):  # noise everywhere
        var[...] = var[...] + 0.05 * jax.random.normal(jax.random.key(i), var[...].shape)
    siglip = variant != "clip"
    config = open_clip_config(mcfg, logit_bias=siglip)
    theirs_model = open_clip.model.CLIP(**config)
    missing, unexpected = theirs_model.load_state_dict(
        {k: torch.from_numpy(v) for k, v in to_open_clip(model, logit_bias=siglip).items()}, strict=False
    )
    assert missing == [] and unexpected == []
    t = mcfg.text
    images, tokens = inputs(mcfg.vision.image_size, t.context_length, t.vocab_size, 1, t.eot_id, t.pad_id)
    tokens[:, 0] = 4  # our tokenizers have no start token in the tiny vocabulary: any id works
    a_img, a_txt = theirs(theirs_model, images, tokens)
    b_img, b_txt = ours(model, images, tokens)
    assert np.max(np.abs(a_img - b_img)) < TOL
    assert np.max(np.abs(a_txt - b_txt)) < TOL
    if siglip:
        assert float(theirs_model.logit_bias.detach()) == pytest.approx(float(model.logit_bias[...]))


def test_models_without_an_open_clip_equivalent_are_refused():
    from entitynet.errors import ConfigError

    with pytest.raises(ConfigError, match="no open_clip equivalent"):
        open_clip_config(preset("tiny", vision_pool="gap"))
    with pytest.raises(ConfigError, match="timm, Hugging Face and ResNet towers"):
        config_from_open_clip(open_clip.get_model_config("ViT-B-16-SigLIP"))
    b32 = open_clip.get_model_config("ViT-B-32")
    with pytest.raises(ConfigError, match="class-token pooled"):
        config_from_open_clip({**b32, "vision_cfg": {**b32["vision_cfg"], "pool_type": "avg"}})
    with pytest.raises(ConfigError, match="end-of-text token"):
        config_from_open_clip({**b32, "text_cfg": {**b32["text_cfg"], "pool_type": "last"}})
    with pytest.raises(ConfigError, match="text_cfg.proj_bias"):
        config_from_open_clip({**b32, "text_cfg": {**b32["text_cfg"], "proj_bias": True}})


@pytest.mark.slow
def test_an_exported_run_loads_in_open_clip_and_back(tiny_run, tmp_path):
    """A trained checkpoint exported by `export_open_clip`: open_clip builds it from the written
    config and weights; `load_exported` reads the directory back; all three embed alike."""
    from safetensors.torch import load_file

    from train.export import load_run

    export_open_clip(tiny_run, tmp_path / "export")
    config = json.loads((tmp_path / "export" / "open_clip_config.json").read_text())
    theirs_model = open_clip.model.CLIP(**config)
    result = theirs_model.load_state_dict(load_file(str(tmp_path / "export" / "open_clip_model.safetensors")))
    assert not result.missing_keys and not result.unexpected_keys
    assert config["vision_cfg"]["patch_size"] == 8 and config["text_cfg"]["context_length"] == 16
    run_model, mcfg, step = load_run(tiny_run)
    back, back_cfg, tokenizer = load_exported(tmp_path / "export")
    assert step == 3 and back_cfg.text == mcfg.text and back_cfg.vision == mcfg.vision
    texts = ["a photo of a red fox", "tiger"]
    from entitynet.text.tokenizer import encode

    tokens = encode(tokenizer, texts, mcfg.text.context_length).astype(np.int64)
    images = (
        np.random.default_rng(1)
        .normal(size=(2, mcfg.vision.image_size, mcfg.vision.image_size, 3))
        .astype(np.float32)
    )
    a_img, a_txt = theirs(theirs_model, images, tokens)
    for m in (run_model, back):
        b_img, b_txt = ours(m, images, tokens)
        assert np.max(np.abs(a_img - b_img)) < TOL
        assert np.max(np.abs(a_txt - b_txt)) < TOL
    # our export read back by us is the same network, bit for bit
    for x, y in zip(ours(run_model, images, tokens), ours(back, images, tokens), strict=True):
        assert np.array_equal(x, y)
