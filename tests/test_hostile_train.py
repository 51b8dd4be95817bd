"""Hostile optimisers, disks and output directories for train, eval and export: a run that
diverges stops at its first non-finite step with nothing of it saved; eval and export refuse
non-finite weights; a damaged latest checkpoint falls back to the newest intact one (resume stays
exact); a full disk during a checkpoint save is one line and a re-run resumes; export never writes
over a directory that is not an earlier export of the same run. Each case runs through the command
line in-process and ends in one `entitynet: error:` line (or one warning), never a traceback."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from conftest import ROOT, load_cfg, tiny_overrides
from hostile import tried

from entitynet_cli import main as cli

# lr 10 with weight decay 10: AdamW scales the weights by 1 - lr * wd (-99 at the peak) each step,
# and the loss is NaN a few steps in (the config allows both values: neither is absurd on its own)
UNSTABLE = {"optim.lr": 10, "optim.weight_decay": 10}


def train_argv(workdir, data, **extra):
    return ["train", "--config", str(ROOT / "configs" / "tiny_cpu.py"), "--workdir", str(workdir)] + (
        tiny_overrides(data, **extra)
    )


def run_cli(argv, capsys) -> tuple[int, list[str], str]:
    """(exit code, the stderr lines that are ours, stdout) of one in-process command."""
    capsys.readouterr()
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.strip() and not x.startswith("WARNING")]
    return rc, lines, out


def one_error(rc, lines) -> str:
    assert rc == 2, lines
    assert len(lines) == 1 and lines[0].startswith("entitynet: error: "), lines
    return lines[0]


def losses_of(workdir) -> dict[int, float]:
    rows = [json.loads(x) for x in (Path(workdir) / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def steps_in(workdir) -> list[int]:
    return sorted(int(p.name) for p in (Path(workdir) / "checkpoints").iterdir() if p.name.isdigit())


def saved_state(workdir, step) -> list[np.ndarray]:
    with ocp.StandardCheckpointer() as c:
        tree = c.restore((Path(workdir) / "checkpoints" / str(step) / "state").absolute())
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


# ---------------------------------------------------------------- shared runs


# checkpoints at 1 (Orbax's first save), 2, 4, 6, 8, 10: room for five damaged steps before an intact one
EVERY = {"checkpoint.every_steps": 2, "checkpoint.keep": 6}


@pytest.fixture(scope="module")
def straight(tiny_dataset, jax_cache, tmp_path_factory):
    """A healthy 10-step run with six checkpoints (the oracle for exact resumes)."""
    from train.train import train

    workdir = tmp_path_factory.mktemp("hostile-train") / "straight"
    train(load_cfg(tiny_dataset[0], total_steps=10, **EVERY), workdir)
    assert steps_in(workdir) == [1, 2, 4, 6, 8, 10]
    return workdir


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """`entitynet export` of the shared tiny run (tests copy it before changing anything)."""
    from train.export import export_open_clip

    out = tmp_path_factory.mktemp("hostile-export") / "export"
    export_open_clip(tiny_run, out)
    return out


def copy_run(run, to) -> Path:
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".entitynet.lock"))
    return to


# ---------------------------------------------------------------- 1. a diverged run


def test_a_diverged_run_stops_at_its_first_non_finite_step_and_saves_nothing_of_it(
    tiny_dataset, jax_cache, tmp_path, capsys
):
    data = tiny_dataset[0]
    run = tmp_path / "run"
    tried("train")
    rc, lines, _ = run_cli(train_argv(run, data, total_steps=12, **UNSTABLE), capsys)
    line = one_error(rc, lines)
    bad = int(re.search(r"training diverged at step (\d+): the loss was NaN", line).group(1))
    losses = losses_of(run)  # every step is logged: the rows show where the loss went bad
    assert sorted(losses) == list(range(1, bad)) and all(np.isfinite(v) for v in losses.values())
    saved = steps_in(run)
    assert saved and max(saved) < bad, (saved, bad)
    assert f"the last good checkpoint is step {max(saved)} in {run / 'checkpoints'}" in line
    assert "lower --config.optim.lr (now 10)" in line
    for step in saved:
        assert all(np.isfinite(x).all() for x in saved_state(run, step))


class Manager:
    """What `Checkpointer` asks of Orbax's CheckpointManager, with saves recorded, not written."""

    def __init__(self, every: int):
        self.every, self.saved = every, []

    def latest_step(self):
        return self.saved[-1] if self.saved else None

    def should_save(self, step):
        return not self.saved or step % self.every == 0

    def save(self, step, args, force):
        self.saved.append(step)
        return True

    def wait_until_finished(self):
        pass


def test_the_stop_names_the_first_bad_step_though_it_is_read_only_at_a_later_save(monkeypatch, tmp_path):
    """The step's finiteness stays on the device until a log step or a save reads it: between two
    reads every step's flag is kept, so the step named is the first bad one, not the one where it
    was noticed; and a state that is not finite is never saved, whatever the flags said."""
    import jax.numpy as jnp
    import ml_collections

    import train.train as trainer

    monkeypatch.setattr(
        trainer, "save", lambda mngr, step, state, it, settings, force: mngr.save(step, None, force)
    )
    cfg = ml_collections.ConfigDict({"optim": {"lr": 0.5, "weight_decay": 0.1, "warmup_steps": 3}})
    state = {"w": jnp.ones(3)}
    for first_bad, every in ((7, 4), (5, 4), (9, 100), (1, 4)):
        tried("train")
        saver = trainer.Checkpointer(Manager(every), tmp_path, {}, cfg, lambda step: 0.5)
        with pytest.raises(trainer.DivergedRun) as caught:
            for step in range(1, 13):
                code = 0 if step < first_bad else 1 + 2 * (step > first_bad)
                saver.record(step, jnp.int32(code))
                saver.save(step, state, None, force=step == 12)
        assert f"training diverged at step {first_bad}: the loss was NaN" in str(caught.value)
        kept = [s for s in [1] + list(range(every, 13, every)) if s < first_bad]
        assert saver.mngr.saved == kept
        if kept:
            assert f"the last good checkpoint is step {kept[-1]}" in str(caught.value)
        else:  # diverged at the first step: nothing to resume from, and the line says so
            assert "no checkpoint was saved before it: lower --config.optim.lr (now 0.5)" in str(caught.value)
    tried("train")
    saver = trainer.Checkpointer(Manager(4), tmp_path, {}, cfg, lambda step: 0.5)
    for step in range(1, 4):
        saver.record(step, jnp.int32(0))
        saver.save(step, state, None)
    saver.record(4, jnp.int32(0))  # finite loss and gradients, but the update overflowed
    with pytest.raises(trainer.DivergedRun, match="at step 4: the update made the weights"):
        saver.save(4, {"w": jnp.array([1.0, jnp.inf, 0.0])}, None)
    assert saver.mngr.saved == [1]


def poison(workdir, step) -> str:
    """Set one weight of a checkpoint to NaN (as a run that diverged before this fix saved them);
    returns the parameter's name."""
    state = (Path(workdir) / "checkpoints" / str(step) / "state").absolute()
    with ocp.StandardCheckpointer() as c:
        tree = c.restore(state)
    names = {p: [str(getattr(k, "key", k)) for k in p] for p, _ in jax.tree_util.tree_leaves_with_path(tree)}
    # the model's half of the (model, optimizer) state, a weight of the text projection
    target = next(p for p, keys in names.items() if keys[0] == "0" and "text_projection" in keys)

    def nan_at(path, x):
        x = np.array(x)
        if path == target:
            x.flat[0] = np.nan
        return x

    tree = jax.tree_util.tree_map_with_path(nan_at, tree)
    shutil.rmtree(state)
    with ocp.StandardCheckpointer() as c:
        c.save(state, tree)
    return ".".join(k for k in names[target][1:] if k != "value")


def test_eval_export_and_fine_tuning_refuse_nan_weights(
    tiny_run, exported, tiny_dataset, jax_cache, tmp_path, capsys
):
    run = copy_run(tiny_run, tmp_path / "run")
    step = max(steps_in(run))  # the one eval and export read
    name = poison(run, step)
    for argv in (
        ["eval", "--workdir", run, "--heldout", "--split", "validation", "--out", tmp_path / "ev"],
        ["export", "--workdir", run, "--out", tmp_path / "export"],
    ):
        tried("checkpoint")
        line = one_error(*run_cli(argv, capsys)[:2])
        assert f"the checkpoint at step {step} in {run / 'checkpoints'} holds NaN or infinite weights" in line
        assert f"({name}): the run diverged" in line
    assert not (tmp_path / "ev").exists() and not (tmp_path / "export").exists()
    # an exported directory (or any open_clip weights) with NaN in it: eval and init_from refuse it
    shutil.copytree(exported, tmp_path / "good")
    from safetensors.numpy import load_file, save_file

    weights_file = tmp_path / "good" / "open_clip_model.safetensors"
    weights = load_file(str(weights_file))
    weights["visual.proj"][0, 0] = np.inf
    save_file(weights, str(weights_file))
    for argv in (
        [
            "eval",
            "--workdir",
            tmp_path / "good",
            "--heldout",
            "--shards",
            tiny_dataset[0],
            "--split",
            "validation",
        ],
        train_argv(tmp_path / "tuned", tiny_dataset[0], total_steps=1, init_from=tmp_path / "good"),
    ):
        tried("checkpoint")
        line = one_error(*run_cli(argv, capsys)[:2])
        assert f"{weights_file}: visual.proj holds NaN or infinite values" in line and "diverged" in line
    assert not (tmp_path / "tuned").exists()


# ---------------------------------------------------------------- 2. damaged checkpoints


def damage(step_dir: Path, kind: str) -> None:
    if kind == "truncated files":
        for f in step_dir.rglob("*"):
            if f.is_file():
                f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif kind == "garbled files":
        for f in step_dir.rglob("*"):
            if f.is_file():
                raw = bytearray(f.read_bytes())
                for i in range(0, len(raw), 7):
                    raw[i] ^= 0xFF
                f.write_bytes(bytes(raw))
    elif kind == "truncated array data":  # the metadata reads; the arrays do not
        for f in (step_dir / "state").rglob("*"):
            if f.is_file() and f.parent.name == "d" and f.stat().st_size > 50_000:
                f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif kind == "no state folder":
        shutil.rmtree(step_dir / "state")
    elif kind == "empty step directory":
        shutil.rmtree(step_dir)
        step_dir.mkdir()
    else:
        raise AssertionError(kind)


DAMAGE = {  # the newest five checkpoints, each damaged in its own way
    10: "truncated files",
    8: "garbled files",
    6: "truncated array data",
    4: "no state folder",
    2: "empty step directory",
}


def test_damaged_checkpoints_fall_back_to_the_newest_intact_one_and_resume_exactly(
    straight, tiny_dataset, jax_cache, tmp_path, capsys
):
    run = copy_run(straight, tmp_path / "run")
    checkpoints = (run / "checkpoints").absolute()
    for step, kind in DAMAGE.items():
        damage(checkpoints / str(step), kind)
    # export (and eval: they share the loader) read the newest intact step, name each damaged one
    # in a warning, and move nothing
    tried("checkpoint", len(DAMAGE))
    rc, lines, out = run_cli(["export", "--workdir", run, "--out", tmp_path / "export"], capsys)
    assert rc == 0 and out.startswith("exported step 1 "), lines
    assert len(lines) == len(DAMAGE) and steps_in(run) == [1, 2, 4, 6, 8, 10]
    for step, line in zip(DAMAGE, lines, strict=True):
        assert line.startswith(f"entitynet: warning: checkpoint step {step} in {checkpoints} is damaged (")
        assert line.endswith("); using step 1")
    assert "(its state/ folder is missing)" in lines[3] and "(its directory is empty)" in lines[4]
    # no intact step at all: one line naming each, for train and eval alike; nothing moved
    shutil.copytree(checkpoints / "1", tmp_path / "step-1")
    damage(checkpoints / "1", "truncated files")
    for argv in (
        train_argv(run, tiny_dataset[0], total_steps=10, **EVERY),
        ["eval", "--workdir", run, "--heldout", "--split", "validation", "--out", tmp_path / "ev"],
    ):
        tried("checkpoint")
        line = one_error(*run_cli(argv, capsys)[:2])
        assert line.startswith(f"entitynet: error: no intact checkpoint in {checkpoints} (step 10: ")
        assert "step 2: its directory is empty; step 1: " in line and "give another --workdir" in line
        assert steps_in(run) == [1, 2, 4, 6, 8, 10]
    assert not (tmp_path / "ev").exists()
    shutil.rmtree(checkpoints / "1")
    shutil.copytree(tmp_path / "step-1", checkpoints / "1")
    # training resumes from step 1, exactly: the same losses and weights as the run never damaged
    tried("checkpoint", len(DAMAGE))
    rc, lines, out = run_cli(train_argv(run, tiny_dataset[0], total_steps=10, **EVERY), capsys)
    assert rc == 0 and "trained to step 10" in out, lines
    assert len(lines) == len(DAMAGE)
    for step, line in zip(DAMAGE, lines, strict=True):
        moved = re.search(rf"moved it to (damaged-{step}-\S+) there, and resuming from step 1$", line)
        assert (
            line.startswith(f"entitynet: warning: checkpoint step {step} in {checkpoints} is damaged")
            and moved
        )
        assert (checkpoints / moved.group(1)).is_dir()  # kept for a look, out of Orbax's way
    assert losses_of(run) == losses_of(straight)  # bitwise: the data iterator's state came back too
    assert steps_in(run) == [1, 2, 4, 6, 8, 10]  # the damaged steps saved again: no StepAlreadyExistsError
    assert all(
        np.array_equal(a, b) for a, b in zip(saved_state(run, 10), saved_state(straight, 10), strict=True)
    )


# ---------------------------------------------------------------- 3. a full disk


def mount_tmpfs(path: Path, size: int) -> bool:
    """A tmpfs of `size` bytes mounted at `path`; False where this machine does not allow it."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):  # no mount command
        return False
    return r.returncode == 0


def disk_usage(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.fixture
def full_disk(straight, tmp_path, monkeypatch):
    """A workdir on a disk with room for one checkpoint, not two, and `free()` to make room: a real
    tmpfs mount where this machine allows it (root, CAP_SYS_ADMIN); else a fault injected where
    Orbax writes each checkpoint's settings, so that every save after the first fails with ENOSPC,
    as a full disk fails it, until `free()`. The test asserts the same either way."""
    root = tmp_path / "disk"
    one = disk_usage(straight / "checkpoints" / "1")
    if mount_tmpfs(root, int(one * 1.5) + 256 * 1024):
        yield root, lambda: subprocess.run(["mount", "-o", "remount,size=64m", str(root)], check=True)
        subprocess.run(["umount", "-l", str(root)], capture_output=True)
        return
    print("mount is not permitted here: the full disk is injected instead")
    real = ocp.handlers.JsonCheckpointHandler._save_fn
    disk = {"saves": 0, "full": True}

    async def save_fn(self, x, directory):
        disk["saves"] += 1
        if disk["full"] and disk["saves"] > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory / "metadata"))
        return await real(self, x, directory)

    monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "_save_fn", save_fn)
    yield root, lambda: disk.update(full=False)


def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_a_rerun_resumes(
    full_disk, straight, tiny_dataset, jax_cache, capsys
):
    root, free = full_disk
    run = root / "run"
    argv = train_argv(run, tiny_dataset[0], total_steps=4, **EVERY)
    tried("checkpoint")
    line = one_error(*run_cli(argv, capsys)[:2])
    checkpoints = (run / "checkpoints").absolute()
    assert line == (
        f"entitynet: error: no space left on device while saving checkpoint step 2 in {checkpoints}; free "
        "space there (or raise the quota), or give a --workdir on a disk with room, then run the same "
        "command again: it resumes from step 1, the last checkpoint saved (intact)"
    )
    assert sorted(p.name for p in checkpoints.iterdir()) == ["1"]  # the failed save's leftovers are gone
    assert all(
        np.array_equal(a, b) for a, b in zip(saved_state(run, 1), saved_state(straight, 1), strict=True)
    )
    free()
    rc, lines, out = run_cli(argv, capsys)
    assert rc == 0 and "trained to step 4" in out, lines
    assert losses_of(run) == {s: v for s, v in losses_of(straight).items() if s <= 4}  # bitwise
    assert steps_in(run) == [1, 2, 4]


class FailingManager(Manager):
    """A manager whose save in flight fails as Orbax's does on a full disk or a read-only one."""

    def __init__(self, error):
        super().__init__(every=2)
        self.error, self.in_flight = error, False

    def save(self, step, args, force):
        self.in_flight = bool(self.saved)  # the first save lands, the next one fails
        return super().save(step, args, force)

    def wait_until_finished(self):
        if self.in_flight:
            self.in_flight = False
            self.saved.pop()
            raise self.error

    def reload(self):
        pass

    def all_steps(self):
        return list(self.saved)


@pytest.mark.parametrize(
    "error,needle",
    [
        (OSError(errno.ENOSPC, "No space left on device"), "no space left on device while saving"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded while saving"),
        (  # TensorStore, in C++, says it inside a ValueError
            ValueError("RESOURCE_EXHAUSTED: Failed writing: ... [os_error_code='28']"),
            "no space left on device while saving",
        ),
        (OSError(errno.EROFS, "Read-only file system"), "cannot save checkpoint step 2 in"),
    ],
)
def test_a_failed_asynchronous_save_is_named_with_its_own_step(monkeypatch, tmp_path, error, needle):
    """Saves are asynchronous: the failure of step 2's save surfaces when step 4's save waits for it
    (or at the end); the line names step 2 and the checkpoint before it, and a bug stays a bug."""
    import jax.numpy as jnp
    import ml_collections

    import train.train as trainer

    monkeypatch.setattr(
        trainer, "save", lambda mngr, step, state, it, settings, force: mngr.save(step, None, force)
    )
    cfg = ml_collections.ConfigDict({"optim": {"lr": 0.5, "weight_decay": 0.1, "warmup_steps": 3}})
    tried("checkpoint")
    saver = trainer.Checkpointer(FailingManager(error), tmp_path, {}, cfg, lambda step: 0.5)
    with pytest.raises(trainer.EntityNetError) as caught:
        for step in range(1, 7):
            saver.record(step, jnp.int32(0))
            saver.save(step, {"w": jnp.ones(2)}, None)
    assert needle in str(caught.value) and "step 2" in str(caught.value)
    assert "it resumes from step 1, the last checkpoint saved" in str(caught.value)
    saver = trainer.Checkpointer(FailingManager(KeyError("a bug")), tmp_path, {}, cfg, lambda step: 0.5)
    with pytest.raises(KeyError):
        for step in range(1, 7):
            saver.record(step, jnp.int32(0))
            saver.save(step, {"w": jnp.ones(2)}, None)


# ---------------------------------------------------------------- 4. export's --out


def test_export_never_writes_over_what_is_not_an_earlier_export_of_the_same_run(
    tiny_run, exported, tiny_dataset, jax_cache, tmp_path, capsys
):
    def export(run, out):
        return run_cli(["export", "--workdir", run, "--out", out], capsys)

    def snapshot(d: Path) -> dict:
        return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}

    # a user's directory: their README.md and tokenizer files
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("my notes\n")
    (mine / "tokenizer.json").write_text("{}")
    # the dataset a run trains from: replacing its tokenizer would stop the run resuming
    dataset = shutil.copytree(tiny_dataset[0], tmp_path / "dataset")
    for out, needle in (
        (mine, "is not empty and is not an export (it holds README.md, tokenizer.json)"),
        (dataset, "is not empty and is not an export (it holds dataset_info.json, entities.jsonl"),
    ):
        tried("export")
        before = snapshot(out)
        line = one_error(*export(tiny_run, out)[:2])
        assert line.startswith(f"entitynet: error: --out {out} {needle}") and "give a new --out" in line
        assert snapshot(out) == before
    # an earlier export of the same run (made into a new directory): exported again, replaced whole
    out = shutil.copytree(exported, tmp_path / "export")
    marker = json.loads((out / "entitynet_export.json").read_text())
    assert set(marker["files"]) == {p.name for p in out.iterdir()} - {"entitynet_export.json"}
    assert str(tiny_run) not in json.dumps(marker)  # the workdir's path is not published
    first = snapshot(out)
    (out / "open_clip_model.safetensors").unlink()  # a file of its own gone missing: written again
    rc, lines, _ = export(tiny_run, out)
    assert rc == 0 and snapshot(out) == first, lines  # the same checkpoint: the same bytes
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".export")]  # no temporary left
    # an empty directory is fine too
    (tmp_path / "empty").mkdir()
    assert export(tiny_run, tmp_path / "empty")[0] == 0
    # another run's export, and our export with a file added or changed: refused, untouched
    other = copy_run(tiny_run, tmp_path / "other-run")
    (out / "README.md").write_text((out / "README.md").read_text() + "\nmy edit\n")
    for run, edit, needle in (
        (other, None, "holds the export of another run"),
        (tiny_run, "README.md", "holds README.md changed since the earlier export of this run"),
        (tiny_run, "eval", "holds eval, which the earlier export of this run did not write"),
    ):
        if edit == "eval":
            (out / "README.md").write_text(first["README.md"].decode())
            (out / "eval").mkdir()
            (out / "eval" / "results.json").write_text("{}")
        tried("export")
        before = snapshot(out)
        line = one_error(*export(run, out)[:2])
        assert line.startswith(f"entitynet: error: --out {out} {needle}"), line
        assert snapshot(out) == before
