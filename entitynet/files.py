"""Atomic local file output: write to a temp name beside the target, then rename.

A reader never sees a half-written file, and a re-run replaces instead of duplicating.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from entitynet.errors import ConfigError, OutputError


def temp_name(path: str | os.PathLike) -> str:
    return f"{os.fspath(path)}.tmp-{os.getpid()}-{time.time_ns()}"


def ensure_writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` if needed and check that files can be created in it."""
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


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_lines(path: str | os.PathLike, lines: Iterable[str]) -> int:
    n = 0
    with atomic_open(path) as f:
        for line in lines:
            f.write(line)
            f.write("\n")
            n += 1
    return n


class LocalStore:
    """Whole-file reads and atomic writes on the local disk. Pipelines pass another store with the
    same three methods (Beam's FileSystems: gs://, s3://, …) where outputs may be remote."""

    def join(self, directory: str, name: str) -> str:
        return os.path.join(directory, name)

    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist or cannot be read."""
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError:
            return None

    def write(self, path: str, data: bytes) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with atomic_open(path, "wb") as f:
            f.write(data)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def delete(self, path: str) -> None:
        os.remove(path)

    def match(self, pattern: str) -> list[str]:
        """The files a path or glob names, sorted."""
        _local_only(pattern)
        return sorted(p for p in glob.glob(pattern) if os.path.isfile(p))

    def open(self, path: str):
        """The file opened for binary reading."""
        _local_only(path)
        return open(path, "rb")

    def stat(self, path: str) -> tuple[int, float]:
        """(size in bytes, modification time) of a file; OSError when there is none."""
        _local_only(path)
        st = os.stat(path)
        return st.st_size, st.st_mtime


def _local_only(path: str) -> None:
    if "://" in path:
        raise ConfigError(
            f"{path}: a remote path is read through the pipelines' filesystems (Beam), not the local disk; "
            "pass it to a pipeline command, or copy it locally"
        )


LOCAL = LocalStore()
