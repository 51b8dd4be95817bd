"""Atomic local file output: write to a temp name beside the target, then rename.

A reader never sees a half-written file, and a re-run replaces instead of duplicating.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from entitynet.errors import OutputError


def temp_name(path: str | os.PathLike) -> str:
    return f"{os.fspath(path)}.tmp-{os.getpid()}-{time.time_ns()}"


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` if needed and check that files can be created in it (a local directory: a
    bucket path here is a bug of the caller, which must write through `entitynet.storage`)."""
    if _remote(path):
        raise OutputError(f"{path}: this output must be a local directory here; give a local path")
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output directory {p}: {e.strerror}; choose a writable --out") from e
    if not os.access(p, os.W_OK | os.X_OK):
        raise OutputError(f"output directory {p} is not writable; choose a writable --out")
    return p


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file next to `path`; on success it is renamed to `path`, on error removed."""
    final = os.fspath(path)
    tmp = temp_name(final)
    try:
        f = open(tmp, mode, encoding=None if "b" in mode else "utf-8")
    except OSError as e:
        raise OutputError(f"cannot write {final}: {e.strerror}; choose a writable --out") from e
    try:
        with f:
            yield f
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _remote(path: str | os.PathLike) -> bool:
    from entitynet.storage import is_remote

    return is_remote(path)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """`obj` as indented JSON, atomically; `path` local or in a bucket (`entitynet.storage`)."""
    if _remote(path):
        from entitynet.storage import STORE

        text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        STORE.write(path, text.encode("utf-8"))
        return
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    if _remote(path):
        from entitynet.storage import STORE

        STORE.write(path, data)
        return
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> int:
    """One line per string, atomically; `path` local or in a bucket. Returns the count."""
    from entitynet.storage import STORE

    n = 0
    with STORE.open_write(path, text=True) as f:
        for line in lines:
            f.write(line)
            f.write("\n")
            n += 1
    return n
