"""One storage layer for every path of every stage: local paths, `gs://`, `s3://` (and any other
protocol fsspec knows), for the CLI, the Beam workers and the trainer alike.

Why fsspec (gcsfs, s3fs) and not Beam's FileSystems: the library and the trainer may not import
Beam (DESIGN.md), and what they sit on already speaks fsspec — etils.epath (Orbax, TFDS), pyarrow,
Hugging Face datasets; Beam's workers run fsspec as well as any other code. So the pipelines use
this layer too, and a path means the same thing in every stage.

What differs between a disk and an object store is decided here once (`is_remote`):
- a local write goes to a temp name beside the target and is renamed; an object store has no
  rename (S3 copies, then deletes), but an upload (a PUT, or a multipart upload when completed)
  appears whole or not at all, so an object is written once under its final name;
- listings are not cached (another worker's write must be seen; readers take a dataset's files
  from its metadata anyway, never from a listing);
- readers that need a local file (ArrayRecord) read a checked local copy (`local_copy`).

A missing file reads as None (`read`) or False (`exists`); a file that cannot be read for another
reason (access denied, a store that keeps failing after the client's retries) is a StorageError
with one line naming the path and what to check; a write that fails is an OutputError.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import shutil
from collections.abc import Iterator
from typing import IO, Any

from entitynet.errors import ConfigError, OutputError, StorageError
from entitynet.files import atomic_open

_PACKAGES = {"gs": "gcsfs", "gcs": "gcsfs", "s3": "s3fs", "s3a": "s3fs"}
CACHE_ENV = "ENTITYNET_CACHE"  # where local copies of bucket files go (default ~/.cache/entitynet)


def is_remote(path: str | os.PathLike) -> bool:
    """Whether a path names a store other than the local disk (`gs://…`, `s3://…`)."""
    p = os.fspath(path)
    return "://" in p and not p.startswith("file://")


def protocol(path: str) -> str:
    return path.split("://", 1)[0].lower() if is_remote(path) else "file"


def filesystem(path: str):
    """The fsspec filesystem of a remote path; a ConfigError naming the package it needs."""
    import fsspec

    proto = protocol(path)
    try:
        return fsspec.filesystem(proto, use_listings_cache=False, skip_instance_cache=False)
    except (ImportError, ValueError) as e:
        package = _PACKAGES.get(proto)
        hint = f"install {package} (pip install {package})" if package else "use a local path, gs:// or s3://"
        raise ConfigError(f"{path}: no filesystem for {proto}:// ({e}); {hint}") from None


def _why(e: BaseException) -> str:
    if isinstance(e, PermissionError):
        return (
            "access denied; check the credentials (AWS_* variables, gcloud auth) and the bucket's permissions"
        )
    text = " ".join(str(e).split())[:200] or type(e).__name__
    return f"{text}; check the path and the store, then re-run"


def _missing(e: BaseException) -> bool:
    return isinstance(e, (FileNotFoundError, IsADirectoryError, NotADirectoryError))


_RAISE = object()


def _call(path: str, doing: str, call, *args, missing: Any = _RAISE, error: type = StorageError):
    """`call(*args)` on a remote store, its errors as ours: a missing file is FileNotFoundError
    (or `missing` when given), anything else one line, `error`, saying what failed and on which path."""
    try:
        return call(*args)
    except Exception as e:  # noqa: BLE001 - each store raises its own errors
        if _missing(e):
            if missing is _RAISE:
                raise FileNotFoundError(path) from None
            return missing
        raise error(f"cannot {doing} {path}: {_why(e)}") from None


class Store:
    """Whole-file reads, whole-file writes, listings and streams over any path (see the module)."""

    def join(self, directory: str | os.PathLike, name: str) -> str:
        d = os.fspath(directory)
        if not is_remote(d):
            return os.path.join(d, name)
        return d.rstrip("/") + "/" + name.lstrip("/")

    def beside(self, path: str | os.PathLike, name: str) -> str:
        """The file `name` in the directory of `path`."""
        p = os.fspath(path)
        if not is_remote(p):
            return os.path.join(os.path.dirname(p), name)
        return p.rstrip("/").rsplit("/", 1)[0] + "/" + name

    # ------------------------------------------------------------------ reads

    def read(self, path: str | os.PathLike) -> bytes | None:
        """The file's bytes, or None when it does not exist (StorageError when it cannot be read)."""
        p = os.fspath(path)
        if not is_remote(p):
            try:
                with open(p, "rb") as f:
                    return f.read()
            except OSError:
                return None
        return _call(p, "read", filesystem(p).cat_file, p, missing=None)

    def open(self, path: str | os.PathLike) -> IO[bytes]:
        """The file opened for binary reading (FileNotFoundError when there is none)."""
        p = os.fspath(path)
        if not is_remote(p):
            return open(p, "rb")
        return _call(p, "read", filesystem(p).open, p, "rb")

    def exists(self, path: str | os.PathLike) -> bool:
        p = os.fspath(path)
        if not is_remote(p):
            return os.path.exists(p)
        return _call(p, "look up", filesystem(p).exists, p, missing=False)

    def isfile(self, path: str | os.PathLike) -> bool:
        p = os.fspath(path)
        if not is_remote(p):
            return os.path.isfile(p)
        return _call(p, "look up", filesystem(p).isfile, p, missing=False)

    def isdir(self, path: str | os.PathLike) -> bool:
        """A local directory, or a remote prefix holding at least one object."""
        p = os.fspath(path)
        if not is_remote(p):
            return os.path.isdir(p)
        return _call(p, "look up", filesystem(p).isdir, p, missing=False)

    def stat(self, path: str | os.PathLike) -> tuple[int, float]:
        """(size in bytes, modification time) of a file; FileNotFoundError when there is none."""
        p = os.fspath(path)
        if not is_remote(p):
            st = os.stat(p)
            return st.st_size, st.st_mtime
        info = _call(p, "look up", filesystem(p).info, p)
        modified = info.get("LastModified") or info.get("mtime") or info.get("updated") or 0
        if hasattr(modified, "timestamp"):
            modified = modified.timestamp()
        elif isinstance(modified, str):
            from datetime import datetime

            with contextlib.suppress(ValueError):
                modified = datetime.fromisoformat(modified.replace("Z", "+00:00")).timestamp()
        return int(info.get("size") or 0), float(modified or 0)

    def match(self, pattern: str | os.PathLike) -> list[str]:
        """The files a path or glob names, sorted; a ConfigError when the store cannot list it."""
        p = os.fspath(pattern)
        if not is_remote(p):
            return sorted(f for f in glob.glob(p) if os.path.isfile(f))
        fs = filesystem(p)
        try:
            found = fs.glob(p) if glob.has_magic(p) else ([p] if fs.isfile(p) else [])
        except Exception as e:  # noqa: BLE001
            raise ConfigError(f"{p}: {_why(e)}") from None
        proto = protocol(p)
        return sorted(f if "://" in f else f"{proto}://{f}" for f in found)

    def list_names(self, directory: str | os.PathLike, recursive: bool = False) -> list[str]:
        """The names of the files in a directory (relative, '/'-separated; with `recursive`, in
        its subdirectories too), sorted; [] when there is none."""
        d = os.fspath(directory)
        if not is_remote(d):
            if not os.path.isdir(d):
                return []
            if not recursive:
                return sorted(e.name for e in os.scandir(d) if e.is_file())
            out = []
            for root, _, files in os.walk(d):
                out += [os.path.relpath(os.path.join(root, f), d).replace(os.sep, "/") for f in files]
            return sorted(out)
        fs = filesystem(d)
        prefix = fs._strip_protocol(d).rstrip("/") + "/"
        try:
            if recursive:
                found = fs.find(prefix)
            else:  # one listing with details: no lookup per name
                found = [e["name"] for e in fs.ls(prefix, detail=True) if e.get("type") == "file"]
        except FileNotFoundError:
            return []
        except Exception as e:  # noqa: BLE001
            raise StorageError(f"cannot list {d}: {_why(e)}") from None
        names = [f[len(prefix) :] for f in found if f.startswith(prefix)]
        return sorted(n for n in names if n and not n.endswith("/"))

    # ------------------------------------------------------------------ writes

    def write(self, path: str | os.PathLike, data: bytes) -> None:
        """The whole file at once: atomically (a reader sees the old file or the new one)."""
        p = os.fspath(path)
        if not is_remote(p):
            os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
            with atomic_open(p, "wb") as f:
                f.write(data)
            return
        _call(p, "write", filesystem(p).pipe_file, p, data, error=OutputError)

    def write_from(self, source: IO[bytes], path: str | os.PathLike) -> None:
        """Stream `source` into `path`, atomically as `write` is (multipart upload for big files)."""
        with self.open_write(path) as f:
            shutil.copyfileobj(source, f, 8 << 20)

    @contextlib.contextmanager
    def open_write(self, path: str | os.PathLike, text: bool = False) -> Iterator[IO[Any]]:
        """A file to stream into, put in place whole when the block ends without error (on disk a
        temp file renamed; on an object store an upload completed only then)."""
        p = os.fspath(path)
        if not is_remote(p):
            os.makedirs(os.path.dirname(p) or ".", exist_ok=True)
            with atomic_open(p, "w" if text else "wb") as f:
                yield f
            return
        raw = _call(p, "write", filesystem(p).open, p, "wb", error=OutputError)
        failed = False
        try:
            if text:
                import io

                wrapper = io.TextIOWrapper(raw, encoding="utf-8", newline="")
                yield wrapper
                wrapper.flush()
                wrapper.detach()
            else:
                yield raw
        except BaseException:
            failed = True
            with contextlib.suppress(Exception):
                raw.discard()  # an unfinished upload is abandoned, nothing appears
            raise
        finally:
            if not failed:
                try:
                    raw.close()
                except Exception as e:  # noqa: BLE001
                    raise OutputError(f"cannot write {p}: {_why(e)}") from None

    def upload(self, local: str | os.PathLike, path: str | os.PathLike) -> None:
        """A local file copied to `path` (any store)."""
        with open(local, "rb") as f:
            self.write_from(f, path)

    def download(self, path: str | os.PathLike, local: str | os.PathLike) -> None:
        """`path` (any store) copied to the local file `local`, atomically."""
        with self.open(path) as src:
            os.makedirs(os.path.dirname(os.fspath(local)) or ".", exist_ok=True)
            with atomic_open(local, "wb") as f:
                shutil.copyfileobj(src, f, 8 << 20)

    def upload_tree(self, local_dir: str | os.PathLike, directory: str) -> int:
        """Every file under `local_dir` to the same relative path under `directory`."""
        n = 0
        for rel in self.list_names(local_dir, recursive=True):
            self.upload(os.path.join(local_dir, rel), self.join(directory, rel))
            n += 1
        return n

    def rename(self, source: str | os.PathLike, path: str | os.PathLike) -> None:
        """`source` moved to `path` (replacing it): a rename on disk; on an object store a copy made
        by the store itself (the new object appears whole), then the source deleted."""
        src, p = os.fspath(source), os.fspath(path)
        if not is_remote(p):
            os.replace(src, p)
            return
        _call(src, "copy", filesystem(p).copy, src, p, error=OutputError)
        self.delete(src)

    def delete(self, path: str | os.PathLike) -> None:
        p = os.fspath(path)
        if not is_remote(p):
            os.remove(p)
            return
        _call(p, "delete", filesystem(p).rm_file, p, error=OutputError)

    def delete_tree(self, directory: str | os.PathLike) -> None:
        """A directory and everything under it (nothing when there is none)."""
        d = os.fspath(directory)
        if not is_remote(d):
            shutil.rmtree(d, ignore_errors=True)
            return
        for rel in self.list_names(d, recursive=True):
            with contextlib.suppress(FileNotFoundError):
                self.delete(self.join(d, rel))


STORE = Store()


def cache_root() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "entitynet")


def local_copy(path: str | os.PathLike, key: str = "", cache_dir: str | None = None) -> str:
    """A local file with `path`'s content: the path itself when local; for a remote file, a copy
    under the cache (`ENTITYNET_CACHE`, default ~/.cache/entitynet), made once and used again while
    its size equals the stored object's. `key` (say, the dataset's fingerprint) keeps copies of
    different data apart."""
    p = os.fspath(path)
    if not is_remote(p):
        return p
    size, _ = STORE.stat(p)
    digest = hashlib.sha256(f"{key}\x1f{p.rsplit('/', 1)[0]}".encode()).hexdigest()[:20]
    local = os.path.join(cache_dir or cache_root(), "copies", digest, p.rsplit("/", 1)[-1])
    with contextlib.suppress(OSError):
        if os.path.getsize(local) == size:
            return local
    STORE.download(p, local)
    got = os.path.getsize(local)
    if got != size:
        os.remove(local)
        raise StorageError(f"copy of {p} holds {got} bytes, the store says {size}; re-run to fetch it again")
    return local


@contextlib.contextmanager
def local_file(path: str | os.PathLike) -> Iterator[str]:
    """A local path to read `path` from, for a reader that needs a file: the path itself when
    local; for a remote file a temporary copy, removed on exit (a worker holds one at a time)."""
    p = os.fspath(path)
    if not is_remote(p):
        yield p
        return
    import tempfile

    tmp_dir = tempfile.mkdtemp(prefix="entitynet-copy-")
    try:
        local = os.path.join(tmp_dir, p.rsplit("/", 1)[-1])
        STORE.download(p, local)
        yield local
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


@contextlib.contextmanager
def staged_dir(directory: str | os.PathLike, prefix: str = "entitynet-") -> Iterator[str]:
    """A local directory to write into: `directory` itself when local; for a remote one a temp
    directory whose files are uploaded under `directory` when the block ends without error."""
    d = os.fspath(directory)
    if not is_remote(d):
        os.makedirs(d, exist_ok=True)
        yield d
        return
    import tempfile

    tmp_dir = tempfile.mkdtemp(prefix=prefix)
    try:
        yield tmp_dir
        STORE.upload_tree(tmp_dir, d)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


__all__ = ["STORE", "Store", "is_remote", "local_copy", "local_file", "staged_dir"]
