"""One run per output directory: an exclusive lock taken before a stage writes anything there.

Local directories get a lock file created with O_EXCL (`.entitynet.lock`: the holder's host, pid,
run id, stage, start time and command). A second run fails at once with one line naming the
holder; a lock whose process is gone (same host, pid no longer running) or that cannot be read is
stale and taken over. Object stores (gs://, s3://) have no O_EXCL, so
there the lock is a lease object: a run refuses an existing lease of another live run, writes its
own with its run id, and checks the lease still names it (`check()`) right before it renames its
results into place, so of two runs that raced past the first check only one finishes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
import uuid
from typing import Literal

from entitynet.errors import OutputError

LOCK_NAME = ".entitynet.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def _describe(holder: dict) -> str:
    started = holder.get("started")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
        if isinstance(started, (int, float))
        else "?"
    )
    return (
        f"{holder.get('stage', '?')} run {holder.get('run_id', '?')} (pid {holder.get('pid', '?')} on "
        f"{holder.get('host', '?')}, since {when})"
    )


class OutputLock:
    """`with OutputLock(out_dir, "harvest"):` — held for the run, released (removed) on exit."""

    def __init__(self, out_dir: str, stage: str, store=None):
        """`store`: the store through which a remote `out_dir`'s lease is kept (exists, read,
        write, delete, join); `entitynet.storage.STORE` unless given."""
        from entitynet.storage import STORE, is_remote

        self.out_dir, self.stage = out_dir, stage
        self.remote = is_remote(out_dir)
        self.store = store or STORE
        self.path = self.store.join(out_dir, LOCK_NAME)
        self.run_id = uuid.uuid4().hex[:12]
        self.taken_over: dict | None = None  # the stale holder this run replaced, if any
        self._held = False

    def _doc(self) -> bytes:
        return json.dumps(
            {
                "stage": self.stage,
                "run_id": self.run_id,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": time.time(),
                "command": " ".join(sys.argv)[:500],
            }
        ).encode()

    def _stale(self, holder: dict | None) -> bool:
        if holder is None:
            return True  # unreadable: a run killed while writing it
        if holder.get("host") != socket.gethostname():
            return False  # cannot see another machine's processes
        pid = holder.get("pid")
        return not (isinstance(pid, int) and _alive(pid))

    def _refuse(self, holder: dict) -> OutputError:
        return OutputError(
            f"{self.out_dir} is in use by {_describe(holder)}; wait for it, use another --out, or, if "
            f"that run is gone, remove {self.path}"
        )

    # ------------------------------------------------------------ local

    def _read_local(self) -> dict | None:
        try:
            with open(self.path, "rb") as f:
                doc = json.loads(f.read() or b"null")
        except FileNotFoundError:
            raise
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    def _acquire_local(self) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = self._read_local()
                except FileNotFoundError:
                    continue  # released meanwhile
                if not self._stale(holder):
                    assert holder is not None  # _stale() is True for an unreadable (None) holder
                    raise self._refuse(holder) from None
                self.taken_over = holder or {}
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)
                continue
            except OSError as e:
                raise OutputError(
                    f"cannot create {self.path}: {e.strerror}; choose a writable --out"
                ) from None
            with os.fdopen(fd, "wb") as f:
                f.write(self._doc())
            return
        raise OutputError(f"could not take the lock {self.path}; another run keeps taking it, try again")

    # ------------------------------------------------------------ remote (lease)

    def _read_remote(self) -> dict | None | Literal[False]:
        if not self.store.exists(self.path):
            return False
        try:
            doc = json.loads(self.store.read(self.path) or b"null")
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def _acquire_remote(self) -> None:
        holder = self._read_remote()
        if holder is not False:
            if not self._stale(holder):
                assert holder is not None  # _stale() is True for an unreadable (None) holder
                raise self._refuse(holder)
            self.taken_over = holder or {}
        self.store.write(self.path, self._doc())

    def check(self) -> None:
        """Before results are renamed into place: the lease (remote) or lock (local) still names this run."""
        if not self._held:
            return
        holder = self._read_remote() if self.remote else _quiet(self._read_local)
        if not isinstance(holder, dict) or holder.get("run_id") != self.run_id:
            raise OutputError(
                f"{self.out_dir}: this run lost its lock {self.path} to "
                f"{_describe(holder) if isinstance(holder, dict) else 'nobody'}; nothing of it was "
                "put in place, re-run when the other run is done"
            )

    # ------------------------------------------------------------ context

    def __enter__(self) -> OutputLock:
        (self._acquire_remote if self.remote else self._acquire_local)()
        self._held = True
        return self

    def __exit__(self, *exc) -> None:
        if not self._held:
            return
        self._held = False
        try:
            holder = self._read_remote() if self.remote else _quiet(self._read_local)
        except Exception:  # noqa: BLE001 - releasing must not hide the run's own error
            return
        if isinstance(holder, dict) and holder.get("run_id") == self.run_id:
            if self.remote:
                with contextlib.suppress(Exception):
                    self.store.delete(self.path)
            else:
                with contextlib.suppress(OSError):
                    os.remove(self.path)


def _quiet(read):
    try:
        return read()
    except FileNotFoundError:
        return False


# ---------------------------------------------------------------- whose output a directory is
#
# A stage writes only into a new or empty directory, or into an earlier output of the same stage
# (which it resumes or replaces): never into a directory of the user's own or another stage's,
# where it would mix its files with theirs or replace a README, a tokenizer or a dataset.

OUTPUT_MARKER = ".entitynet-output.json"  # written when a stage first takes a directory: {"stage": ...}
_OURS = {LOCK_NAME, OUTPUT_MARKER}


def output_refusal(
    out_dir: str, names: list[str], stage: str, marker: dict | None, earlier: tuple[str, ...] = ()
) -> str | None:
    """Why `stage` must not write into `out_dir`, or None when it may: `names` are the entries in
    it, `marker` its OUTPUT_MARKER's content (None: none or unreadable), `earlier` the files an
    earlier run of the stage leaves there (its config file: outputs made before the marker existed)."""
    others = sorted(n for n in names if n not in _OURS)
    if not others:
        return None
    if isinstance(marker, dict):
        if marker.get("stage") == stage:
            return None
        return (
            f"--out {out_dir} is the output of `entitynet {marker.get('stage', '?')}`, not of "
            f"`entitynet {stage}`; give a new or empty directory"
        )
    if any(n in others for n in earlier):
        return None
    shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
    return (
        f"--out {out_dir} is not empty and is not an earlier `entitynet {stage}` output (it holds {shown}); "
        "give a new or empty directory, so that nothing of yours is mixed with or replaced by this run"
    )


def claim_output(store, out_dir: str, names: list[str], stage: str, earlier: tuple[str, ...] = ()) -> bool:
    """Refuse (OutputError) `out_dir`, whose entries are `names`, when `output_refusal` does; else
    mark it as this stage's. `store`: the local disk (`entitynet.storage.STORE`) or the pipelines'
    store for a bucket. Returns whether it wrote the mark."""
    path = store.join(out_dir, OUTPUT_MARKER)
    try:
        marker = json.loads(store.read(path) or b"null")
    except ValueError:
        marker = None
    marker = marker if isinstance(marker, dict) else None
    why = output_refusal(out_dir, names, stage, marker, earlier)
    if why:
        raise OutputError(why)
    if marker is not None:
        return False
    store.write(path, json.dumps({"stage": stage}).encode())
    return True


def unclaim_output(store, out_dir: str, names: list[str]) -> None:
    """After a failed run that claimed `out_dir`: remove the mark when it is all the directory holds."""
    if names == [OUTPUT_MARKER]:
        store.delete(store.join(out_dir, OUTPUT_MARKER))


def claim_local_output(out_dir: str, stage: str, earlier: tuple[str, ...] = ()) -> bool:
    """`claim_output` for a local directory (one that does not exist yet is left to the caller to
    create: nothing to refuse, nothing marked)."""
    from entitynet.storage import STORE

    if not os.path.isdir(out_dir):
        return False  # not there yet (or not a directory: the caller's creating it says so)
    try:
        names = os.listdir(out_dir)
    except OSError as e:
        raise OutputError(f"cannot read --out {out_dir}: {e.strerror}") from None
    return claim_output(STORE, out_dir, names, stage, earlier)


@contextlib.contextmanager
def claimed_output(out_dir: str, stage: str, earlier: tuple[str, ...] = ()):
    """An output directory (local or a bucket) for a stage that writes without a pipeline
    (`entitynet queries`): created if needed, refused or claimed (`claim_output`); if the body
    fails, a directory this made, or marked, goes back to how it was when it holds nothing else."""
    from entitynet.files import ensure_writable_dir
    from entitynet.storage import STORE, is_remote

    if is_remote(out_dir):
        marked = claim_output(STORE, out_dir, STORE.list_names(out_dir), stage, earlier)
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):
                if marked:
                    unclaim_output(STORE, out_dir, STORE.list_names(out_dir))
            raise
        return
    created = not os.path.exists(out_dir)
    ensure_writable_dir(out_dir)
    marked = False
    try:
        marked = claim_local_output(out_dir, stage, earlier)
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            if marked:
                from entitynet.storage import STORE

                unclaim_output(STORE, out_dir, os.listdir(out_dir))
            if created:
                os.rmdir(out_dir)  # only when empty
        raise
