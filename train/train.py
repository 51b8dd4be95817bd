"""Train a CLIP (or SigLIP) on EntityNet shards.

    python -m train.train --config configs/tiny_cpu.py --workdir runs/tiny
    entitynet train --config configs/vit_b32_entitynet.py --workdir gs://bucket/runs/b32 --config.optim.lr=3e-4

The workdir holds everything: checkpoints/ (Orbax: model + optimizer state, the data iterator,
the data-loader settings), metrics.jsonl, TensorBoard events, config.json; it may be in a bucket
(gs://, s3://: trained in a local copy pushed back after every checkpoint, train/workdir.py). Running the same
command again resumes from the last checkpoint, exactly (same parameters, same data order); a
damaged newer checkpoint is moved aside (checkpoints/damaged-<step>-<time>) with a warning, and the
run resumes from the newest intact one (train/checkpoints.py).

A step whose loss, gradients or updated weights are not finite stops the run there (one line naming
that step and the last good checkpoint, exit 2) with nothing of it saved; each step's check stays on
the device until a log step or a save reads it. A full disk during a save is one line too.

Stages, in order: mesh -> tokenizer + input -> model + optimizer (born sharded) -> step ->
checkpoint restore -> loop (metrics, evaluation, checkpoints, SIGTERM).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx

from entitynet import shards
from entitynet.errors import ConfigError, EntityNetError
from entitynet.files import atomic_open, ensure_writable_dir
from entitynet.locks import OutputLock
from entitynet.records import Entity, read_jsonl
from entitynet.storage import STORE, filesystem, is_remote
from entitynet.text import tokenizer as tokenizers
from entitynet.text.templates import read_templates
from train import config as config_lib
from train import input_pipeline, losses, sharding
from train.augment import Augment
from train.checkpoints import (
    is_no_space,
    move_aside,
    newest_intact,
    no_space_error,
    quiet_orbax,
    remove_failed_saves,
    save_failure,
    warn,
)
from train.model import CLIP, count_params, preset

log = logging.getLogger("entitynet.train")


# ---------------------------------------------------------------- model and optimizer


def model_config(cfg: ml_collections.ConfigDict, tokenizer):
    overrides = dict(cfg.model.overrides)
    m = preset(cfg.model.preset, **overrides)
    text = dataclasses.replace(
        m.text,
        vocab_size=tokenizer.vocab_size,
        context_length=cfg.data.context_length,
        eot_id=tokenizer.eot_id,
        pad_id=tokenizer.pad_id,
    )
    if cfg.loss == "siglip":
        m = m.replace(init_logit_scale=math.log(10.0), init_logit_bias=-10.0)
    return m.replace(
        text=text,
        vision=dataclasses.replace(m.vision, image_size=cfg.data.image_size),
        dtype=cfg.dtype,
    )


def decay_mask(params):
    """Weight decay on matrices only: not on norms, biases, the temperature or the bias."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(cfg: ml_collections.ConfigDict) -> tuple[optax.GradientTransformation, optax.Schedule]:
    o = cfg.optim
    decay_steps = o.decay_steps or cfg.total_steps  # the cosine's length; 0: the whole run
    schedule = optax.warmup_cosine_decay_schedule(
        0.0,
        o.lr,
        max(1, o.warmup_steps),
        max(o.warmup_steps + 1, decay_steps),
        o.lr * o.end_lr_ratio,
    )
    tx = optax.chain(
        optax.clip_by_global_norm(o.clip_norm),
        optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay, mask=decay_mask),
    )
    return tx, schedule


def trainable(mcfg, lock_image: bool = False, unlocked_groups: int = 0):
    """The nnx filter of the parameters that train. Unlocked: every Param. With `lock_image`
    (LiT), the image tower is frozen except its last `unlocked_groups` groups, open_clip's
    grouping: [stem (conv1, class and position embeddings, ln_pre), block 0, ..., block L-1,
    ln_post (with attention pooling), proj]; 0 freezes the whole tower."""
    if not lock_image:
        return nnx.Param
    groups = mcfg.vision.layers + 3
    if not 0 <= unlocked_groups <= groups:
        raise ConfigError(
            f"model.unlocked_groups={unlocked_groups}: this image tower has {groups} groups (stem, "
            f"{mcfg.vision.layers} blocks, ln_post, proj); use 0..{groups}"
        )
    first_unlocked = groups - unlocked_groups

    def group(path) -> int:
        name = str(path[1])
        if name == "transformer":  # ("visual", "transformer", "resblocks", i, ...)
            return 1 + int(path[3])
        if name in ("ln_post", "attn_pool"):
            return mcfg.vision.layers + 1
        if name == "proj":
            return mcfg.vision.layers + 2
        return 0  # conv1, class_embedding, positional_embedding, ln_pre

    def trains(path, value) -> bool:
        return not (path and str(path[0]) == "visual" and group(path) < first_unlocked)

    return nnx.All(nnx.Param, trains)


def ema_decay_at(decay: float, step):
    """The EMA's decay after `step` updates: `decay`, warmed up as (1 + step) / (10 + step) while that
    is smaller (TensorFlow's ExponentialMovingAverage with num_updates), so early weights, which the
    run moves far from, fade quickly."""
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def ema_update(ema, params, decay):
    """One EMA step over matching trees: ema * decay + params * (1 - decay)."""
    return jax.tree.map(lambda e, p: e * decay + p * (1.0 - decay), ema, params)


def unpack(graphdef, state):
    """(model, optimizer, EMA copy of the model or None) of a run's state."""
    merged = nnx.merge(graphdef, state)
    return merged[0], merged[1], (merged[2] if len(merged) > 2 else None)


def create_state(mcfg, tx, mesh, seed: int, wrt=nnx.Param, ema: bool = False):
    """(graphdef, state) with every array born sharded on `mesh`: the model, the optimizer (state
    only for the parameters `wrt` selects) and, with `ema`, a copy of the model whose trainable
    parameters are the moving average."""

    def build(key):
        model = CLIP(mcfg, rngs=nnx.Rngs(key))
        parts = (model, nnx.Optimizer(model, tx, wrt=wrt))
        return nnx.split((*parts, nnx.clone(model)) if ema else parts)

    with jax.set_mesh(mesh):
        graphdef, _ = nnx.eval_shape(lambda: build(jax.random.key(seed)))
        state = jax.jit(lambda k: build(k)[1])(jax.random.key(seed))
    return graphdef, state


# The train step's metric saying what was not finite (NaN or inf) at that step: a sum of the
# bits below, 0 when all was. It stays on the device: the loop reads it only where it syncs anyway
# (log steps) and before every checkpoint save, so checking costs no host sync per step. The state
# itself (weights, optimizer moments) is checked once per save, not per step: a pass over every
# parameter each step costs a tenth of a tiny model's step on the CPU.
NON_FINITE = "non_finite"
NON_FINITE_PARTS = (
    (1, "the loss was NaN or infinite"),
    (2, "the gradients were NaN or infinite"),
    (4, "the update made the weights or the optimizer state NaN or infinite"),
)


def non_finite_code(loss, grad_norm) -> jax.Array:
    """The `NON_FINITE` bits of one step's loss and gradient norm."""
    return (jnp.where(jnp.isfinite(loss), 0, 1) + jnp.where(jnp.isfinite(grad_norm), 0, 2)).astype(jnp.int32)


@jax.jit
def all_finite(tree) -> jax.Array:
    """True when every floating-point leaf of `tree` is finite."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves])) if leaves else jnp.bool_(True)


def describe_non_finite(code: int) -> str:
    """What went first, of the parts `code` names: the loss, else the gradients, else the update."""
    return next((text for bit, text in NON_FINITE_PARTS if code & bit), "a value was NaN or infinite")


def make_steps(graphdef, state, mesh, loss_kind: str, wrt=nnx.Param, ema_decay: float = 0.0):
    state_sh = jax.tree.map(lambda x: x.sharding, state)
    batch_sh = sharding.batch_sharding(mesh)

    def loss_fn(model, batch):
        zi, zt = model(input_pipeline.to_model_input(batch["image"]), batch["tokens"])
        loss = losses.contrastive_loss(loss_kind, zi, zt, model.logit_scale[...], model.logit_bias[...])
        return loss, (zi, zt)

    @functools.partial(
        jax.jit, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, None), donate_argnums=0
    )
    def train_step(state, batch):
        model, opt, ema = unpack(graphdef, state)
        grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, wrt), has_aux=True)
        (loss, (zi, zt)), grads = grad_fn(model, batch)  # no gradient for what is locked
        opt.update(model, grads)
        if ema is not None:
            decay = ema_decay_at(ema_decay, opt.step[...])
            nnx.update(ema, ema_update(nnx.state(ema, wrt), nnx.state(model, wrt), decay))
        new_state = nnx.state((model, opt) if ema is None else (model, opt, ema))
        grad_norm = optax.tree.norm(grads)
        metrics = {
            "loss": loss,
            "grad_norm": grad_norm,
            "temperature": jnp.exp(model.logit_scale[...]),
            "accuracy": losses.in_batch_accuracy(zi, zt),
            NON_FINITE: non_finite_code(loss, grad_norm),
        }
        return new_state, metrics

    @functools.partial(jax.jit, in_shardings=(state_sh, batch_sh))
    def eval_step(state, batch):
        model, _, ema = unpack(graphdef, state)
        model = model if ema is None else ema
        loss, (zi, zt) = loss_fn(model, batch)
        return {"loss": loss, "accuracy": losses.in_batch_accuracy(zi, zt)}

    return train_step, eval_step


# ---------------------------------------------------------------- checkpoints


def data_settings(cfg, process_count: int) -> dict:
    """What the data iterator's state and the model depend on; recorded in checkpoints and checked
    on restore: the loader's settings, and the content of the data (the shards' fingerprint, the
    subset file's digest) and of the tokenizer, so a workdir is never resumed on data or a
    vocabulary that changed under the same path."""
    subset = str(cfg.data.subset)
    balance = str(cfg.data.balance)
    out = {
        "num_workers": int(cfg.data.num_workers),
        "process_count": int(process_count),
        "batch_size": int(cfg.batch_size),
        "seed": int(cfg.seed),
        "shards": str(cfg.data.shards),
        "subset": subset,
        "data_fingerprint": shards.fingerprint(cfg.data.shards),
        "subset_digest": _file_digest(subset) if subset else "",
        "tokenizer_digest": _file_digest(str(cfg.data.tokenizer)),
        # what the loader's saved position counts: batches, or records where a subset filters them
        "loader_state_counts": input_pipeline.state_counts(subset, balance),
    }
    # only when on, so runs from before these options resume as they were (OPTIONAL_SETTINGS)
    if balance:
        out["balance"] = f"{balance}:{int(cfg.data.balance_cap)}"
    state = state_layout(cfg)
    if state:
        out["state"] = state
    return out


# settings a checkpoint records only when they are on: compared whichever side has them
OPTIONAL_SETTINGS = ("balance", "state")


def state_layout(cfg) -> str:
    """What the checkpointed state holds beyond model and optimizer: an EMA copy, a locked image
    tower (the optimizer's state then covers only what trains); '' for neither."""
    parts = []
    if float(cfg.ema_decay) > 0:
        parts.append("ema")
    if cfg.model.lock_image:
        parts.append(f"image locked but {int(cfg.model.unlocked_groups)} groups")
    return ", ".join(parts)


def _file_digest(path: str) -> str:
    """Of a file's bytes; a tokenizer given as its directory: of its tokenizer.json."""
    data = STORE.read(tokenizers.tokenizer_file(path))
    return hashlib.blake2b(data, digest_size=16).hexdigest() if data is not None else ""


class StaleCheckpoint(ConfigError):
    """The workdir's checkpoint was made from other data, tokenizer or loader settings."""


def checkpoint_manager(workdir: Path, cfg) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        (workdir / "checkpoints").absolute(),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=cfg.checkpoint.keep,
            save_interval_steps=cfg.checkpoint.every_steps,
            enable_async_checkpointing=cfg.checkpoint["async"],
        ),
    )


def save(mngr, step: int, state, it, settings: dict, force: bool = False) -> bool:
    """A checkpoint at `step` when the interval (or `force`) says so; `it` is the DevicePrefetch,
    whose state is taken now, at the next batch the step will see."""
    import grain

    if not (force or mngr.should_save(step)):
        return False
    return mngr.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(it.snapshot()),
            settings=ocp.args.JsonSave(settings),
        ),
        force=force,
    )


class DivergedRun(ConfigError):
    """The loss, the gradients or the weights stopped being finite: the run stopped at that step."""


class Checkpointer:
    """The run's checkpoint saves. A save happens only after every step since the last check was
    seen finite (`record` keeps each step's NON_FINITE code on the device; `check` fetches them all
    at once and stops the run at the first bad step), so no checkpoint ever holds a diverged state.
    Saves are asynchronous: a save's failure (a full disk) surfaces when the next save waits for it,
    or at `finish`, and is reported with the step of the save that failed."""

    def __init__(self, mngr, checkpoints: Path, settings: dict, cfg, schedule, on_saved=None):
        self.mngr, self.checkpoints, self.settings = mngr, checkpoints, settings
        self.on_saved = on_saved  # called once a save is complete (a bucket workdir's push)
        self.cfg, self.schedule = cfg, schedule
        self.pending: int | None = None  # the step of a save that may still be writing
        self.unchecked: list[tuple[int, jax.Array]] = []

    def record(self, step: int, code: jax.Array) -> None:
        self.unchecked.append((step, code))

    def check(self, step: int | None = None, state=None) -> None:
        """Stop the run (DivergedRun) at the first step since the last check that was not finite;
        with `state` (the state after `step`), also when that state is not."""
        steps = [s for s, _ in self.unchecked]
        codes = jax.device_get([c for _, c in self.unchecked])
        self.unchecked = []
        for s, code in zip(steps, codes, strict=True):
            if int(code):
                raise self.diverged(s, int(code))
        if state is not None and step is not None and not bool(all_finite(state)):
            raise self.diverged(step, 4)

    def diverged(self, step: int, code: int) -> DivergedRun:
        self.finish()
        last = self.mngr.latest_step()
        lr = self.cfg.optim
        fix = (
            f"lower --config.optim.lr (now {lr.lr:g}) or --config.optim.weight_decay (now {lr.weight_decay:g}), "
            f"or lengthen --config.optim.warmup_steps (now {lr.warmup_steps})"
        )
        where = (
            f"the last good checkpoint is step {last} in {self.checkpoints}: {fix}, then run the same "
            "command again to resume from it"
            if last is not None
            else f"no checkpoint was saved before it: {fix}, then run again"
        )
        return DivergedRun(
            f"training diverged at step {step}: {describe_non_finite(code)} (learning rate "
            f"{float(self.schedule(step)):.3g}); the run stopped there and saved nothing of it; {where}"
        )

    def save(self, step: int, state, it, force: bool = False) -> bool:
        latest = self.mngr.latest_step()
        if (latest is not None and latest >= step) or not (force or self.mngr.should_save(step)):
            return False
        self.check(step, state)
        self.finish()
        try:
            saved = save(self.mngr, step, state, it, self.settings, force=True)
        except Exception as e:  # noqa: BLE001 - an OS error becomes a user error; others re-raised
            raise self._failure(e, step) from None
        self.pending = step
        return saved

    def finish(self) -> None:
        """Wait for the save in flight; its failure is raised as a user error naming its step."""
        try:
            self.mngr.wait_until_finished()
        except Exception as e:
            step, self.pending = self.pending, None
            if step is None:
                raise
            raise self._failure(e, step) from None
        finished, self.pending = self.pending, None
        if finished is not None and self.on_saved is not None:
            self.on_saved()

    def abandon(self) -> None:
        """After a failed run: remove what failed saves left (their temporary directories), once
        every thread of theirs has ended, so the space is free and the next run starts clean."""
        remove_failed_saves(self.checkpoints)

    def _failure(self, e: Exception, step: int) -> BaseException:
        with quiet_orbax():
            self.mngr.reload()  # the failed step is no checkpoint
        intact = [s for s in self.mngr.all_steps() if s < step]
        err = save_failure(e, step, self.checkpoints, max(intact) if intact else None)
        if err is e:
            raise e
        return err


def restore_newest(mngr, checkpoints: Path, state, it, settings: dict, pid: int, nproc: int):
    """(state, step) of the newest intact checkpoint, (state, 0) when there is none. Damaged newer
    steps are moved aside (so the same steps can be saved again) and each is named in a warning."""
    restored, step, damaged = newest_intact(
        checkpoints,
        list(mngr.all_steps()),
        lambda s: restore(mngr, s, state, it, settings),
        items=("state", "data", "settings"),
    )
    if step is None:
        return state, 0
    if damaged:
        if pid == 0:
            for bad, reason in damaged:
                moved = move_aside(checkpoints, bad)
                warn(
                    f"checkpoint step {bad} in {checkpoints} is damaged ({reason}); moved it to "
                    f"{moved.name} there, and resuming from step {step}"
                )
        if nproc > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("entitynet: damaged checkpoints moved aside")
        with quiet_orbax():
            mngr.reload()
    return restored, step


def restore(mngr, step: int, state, it, settings: dict):
    import grain

    saved = mngr.restore(step, args=ocp.args.Composite(settings=ocp.args.JsonRestore()))["settings"]
    keys = set(settings) | (set(saved) & set(OPTIONAL_SETTINGS))
    diff = {k: (saved.get(k), settings.get(k)) for k in keys if saved.get(k) != settings.get(k)}
    if diff:
        changes = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items()))
        raise StaleCheckpoint(
            f"the checkpoint at step {step} was written with other data, tokenizer, data-loader settings or "
            "state layout "
            f"({changes}); resuming would silently train on something else. Use the original data and "
            "settings, or a new --workdir"
        )
    r = mngr.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(state), data=grain.checkpoint.CheckpointRestore(it)
        ),
    )
    return r["state"]


def init_from_open_clip(graphdef, state, path: str, towers: str = "both"):
    """The model's weights from an open_clip checkpoint (fine-tuning; LiT with the image tower
    only, `towers="image"`); the optimizer starts fresh and an EMA starts at the loaded weights.
    `path`: a weights file, or a directory in open_clip's `local-dir:` / `hf-hub:` layout (an
    `entitynet export`, a downloaded Hub model) holding one."""
    from train.export import weights_in
    from train.open_clip_weights import load_open_clip, read_state_dict

    path = weights_in(path)
    shardings = jax.tree.map(lambda x: x.sharding, state)
    model, opt, ema = unpack(graphdef, state)
    only = "visual." if towers == "image" else ""
    unused = load_open_clip(model, read_state_dict(path), path, only=only)
    if ema is not None:  # copies: one buffer in two places cannot be donated to the step
        nnx.update(ema, jax.tree.map(jnp.copy, nnx.state(model, nnx.Param)))
    log.info("initialised from open_clip weights %s (%d of its tensors unused)", path, len(unused))
    return jax.device_put(nnx.state((model, opt) if ema is None else (model, opt, ema)), shardings)


# ---------------------------------------------------------------- metrics


class Metrics:
    """metrics.jsonl and TensorBoard events in the workdir (process 0 only). A run resumed from
    step `start` first drops the rows after `start` that the interrupted run logged (the steps it
    will run again), and a last line cut short by a kill, so every step has one row."""

    def __init__(self, workdir: Path, enabled: bool, start: int = 0):
        self.enabled = enabled
        self.tb = None
        if enabled:
            path = workdir / "metrics.jsonl"
            if path.exists():
                keep_rows(path, lambda row: row.get("step", 0) <= start)
            self.file = open(path, "a", encoding="utf-8")
            try:
                from tensorboardX import SummaryWriter

                self.tb = SummaryWriter(str(workdir / "tensorboard"))
            except ImportError:
                log.warning("tensorboardX is not installed: no TensorBoard events")

    def write(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            if self.tb is not None:
                self.tb.close()


def keep_rows(path: Path, keep) -> int:
    """Rewrite a JSONL file atomically with the rows `keep(row)` accepts (unreadable lines dropped);
    returns how many were dropped."""
    kept, dropped = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            dropped += 1
            continue
        if isinstance(row, dict) and keep(row):
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        with atomic_open(path) as f:
            f.write("".join(x + "\n" for x in kept))
    return dropped


def compiled_flops(compiled) -> float:
    """FLOPs of one step from XLA's cost analysis (0 when the backend does not say)."""
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list | tuple) else cost
        return float(cost.get("flops", 0.0))
    except Exception:  # noqa: BLE001 - an estimate for MFU only
        return 0.0


# ---------------------------------------------------------------- the loop


def validation_too_small(split: str, records: int, batch_size: int) -> str:
    """The warning of a run whose validation split cannot fill one batch (no validation loss)."""
    return (
        f"no validation loss: the {split!r} split has {records:,} records, fewer than one batch of "
        f"{batch_size:,}; lower --config.batch_size, or set --config.eval_every=0 to say you want none"
    )


def train(cfg: ml_collections.ConfigDict, workdir: str | os.PathLike, on_saved=None) -> dict:
    """Train (or resume) in `workdir`; returns the final metrics. Process 0 holds the workdir's lock
    for the run (the processes of one distributed run share it); a run that fails before its first
    checkpoint leaves no workdir it created behind. A workdir in a bucket is trained in a local
    copy pushed back after every checkpoint (`train.workdir`). `on_saved`: called after each
    checkpoint is complete."""
    cfg = config_lib.complete(cfg)
    config_lib.check(cfg)
    if is_remote(workdir):
        return _train_in_bucket(cfg, os.fspath(workdir))
    created = not Path(workdir).exists()
    workdir = ensure_writable_dir(workdir)
    pid = 0
    try:
        pid, nproc = _processes(cfg)
        with OutputLock(str(workdir), "train") if pid == 0 else contextlib.nullcontext():
            return _train(cfg, workdir, pid, nproc, on_saved)
    except BaseException as e:
        checkpoints = workdir / "checkpoints"
        if pid == 0 and created and not (checkpoints.is_dir() and any(checkpoints.iterdir())):
            shutil.rmtree(workdir, ignore_errors=True)  # nothing resumable was made: leave nothing
        if isinstance(e, OSError) and is_no_space(e):  # metrics, events, config.json on a full disk
            raise no_space_error("writing the run's files", workdir, e) from None
        raise


def _train_in_bucket(cfg: ml_collections.ConfigDict, remote: str) -> dict:
    """`train` with its workdir in a bucket: the bucket's lease held for the run, a fresh local copy
    trained in (`train.workdir.Mirror`), pushed after each checkpoint and at the end, failed or not."""
    from train.workdir import Mirror

    if cfg.distributed:
        raise ConfigError(
            f"--workdir {remote}: a multi-host run needs a workdir every host shares; mount the bucket on "
            "every host (gcsfuse) and give the mount's path (docs/run-at-scale.md)"
        )
    filesystem(remote)  # a store this installation can reach, or one line saying what to install
    with OutputLock(remote, "train"):
        mirror = Mirror(remote)
        local = mirror.pull()
        log.info("training %s in its local copy %s", remote, local)
        try:
            return train(cfg, local, on_saved=mirror.push)
        finally:
            mirror.push()


def _processes(cfg: ml_collections.ConfigDict) -> tuple[int, int]:
    """(this process's index, the number of processes), after joining the others when distributed."""
    if cfg.distributed:
        # several hosts: the coordinator, process count and id come from the cluster (TPU VMs, SLURM)
        # or from JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID
        if jax.config.jax_platforms in (None, "", "cpu") and os.environ.get("JAX_COORDINATOR_ADDRESS"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        env = os.environ
        if env.get("JAX_COORDINATOR_ADDRESS"):
            jax.distributed.initialize(
                env["JAX_COORDINATOR_ADDRESS"], int(env["JAX_NUM_PROCESSES"]), int(env["JAX_PROCESS_ID"])
            )
        else:
            jax.distributed.initialize()
    return jax.process_index(), jax.process_count()


def _train(cfg: ml_collections.ConfigDict, workdir: Path, pid: int, nproc: int, on_saved=None) -> dict:
    if cfg.batch_size % nproc:
        raise ConfigError(f"batch_size {cfg.batch_size} does not split over {nproc} processes")
    if pid == 0:
        with atomic_open(workdir / "config.json") as f:
            f.write(cfg.to_json_best_effort(indent=2, sort_keys=True))

    # == mesh
    mesh = sharding.make_mesh(dict(cfg.mesh))
    n_batch_shards = mesh.shape["data"] * mesh.shape["fsdp"]
    if cfg.batch_size % n_batch_shards:
        raise ConfigError(
            f"batch_size {cfg.batch_size} does not split over the {n_batch_shards} batch shards of the mesh"
        )

    # == tokenizer and input
    tokenizer = tokenizers.load(cfg.data.tokenizer)
    entities = list(read_jsonl(cfg.data.entities, Entity)) if cfg.data.entities else []
    icfg = input_pipeline.InputConfig(
        shards=cfg.data.shards,
        split=cfg.data.split,
        batch_size=cfg.batch_size // nproc,
        image_size=cfg.data.image_size,
        context_length=cfg.data.context_length,
        alt_text_chance=cfg.data.alt_text_chance,
        crop_scale=tuple(cfg.data.crop_scale),
        template_chance=float(cfg.data.template_chance),
        templates=tuple(read_templates(cfg.data.templates)) if cfg.data.template_chance else (),
        seed=cfg.seed,
        num_workers=cfg.data.num_workers,
        subset=cfg.data.subset,
        resample=cfg.data.resample,
        read_threads=int(cfg.data.read_threads),
        augment=augment_of(cfg),
        balance=str(cfg.data.balance),
        balance_cap=int(cfg.data.balance_cap),
        caption_weights=caption_weights_of(cfg),
    )
    loader = iter(input_pipeline.make_dataset(icfg, entities, tokenizer, pid, nproc))
    # batches reach the device `device_prefetch` steps ahead; checkpoints hold the loader's state
    # at the next batch the step will see (DevicePrefetch.get_state), not at the last one loaded
    it = input_pipeline.DevicePrefetch(
        loader,
        lambda b: sharding.global_batch(mesh, _step_fields(b)),
        int(cfg.data.device_prefetch),
    )

    # == model and optimizer, born sharded
    mcfg = model_config(cfg, tokenizer)
    tx, schedule = make_optimizer(cfg)
    wrt = trainable_of(cfg, mcfg)
    ema_decay = float(cfg.ema_decay)
    graphdef, state = create_state(mcfg, tx, mesh, cfg.seed, wrt, ema=ema_decay > 0)
    model = unpack(graphdef, state)[0]
    n_params = count_params(model)
    n_trained = sum(x.size for x in jax.tree.leaves(nnx.state(model, wrt)))
    del model
    train_step, eval_step = make_steps(graphdef, state, mesh, cfg.loss, wrt, ema_decay)

    # == checkpoint restore
    settings = data_settings(cfg, nproc)
    with quiet_orbax():  # listing the steps reads each one's metadata: a damaged one is ours to report
        mngr = checkpoint_manager(workdir, cfg)
    checkpoints = (workdir / "checkpoints").absolute()
    state, start = restore_newest(mngr, checkpoints, state, it, settings, pid, nproc)
    if start:
        log.info("resumed from step %d in %s", start, workdir)
    elif cfg.init_from:
        state = init_from_open_clip(graphdef, state, cfg.init_from, cfg.init_towers)
    saver = Checkpointer(mngr, checkpoints, settings, cfg, schedule, on_saved if pid == 0 else None)

    # == evaluation input (contrastive loss on the held-out split)
    eval_batches = []
    if cfg.eval_every:
        ecfg = dataclasses.replace(icfg, split=cfg.data.eval_split, train=False)
        seen = 0
        try:
            for b in input_pipeline.make_dataset(ecfg, entities, tokenizer, pid, nproc):
                seen += len(b["image"])
                if len(b["image"]) == icfg.batch_size:
                    eval_batches.append(b)
                if len(eval_batches) >= cfg.eval_batches:
                    break
        except ConfigError as e:
            log.warning("no evaluation: %s", e)
        else:
            if not eval_batches:
                log.warning(validation_too_small(ecfg.split, seen, icfg.batch_size))

    # == loop
    stop = {"signal": None}

    def on_sigterm(signum, frame):
        stop["signal"] = signum

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    metrics_out = Metrics(workdir, pid == 0, start)
    flops, compiled = 0.0, None
    peak = float(cfg.peak_flops_per_device) * jax.device_count()
    history: dict = {}
    t_last, n_last = time.time(), start
    bar = _progress(start, cfg.total_steps, pid == 0 and cfg.progress)
    failed = False
    try:
        with jax.set_mesh(mesh), quiet_orbax():
            for step in range(start + 1, cfg.total_steps + 1):
                batch = next(it)
                if compiled is None:  # compile once, and read the step's FLOPs off the executable
                    compiled = train_step.lower(state, batch).compile()
                    flops = compiled_flops(compiled)
                state, m = compiled(state, batch)
                saver.record(step, m.pop(NON_FINITE))
                if step % cfg.log_every == 0 or step == cfg.total_steps:
                    saver.check()  # a sync here anyway: no non-finite metrics are written
                    m = {k: float(v) for k, v in jax.device_get(m).items()}
                    now = time.time()
                    rate = (step - n_last) * cfg.batch_size / max(now - t_last, 1e-9)
                    m.update(lr=float(schedule(step)), images_per_s=rate)
                    if peak and flops:
                        m["mfu"] = flops * rate / cfg.batch_size / peak
                    t_last, n_last = now, step
                    metrics_out.write(step, m)
                    history[step] = m
                    if bar is not None:
                        bar.set_postfix(loss=f"{m['loss']:.4f}", img_s=f"{rate:.0f}")
                if eval_batches and step % cfg.eval_every == 0:
                    saver.check()
                    ev = [
                        jax.device_get(eval_step(state, sharding.global_batch(mesh, b))) for b in eval_batches
                    ]
                    e = {f"val_{k}": float(np.mean([x[k] for x in ev])) for k in ev[0]}
                    metrics_out.write(step, e)
                    history.setdefault(step, {}).update(e)
                if bar is not None:
                    bar.update(1)
                saver.save(step, state, it, force=step == cfg.total_steps)
                if stop["signal"] is not None:
                    saver.save(step, state, it, force=True)
                    log.warning("SIGTERM: saved step %d, exiting", step)
                    break
            saver.finish()
    except BaseException as e:
        failed = True
        if saver.pending is not None and not isinstance(e, KeyboardInterrupt):
            with quiet_orbax():
                saver.finish()  # a failed save in flight is the cause to report (a full disk)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        if bar is not None:
            bar.close()
        with quiet_orbax():
            # closing flushes files and waits for saves: on a failed run (a full disk) that fails
            # too, and must not hide the error already on its way
            for close in (mngr.close, metrics_out.close, it.close):
                try:
                    close()
                except Exception:
                    if not failed:
                        raise
            if failed and pid == 0:
                saver.abandon()
    final = history[max(history)] if history else {}
    return {
        "params": n_params,
        "trained_params": n_trained,
        "last_step": max(history) if history else start,
        "flops_per_step": flops,
        **final,
        "preempted": stop["signal"] is not None,
        "history": history,
    }


def augment_of(cfg) -> Augment:
    """The config's `data.augment` fields."""
    a = cfg.data.augment
    values = {k: a[k] for k in a.keys()}
    if "blur_sigma" in values:
        values["blur_sigma"] = tuple(values["blur_sigma"])
    return Augment(**values)


def caption_weights_of(cfg):
    """The config's `data.caption_weights`."""
    from entitynet.text.captions import CaptionWeights

    w = cfg.data.caption_weights
    return CaptionWeights(**{k: float(w[k]) for k in w.keys()})


def trainable_of(cfg, mcfg):
    """`trainable` from the config's model.lock_image / model.unlocked_groups; locking a tower that
    was never trained is refused."""
    lock = bool(cfg.model.lock_image)
    if lock and not cfg.init_from:
        raise ConfigError(
            "model.lock_image freezes the image tower, which is random without pretrained weights: give "
            "--config.init_from=DIR (an open_clip-layout directory, e.g. an `entitynet export`)"
        )
    return trainable(mcfg, lock, int(cfg.model.unlocked_groups))


def _step_fields(b: dict) -> dict:
    return {"image": b["image"], "tokens": b["tokens"]}


def _progress(start: int, total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m train.train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="configs/FILE.py[:ARG]")
    ap.add_argument("--workdir", required=True)
    args, rest = ap.parse_known_args(argv)
    bad = [r for r in rest if not r.startswith("--config.")]
    if bad:
        ap.error(f"unrecognized arguments: {' '.join(bad)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        cfg = config_lib.load(args.config, rest)
        result = train(cfg, args.workdir)
    except EntityNetError as e:
        print(f"entitynet: error: {e}", file=sys.stderr)
        return 2
    print(summary(result, args.workdir))
    return 0


def summary(result: dict, workdir) -> str:
    h = result["history"]
    steps = sorted(h)
    curve = ", ".join(f"{s}: {h[s]['loss']:.3f}" for s in steps[:: max(1, len(steps) // 8)] if "loss" in h[s])
    val = f", validation loss {result['val_loss']:.3f}" if "val_loss" in result else ""
    trained = result.get("trained_params", result["params"])
    locked = f", {trained:,} of them trained" if trained != result["params"] else ""
    if not h:  # resumed at its last step: nothing ran, no loss to report
        return (
            f"already trained to step {result['last_step']} ({result['params']:,} parameters{locked}); "
            f"nothing to do (raise --config.total_steps to train on)\nworkdir: {workdir} (checkpoints/, "
            "metrics.jsonl, tensorboard/)"
        )
    return (
        f"trained to step {result['last_step']} ({result['params']:,} parameters{locked}): "
        f"loss {result.get('loss', float('nan')):.4f}{val}, "
        f"{result.get('images_per_s', 0):.0f} images/s\nloss curve (step: loss): {curve}\n"
        f"workdir: {workdir} (checkpoints/, metrics.jsonl, tensorboard/)"
    )


if __name__ == "__main__":
    sys.exit(main())
