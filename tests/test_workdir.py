"""A training workdir in a bucket (train/workdir.py): what a pull copies down and a push puts up."""

from __future__ import annotations

import os

import pytest

from entitynet.errors import ConfigError
from entitynet.storage import STORE
from train.workdir import Mirror


def _step(root: str, step: int, marker: bool = True) -> None:
    STORE.write(f"{root}/checkpoints/{step}/state/manifest.ocdbt", b"m" * step)
    STORE.write(f"{root}/checkpoints/{step}/_CHECKPOINT_METADATA", b"{}")
    if marker:
        STORE.write(f"{root}/checkpoints/{step}/commit_success.txt", b"ok")


def test_a_pull_skips_a_step_whose_upload_did_not_finish(bucket, tmp_path):
    root = f"{bucket}/run"
    _step(root, 4)
    _step(root, 6, marker=False)  # a push cut off before its marker
    STORE.write(f"{root}/metrics.jsonl", b'{"step": 6}\n')
    STORE.write(f"{root}/checkpoints/6.orbax-checkpoint-tmp-1/x", b"tmp")  # a save in flight
    STORE.write(f"{root}/.entitynet.lock", b"{}")
    local = Mirror(root, str(tmp_path / "copy")).pull()
    got = sorted(
        os.path.relpath(os.path.join(d, f), local).replace(os.sep, "/")
        for d, _, fs in os.walk(local)
        for f in fs
    )
    assert got == [
        "checkpoints/4/_CHECKPOINT_METADATA",
        "checkpoints/4/commit_success.txt",
        "checkpoints/4/state/manifest.ocdbt",
        "metrics.jsonl",
    ]


def test_a_push_puts_a_finished_step_up_marker_last_and_removes_pruned_steps(
    bucket, object_store_server, tmp_path
):
    root = f"{bucket}/run"
    _step(root, 2)
    mirror = Mirror(root, str(tmp_path / "copy"))
    local = mirror.pull()
    for step in (4, 6):
        d = os.path.join(local, "checkpoints", str(step))
        os.makedirs(os.path.join(d, "state"))
        open(os.path.join(d, "state", "manifest.ocdbt"), "wb").write(b"x")
    open(os.path.join(local, "checkpoints", "4", "commit_success.txt"), "wb").write(b"ok")  # 6: in flight
    import shutil

    shutil.rmtree(os.path.join(local, "checkpoints", "2"))  # pruned (max_to_keep)
    object_store_server.requests.clear()
    assert mirror.push() == 2
    keys = object_store_server.keys(root)
    assert [k for k in keys if "/checkpoints/" in k] == [
        "run/checkpoints/4/commit_success.txt",
        "run/checkpoints/4/state/manifest.ocdbt",
    ]
    puts = [p for m, p, _ in object_store_server.requests if m == "PUT" and "/checkpoints/4/" in p]
    assert puts[-1].endswith("/checkpoints/4/commit_success.txt")  # the marker last
    assert mirror.push() == 0  # nothing changed since


def test_a_bucket_workdir_of_a_multi_host_run_is_refused_with_the_way_to_do_it(bucket, tiny_dataset):
    from conftest import load_cfg

    from train.train import train

    cfg = load_cfg(tiny_dataset[0], distributed=True)
    with pytest.raises(ConfigError, match="multi-host run needs a workdir every host shares.*gcsfuse"):
        train(cfg, f"{bucket}/run")
    assert STORE.list_names(bucket, recursive=True) == []  # nothing written
