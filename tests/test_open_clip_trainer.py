"""open_clip's own trainer (`python -m open_clip_train.main`, unmodified) trains on our WebDataset
export: `--dataset-type webdataset` reads our tars (images and `.txt` texts) and `sizes.json`, from
the architecture, tokenizer and weights of our model export; its checkpoint comes back into our
model through our importer (train/export.py `load_exported`)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import ROOT

from beam_pipelines import data_export
from entitynet.interchange.export import ExportOptions

pytestmark = pytest.mark.slow


def _tool():
    spec = importlib.util.spec_from_file_location(
        "open_clip_train_tool", ROOT / "tools" / "train_with_open_clip.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_open_clip_trainer_trains_on_our_webdataset(tiny_run, tiny_dataset, tmp_path):
    from flax import nnx

    from train.export import export_open_clip, load_exported

    model_dir = tmp_path / "model"
    export_open_clip(tiny_run, model_dir)
    stats = data_export.run(
        str(tiny_dataset[0]), str(tmp_path / "wds"), ExportOptions(text="alt", num_shards=2)
    )
    assert stats["records"] >= 32 and stats["train_data"].endswith("{00000..00001}.tar")
    logs = tmp_path / "logs"
    argv = [
        sys.executable, "-m", "open_clip_train.main",
        "--model", f"local-dir:{model_dir}",
        "--dataset-type", "webdataset",
        "--train-data", stats["train_data"],
        "--train-num-samples", "32",
        "--epochs", "1",
        "--batch-size", "8",
        "--lr", "1e-3",
        "--warmup", "1",
        "--workers", "0",
        "--device", "cpu",
        "--precision", "fp32",
        "--logs", str(logs),
        "--name", "oc",
        "--save-frequency", "1",
        "--seed", "0",
    ]  # fmt: skip
    r = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    log = (logs / "oc" / "out.log").read_text() if (logs / "oc" / "out.log").exists() else ""
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "dataset_type: webdataset" in log
    # 4 steps of 8 samples, each an image with its text from our tars, with a finite loss
    steps = [line for line in log.splitlines() if "Train Epoch" in line]
    assert steps and "[32/32 (100%)]" in steps[-1] and "Contrastive_loss: nan" not in log
    checkpoint = logs / "oc" / "checkpoints" / "epoch_1.pt"
    assert checkpoint.is_file()
    # its weights, back in our model: trained (moved from the export's), same architecture
    back = _tool().convert(checkpoint, model_dir, tmp_path / "back")
    before, _, _ = load_exported(model_dir)
    after, cfg, _ = load_exported(back)
    b, a = nnx.state(before, nnx.Param), nnx.state(after, nnx.Param)
    leaves_b = [np.asarray(x) for x in jax.tree.leaves(b)]
    leaves_a = [np.asarray(x) for x in jax.tree.leaves(a)]
    assert [x.shape for x in leaves_a] == [x.shape for x in leaves_b]
    assert any(not np.allclose(x, y) for x, y in zip(leaves_a, leaves_b, strict=True))
    assert all(np.isfinite(x).all() for x in leaves_a)
