"""An in-memory Beam filesystem for the `memtest://` scheme: an object store like GCS (no directories,
an object appears only when its writer closes), so the remote-output code paths run without a cloud.

Beam finds FileSystem subclasses by their scheme once this module is imported. With the DirectRunner
in one process the pipeline and the test share `OBJECTS`."""

from __future__ import annotations

import fnmatch
import io
import threading
import time

from apache_beam.io.filesystem import BeamIOError, CompressionTypes, FileMetadata, FileSystem

SCHEME = "memtest"
OBJECTS: dict[str, bytes] = {}
_LOCK = threading.Lock()


def clear() -> None:
    with _LOCK:
        OBJECTS.clear()


def listing(prefix: str) -> dict[str, bytes]:
    """Objects under `prefix`, keyed by their path relative to it."""
    prefix = prefix.rstrip("/") + "/"
    with _LOCK:
        return {k[len(prefix) :]: v for k, v in OBJECTS.items() if k.startswith(prefix)}


class _Writer(io.BytesIO):
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def close(self):
        if not self.closed:
            with _LOCK:
                OBJECTS[self.path] = self.getvalue()
        super().close()


class MemoryFileSystem(FileSystem):
    @classmethod
    def scheme(cls):
        return SCHEME

    def join(self, basepath, *paths):
        out = basepath.rstrip("/")
        for p in paths:
            out += "/" + p.strip("/")
        return out

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass

    def has_dirs(self):
        return False

    def _list(self, dir_or_prefix):
        with _LOCK:
            items = [(k, len(v)) for k, v in OBJECTS.items() if k.startswith(dir_or_prefix)]
        for k, n in items:
            yield FileMetadata(k, n, time.time())

    def match(self, patterns, limits=None):
        from apache_beam.io.filesystem import MatchResult

        out = []
        for pattern in patterns:
            with _LOCK:
                hits = [
                    FileMetadata(k, len(v), time.time())
                    for k, v in OBJECTS.items()
                    if fnmatch.fnmatch(k, pattern)
                ]
            out.append(MatchResult(pattern, sorted(hits, key=lambda m: m.path)))
        return out

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        self._plain(path, compression_type)
        return _Writer(path)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        self._plain(path, compression_type)
        with _LOCK:
            if path not in OBJECTS:
                raise BeamIOError("open failed", {path: FileNotFoundError(path)})
            return io.BytesIO(OBJECTS[path])

    @staticmethod
    def _plain(path, compression_type):
        if CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED and (
            compression_type == CompressionTypes.AUTO
        ):
            raise NotImplementedError("memtest:// stores uncompressed objects only")

    def copy(self, source_file_names, destination_file_names):
        with _LOCK:
            for s, d in zip(source_file_names, destination_file_names, strict=True):
                OBJECTS[d] = OBJECTS[s]

    def rename(self, source_file_names, destination_file_names):
        with _LOCK:
            for s, d in zip(source_file_names, destination_file_names, strict=True):
                OBJECTS[d] = OBJECTS.pop(s)

    def exists(self, path):
        with _LOCK:
            return path in OBJECTS

    def size(self, path):
        with _LOCK:
            return len(OBJECTS[path])

    def last_updated(self, path):
        return time.time()

    def checksum(self, path):
        with _LOCK:
            return str(hash(OBJECTS[path]))

    def metadata(self, path):
        return FileMetadata(path, self.size(path), time.time())

    def delete(self, paths):
        with _LOCK:
            for p in paths:
                OBJECTS.pop(p, None)
