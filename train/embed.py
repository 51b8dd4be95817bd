"""`entitynet embed`: the image embedding of every record of a dataset (a harvest or a curation),
and the embeddings of its texts (each alt text, and the KG caption of each entity it is linked
to: the entity's label), from a trained run or any directory in open_clip's layout.

    entitynet embed --shards out/curated --model out/run --out out/embeddings

One file per input shard (`OUT/<split>/<shard>.npz`, `entitynet.records.Embeddings`), written
atomically as each shard is done, so an interrupted run keeps what it finished and a re-run embeds
only the rest; a shard's file names the model and the shard it was made from, and a file of
another model is refused rather than mixed. Memory holds one batch of pixels and one shard's
embeddings, however large the dataset. `entitynet query` searches the files by text or by image:
through the index beside them when there is one (`--index`, `entitynet.embedindex`), else by
scoring every embedding.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np

from entitynet import embedindex
from entitynet import shards as shard_io
from entitynet.errors import ConfigError, EntityNetError, OutputError
from entitynet.files import atomic_open, ensure_writable_dir, write_json
from entitynet.images.decode import ImageRejected, decode
from entitynet.progress import Progress
from entitynet.records import (
    TEXT_KINDS,
    Embeddings,
    decode_for_training,
    read_embeddings,
    text_digest,
    write_embeddings,
)
from entitynet.text import tokenizer as tokenizers
from train.input_pipeline import centre_crop, normalise, to_model_input
from train.sharding import batch_sharding, make_mesh

CONFIG = "embed_config.json"


def model_digest(path: str | Path, step, weights: str) -> str:
    """What identifies the weights embedded with: a run's directory, step and weights (raw or
    moving average); an export's weights file (path, size, modification time)."""
    p = Path(path).resolve()
    if step is not None:
        what = f"run {p} step {step} {weights}"
    else:
        files = sorted(p.glob("open_clip_model.*")) or sorted(p.glob("*.safetensors"))
        what = "export " + " ".join(f"{f} {f.stat().st_size} {f.stat().st_mtime_ns}" for f in files)
    return hashlib.sha1(what.encode()).hexdigest()[:16]


def shard_stamp(path: str) -> str:
    st = os.stat(path)
    return f"{os.path.abspath(path)} {st.st_size} {st.st_mtime_ns}"


def check_fit(loaded: dict) -> None:
    """One line for a tokenizer whose ids the model's text tower cannot take."""
    tok, mcfg = loaded["tokenizer"], loaded["config"]
    if tok.vocab_size > mcfg.text.vocab_size:
        raise ConfigError(
            f"the tokenizer has {tok.vocab_size:,} pieces, the model's text tower {mcfg.text.vocab_size:,}: "
            "give the tokenizer the model was trained with (--tokenizer)"
        )


class ShardEmbedder:
    """The model's encoders, compiled once for one batch shape, over one shard at a time."""

    def __init__(self, loaded: dict, entities: dict[str, str], batch: int = 64):
        model, self.mcfg = loaded["model"], loaded["config"]
        devices = jax.local_device_count()
        # the batch is split over this host's devices (a "data" mesh): a multiple of their count
        self.batch = -(-batch // devices) * devices
        self.tok, self.labels = loaded["tokenizer"], entities
        self.sharding = batch_sharding(make_mesh({"data": -1}, jax.local_devices())) if devices > 1 else None
        self.size, self.context = self.mcfg.vision.image_size, self.mcfg.text.context_length
        # uint8 pixels to the device, normalised there as in training (4x fewer bytes, less host work)
        self.encode_image = jax.jit(lambda x: model.encode_image(to_model_input(x)))
        self.encode_text = jax.jit(model.encode_text)
        self.pool = ThreadPoolExecutor(os.cpu_count() or 2)

    def _put(self, x: np.ndarray):
        return x if self.sharding is None else jax.device_put(x, self.sharding)

    def _images(self, jpegs: list[bytes], keys: list[str], path: str) -> jax.Array:
        """The batch's image embeddings, as a device array still being computed (the next batch is
        decoded meanwhile); rows past len(jpegs) are padding."""
        x = np.zeros((self.batch, self.size, self.size, 3), np.uint8)

        def one(i: int) -> None:
            try:
                x[i] = np.asarray(centre_crop(decode(jpegs[i]), self.size), np.uint8)
            except ImageRejected as e:
                raise OutputError(
                    f"record {keys[i]} of {path} cannot be decoded ({e}); re-run its harvest"
                ) from None

        list(self.pool.map(one, range(len(jpegs))))
        return self.encode_image(self._put(x))

    def _texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.mcfg.embed_dim), np.float16)
        for start in range(0, len(texts), self.batch):
            chunk = texts[start : start + self.batch]
            ids = tokenizers.encode(self.tok, chunk + [""] * (self.batch - len(chunk)), self.context)
            out[start : start + len(chunk)] = np.asarray(self.encode_text(self._put(np.asarray(ids))))[
                : len(chunk)
            ]
        return out

    def shard(self, path: str, model: str, progress: Progress) -> Embeddings:
        keys, images, texts, owner, kind, digest = [], [], [], [], [], []
        jpegs: list[bytes] = []

        def flush() -> None:
            if jpegs:
                images.append((self._images(jpegs, keys[-len(jpegs) :], path), len(jpegs)))
                progress.add(done=len(jpegs), made=len(jpegs))
                jpegs.clear()

        for r in shard_io.read_shard(path, decode=decode_for_training, chunk=self.batch):
            row = len(keys)
            keys.append(r.key)
            jpegs.append(r.jpeg)
            labels = [self.labels[e] for e in dict.fromkeys(r.entity_ids) if e in self.labels]
            for k, text in [("alt", t) for t in r.alt_texts] + [("kg", t) for t in labels]:
                texts.append(text)
                owner.append(row)
                kind.append(TEXT_KINDS.index(k))
                digest.append(text_digest(text))
            if len(jpegs) == self.batch:
                flush()
        flush()
        dim = self.mcfg.embed_dim
        return Embeddings(
            keys=np.asarray(keys, dtype="S32"),
            image=(
                np.concatenate([np.asarray(a)[:n] for a, n in images]).astype(np.float16)
                if images
                else np.zeros((0, dim), np.float16)
            ),
            text=self._texts(texts) if texts else np.zeros((0, dim), np.float16),
            text_owner=np.asarray(owner, np.int32),
            text_kind=np.asarray(kind, np.uint8),
            text_digest=np.asarray(digest, np.uint64),
            model=model,
            source=shard_stamp(path),
        )


def _entities(path: str | None, shards_dir: str) -> dict[str, str]:
    """Entity id -> label, from `path` or the entities file a curation records (none: no KG texts)."""
    from entitynet.records import Entity, read_jsonl

    if not path:
        config = Path(shards_dir) / "curation_config.json"
        path = json.loads(config.read_text()).get("entities_file", "") if config.is_file() else ""
    if not path:
        return {}
    try:
        return {e.id: e.label for e in read_jsonl(path, Entity)}
    except EntityNetError as e:
        raise ConfigError(f"{e}; give --entities (the entities.jsonl of `entitynet kg expand`)") from None


def run(
    shards_dir: str,
    model_path: str,
    out_dir: str,
    weights: str = "auto",
    batch: int = 64,
    entities: str | None = None,
    tokenizer: str | None = None,
    index: str | None = None,
) -> dict:
    """Embed every shard of `shards_dir` into `out_dir`; the stats (records, shards embedded and
    reused, seconds). `index` ("auto", "flat", "hnsw"): then build the search index beside them;
    an index already there is kept up to date (built again when a shard was embedded anew)."""
    from train.evaluate import load_model

    started = time.time()
    if "://" in out_dir:
        raise ConfigError(f"--out {out_dir}: embed into a local directory (then copy it to the bucket)")
    info = shard_io.check_directory(shards_dir)
    splits = sorted(s["name"] for s in info.get("splits", []))
    work = [(s, p) for s in splits for p in shard_io.local_shard_paths(shards_dir, s)]
    total = sum(int(n) for s in info.get("splits", []) for n in s.get("shardLengths", []))
    if not total:
        raise ConfigError(f"{shards_dir} holds no records to embed")
    loaded = load_model(model_path, tokenizer, weights)
    check_fit(loaded)
    digest = model_digest(model_path, loaded["step"], loaded.get("weights", "export"))
    out = ensure_writable_dir(out_dir)
    config_path = out / CONFIG
    if config_path.exists():
        earlier = json.loads(config_path.read_text()).get("model_digest")
        if earlier != digest:
            raise OutputError(
                f"{out_dir} holds embeddings of another model ({earlier}); give a new --out, or remove it"
            )
    elif any(out.iterdir()):
        raise OutputError(f"{out_dir} is not empty and holds no embeddings; give an empty or new --out")
    config = {
        "model": str(Path(model_path).resolve()),
        "model_digest": digest,
        "weights": loaded.get("weights", "export"),
        "step": loaded["step"],
        "shards": str(Path(shards_dir).resolve()),
        "dim": loaded["config"].embed_dim,
        "image_size": loaded["config"].vision.image_size,
        "text_kinds": list(TEXT_KINDS),
    }
    write_json(config_path, config)
    embedder = ShardEmbedder(loaded, _entities(entities, shards_dir), batch)
    progress = Progress("embed", total=total, unit="records", made_unit="embedded", stream=sys.stderr)
    done = reused = texts = 0
    try:
        for split, path in work:
            target = out / split / (Path(path).name + ".npz")
            if target.exists():
                try:
                    old = read_embeddings(target)
                    if old.model == digest and old.source == shard_stamp(path):
                        reused += 1
                        progress.add(reused=len(old.keys))
                        texts += len(old.text)
                        continue
                except ValueError:
                    pass  # a damaged file of an earlier run: made again
            e = embedder.shard(path, digest, progress)
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(target, "wb") as f:
                write_embeddings(f, e)
            done += 1
            texts += len(e.text)
    finally:
        progress.close()
    index_stats = None
    if index or embedindex.read_manifest(out) is not None:
        before = embedindex.read_manifest(out)
        manifest = embedindex.ensure(out, index, say=lambda line: print(line, file=sys.stderr))
        index_stats = {
            "kind": manifest["kind"],
            "records": manifest["records"],
            "built": manifest != before,
        }
    return {
        "records": total,
        "index": index_stats,
        "texts": texts,
        "shards_embedded": done,
        "shards_reused": reused,
        "seconds": round(time.time() - started, 1),
        "out": str(out_dir),
        **config,
    }


def each_file(out_dir: str | Path):
    """(split, path) of every embeddings file of an `embed` output, in a fixed order."""
    yield from embedindex.embedding_files(out_dir)


def query(
    out_dir: str,
    text: str | None = None,
    image: str | None = None,
    k: int = 10,
    model_path: str | None = None,
    tokenizer: str | None = None,
    exact: bool = False,
    say=None,
) -> list[dict]:
    """The `k` records whose image embeddings are nearest a text's or an image file's embedding
    (cosine), best first: score, split, key, and the record's URL and first alt text. Through the
    index of `out_dir` when it has one (built again first when stale, with one line through `say`),
    else (or `exact`) by scoring every embedding: the files are read one at a time and only the
    best `k` kept, so memory does not grow with the dataset."""
    from train.evaluate import load_model

    if (text is None) == (image is None):
        raise ConfigError("give a text or --image FILE to search for")
    files = list(each_file(out_dir))
    use_index = not exact and embedindex.read_manifest(out_dir) is not None
    config = json.loads((Path(out_dir) / CONFIG).read_text())
    loaded = load_model(model_path or config["model"], tokenizer, config.get("weights") or "auto")
    if (
        model_digest(model_path or config["model"], loaded["step"], loaded.get("weights", "export"))
        != config["model_digest"]
    ):
        raise ConfigError(
            f"the model at {model_path or config['model']} is not the one {out_dir} was embedded with; "
            "embed again, or give that model (--model)"
        )
    mcfg = loaded["config"]
    if text is not None:
        ids = tokenizers.encode(loaded["tokenizer"], [text], mcfg.text.context_length)
        q = np.asarray(jax.jit(loaded["model"].encode_text)(ids))[0]
    else:
        try:
            with open(image, "rb") as f:
                pixels = normalise(centre_crop(decode(f.read()), mcfg.vision.image_size))
        except (OSError, ImageRejected) as e:
            raise ConfigError(f"--image {image} cannot be read as an image ({e})") from None
        q = np.asarray(jax.jit(loaded["model"].encode_image)(pixels[None]))[0]
    say = say or (lambda line: print(line, file=sys.stderr))
    if use_index:
        try:
            manifest = embedindex.ensure(out_dir, say=say)
        except OSError as e:  # a stale index in a directory this user cannot write
            say(f"cannot build the index of {out_dir} again ({e.strerror}): scoring every embedding")
            return _described(_scan(files, q, k), config["shards"])
        found = embedindex.EmbeddingIndex(out_dir, manifest)
        hits = found.search(q[None], k)[0]
        return _described([(s, found.split(r), found.key(r)) for s, r in hits], config["shards"])
    return _described(_scan(files, q, k), config["shards"])


def _scan(files, q: np.ndarray, k: int) -> list[tuple[float, str, str]]:
    """The `k` best (score, split, key) over every embeddings file, read one at a time."""
    best: list[tuple[float, str, str]] = []
    for split, path in files:
        try:
            e = read_embeddings(path)
        except ValueError as err:
            raise ConfigError(f"{path}: {err}; run `entitynet embed` again") from None
        if not len(e.keys):
            continue
        scores = e.image.astype(np.float32) @ q.astype(np.float32)
        top = np.argsort(-scores, kind="stable")[:k]
        best += [(float(scores[i]), split, e.keys[i].decode()) for i in top]
        best = sorted(best, key=lambda x: (-x[0], x[2]))[:k]
    return best


def _described(best: list[tuple[float, str, str]], shards_dir: str) -> list[dict]:
    """The hits with their records' URL and first alt text (read from the shards of their split)."""
    wanted = {key for _, _, key in best}
    found: dict[str, tuple[str, str]] = {}
    for split in sorted({s for _, s, _ in best}):
        try:
            for r in shard_io.iter_records(shards_dir, split):
                if r.key in wanted:
                    found[r.key] = (r.url, r.alt_texts[0] if r.alt_texts else "")
        except EntityNetError:
            pass  # the shards moved: the hits are still named by key
    return [
        {"score": round(score, 4), "split": split, "key": key, "url": found.get(key, ("", ""))[0],
         "text": found.get(key, ("", ""))[1]}
        for score, split, key in best
    ]  # fmt: skip
