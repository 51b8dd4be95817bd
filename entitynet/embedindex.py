"""A search index of an `entitynet embed` output's image embeddings: what `entitynet query` searches
when it is there, and what gives the explorer each image's nearest neighbours.

    EMB/index/index.json     what it was built from (written last: no index.json, no index): its
                             version, kind, records, dimension, the model digest of
                             embed_config.json and every embeddings file's stamp (path, size,
                             modification time) with the rows it fills
    EMB/index/keys.npy       (n,) record keys (S32), one row per record, file after file
    EMB/index/splits.npy     (n,) uint8, each row's split (index.json's "splits")
    EMB/index/vectors.npy    (n, dim) float16 image embeddings, memory-mapped when searched
    EMB/index/hnsw.usearch   the HNSW graph (usearch), for an index of kind "hnsw" only

Kind, by size (`kind_for`): up to FLAT_MAX records "flat" (every vector is scored, in chunks:
exact, deterministic, n x dim multiply-adds a query); above, "hnsw" (approximate: a query visits
a few thousand vectors whatever n is; its graph is built on every core, so two builds may differ).
Either way the hits are scored again exactly from the stored vectors and ordered by score, then key.

The index is built one embeddings file at a time (memory: the index itself, n x dim float16, plus
one file) into a directory of its own, swapped in when whole. It stands for the files it was built
from: when `embed` re-made one (another stamp) or the model changed, it is stale, and `ensure`
builds it again, saying so in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from entitynet.errors import ConfigError
from entitynet.files import write_json
from entitynet.progress import Progress
from entitynet.records import read_embeddings

INDEX_VERSION = 1
INDEX_DIR = "index"
MANIFEST = "index.json"
EMBED_CONFIG = "embed_config.json"  # train/embed.py's CONFIG
FLAT_MAX = 20_000  # records up to which the index is flat (exact); HNSW above
KINDS = ("auto", "flat", "hnsw")
CHUNK = 16_384  # vectors scored at once by a flat search
HNSW = {"connectivity": 16, "expansion_add": 128, "expansion_search": 64}


def kind_for(n: int, asked: str = "auto") -> str:
    """The index kind for `n` records: "flat" up to FLAT_MAX, "hnsw" above, unless asked."""
    if asked not in KINDS:
        raise ConfigError(f"index kind {asked!r}: give one of {', '.join(KINDS)}")
    return asked if asked != "auto" else ("flat" if n <= FLAT_MAX else "hnsw")


def embed_config(emb_dir: str | os.PathLike) -> dict:
    path = Path(emb_dir) / EMBED_CONFIG
    if not path.is_file():
        raise ConfigError(f"{emb_dir} is not an `entitynet embed` output (no {EMBED_CONFIG})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ConfigError(f"{path}: cannot be read ({e}); run `entitynet embed` again") from None


def embedding_files(emb_dir: str | os.PathLike) -> list[tuple[str, Path]]:
    """(split, path) of every embeddings file (`<split>/*.npz`), in a fixed order."""
    root = Path(emb_dir)
    embed_config(root)
    return [
        (split.name, f)
        for split in sorted(
            p for p in root.iterdir() if p.is_dir() and p.name != INDEX_DIR and p.name[0] != "."
        )
        for f in sorted(split.glob("*.npz"))
    ]


def _stamp(root: Path, path: Path) -> list:
    st = path.stat()
    return [path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns]


def staleness(emb_dir: str | os.PathLike, manifest: dict | None = None) -> str | None:
    """Why the index of `emb_dir` does not stand for its embeddings any more (None: it does; no
    index is "no index"): one stat per file."""
    root = Path(emb_dir)
    if manifest is None:
        manifest = read_manifest(root)
        if manifest is None:
            return "no index"
    if manifest.get("version") != INDEX_VERSION:
        return f"index version {manifest.get('version')}, this EntityNet makes {INDEX_VERSION}"
    if manifest.get("model_digest") != embed_config(root).get("model_digest"):
        return "the embeddings are of another model now"
    built = {f[0]: f[1:3] for f in manifest.get("files", [])}
    now = {s[0]: s[1:] for s in (_stamp(root, p) for _, p in embedding_files(root))}
    changed = sum(1 for k in now if k in built and built[k] != now[k])
    new, gone = len(now.keys() - built.keys()), len(built.keys() - now.keys())
    if not (changed or new or gone):
        return None
    return f"{changed} embeddings file(s) re-made, {new} new, {gone} gone since it was built"


def read_manifest(emb_dir: str | os.PathLike) -> dict | None:
    path = Path(emb_dir) / INDEX_DIR / MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return {"version": None}  # damaged: stale, built again


def build(emb_dir: str | os.PathLike, asked: str = "auto", progress=None) -> dict:
    """Build the index of `emb_dir` (replacing any); its manifest. `progress`: an
    `entitynet.progress.Progress`-like object counting records (default: one on stderr)."""
    root = Path(emb_dir)
    config = embed_config(root)
    files = embedding_files(root)
    if not files:
        raise ConfigError(f"{emb_dir} holds no embeddings files; run `entitynet embed` first")
    sizes = []
    for _, path in files:  # the keys alone: np.load reads an array when it is asked for
        try:
            with np.load(path, allow_pickle=False) as z:
                sizes.append(len(z["keys"]))
        except (OSError, KeyError, ValueError) as e:
            raise ConfigError(
                f"{path}: not a whole embeddings file ({e}); run `entitynet embed` again"
            ) from None
    n, dim = sum(sizes), int(config.get("dim") or 0)
    kind = kind_for(n, asked)
    splits = sorted({s for s, _ in files})
    own = progress is None
    if own:
        progress = Progress("index", total=n, unit="records", made_unit="indexed", stream=sys.stderr)
    tmp = root / f".{INDEX_DIR}.tmp-{os.getpid()}-{time.time_ns()}"
    tmp.mkdir()
    try:
        keys = np.lib.format.open_memmap(tmp / "keys.npy", "w+", np.dtype("S32"), (n,))
        split_of = np.lib.format.open_memmap(tmp / "splits.npy", "w+", np.uint8, (n,))
        vectors = None
        stamps, start = [], 0
        for (split, path), size in zip(files, sizes, strict=True):
            stamp = _stamp(root, path)  # before reading: a file re-made meanwhile makes it stale
            try:
                emb = read_embeddings(path)
            except ValueError as err:
                raise ConfigError(f"{path}: {err}; run `entitynet embed` again") from None
            if emb.model != config.get("model_digest"):
                raise ConfigError(f"{path} was embedded with another model; run `entitynet embed` again")
            if len(emb.keys) != size:
                raise ConfigError(f"{path} changed while the index was built; build it again")
            if vectors is None:
                dim = dim or emb.image.shape[1]
                vectors = np.lib.format.open_memmap(tmp / "vectors.npy", "w+", np.float16, (n, dim))
            keys[start : start + size] = emb.keys
            split_of[start : start + size] = splits.index(split)
            vectors[start : start + size] = emb.image
            stamps.append([*stamp, start, size])
            start += size
            progress.add(done=size, made=size)
        for a in (keys, split_of, vectors):
            if a is not None:
                a.flush()
        if kind == "hnsw":
            _build_hnsw(tmp, vectors, dim)
        del keys, split_of, vectors
        manifest = {
            "version": INDEX_VERSION,
            "kind": kind,
            "asked": asked,
            "records": n,
            "dim": dim,
            "model_digest": config.get("model_digest"),
            "splits": splits,
            "files": stamps,
            "flat_max": FLAT_MAX,
            **({"hnsw": HNSW} if kind == "hnsw" else {}),
        }
        write_json(tmp / MANIFEST, manifest)
        _swap_in(root, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if own:
            progress.close()
    return manifest


def _build_hnsw(folder: Path, vectors, dim: int) -> None:
    from usearch.index import Index

    graph = Index(
        ndim=dim,
        metric="ip",
        dtype="f16",
        connectivity=HNSW["connectivity"],
        expansion_add=HNSW["expansion_add"],
        expansion_search=HNSW["expansion_search"],
    )
    for start in range(0, len(vectors), 65_536):
        block = np.asarray(vectors[start : start + 65_536])
        graph.add(np.arange(start, start + len(block), dtype=np.uint64), block, threads=os.cpu_count() or 1)
    graph.save(str(folder / "hnsw.usearch"))


def _swap_in(root: Path, tmp: Path) -> None:
    """`tmp` becomes root/index; a reader holding the old one's maps keeps reading it (POSIX)."""
    target = root / INDEX_DIR
    old = None
    if target.exists():
        old = root / f".{INDEX_DIR}.old-{os.getpid()}-{time.time_ns()}"
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    for leftover in root.glob(f".{INDEX_DIR}.*-*-*"):  # what killed builds left (not a running one's)
        if not _running(int(leftover.name.split("-")[-2])):
            shutil.rmtree(leftover, ignore_errors=True)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's
    return True


def ensure(
    emb_dir: str | os.PathLike, asked: str | None = None, say: Callable[[str], None] = print, progress=None
) -> dict:
    """The manifest of an index of `emb_dir` that stands for its embeddings: the one there, or one
    built now (a missing one, a stale one with one line through `say` saying why, or one of
    another kind than `asked`)."""
    manifest = read_manifest(emb_dir)
    why = staleness(emb_dir, manifest) if manifest is not None else "no index"
    if manifest is not None and why is None and (asked is None or asked == manifest.get("asked")):
        return manifest
    if manifest is not None and why is not None:
        say(f"the index of {emb_dir} is stale ({why}): building it again")
    return build(emb_dir, asked or (manifest or {}).get("asked") or "auto", progress)


class EmbeddingIndex:
    """An index opened for searching (memory-mapped: opening it reads none of the vectors)."""

    def __init__(self, emb_dir: str | os.PathLike, manifest: dict | None = None):
        folder = Path(emb_dir) / INDEX_DIR
        self.manifest = manifest or read_manifest(emb_dir)
        if not self.manifest or self.manifest.get("version") != INDEX_VERSION:
            raise ConfigError(
                f"{emb_dir} has no index of this version; build it (`entitynet embed ... --index`)"
            )
        self.kind, self.splits = self.manifest["kind"], self.manifest["splits"]
        self.keys = np.load(folder / "keys.npy", mmap_mode="r")
        self.split_of = np.load(folder / "splits.npy", mmap_mode="r")
        self.vectors = np.load(folder / "vectors.npy", mmap_mode="r")
        self.graph = None
        if self.kind == "hnsw":
            from usearch.index import Index

            self.graph = Index.restore(str(folder / "hnsw.usearch"), view=True)

    def __len__(self) -> int:
        return len(self.keys)

    def key(self, row: int) -> str:
        return self.keys[row].decode()

    def split(self, row: int) -> str:
        return self.splits[int(self.split_of[row])]

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[float, int]]]:
        """For each query (rows of `queries`, unit vectors) its `k` best (score, row), by score
        (cosine, float32) then key."""
        q = np.atleast_2d(np.asarray(queries, np.float32))
        k = min(k, len(self))
        if not k:
            return [[] for _ in q]
        if self.graph is not None:
            self.graph.expansion_search = max(HNSW["expansion_search"], 2 * k)  # type: ignore[misc]
            found = self.graph.search(q.astype(np.float16), min(len(self), k + 8))
            cand = np.atleast_2d(np.asarray(found.keys, np.int64))
        else:
            cand = self._flat(q, min(len(self), k + 8))  # a few more: ties at the edge go by key
        out = []
        for i, rows in enumerate(cand):
            rows = np.unique(rows[(rows >= 0) & (rows < len(self))])
            scores = np.asarray(self.vectors[rows], np.float32) @ q[i]
            ranked = sorted(
                zip(scores.tolist(), rows.tolist(), strict=True), key=lambda t: (-t[0], self.keys[t[1]])
            )
            out.append(ranked[:k])
        return out

    def _flat(self, q: np.ndarray, k: int) -> np.ndarray:
        """The rows of the `k` best scores of each query, every vector scored (chunk by chunk)."""
        best_s = np.full((len(q), 0), -np.inf, np.float32)
        best_r = np.zeros((len(q), 0), np.int64)
        for start in range(0, len(self), CHUNK):
            s = q @ np.asarray(self.vectors[start : start + CHUNK], np.float32).T
            r = np.broadcast_to(np.arange(start, start + s.shape[1]), s.shape)
            s, r = np.concatenate([best_s, s], 1), np.concatenate([best_r, r], 1)
            if s.shape[1] > k:
                top = np.argpartition(-s, k - 1, axis=1)[:, :k]
                s, r = np.take_along_axis(s, top, 1), np.take_along_axis(r, top, 1)
            best_s, best_r = s, r
        return best_r

    def neighbours(self, start: int, stop: int, k: int) -> list[list[tuple[float, int]]]:
        """For each row of [start, stop) its `k` nearest other rows (score, row), best first."""
        found = self.search(np.asarray(self.vectors[start:stop], np.float32), k + 1)
        return [
            [hit for hit in hits if hit[1] != row][:k]
            for row, hits in zip(range(start, stop), found, strict=True)
        ]
