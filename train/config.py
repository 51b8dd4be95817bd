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


def load(spec: str, overrides: list[str] = ()) -> ml_collections.ConfigDict:
    path, _, arg = spec.partition(":")
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {path} does not exist; see configs/ for the shipped ones")
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
    for item in overrides:
        override(cfg, item)
    return cfg


def override(cfg: ml_collections.ConfigDict, item: str) -> None:
    """Apply one `key.path=value` (a leading `--config.` is allowed)."""
    item = item.removeprefix("--").removeprefix("config.")
    key, sep, text = item.partition("=")
    if not sep:
        raise ConfigError(f"override {item!r} needs the form --config.key=value")
    *parents, leaf = key.split(".")
    node = cfg
    for name in parents:
        if name not in node:
            raise ConfigError(f"unknown config field {key!r}")
        node = node[name]
    if leaf not in node:
        raise ConfigError(f"unknown config field {key!r}")
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
    except (ValueError, SyntaxError, TypeError) as e:
        raise ConfigError(f"--config.{key}={text}: expected a {type(old).__name__} ({e})") from None
    node[leaf] = value  # an existing field: allowed even on a locked ConfigDict
