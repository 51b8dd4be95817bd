"""Tokenizers for the text tower; both turn texts into fixed-length int32 id arrays
([start] tokens [end] padding), truncated so the end token is always there.

- `SentencePieceTokenizer`: trained on the harvest's alt texts and the knowledge graph's captions
  (`entitynet tokenizer train`), saved next to the dataset. Ids: pad 0, unk 1, start 2, end 3.
  It learns from at most `SAMPLE_TEXTS` texts: beyond that, a seeded uniform sample of them
  (`sample_texts`), so its memory is bounded whatever the size of the data.
- `ClipBpeTokenizer`: CLIP's byte-level BPE from its merges file (`bpe_simple_vocab_16e6.txt.gz`,
  given by path), for open_clip checkpoints. Ids as CLIP: pad 0, start 49406, end 49407.
"""

from __future__ import annotations

import functools
import gzip
import html
import io
import json
import os
import random
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from entitynet.errors import ConfigError

# The most texts a SentencePiece model is trained on; a larger stream is sampled down to it.
# SentencePiece itself loads every sentence it is given (its `input_sentence_size` defaults to
# all), so this bound is what keeps the trainer's memory flat however large the harvest: the
# sample and SentencePiece's structures over it: for a million short texts (4-10 words) about
# 1 GiB at peak and 20-25 s on 2 cores (an 8,000-piece unigram model). The demo's 6,000 texts
# are all used, in order, as without a bound: its tokenizer is the same, byte for byte.
SAMPLE_TEXTS = 1_000_000


def sample_texts(texts: Iterable[str], size: int = SAMPLE_TEXTS, seed: int = 0) -> tuple[list[str], int]:
    """(a uniform random sample of at most `size` of `texts`, how many there were): reservoir
    sampling (Algorithm R) over the stream, seeded, so one stream always gives one sample; kept in
    the order the texts came. A stream of no more than `size` texts is returned whole, in order.
    Holds only the sample."""
    if size < 1:
        raise ConfigError(f"a tokenizer needs a sample of at least one text, got {size}")
    rng = random.Random(seed)
    kept: list[str] = []
    order: list[int] = []  # each kept text's place in the stream
    n = 0
    for n, text in enumerate(texts, 1):
        if n <= size:
            kept.append(text)
            order.append(n)
        else:
            j = rng.randrange(n)
            if j < size:
                kept[j], order[j] = text, n
    if n > size:
        kept = [kept[i] for i in sorted(range(size), key=order.__getitem__)]
    return kept, n


class SentencePieceTokenizer:
    kind = "sentencepiece"
    pad_id, unk_id, sot_id, eot_id = 0, 1, 2, 3

    def __init__(self, model: bytes):
        import sentencepiece as spm

        self.model = model
        self.sp = spm.SentencePieceProcessor(model_proto=model)
        self.vocab_size = self.sp.get_piece_size()

    @classmethod
    def train(
        cls,
        texts: Iterable[str],
        vocab_size: int = 8000,
        model_type: str = "unigram",
        sample: int | None = SAMPLE_TEXTS,
        seed: int = 0,
    ) -> SentencePieceTokenizer:
        """A model of the non-blank `texts` (lower-cased), or of a seeded sample of `sample` of them
        when there are more (`sample_texts`; None: every text, a list already sampled)."""
        import sentencepiece as spm

        kept: Iterable[str] = (t for t in texts if t.strip())
        if sample is not None:
            kept, _ = sample_texts(kept, sample, seed)
        out = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=(t.lower() for t in kept),
            model_writer=out,
            vocab_size=vocab_size,
            model_type=model_type,
            pad_id=cls.pad_id,
            unk_id=cls.unk_id,
            bos_id=cls.sot_id,
            eos_id=cls.eot_id,
            character_coverage=1.0,
            hard_vocab_limit=False,  # a small corpus may not fill the vocabulary
            minloglevel=2,
        )
        return cls(out.getvalue())

    def ids(self, text: str) -> list[int]:
        return self.sp.encode(text.lower())

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) for i in ids if int(i) > self.eot_id])


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's reversible map of the 256 byte values to printable characters."""
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = keep[:]
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars), strict=True))


# letters, digits one at a time, other non-space runs, and CLIP's contractions and special tokens
_SPLIT = re.compile(
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+", re.IGNORECASE
)


class ClipBpeTokenizer:
    kind = "clip_bpe"
    pad_id = 0

    def __init__(self, merges_path: str | Path):
        path = Path(merges_path)
        try:
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt", encoding="utf-8") as f:
                lines = f.read().split("\n")
        except (OSError, EOFError) as e:
            raise ConfigError(f"cannot read the BPE merges file {path}: {e}") from None
        merges = [tuple(line.split()) for line in lines[1:] if len(line.split()) == 2]
        merges = merges[: 49152 - 256 - 2]  # CLIP's vocabulary size
        if not merges:
            raise ConfigError(f"{path} holds no BPE merges (expected lines of two symbols after a header)")
        self.byte_map = _bytes_to_unicode()
        self.byte_unmap = {c: b for b, c in self.byte_map.items()}
        vocab = list(self.byte_map.values())
        vocab += [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {t: i for i, t in enumerate(vocab)}
        self.decoder = dict(enumerate(vocab))
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.vocab_size = len(vocab)
        self.sot_id, self.eot_id = self.encoder["<|startoftext|>"], self.encoder["<|endoftext|>"]
        self.merges_path = str(path)

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - the tokenizer lives as long as the pipeline
    def _bpe(self, token: str) -> tuple[str, ...]:
        word = [*token[:-1], token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return tuple(word)

    def ids(self, text: str) -> list[int]:
        text = " ".join(html.unescape(html.unescape(text)).split()).lower()
        out: list[int] = []
        for piece in _SPLIT.findall(text):
            mapped = "".join(self.byte_map[b] for b in piece.encode("utf-8"))
            out.extend(self.encoder[t] for t in self._bpe(mapped))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        special = {self.sot_id, self.eot_id}
        text = "".join(self.decoder[int(i)] for i in ids if int(i) not in special and int(i) in self.decoder)
        words = [bytearray(self.byte_unmap[c] for c in w if c in self.byte_unmap) for w in text.split("</w>")]
        return " ".join(w.decode("utf-8", errors="replace") for w in words if w)


def encode(tokenizer, texts: Iterable[str], context_length: int) -> np.ndarray:
    """(n, context_length) int32: [start] ids [end] then padding; long texts are cut before [end]."""
    texts = list(texts)
    out = np.full((len(texts), context_length), tokenizer.pad_id, dtype=np.int32)
    for row, text in enumerate(texts):
        ids = [tokenizer.sot_id, *tokenizer.ids(text)[: context_length - 2], tokenizer.eot_id]
        out[row, : len(ids)] = ids
    return out


TOKENIZER_FILE = "tokenizer.json"


class HfTokenizer:
    """A Hugging Face `tokenizer.json` (+ `tokenizer_config.json` naming its start, end and padding
    tokens), as open_clip models published with `text_cfg.hf_tokenizer_name` carry; `ids()` gives
    the pieces without the special tokens, which `encode` adds as for our own tokenizers."""

    kind = "hf"

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        try:
            self.tok = Tokenizer.from_file(str(path))
            config = json.loads((path.parent / "tokenizer_config.json").read_text())
        except Exception as e:  # noqa: BLE001 - besides OSError and ValueError, tokenizers raises Exception
            raise ConfigError(
                f"cannot read the Hugging Face tokenizer {path} (+ tokenizer_config.json): {e}"
            ) from None

        def token_id(name: str) -> int:
            token = config.get(name)
            token = token.get("content") if isinstance(token, dict) else token
            i = self.tok.token_to_id(token) if isinstance(token, str) else None
            if i is None:
                raise ConfigError(f"{path.parent}/tokenizer_config.json names no {name} in the vocabulary")
            return i

        self.sot_id, self.eot_id, self.pad_id = (
            token_id("bos_token"),
            token_id("eos_token"),
            token_id("pad_token"),
        )
        self.tok.no_padding()  # `encode` pads and cuts; the file's own settings would do it twice
        self.tok.no_truncation()
        self.vocab_size = self.tok.get_vocab_size()
        self.path = str(path)

    def ids(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=True)


def save(tokenizer, directory: str | Path, filename: str = TOKENIZER_FILE) -> Path:
    """`tokenizer.json` (or `filename`; + the SentencePiece model) in `directory`. A CLIP BPE
    vocabulary inside `directory` is named relative to it (the directory can move)."""
    from entitynet.files import atomic_open, ensure_writable_dir, write_json
    from entitynet.storage import STORE, is_remote, staged_dir

    if is_remote(directory):  # written locally, then uploaded
        with staged_dir(directory, prefix="entitynet-tokenizer-") as local:
            save(tokenizer, local, filename)
        return STORE.join(directory, filename)  # type: ignore[return-value]
    d = ensure_writable_dir(directory)
    if tokenizer.kind == "sentencepiece":
        with atomic_open(d / "tokenizer.model", "wb") as f:
            f.write(tokenizer.model)
        meta = {"kind": tokenizer.kind, "model": "tokenizer.model", "vocab_size": tokenizer.vocab_size}
    elif tokenizer.kind == "clip_bpe":
        merges = Path(tokenizer.merges_path).resolve()
        inside = merges.parent == d.resolve()
        meta = {
            "kind": tokenizer.kind,
            "merges": merges.name if inside else str(merges),
            "vocab_size": tokenizer.vocab_size,
        }
    else:
        raise ConfigError(f"a {tokenizer.kind} tokenizer is saved by its own library, not as {filename}")
    write_json(d / filename, meta)
    return d / filename


def tokenizer_file(path: str) -> str:
    """A tokenizer's file (local or in a bucket): the path itself, or its tokenizer.json when it
    names a directory."""
    from entitynet.storage import STORE

    return STORE.join(path, TOKENIZER_FILE) if STORE.isdir(path) and not STORE.isfile(path) else path


def load(path: str | Path):
    """A tokenizer from a `tokenizer.json` (or its directory), or a CLIP merges file (`.txt[.gz]`);
    local or in a bucket (then read from a local copy of its directory)."""
    from entitynet.storage import STORE, is_remote

    if is_remote(path):  # the tokenizer's own files copied down, not its whole directory
        import tempfile

        remote = tokenizer_file(str(path))
        parent, name = remote.rsplit("/", 1)
        local = tempfile.mkdtemp(prefix="entitynet-tokenizer-")
        try:
            meta = json.loads(STORE.read(remote) or b"null")
        except ValueError:
            meta = None
        names = {name, "tokenizer_config.json"}  # the latter: beside a Hugging Face tokenizer.json
        if isinstance(meta, dict):
            names |= {
                meta[k] for k in ("model", "merges") if isinstance(meta.get(k), str) and "/" not in meta[k]
            }
        for n in names:
            if STORE.isfile(STORE.join(parent, n)):
                STORE.download(STORE.join(parent, n), os.path.join(local, n))
        return load(os.path.join(local, name))
    p = Path(path)
    if p.is_dir():
        p = p / TOKENIZER_FILE
    if p.name.endswith((".txt", ".txt.gz")):
        return ClipBpeTokenizer(p)
    try:
        meta = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read tokenizer {p}: {e}; run `entitynet tokenizer train` first") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{p}: not a tokenizer file")
    if meta.get("kind") == "sentencepiece":
        return SentencePieceTokenizer((p.parent / meta["model"]).read_bytes())
    if meta.get("kind") == "clip_bpe":
        merges = p.parent / meta["merges"]  # an absolute path stays itself
        if not merges.exists():  # files written before paths were relative to them: as given
            merges = Path(meta["merges"])
        return ClipBpeTokenizer(merges)
    if "kind" not in meta and isinstance(meta.get("model"), dict):  # Hugging Face's tokenizer.json
        return HfTokenizer(p)
    raise ConfigError(f"{p}: unknown tokenizer kind {meta.get('kind')!r}")


def train_tokenizer(
    shards_dir: str,
    entities,
    vocab_size: int,
    out_dir: str | None = None,
    sample: int = SAMPLE_TEXTS,
    seed: int = 0,
) -> tuple[str, dict]:
    """A SentencePiece model on the shards' alt texts and the entities' KG captions, saved next to
    the shards (or in `out_dir`); returns its path and counts. The texts are streamed, record by
    record, into a seeded sample of at most `sample` (`sample_texts`): memory does not grow with
    the shards."""
    from entitynet.shards import check_directory, shard_paths
    from entitynet.text.captions import captions

    info = check_directory(shards_dir)
    counts = {"alt_texts": 0, "kg_captions": 0}

    def stream() -> Iterator[str]:
        for s in info.get("splits", []):
            for path in shard_paths(shards_dir, s["name"]):
                for t in _alt_texts(path):
                    counts["alt_texts"] += 1
                    yield t
        by_id = {e.id: e for e in entities}
        for e in entities:
            for c in captions(e, None, [by_id[p] for p in e.parents if p in by_id]):
                counts["kg_captions"] += 1
                yield c.text

    kept, total = sample_texts((t for t in stream() if t.strip()), sample, seed)
    if not kept:
        raise ConfigError(f"no texts to train a tokenizer on in {shards_dir}; harvest first")
    tok = SentencePieceTokenizer.train(kept, vocab_size=vocab_size, sample=None)
    path = save(tok, out_dir or shards_dir)
    return str(path), {**counts, "sampled": len(kept), "of": total, "vocab_size": tok.vocab_size}


def _alt_texts(path: str) -> Iterator[str]:
    """The alt texts of one shard's records, in file order, read in chunks with the training
    decoder (the few fields it needs: about 15x faster than decoding whole records)."""
    from entitynet.records import decode_for_training
    from entitynet.shards import read_shard

    for record in read_shard(path, decode_for_training, chunk=1024):
        yield from record.alt_texts
