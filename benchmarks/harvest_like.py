"""What the input benchmarks share: shards like a harvest's, and the training loader's rate on them.

Not a benchmark itself; `benchmarks/input_pipeline.py`, `benchmarks/train_vs_open_clip.py` and
`benchmarks/train_accelerator.py` import it.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path


def write_shards(directory: Path, n: int, size: tuple[int, int] = (320, 256), entities: int = 50):
    """`n` records like a harvest's (sample-web renders stored at `size`, JPEG quality 90, each
    linked to one of `entities` entities) in one train shard, and a tokenizer saved beside them;
    returns (entities, tokenizer)."""
    from entitynet import shards
    from entitynet.records import Entity, ImageRecord, encode_image, image_key
    from entitynet.sampleweb.render import jpeg_bytes, render
    from entitynet.text import tokenizer as tokenizers

    ents = [Entity(id=f"Q{i + 1}", label=f"thing number {i}", sitelinks=10) for i in range(entities)]
    recs = []
    for i in range(n):
        e = ents[i % entities]
        data = jpeg_bytes(render(("Q729", f"Q{i % 7}"), e.id, i, size))
        sha = hashlib.sha256(data).hexdigest()
        recs.append(
            ImageRecord(
                key=image_key(sha),
                jpeg=data,
                width=size[0],
                height=size[1],
                url=f"http://x/{i}.jpg",
                alt_texts=(f"a photo of {e.label}",),
                entity_ids=(e.id,),
                sha256=sha,
            )
        )
    recs.sort(key=lambda r: r.key)
    directory.mkdir(parents=True, exist_ok=True)
    shards.write_shard(directory / shards.shard_filename("train", 0, 1), (encode_image(r) for r in recs))
    shards.write_metadata(directory, {"train": [len(recs)]}, {})
    texts = [t for r in recs for t in r.alt_texts] + [e.label for e in ents] * 3
    tok = tokenizers.SentencePieceTokenizer.train(texts, vocab_size=200)
    tokenizers.save(tok, directory)
    return ents, tok


def loader_rate(
    directory: Path,
    entities,
    tok,
    size: int,
    batch: int,
    workers: int,
    seconds: float,
    context: int = 32,
    read_threads: int = 2,
    **options,
):
    """(images/s, the first batch) of the training loader (`make_dataset`, as training builds it)
    with `workers` Grain processes, after two warm-up batches; `options`: more InputConfig fields
    (augment=...)."""
    from train.input_pipeline import InputConfig, make_dataset

    cfg = InputConfig(
        shards=str(directory),
        batch_size=batch,
        image_size=size,
        context_length=context,
        num_workers=workers,
        read_threads=read_threads,
        **options,
    )
    it = iter(make_dataset(cfg, entities, tok))
    try:
        first = next(it)
        for _ in range(2):
            next(it)
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            n += len(next(it)["image"])
        return n / (time.perf_counter() - t), first
    finally:
        close = getattr(it, "close", None)
        if close:
            close()
