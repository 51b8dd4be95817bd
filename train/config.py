"""Configs are Python files with `get_config(arg=None) -> ml_collections.ConfigDict` (big_vision's
habit): `--config configs/tiny_cpu.py:ARG` picks the file and its argument, and
`--config.optim.lr=1e-3`-style overrides change single fields, cast to the field's type."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import ml_collections

from entitynet.errors import ConfigError


def shipped() -> dict[str, Path]:
    """The configs that come with the package, by name (the `configs` package, wherever it is
    installed): `--config tiny_cpu` is `configs/tiny_cpu.py`."""
    import configs

    return {
        p.stem: p
        for p in sorted(Path(configs.__file__).parent.glob("*.py"))
        if p.stem not in ("__init__", "common")
    }


def find(path: str) -> Path:
    """A config file: `path` itself when it is a file, else the shipped config of that name; a
    ConfigError naming the shipped ones otherwise."""
    p = Path(path)
    if p.is_file():
        return p
    known = shipped()
    name = p.name.removesuffix(".py")
    if name in known and (p.parent == Path(".") or p.parent.name == "configs"):
        return known[name]
    import difflib

    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    raise ConfigError(
        f"config {path} does not exist (neither a file nor a shipped config); {hint}shipped: "
        f"{', '.join(known)} (or give the path of a config file of your own)"
    )


def data_paths(data_dir: str) -> tuple[dict[str, str], dict[str, str]]:
    """The data fields a curated (or harvested) directory gives a run: its shards (a curation's
    subset: the harvest it selects from, and the subset file), the tokenizer trained into it and
    the entities.jsonl its curation read; and, for the fields it cannot give, how to get them."""
    import json

    from entitynet.storage import STORE

    d = data_dir.rstrip("/")
    subset = STORE.join(d, "subset.npz")
    if not STORE.exists(STORE.join(d, "dataset_info.json")) and not STORE.exists(subset):
        raise ConfigError(
            f"--data {data_dir} is not a dataset (no dataset_info.json or subset.npz); give the --out "
            "of `entitynet curate` (or of `entitynet harvest`)"
        )
    config = json.loads(STORE.read(STORE.join(d, "curation_config.json")) or b"{}")
    found = {"data.shards": d}
    if STORE.exists(subset):  # the harvest it selects from, as an absolute path (curation_stats.json)
        harvest = json.loads(STORE.read(STORE.join(d, "curation_stats.json")) or b"{}").get("input", "")
        found = {"data.shards": harvest or config.get("shards", ""), "data.subset": subset}
    missing = {}
    tokenizer = STORE.join(d, "tokenizer.json")
    if STORE.exists(tokenizer):
        found["data.tokenizer"] = tokenizer
    else:
        missing["data.tokenizer"] = (
            f"--data {data_dir} has no tokenizer.json: make one with `entitynet tokenizer train --shards {d} "
            "--entities ENTITIES.jsonl`, or give --config.data.tokenizer=FILE"
        )
    if config.get("entities_file"):
        found["data.entities"] = config["entities_file"]
    else:
        missing["data.entities"] = (
            f"--data {data_dir} does not say which entities.jsonl it was curated with: give "
            "--config.data.entities=FILE"
        )
    return found, missing


def complete(cfg) -> ml_collections.ConfigDict:
    """`cfg` over every field of `configs.common.base()`: a field a config does not set (one written
    before the field existed, one built without `base()`) gets base's value, so the trainer reads
    each field directly and its defaults live in that one place."""
    from configs.common import base

    def merge(into: dict, given: dict) -> dict:
        for key, value in given.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value
        return into

    given = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    return ml_collections.ConfigDict(merge(base().to_dict(), given))


def load(spec: str, overrides: list[str] = (), data: str = "") -> ml_collections.ConfigDict:
    """The config `spec` (a file or a shipped name, `:ARG` for its argument), with `data`'s paths
    (`data_paths`) and then the `overrides` applied: an override wins over what `data` gives."""
    path, _, arg = spec.partition(":")
    p = find(path)
    root = str(p.resolve().parent.parent)  # configs may import each other as `configs.<name>`
    if root not in sys.path:
        sys.path.insert(0, root)
    module_spec = importlib.util.spec_from_file_location(f"entitynet_config_{p.stem}", p)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
        cfg = module.get_config(arg or None)
    except Exception as e:  # noqa: BLE001 - a broken config file is the user's input
        raise ConfigError(f"config {spec} failed to load: {type(e).__name__}: {e}") from None
    if data:
        given = {o.removeprefix("--").removeprefix("config.").partition("=")[0] for o in overrides}
        found, missing = data_paths(data)
        for key, why in missing.items():
            if key not in given:
                raise ConfigError(why)
        for key, value in found.items():
            if key not in given:
                override(cfg, f"{key}={value}")
    for item in overrides:
        override(cfg, item)
    return complete(cfg)


def override(cfg: ml_collections.ConfigDict, item: str) -> None:
    """Apply one `key.path=value` (a leading `--config.` is allowed)."""
    item = item.removeprefix("--").removeprefix("config.")
    key, sep, text = item.partition("=")
    if not sep:
        raise ConfigError(f"override {item!r} needs the form --config.key=value")
    *parents, leaf = key.split(".")
    node, path = cfg, []
    for i, name in enumerate([*parents, leaf]):
        if not hasattr(node, "keys") or name not in node:
            import difflib

            here = [".".join([*path, k]) for k in (node.keys() if hasattr(node, "keys") else [])]
            close = difflib.get_close_matches(".".join([*path, name]), here, n=1, cutoff=0.7)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(f"unknown config field {key!r}{hint}")
        path.append(name)
        if i < len(parents):
            node = node[name]
    old = node[leaf]
    try:
        if isinstance(old, bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            value = text.lower() in ("true", "1")
        elif isinstance(old, int):
            value = int(float(text)) if "e" in text.lower() else int(text)
        elif isinstance(old, float):
            value = float(text)
        elif isinstance(old, str) or old is None:
            value = text
        else:
            value = type(old)(ast.literal_eval(text))
    except (ValueError, SyntaxError, TypeError, OverflowError) as e:
        raise ConfigError(f"--config.{key}={text}: expected {type(old).__name__} ({e})") from None
    node[leaf] = value  # an existing field: allowed even on a locked ConfigDict


# ---------------------------------------------------------------- what the fields may hold
#
# (dotted field, kind, low, high): "int" and "float" ranges are inclusive, None for unbounded; "choice"
# lists the values. A field a config lacks is not checked (older configs, optional fields).
_FIELDS = [
    ("loss", "choice", ("clip", "siglip"), None),
    ("dtype", "choice", ("float32", "bfloat16", "float16"), None),
    ("seed", "int", 0, None),
    ("total_steps", "int", 1, 10**12),
    ("batch_size", "int", 1, 10**9),
    ("log_every", "int", 1, None),
    ("eval_every", "int", 0, None),  # 0: no validation during training
    ("eval_batches", "int", 0, None),
    ("peak_flops_per_device", "float", 0.0, None),
    ("data.image_size", "int", 8, 4096),
    ("data.context_length", "int", 2, 4096),
    ("data.alt_text_chance", "float", 0.0, 1.0),
    ("data.template_chance", "float", 0.0, 1.0),
    ("data.num_workers", "int", 0, 1024),
    ("data.device_prefetch", "int", 1, 64),
    ("data.read_threads", "int", 1, 256),
    ("data.resample", "choice", ("bilinear", "bicubic", "lanczos", "box"), None),
    ("data.augment.flip", "float", 0.0, 1.0),
    ("data.augment.jitter", "float", 0.0, 1.0),
    ("data.augment.jitter_strength", "float", 0.0, 1.0),
    ("data.augment.greyscale", "float", 0.0, 1.0),
    ("data.augment.blur", "float", 0.0, 1.0),
    ("data.augment.posterize", "float", 0.0, 1.0),
    ("data.balance", "choice", ("", "entity"), None),
    ("data.balance_cap", "int", 0, None),
    ("data.caption_weights.noun_query", "float", 0.0, 100.0),
    ("data.caption_weights.noun_synonyms", "float", 0.0, 100.0),
    ("data.caption_weights.noun_descriptions", "float", 0.0, 100.0),
    ("data.caption_weights.parent_share", "float", 0.0, 1.0),
    ("data.caption_weights.parent_share_living", "float", 0.0, 1.0),
    ("data.caption_weights.name_styles", "float", 0.0, 1.0),
    ("ema_decay", "float", 0.0, 0.999999),
    ("init_towers", "choice", ("both", "image"), None),
    ("model.unlocked_groups", "int", 0, 10_000),
    ("optim.lr", "float", 1e-12, 10.0),
    ("optim.warmup_steps", "int", 0, None),
    ("optim.decay_steps", "int", 0, None),
    ("optim.end_lr_ratio", "float", 0.0, 1.0),
    ("optim.b1", "float", 0.0, 0.999999),
    ("optim.b2", "float", 0.0, 0.999999),
    ("optim.eps", "float", 1e-30, 1.0),
    ("optim.weight_decay", "float", 0.0, 10.0),
    ("optim.clip_norm", "float", 1e-12, None),
    ("checkpoint.every_steps", "int", 1, None),
    ("checkpoint.keep", "int", 1, None),
]


def _get(cfg, dotted: str):
    node = cfg
    for name in dotted.split("."):
        if not hasattr(node, "keys") or name not in node:
            return _MISSING
        node = node[name]
    return node


_MISSING = object()


def check(cfg: ml_collections.ConfigDict) -> None:
    """Values that parse but make no sense (batch_size=0, total_steps=-5, lr=nan, loss=foo) are a
    ConfigError naming the field, before anything is written or compiled."""
    import math

    for key, kind, low, high in _FIELDS:
        value = _get(cfg, key)
        if value is _MISSING:
            continue
        if kind == "choice":
            if value not in low:
                raise ConfigError(f"config field {key}={value!r}: use one of {', '.join(map(str, low))}")
            continue
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind == "int" and not (numeric and float(value).is_integer()):
            raise ConfigError(f"config field {key}={value!r}: expected a whole number")
        if not numeric or not math.isfinite(value):
            raise ConfigError(f"config field {key}={value!r}: expected a finite number")
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"within {low}..{high}"
            raise ConfigError(f"config field {key}={value!r}: must be {bounds}")
    sigma = _get(cfg, "data.augment.blur_sigma")
    if sigma is not _MISSING and not (len(sigma) == 2 and 0 < sigma[0] <= sigma[1] <= 100):
        raise ConfigError(
            f"config field data.augment.blur_sigma={tuple(sigma)!r}: expected (low, high) with 0 < low <= high"
        )
    names = _get(cfg, "data.caption_weights")
    if names is not _MISSING and hasattr(names, "keys"):
        from entitynet.text.captions import CaptionWeights

        known = set(CaptionWeights.__dataclass_fields__)
        unknown = sorted(set(names.keys()) - known)
        if unknown:
            raise ConfigError(
                f"config field data.caption_weights.{unknown[0]}: not a caption weight; use {', '.join(sorted(known))}"
            )
    scale = _get(cfg, "data.crop_scale")
    if scale is not _MISSING and not (len(scale) == 2 and 0 < scale[0] <= scale[1] <= 1):
        raise ConfigError(
            f"config field data.crop_scale={tuple(scale)!r}: expected (low, high) with 0 < low <= high <= 1"
        )
