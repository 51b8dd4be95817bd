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
    config = json.loads((tmp_path / "export" / "open_clip_config.json").read_text())["model_cfg"]
    theirs_model = open_clip.model.CLIP(**{k: v for k, v in config.items()})
    config = {**config, "text_cfg": {k: v for k, v in config["text_cfg"].items() if k != "hf_tokenizer_name"}}
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


# ---------------------------------------------------------------- open_clip's own loaders


def open_clip_bpe() -> str:
    """The CLIP BPE vocabulary open_clip ships inside its package."""
    import os

    return os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")


@pytest.fixture(scope="module")
def bpe_run(tiny_dataset, jax_cache, tmp_path_factory):
    """A 2-step run of the tiny model with the CLIP BPE tokenizer (vocabulary 49,408)."""
    from conftest import load_cfg

    from train.train import train

    workdir = tmp_path_factory.mktemp("bpe-run") / "run"
    cfg = load_cfg(tiny_dataset[0], total_steps=2, **{"data.tokenizer": open_clip_bpe()})
    train(cfg, workdir)
    return workdir


@pytest.fixture(scope="module")
def eval_folder(tiny_dataset, tmp_path_factory):
    """An ImageFolder of the tiny dataset's renders (64 x 48: not square, so the resize and the
    centre crop are exercised), 3 per entity, folders named by entity id."""
    _, entities, recs, _ = tiny_dataset
    root = tmp_path_factory.mktemp("oc-evalset")
    for e in entities:
        mine = [r for r in recs if r.entity_ids == (e.id,)][:3]
        (root / e.id).mkdir()
        for i, r in enumerate(mine):
            (root / e.id / f"{i}.jpg").write_bytes(r.jpeg)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sentencepiece", "clip_bpe"])
def test_open_clip_loads_an_export_in_one_line(kind, tiny_run, bpe_run, tiny_dataset, eval_folder, tmp_path):
    """`create_model_and_transforms("local-dir:...")` + `get_tokenizer("local-dir:...")`: open_clip's
    preprocessing, tokenizer and towers give our evaluation's inputs, token ids and embeddings."""
    from PIL import Image

    from entitynet.text.tokenizer import encode
    from train.eval_data import image_folder, pixels
    from train.export import exported_tokenizer

    run = tiny_run if kind == "sentencepiece" else bpe_run
    out = tmp_path / "export"
    export_open_clip(run, out)
    names = {p.name for p in out.iterdir()}
    assert {
        "open_clip_config.json",
        "open_clip_model.safetensors",
        "README.md",
        "entitynet_tokenizer.json",
    } <= names
    if kind == "sentencepiece":
        assert {"tokenizer.json", "tokenizer_config.json"} <= names
    else:
        assert "bpe_simple_vocab_16e6.txt.gz" in names and "tokenizer.json" not in names
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
    assert isinstance(
        tokenizer,
        open_clip.tokenizer.HFTokenizer if kind == "sentencepiece" else open_clip.tokenizer.SimpleTokenizer,
    )
    model.eval()
    ours_model, mcfg, ours_tok = load_exported(out)
    assert ours_tok.kind == kind and exported_tokenizer(out).kind == kind
    texts = ["a photo of a red fox", "Tiger!", "the  African lion,  Panthera leo", "x " * 40]
    theirs_ids = tokenizer(texts).numpy()
    ours_ids = encode(ours_tok, texts, mcfg.text.context_length)
    assert np.array_equal(theirs_ids, ours_ids)
    data = image_folder(str(eval_folder), {e.id: e for e in tiny_dataset[1]})
    files = sorted(eval_folder.rglob("*.jpg"))[:5]
    with Image.open(files[0]) as im:
        assert im.size == (64, 48)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        ours_px = pixels(data, range(5), mcfg.vision.image_size, pool)
    theirs_px = torch.stack(
        [preprocess(Image.open(data_file)) for data_file in sorted(eval_folder.rglob("*.jpg"))[:5]]
    )
    assert np.max(np.abs(theirs_px.numpy().transpose(0, 2, 3, 1) - ours_px)) < 1e-5  # the same inputs
    with torch.no_grad():
        a_img = model.encode_image(theirs_px, normalize=True).numpy()
        a_txt = model.encode_text(torch.from_numpy(theirs_ids), normalize=True).numpy()
    b_img, b_txt = ours(ours_model, ours_px, ours_ids)
    assert np.max(np.abs(a_img - b_img)) < TOL and np.max(np.abs(a_txt - b_txt)) < TOL


@pytest.mark.slow
def test_zero_shot_with_open_clips_api_equals_ours(tiny_run, tiny_dataset, eval_folder, tmp_path):
    """The exported model's zero-shot top-1 on an ImageFolder, computed with nothing but open_clip
    (its preprocessing, tokenizer, towers), equals `entitynet eval`'s on the same set."""

    from entitynet.text.templates import fill, read_templates
    from train.eval_data import image_folder
    from train.evaluate import evaluate

    out = tmp_path / "export"
    export_open_clip(tiny_run, out)
    known = {e.id: e for e in tiny_dataset[1]}
    result = evaluate(str(out), lambda run: image_folder(str(eval_folder), known), "photo", tmp_path / "ev")
    zs = result["zero_shot"]
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{out}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{out}")
    model.eval()
    # the classes and labels as the set is read (results.json keeps its classes sorted by name);
    # everything that touches the model is open_clip's
    data = image_folder(str(eval_folder), known)
    templates = read_templates("photo")
    with torch.no_grad():
        weights = []
        for synonyms in data.classes:
            z = model.encode_text(
                tokenizer([fill(t, n) for t in templates for n in synonyms]), normalize=True
            )
            mean = z.reshape(len(templates), len(synonyms), -1).mean(1)  # synonyms, then templates
            mean = mean / mean.norm(dim=-1, keepdim=True)
            mean = mean.mean(0)
            weights.append(mean / mean.norm())
        weights = torch.stack(weights)
        x = torch.stack([preprocess(data.load(i)) for i in range(data.size)])
        pred = (model.encode_image(x, normalize=True) @ weights.T).argmax(1).numpy()
    right = int((pred == data.labels).sum())
    total = sum(1 for _ in eval_folder.rglob("*.jpg"))
    assert total == zs["images"] and right / total == pytest.approx(zs["fixed_templates"]["top1"], abs=1e-9)
    per_class = {c[0]: float(np.mean(pred[data.labels == k] == k)) for k, c in enumerate(data.classes)}
    assert per_class == pytest.approx(zs["per_class"], abs=1e-9)  # class by class, not only the total


@pytest.mark.slow
def test_an_open_clip_directory_is_evaluated_and_fine_tuned_from(
    tiny_run, tiny_dataset, eval_folder, tmp_path, capsys
):
    """The other way: a directory in open_clip's Hub layout (as `hf-hub:` models are) is read by
    `entitynet eval --workdir` and is a `--config.init_from` for training."""
    from conftest import load_cfg

    from entitynet_cli.main import main
    from train.export import load_run
    from train.train import train

    out = tmp_path / "hub-model"
    export_open_clip(tiny_run, out, repo_id="someone/tiny-clip", license="cc-by-4.0")
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: open_clip\nlicense: cc-by-4.0\n")
    assert 'create_model_and_transforms("hf-hub:someone/tiny-clip")' in card and "## Training data" in card
    config = json.loads((out / "open_clip_config.json").read_text())
    assert config["model_cfg"]["text_cfg"]["hf_tokenizer_name"] == "someone/tiny-clip"
    entities = str(tiny_dataset[0] / "entities.jsonl")
    argv = ["eval", "--workdir", str(out), "--imagefolder", str(eval_folder), "--entities", entities]
    argv += ["--templates", "photo"]
    assert main([*argv, "--out", str(tmp_path / "with-ours")]) == 0
    (out / "entitynet_tokenizer.json").unlink()  # as a Hub model has it: Hugging Face's tokenizer only
    (out / "tokenizer.model").unlink()
    code = main([*argv, "--out", str(tmp_path / "hub")])
    assert code == 0 and "zero-shot over 12 classes" in capsys.readouterr().out
    a, b = (
        json.loads((tmp_path / d / "results.json").read_text())["zero_shot"] for d in ("with-ours", "hub")
    )
    assert a["per_class"] == b["per_class"] and a["fixed_templates"] == b["fixed_templates"]
    # fine-tuning from it starts from its weights: one step away from them, far from a fresh start
    train(load_cfg(tiny_dataset[0], total_steps=1, init_from=str(out)), tmp_path / "tuned")
    train(load_cfg(tiny_dataset[0], total_steps=1, seed=7), tmp_path / "fresh")
    mcfg = load_run(tiny_run)[1]
    images, tokens = inputs(mcfg.vision.image_size, mcfg.text.context_length, mcfg.text.vocab_size, 2, 3, 0)
    base = ours(load_run(tiny_run)[0], images, tokens)
    tuned = ours(load_run(tmp_path / "tuned")[0], images, tokens)
    fresh = ours(load_run(tmp_path / "fresh")[0], images, tokens)
    for b, t, f in zip(base, tuned, fresh, strict=True):
        assert np.max(np.abs(t - b)) < np.max(np.abs(f - b)) / 2
