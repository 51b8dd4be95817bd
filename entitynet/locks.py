"""One run per output directory: an exclusive lock taken before a stage writes anything there.

Local directories get a lock file created with O_EXCL (`.entitynet.lock`: the holder's host, pid,
run id, stage, start time and command). A second run fails at once with one line naming the
holder; a lock whose process is gone (same host, pid no longer running) or that cannot be read is
stale and taken over. Object stores (gs://, s3://) have no O_EXCL through Beam's FileSystems, so
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
        """`store`: for a remote `out_dir` (gs://, any object store) the pipelines' store over Beam's
        filesystems (exists, read, write, delete, join), through which the lease is kept."""
        self.out_dir, self.stage = out_dir, stage
        self.remote = "://" in out_dir
        if self.remote and store is None:
            raise OutputError(
                f"{out_dir}: a remote output is written by the pipeline commands (harvest, curate), "
                "which reach object stores; give a local directory here"
            )
        self.store = store
        self.path = store.join(out_dir, LOCK_NAME) if self.remote else os.path.join(out_dir, LOCK_NAME)
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
