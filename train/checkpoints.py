"""Reading and writing a workdir's Orbax checkpoints when the disk misbehaves.

- `newest_intact`: the newest step that can be restored, trying older ones when the latest is
  damaged (truncated or garbled files, a missing `state/` folder, an empty step directory: a
  killed copy, a full disk at finalisation, a bad sync); each damaged step is named in a warning.
  Training moves a damaged step aside (`checkpoints/damaged-<step>-<time>`, kept for inspection,
  never deleted) so that it does not stop the same step being saved again; eval and export only
  read, and move nothing.
- `save_failure`: an error from a checkpoint save as the user's: no space left on the device (or
  over quota), or another OS error, named with the step and the directory; `remove_failed_saves`
  then removes the failed save's temporary directory, so the space it took is free again.
- `quiet_orbax`: Orbax's own logged tracebacks of such failures kept off the terminal (the error
  itself is reported, in one line).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from entitynet.errors import ConfigError, EntityNetError, OutputError

NO_SPACE = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
# TensorStore (which writes the arrays, in C++) reports an OS error inside the text of a ValueError
_TS_OS_ERROR = re.compile(r"os_error_code='?(\d+)")
DAMAGED_PREFIX = "damaged-"


class DamagedCheckpoint(ConfigError):
    """No checkpoint of a workdir can be read."""


class CheckpointWriteError(OutputError):
    """A checkpoint could not be written: a full disk, a quota, permissions."""


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__  # type: ignore[assignment]


def os_error_code(e: BaseException) -> int | None:
    """The OS error number behind `e` (an OSError in its chain, or one TensorStore names), if any."""
    for x in _chain(e):
        if isinstance(x, OSError) and x.errno:
            return x.errno
        m = _TS_OS_ERROR.search(str(x))
        if m:
            return int(m.group(1))
        if "No space left on device" in str(x):
            return errno.ENOSPC
    return None


def is_no_space(e: BaseException) -> bool:
    return os_error_code(e) in NO_SPACE


def _resumes(last: int | None) -> str:
    if last is None:
        return "then run the same command again"
    return f"then run the same command again: it resumes from step {last}, the last checkpoint saved (intact)"


def no_space_error(
    what: str, directory: Path | str, e: BaseException, last: int | None = None
) -> CheckpointWriteError:
    """The one-line error for a full disk (or quota) while writing `what` in `directory`; `last`:
    the newest checkpoint saved before it."""
    reason = NO_SPACE.get(os_error_code(e) or errno.ENOSPC, "no space left on device")
    return CheckpointWriteError(
        f"{reason} while {what} in {directory}; free space there (or raise the quota), or give a "
        f"--workdir on a disk with room, {_resumes(last)}"
    )


def save_failure(e: BaseException, step: int, checkpoints: Path, last: int | None) -> BaseException:
    """The error to raise for the failed save of `step` in `checkpoints`: a user error for a full
    disk or another OS error, `e` itself for anything else (a bug). `last`: the newest checkpoint
    saved before it."""
    code = os_error_code(e)
    if code is None:
        return e
    if code in NO_SPACE:
        return no_space_error(f"saving checkpoint step {step}", checkpoints, e, last)
    return CheckpointWriteError(
        f"cannot save checkpoint step {step} in {checkpoints}: {os.strerror(code)}; make the directory "
        f"writable, or give another --workdir, {_resumes(last)}"
    )


def _from_orbax(unraisable: Any) -> bool:
    """An unraisable exception left by Orbax's asyncio machinery after a failed read or write: a
    callback into the event loop Orbax already closed, or one of its coroutines (reading the other
    arrays) finalised with the error it was cancelled by."""
    e, obj = unraisable.exc_value, unraisable.object
    if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
        return True
    code = getattr(obj, "cr_code", None)
    return code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename


def _without_orbax_leftovers(previous: Callable[[Any], None]) -> Callable[[Any], None]:
    def hook(unraisable: Any) -> None:
        if _from_orbax(unraisable):
            return
        previous(unraisable)

    hook.entitynet_quiet = True  # type: ignore[attr-defined]
    return hook


def remove_failed_saves(checkpoints: Path, timeout: float = 120.0) -> None:
    """Remove the temporary directories of failed saves in `checkpoints`, after waiting for Orbax's
    background threads: when one item of a save fails, the others go on writing after the error
    was raised, and would make the directory again. Only for the process holding the workdir."""
    import threading

    for t in threading.enumerate():
        if t is not threading.current_thread() and type(t).__module__.startswith("orbax."):
            t.join(timeout)
    for tmp in checkpoints.glob("*.orbax-checkpoint-tmp*"):
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def quiet_orbax() -> Iterator[None]:
    """Orbax and its asyncio tasks log a traceback for every failed read or write of a background
    thread, besides raising the error; the error is what we report (in one line), so the logs go.
    After a failed save, TensorStore's writes still in flight complete into the event loop Orbax
    already closed, and each prints "Event loop is closed" as an unraisable exception, possibly
    after this block; after a failed read, Orbax's other read coroutines print the error again as
    they are finalised. Those two are dropped for good (any other unraisable exception reaches the
    hook as before)."""
    if not getattr(sys.unraisablehook, "entitynet_quiet", False):
        sys.unraisablehook = _without_orbax_leftovers(sys.unraisablehook)
    import gc
    import warnings

    loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
    levels = [x.level for x in loggers]
    for x in loggers:
        x.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            # the read coroutines a failed restore abandoned, as they are collected
            warnings.filterwarnings("ignore", r"coroutine .* was never awaited", RuntimeWarning)
            try:
                yield
            finally:
                gc.collect()  # "Task exception was never retrieved" is logged as failed tasks are collected
    finally:
        for x, level in zip(loggers, levels, strict=True):
            x.setLevel(level)


def short_reason(e: BaseException) -> str:
    """A damaged step's reason, short enough for one line."""
    if isinstance(e, KeyError) and "was not found in the checkpoint" in str(e):
        found = re.search(r'Item "(\w+)" was not found', str(e))
        return f"its {found.group(1)}/ folder is missing" if found else "an item is missing"
    text = " ".join(str(e).split())
    text = text.split(". See full TensorStore details")[0]
    text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def precheck(step_dir: Path, items: tuple[str, ...]) -> str | None:
    """Damage a look at the step directory shows (no need to read its files), or None."""
    if not step_dir.is_dir():
        return "it is not a directory"
    if not any(step_dir.iterdir()):
        return "its directory is empty"
    missing = [i for i in items if not (step_dir / i).is_dir()]
    if missing:
        return f"its {', '.join(m + '/' for m in missing)} folder{'s are' if len(missing) > 1 else ' is'} missing"
    return None


def newest_intact(
    checkpoints: Path, steps: list[int], load: Callable[[int], Any], items: tuple[str, ...] = ("state",)
) -> tuple[Any, int | None, list[tuple[int, str]]]:
    """(what `load(step)` returned, that step, [(damaged step, reason)]) for the newest step that
    loads, trying `steps` newest first; (None, None, []) when there are none. A step whose load
    raises is damaged, except for a user error (EntityNetError: another model, other data), which
    is raised as it is. No step loading: DamagedCheckpoint naming each."""
    damaged: list[tuple[int, str]] = []
    for step in sorted(steps, reverse=True):
        reason = precheck(checkpoints / str(step), items)
        if reason is None:
            try:
                with quiet_orbax():
                    return load(step), step, damaged
            except EntityNetError:
                raise
            except Exception as e:  # noqa: BLE001 - any failure to read a step's files is damage
                reason = short_reason(e)
        damaged.append((step, reason))
    if damaged:
        listed = "; ".join(f"step {s}: {r}" for s, r in damaged)
        raise DamagedCheckpoint(
            f"no intact checkpoint in {checkpoints} ({listed}); move that checkpoints folder aside to "
            "start the run again from step 0, or give another --workdir"
        )
    return None, None, []


def move_aside(checkpoints: Path, step: int) -> Path:
    """Rename a damaged step directory to `damaged-<step>-<UTC time>` beside it (Orbax lists only
    numbered directories, so it is no step any more, and that step can be saved again)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = checkpoints / f"{DAMAGED_PREFIX}{step}-{stamp}"
    n = 1
    while target.exists():
        n += 1
        target = checkpoints / f"{DAMAGED_PREFIX}{step}-{stamp}-{n}"
    (checkpoints / str(step)).rename(target)
    return target


def warn(line: str) -> None:
    print(f"entitynet: warning: {line}", file=sys.stderr, flush=True)
