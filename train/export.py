"""Export a training run's latest checkpoint in the layout open_clip's `local-dir:` and `hf-hub:`
loaders read, and that `huggingface_hub.upload_folder` publishes as it is.

    entitynet export --workdir runs/tiny --out exported/tiny [--repo-id ORG/NAME] [--license cc-by-4.0]
    python -m train.export --workdir runs/tiny --out exported/tiny

    model, _, preprocess = open_clip.create_model_and_transforms("local-dir:exported/tiny")
    tokenizer = open_clip.get_tokenizer("local-dir:exported/tiny")

The directory:
    open_clip_config.json         {"model_cfg": embed_dim, vision_cfg, text_cfg (context length,
                                  end-of-text and padding ids, pooling), quick_gelu;
                                  "preprocess_cfg": our evaluation preprocessing}
    open_clip_model.safetensors   the weights, open_clip's names and layouts
    tokenizer.json, tokenizer_config.json   SentencePiece runs: the tokenizer in Hugging Face's format
                                  (text_cfg.hf_tokenizer_name names it), giving our token ids
    bpe_simple_vocab_16e6.txt.gz  CLIP-BPE runs: the vocabulary (open_clip's default tokenizer is the same)
    entitynet_tokenizer.json (+ tokenizer.model)   the run's tokenizer as EntityNet reads it
    README.md                     a model card in the Hub's format: loading snippet, training data
                                  (from the data card), config, evaluation results
    entitynet_export.json         which run it came from (a digest of its workdir's path), the step,
                                  and the SHA-256 of every file above

`--out` must be new, empty, or an earlier export of the same run that nobody changed: export
replaces the whole directory (written beside it, then renamed into place), so anything else there
(a README.md, a dataset's tokenizer) is refused, never overwritten.

`load_exported` reads such a directory back, and any open_clip directory of this layout (or the
older flat config) whose towers our model has.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from entitynet.errors import ConfigError, EntityNetError, OutputError
from entitynet.files import ensure_writable_dir, temp_name, write_bytes, write_json
from entitynet.text import tokenizer as tokenizers
from train import config as config_lib
from train import sharding
from train.checkpoints import is_no_space
from train.model import CLIPConfig
from train.open_clip_weights import to_open_clip

WEIGHTS = "open_clip_model.safetensors"
CONFIG = "open_clip_config.json"
OUR_TOKENIZER = "entitynet_tokenizer.json"  # the name HF loaders expect, tokenizer.json, is theirs here
BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
# SHA-256 of that file's text as OpenAI published it (and open_clip ships it): the one
# vocabulary open_clip's default tokenizer knows
CLIP_BPE_SHA256 = "67603cfda2e032ad77b5f8808af37789d590db664b26df8705d2bf8b3c553fc8"


def preprocess_cfg(image_size: int) -> dict:
    """open_clip's preprocessing config for our evaluation preprocessing (train/input_pipeline.py:
    the shorter side resized to the model's size with bicubic resampling, the centre square cut,
    CLIP's mean and std), so that open_clip's transforms give our inputs."""
    from train.input_pipeline import CLIP_MEAN, CLIP_STD

    return {
        "size": image_size,
        "mode": "RGB",
        "mean": [float(x) for x in CLIP_MEAN],
        "std": [float(x) for x in CLIP_STD],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
        "fill_color": 0,
    }


def weights_in(path: str | Path) -> str:
    """The weights file of `path`: itself, or the checkpoint an open_clip directory holds."""
    p = Path(path)
    if not p.is_dir():
        return str(p)
    for name in (WEIGHTS, "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin"):
        if (p / name).is_file():
            return str(p / name)
    raise ConfigError(f"{p} holds no open_clip weights ({WEIGHTS} or open_clip_pytorch_model.bin)")


def model_cfg_of(config: dict) -> dict:
    """The model config of an `open_clip_config.json`: its `model_cfg` (the Hub layout), or the
    file itself (open_clip's own model_configs/*.json, and exports before the Hub layout)."""
    return config.get("model_cfg", config) if isinstance(config, dict) else config


def open_clip_config(m: CLIPConfig, logit_bias: bool = False) -> dict:
    """open_clip's model config for ours; `logit_bias`: the model has SigLIP's learned bias."""
    v, t = m.vision, m.text
    if v.pool != "tok" or v.posemb != "learn":
        # open_clip's ViT always carries a class token (its "avg" pooling averages the patch tokens
        # beside it), so only our class-token pooling with learned positions is the same network
        raise ConfigError(
            f"vision pool {v.pool!r} with {v.posemb} positions has no open_clip equivalent; "
            "export works for pool 'tok' with learned positions"
        )
    bias = {"init_logit_bias": m.init_logit_bias} if logit_bias else {}
    return {
        "embed_dim": m.embed_dim,
        "quick_gelu": m.quick_gelu,
        **bias,
        "vision_cfg": {
            "image_size": v.image_size,
            "layers": v.layers,
            "width": v.width,
            "head_width": v.width // v.heads,
            "patch_size": v.patch_size,
            "mlp_ratio": v.mlp_ratio,
            "pool_type": "tok",
        },
        "text_cfg": {
            "context_length": t.context_length,
            "vocab_size": t.vocab_size,
            "width": t.width,
            "heads": t.heads,
            "layers": t.layers,
            "mlp_ratio": t.mlp_ratio,
            "no_causal_mask": not t.causal,
            # "eos": the first end-of-text id. Ours pools there ("eot"), or at the last non-padding
            # token ("last"), which is that same end-of-text token in every sequence our
            # tokenizers make ([start] ids [end] padding). open_clip's own "last" is the final
            # position, padding or not: not ours.
            "pool_type": "eos",
            "eos_id": t.eot_id,
            "pad_id": t.pad_id,
        },
    }


# open_clip tower options that change the network in ways train/model.py does not have
_UNSUPPORTED = (
    "ls_init_value",
    "proj_bias",
    "final_ln_after_pool",
    "norm_kwargs",
    "act_kwargs",
    "qk_norm",
    "scaled_cosine_attn",
    "scale_heads",
    "scale_attn_inner",
    "scale_attn",
    "scale_fc",
    "no_ln_pre",
    "patch_dropout",
    "input_patchnorm",
)


def config_from_open_clip(d: dict, tokenizer=None) -> CLIPConfig:
    """Our model config for an open_clip model config (ours as exported, or open_clip's own
    `model_configs/*.json`); the tokenizer gives the end-of-text and padding ids it leaves out."""
    from train.model import TextConfig, VisionConfig

    try:
        d = model_cfg_of(d)
        v, t = d["vision_cfg"], d["text_cfg"]
        if v.get("timm_model_name") or t.get("hf_model_name") or isinstance(v.get("layers"), list):
            raise ConfigError("timm, Hugging Face and ResNet towers have no counterpart in train/model.py")
        if v.get("pool_type", "tok") != "tok" or v.get("attentional_pool") or t.get("embed_cls"):
            raise ConfigError("only class-token pooled ViTs (open_clip's default) map onto train/model.py")
        if t.get("pool_type", "argmax") not in ("argmax", "eos"):
            raise ConfigError("only text towers pooled at the end-of-text token map onto train/model.py")
        extras = [
            f"{tower}.{k}"
            for tower, c in (("vision_cfg", v), ("text_cfg", t))
            for k in _UNSUPPORTED
            if c.get(k)
        ]
        if extras:
            raise ConfigError(
                f"open_clip options without a counterpart in train/model.py: {', '.join(extras)}"
            )
        vision = VisionConfig(
            image_size=int(v["image_size"]),
            patch_size=int(v["patch_size"]),
            width=int(v["width"]),
            layers=int(v["layers"]),
            heads=int(v["width"]) // int(v.get("head_width", 64)),
            mlp_ratio=float(v.get("mlp_ratio", 4.0)),
            pool="tok",
        )
        text = TextConfig(
            vocab_size=int(t.get("vocab_size", 49408)),
            context_length=int(t.get("context_length", 77)),
            width=int(t["width"]),
            heads=int(t["heads"]),
            layers=int(t["layers"]),
            mlp_ratio=float(t.get("mlp_ratio", 4.0)),
            causal=not t.get("no_causal_mask", False),
            pool="eot",
            eot_id=int(t.get("eos_id", tokenizer.eot_id if tokenizer else 49407)),
            pad_id=int(t.get("pad_id", tokenizer.pad_id if tokenizer else 0)),
        )
        return CLIPConfig(
            embed_dim=int(d["embed_dim"]),
            vision=vision,
            text=text,
            quick_gelu=bool(d.get("quick_gelu", False)),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"not an open_clip model config (missing or bad {e})") from None


def exported_tokenizer(directory: Path, tokenizer_path: str | Path | None = None):
    """The tokenizer of an export directory: `tokenizer_path` when given; else ours
    (entitynet_tokenizer.json); else tokenizer.json (ours in exports before the Hub layout, or
    Hugging Face's, as Hub models with text_cfg.hf_tokenizer_name carry it); else the CLIP BPE
    vocabulary file beside the weights."""
    if tokenizer_path:
        return tokenizers.load(tokenizer_path)
    if (directory / OUR_TOKENIZER).is_file():
        return tokenizers.load(directory / OUR_TOKENIZER)
    if (directory / tokenizers.TOKENIZER_FILE).is_file():
        return tokenizers.load(directory / tokenizers.TOKENIZER_FILE)  # ours (older) or Hugging Face's
    if (directory / BPE_FILE).is_file():
        return tokenizers.load(directory / BPE_FILE)
    raise ConfigError(
        f"{directory} has no tokenizer; give --tokenizer (for OpenAI/LAION CLIP checkpoints, open_clip's "
        f"{BPE_FILE}: python -c 'import open_clip, os; print(os.path.dirname(open_clip.__file__))')"
    )


def load_exported(directory: str | Path, tokenizer_path: str | Path | None = None):
    """(model, config, tokenizer) of an exported directory (`entitynet export`) or any directory
    holding an open_clip `open_clip_config.json` and its weights (see `exported_tokenizer`)."""
    from train.model import CLIP
    from train.open_clip_weights import load_open_clip, read_state_dict

    directory = Path(directory)
    tokenizer = exported_tokenizer(directory, tokenizer_path)
    try:
        config = json.loads((directory / CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{directory}/{CONFIG}: {e}") from None
    mcfg = config_from_open_clip(config, tokenizer)
    with jax.set_mesh(sharding.make_mesh({"data": -1})):
        model = CLIP(mcfg, rngs=nnx.Rngs(0))
        weights = weights_in(directory)
        load_open_clip(model, read_state_dict(weights), weights)
    return model, mcfg, tokenizer


def _key(path) -> str:
    return ".".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _first_mismatch(metadata, state) -> str:
    """The first parameter whose stored shape differs from the model's, checked before restoring
    (Orbax's own error comes from background tasks and names no parameter)."""
    stored = {
        _key(p): tuple(m.shape)
        for p, m in jax.tree_util.tree_leaves_with_path(getattr(metadata, "item_metadata", metadata))
        if hasattr(m, "shape")
    }
    names = []
    for p, leaf in jax.tree_util.tree_leaves_with_path(state):
        name = _key(p)
        names.append(name)
        if name in stored and stored[name] != tuple(leaf.shape):
            return (
                f"{name.removesuffix('.value')}: stored {stored[name]}, the config makes {tuple(leaf.shape)}"
            )
    if stored:  # a readable listing whose parameters are not the model's: another architecture
        missing = [n for n in names if n not in stored]
        extra = sorted(set(stored) - set(names))
        if missing:
            return f"it has no {missing[0].removesuffix('.value')}"
        if extra:
            return f"it has {extra[0].removesuffix('.value')}, which the config does not make"
    return ""


WEIGHT_CHOICES = ("auto", "ema", "raw")  # a run's EMA when it kept one; the EMA; the trained weights


def load_run(workdir: str | Path, weights: str = "auto"):
    """(model, config, step) of a workdir's newest intact checkpoint: a damaged newer step (its files
    truncated or garbled, its state/ folder missing) is named in a warning and passed over. A
    checkpoint of another model is an error, and so are weights that are not finite (a run that
    diverged). `weights`: "auto" gives the moving average of a run that kept one (config
    `ema_decay` > 0) and the trained weights otherwise; "ema" insists on the average; "raw" gives
    the trained weights."""
    from train.checkpoints import newest_intact, quiet_orbax, warn
    from train.train import create_state, make_optimizer, model_config, trainable_of, unpack

    workdir = Path(workdir)
    try:
        cfg = config_lib.complete(
            ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text()))
        )
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{workdir} is not a training workdir ({e}); give the --workdir of `entitynet train`"
        ) from None
    checkpoints = (workdir / "checkpoints").absolute()
    steps = []
    if checkpoints.is_dir():
        options = ocp.CheckpointManagerOptions(read_only=True)
        with quiet_orbax(), ocp.CheckpointManager(checkpoints, options=options) as mngr:
            steps = list(mngr.all_steps())
    if not steps:
        raise ConfigError(f"{workdir} holds no checkpoint yet")
    if weights not in WEIGHT_CHOICES:
        raise ConfigError(f"weights {weights!r}: use one of {', '.join(WEIGHT_CHOICES)}")
    has_ema = float(cfg.get("ema_decay", 0.0)) > 0
    if weights == "ema" and not has_ema:
        raise ConfigError(
            f"{workdir} kept no moving average of its weights (its config has ema_decay 0); use its "
            "trained weights (--weights raw or auto)"
        )
    mcfg = model_config(cfg, tokenizers.load(cfg.data.tokenizer))
    tx, _ = make_optimizer(cfg)
    mesh = sharding.make_mesh({"data": -1})
    graphdef, state = create_state(mcfg, tx, mesh, cfg.seed, trainable_of(cfg, mcfg), ema=has_ema)

    def restore(step: int):
        path = checkpoints / str(step) / "state"
        with ocp.StandardCheckpointer() as ckpt:
            mismatch = _first_mismatch(ckpt.metadata(path), state)
            if mismatch:
                raise ConfigError(
                    f"the checkpoint at step {step} does not fit the model of {workdir}/config.json "
                    f"({mismatch}); it was trained with another model preset or overrides"
                )
            return ckpt.restore(path, state)

    restored, step, damaged = newest_intact(checkpoints, steps, restore)
    for bad, reason in damaged:
        warn(f"checkpoint step {bad} in {checkpoints} is damaged ({reason}); using step {step}")
    model, _, ema = unpack(graphdef, restored)
    if ema is not None and weights != "raw":
        model = ema
    bad_param = _first_non_finite(model)
    if bad_param:
        raise ConfigError(
            f"the checkpoint at step {step} in {checkpoints} holds NaN or infinite weights ({bad_param}): "
            "the run diverged before it was saved; train it again with a lower --config.optim.lr (training "
            "now stops at the first step that is not finite, keeping the checkpoints before it)"
        )
    return model, mcfg, step


def _first_non_finite(model) -> str:
    """The name of the first parameter holding NaN or infinity, or ''."""
    for path, value in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param)):
        if not np.isfinite(np.asarray(value)).all():
            return _key(path).removesuffix(".value")
    return ""


MARKER = "entitynet_export.json"  # which run an export came from, and the files it wrote


def run_id(workdir: str | Path) -> str:
    """A run's identity in its exports: a digest of its workdir's absolute path (the path itself,
    which may name a user, is not published with the export)."""
    return hashlib.blake2b(str(Path(workdir).resolve()).encode(), digest_size=16).hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _names(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_out(out: Path, workdir: str | Path) -> None:
    """Refuse an --out that holds anything but an earlier export of this same run, untouched:
    export replaces the whole directory, and a user's files (a README.md, a dataset's tokenizer)
    must not go with it."""
    if not out.exists():
        return
    if not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a directory for the export")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return

    def refuse(why: str, keep: str = "") -> OutputError:
        return OutputError(
            f"--out {out} {why}; an export replaces its whole directory, so {keep}give a new --out (or an "
            "empty one)"
        )

    try:
        marker = json.loads((out / MARKER).read_text(encoding="utf-8"))
        files = dict(marker["files"])
        ours = marker["run"] == run_id(workdir)
    except (OSError, ValueError, KeyError, TypeError):
        raise refuse(f"is not empty and is not an export (it holds {_names(entries)})") from None
    if not ours:
        raise refuse(f"holds the export of another run (step {marker.get('step', '?')}), not of {workdir}")
    foreign = [e for e in entries if e != MARKER and e not in files]
    if foreign:
        raise refuse(
            f"holds {_names(foreign)}, which the earlier export of this run did not write",
            "move that elsewhere to keep it, or ",
        )
    changed = [
        e
        for e in entries
        if e != MARKER and ((out / e).is_symlink() or not (out / e).is_file() or _sha256(out / e) != files[e])
    ]
    if changed:
        raise refuse(
            f"holds {_names(changed)} changed since the earlier export of this run",
            "move that elsewhere to keep it, or ",
        )


def _replace_dir(tmp: Path, out: Path) -> None:
    """Put the finished export `tmp` where `out` is: renamed into place, the earlier export (checked
    by `check_out`) renamed away first and removed after."""
    if not out.exists():
        tmp.rename(out)
        return
    if not any(out.iterdir()):
        out.rmdir()
        tmp.rename(out)
        return
    old = Path(temp_name(out.parent / f".{out.name}.replaced"))
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def export_open_clip(
    workdir: str | Path, out: str | Path, repo_id: str | None = None, license: str = "other"
) -> dict:
    """Export the run in `workdir` to `out` (see the module docstring). `repo_id`: the Hub repository
    it will be published as (named as its tokenizer for `hf-hub:` loading; default: the directory's
    name); `license`: the licence the card declares for the weights. `out` must be new, empty, or
    an earlier export of this run (`check_out`); the export is written beside it and renamed into
    place, so a failed export leaves what was there."""
    from safetensors.numpy import save_file

    from train.model_card import write_card

    out = Path(out).resolve() if Path(out).is_symlink() else Path(out)
    check_out(out, workdir)
    model, mcfg, step = load_run(workdir)
    cfg = json.loads((Path(workdir) / "config.json").read_text())
    siglip = cfg.get("loss") == "siglip"  # only SigLIP's loss uses (and open_clip keeps) the bias
    parent = ensure_writable_dir(out.absolute().parent)
    tmp = Path(temp_name(parent / f".{out.name}"))
    try:
        tmp.mkdir()
        weights = jax.device_get(to_open_clip(model, logit_bias=siglip))
        save_file(weights, str(tmp / WEIGHTS))
        model_cfg = open_clip_config(mcfg, logit_bias=siglip)
        tok = tokenizers.load(cfg["data"]["tokenizer"])
        warnings: list[str] = []
        if tok.kind == "sentencepiece":
            from entitynet.text.hf_tokenizer import write_hf_tokenizer

            write_hf_tokenizer(tok.model, mcfg.text.context_length, tmp)
            model_cfg["text_cfg"]["hf_tokenizer_name"] = repo_id or out.resolve().name
            tokenizers.save(tok, tmp, OUR_TOKENIZER)
        else:  # CLIP BPE: open_clip's default tokenizer is this one; the vocabulary goes along, gzipped
            import gzip

            data = Path(tok.merges_path).read_bytes()
            if not data.startswith(b"\x1f\x8b"):
                data = gzip.compress(data, mtime=0)
            write_bytes(tmp / BPE_FILE, data)
            tokenizers.save(tokenizers.load(tmp / BPE_FILE), tmp, OUR_TOKENIZER)
            if hashlib.sha256(gzip.decompress(data)).hexdigest() != CLIP_BPE_SHA256:
                warnings.append(
                    f"{tok.merges_path} is not the CLIP BPE vocabulary open_clip ships: open_clip's default "
                    "tokenizer will not give this run's token ids (entitynet eval on the export will)"
                )
        config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg(mcfg.vision.image_size)}
        write_json(tmp / CONFIG, config)
        write_card(Path(workdir), cfg, out, config, step, repo_id, license, into=tmp)
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        write_json(tmp / MARKER, {"run": run_id(workdir), "step": step, "files": files})
        _replace_dir(tmp, out)
    except Exception as e:
        if is_no_space(e):  # safetensors, the tokenizer files or the card on a full disk
            raise OutputError(
                f"no space left on device while exporting to {out}; free space there or give another --out"
            ) from None
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {
        "step": step,
        "tensors": len(weights),
        "out": str(out),
        "config": config,
        "card": str(out / "README.md"),
        "warnings": warnings,
    }


def loading_snippet(out: str | Path) -> str:
    """The lines an open_clip user runs to load an export."""
    d = Path(out).resolve()
    return (
        "import open_clip\n"
        f'model, _, preprocess = open_clip.create_model_and_transforms("local-dir:{d}")\n'
        f'tokenizer = open_clip.get_tokenizer("local-dir:{d}")'
    )


def export_summary(r: dict) -> str:
    return (
        f"exported step {r['step']} ({r['tensors']} tensors) to {r['out']}/: {WEIGHTS}, {CONFIG}, the tokenizer, "
        f"README.md (model card)\nload it with open_clip:\n{loading_snippet(r['out'])}"
        + "".join(f"\nwarning: {w}" for w in r.get("warnings", ()))
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m train.export", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--repo-id", help="the Hub repository it will be published as (ORG/NAME)")
    ap.add_argument("--license", default="other", help="the weights' licence for the model card")
    args = ap.parse_args(argv)
    try:
        r = export_open_clip(args.workdir, args.out, args.repo_id, args.license)
    except EntityNetError as e:
        print(f"entitynet: error: {e}", file=sys.stderr)
        return 2
    print(export_summary(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
