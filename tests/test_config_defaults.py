"""The trainer's defaults live in one place, `configs.common.base()`: a config that leaves a field
out gets base's value (`train.config.complete`), and the trainer reads its fields directly, with
no fallback of its own that could disagree."""

from __future__ import annotations

import ast
from pathlib import Path

import ml_collections

from configs.common import base
from train import config as config_lib

ROOT = Path(__file__).resolve().parent.parent


def test_a_config_without_a_field_gets_base_s_value():
    partial = ml_collections.ConfigDict(
        {"total_steps": 5, "data": {"shards": "my/curated", "augment": {"flip": 0.5}}, "optim": {"lr": 1e-3}}
    )
    full = config_lib.complete(partial)
    b = base()
    assert full.total_steps == 5 and full.data.shards == "my/curated" and full.optim.lr == 1e-3
    assert full.data.augment.flip == 0.5 and full.data.augment.blur == b.data.augment.blur
    for dotted in (
        "data.read_threads",
        "eval_batches",
        "data.template_chance",
        "data.eval_split",
        "ema_decay",
    ):
        node, want = full, b
        for part in dotted.split("."):
            node, want = node[part], want[part]
        assert node == want, dotted
    # a field base does not know is kept (a user's own), and completing twice changes nothing
    partial.mine = "x"
    assert config_lib.complete(config_lib.complete(partial)).mine == "x"


def test_a_shipped_config_loads_complete():
    cfg = config_lib.load("tiny_cpu")
    assert set(base().to_dict()) <= set(cfg.to_dict())


def test_the_trainer_has_no_fallbacks_of_its_own():
    """No `cfg.get("field", default)` (or on cfg.data, cfg.model, ...) in the trainer: a default
    there is a second one, and they drifted apart before."""
    tree = ast.parse((ROOT / "train" / "train.py").read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and len(node.args) == 2
        ):
            target = ast.unparse(node.func.value)
            if target in ("cfg", "o") or target.startswith("cfg."):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    assert not found, found
