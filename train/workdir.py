"""A training workdir in a bucket (gs://, s3://): the run trains in a local copy of it and the copy
is pushed back after every checkpoint and at the end.

Orbax writes its arrays through TensorStore, whose object-store drivers take their endpoint and
credentials from their own settings rather than from the ones every other reader here uses
(`entitynet.storage`: fsspec); and an object store has no rename, which is how a checkpoint is
committed on a disk. So a bucket workdir is mirrored:

- `pull`: the workdir's files are copied down into the local cache (ENTITYNET_CACHE, default
  ~/.cache/entitynet/workdirs/<digest of the URL>), fresh each time: the bucket is the truth. A
  checkpoint step whose upload did not finish (no top-level `commit_success.txt`, which is
  uploaded last) is not copied, so a run killed mid-push resumes from the step before.
- `push`: what changed since the last push goes up — a finished checkpoint step with its marker
  last, metrics.jsonl, TensorBoard events, eval results — and the steps Orbax removed locally
  (max_to_keep) are removed from the bucket. Only files this mirror pushed or pulled are ever
  deleted there.

One process per run: a multi-host run needs a workdir every host shares, a mount of the bucket
(gcsfuse on TPU VMs; docs/run-at-scale.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil

from entitynet.storage import STORE, cache_root, is_remote

COMMIT = "commit_success.txt"  # Orbax's marker of a finished step (in the step directory)
CHECKPOINTS = "checkpoints"
SKIPPED = {".entitynet.lock"}  # the local copy's own lock: the bucket has its own lease


def local_dir(remote: str) -> str:
    """Where a training run keeps its local copy of a bucket workdir."""
    digest = hashlib.sha256(remote.rstrip("/").encode()).hexdigest()[:16]
    return os.path.join(cache_root(), "workdirs", digest)


def reader_copy(remote: str) -> Mirror:
    """A mirror of a bucket workdir for a reader (eval, export, explore) in a temporary directory
    of its own, apart from a training run's copy on the same machine; remove it with `drop()`."""
    import tempfile

    return Mirror(remote, tempfile.mkdtemp(prefix="entitynet-workdir-"))


def _step_of(rel: str) -> str | None:
    """'7' for 'checkpoints/7/state/…'; None for files outside a numbered step directory."""
    parts = rel.split("/")
    if len(parts) >= 3 and parts[0] == CHECKPOINTS and parts[1].isdigit():
        return parts[1]
    return None


class Mirror:
    def __init__(self, remote: str, local: str | None = None):
        if not is_remote(remote):
            raise ValueError(f"{remote} is not a bucket path")
        self.remote = remote.rstrip("/")
        self.local = local or local_dir(self.remote)
        self._pushed: dict[str, tuple[int, int]] = {}  # rel -> (size, mtime_ns) as last in the bucket

    def drop(self) -> None:
        """Remove the local copy."""
        shutil.rmtree(self.local, ignore_errors=True)

    def pull(self, only: tuple[str, ...] = ()) -> str:
        """A fresh local copy of the bucket workdir (complete checkpoint steps only; with `only`,
        just the files under those prefixes, e.g. ("eval/",)); its path."""
        shutil.rmtree(self.local, ignore_errors=True)
        os.makedirs(self.local)
        names = STORE.list_names(self.remote, recursive=True)
        complete = {_step_of(n) for n in names if n.endswith(f"/{COMMIT}") and n.count("/") == 2}
        for rel in names:
            if only and not rel.startswith(only):
                continue
            step = _step_of(rel)
            if rel in SKIPPED or rel.split("/")[-1] in SKIPPED or (step is not None and step not in complete):
                continue
            if rel.startswith(CHECKPOINTS + "/") and step is None:
                continue  # Orbax's temporary directories of a save in flight
            dest = os.path.join(self.local, rel)
            STORE.download(STORE.join(self.remote, rel), dest)
            st = os.stat(dest)
            self._pushed[rel] = (st.st_size, st.st_mtime_ns)
        return self.local

    def push(self) -> int:
        """Upload what changed locally; returns the number of files uploaded."""
        current: dict[str, tuple[int, int]] = {}
        for rel in STORE.list_names(self.local, recursive=True):
            if rel in SKIPPED or rel.split("/")[-1] in SKIPPED:
                continue
            step = _step_of(rel)
            if rel.startswith(CHECKPOINTS + "/") and step is None:
                continue  # a save in flight (Orbax's tmp directory), a damaged step moved aside
            st = os.stat(os.path.join(self.local, rel))
            current[rel] = (st.st_size, st.st_mtime_ns)
        finished = {_step_of(r) for r in current if r.endswith(f"/{COMMIT}") and r.count("/") == 2}
        todo = [
            r
            for r, sig in current.items()
            if self._pushed.get(r) != sig and (_step_of(r) is None or _step_of(r) in finished)
        ]
        # a step's marker goes last: a bucket step without one is an unfinished upload
        todo.sort(key=lambda r: (r.endswith(f"/{COMMIT}") and r.count("/") == 2, r))
        for rel in todo:
            STORE.upload(os.path.join(self.local, rel), STORE.join(self.remote, rel))
            self._pushed[rel] = current[rel]
        # steps Orbax pruned locally: their marker first, so a half-deleted step reads as unfinished
        gone = [r for r in self._pushed if r not in current and _step_of(r) is not None]
        gone.sort(key=lambda r: (not (r.endswith(f"/{COMMIT}") and r.count("/") == 2), r))
        for rel in gone:
            try:
                STORE.delete(STORE.join(self.remote, rel))
            except FileNotFoundError:
                pass
            del self._pushed[rel]
        return len(todo)
