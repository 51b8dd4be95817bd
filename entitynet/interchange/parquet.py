"""Parquet with the image bytes, as Hugging Face `datasets` and the Hub read it, written and read.

An export directory holds `data/SPLIT-00000-of-0000N.parquet` (a row per record: `image` as
`{bytes, path}` and the fields of `records.export_sample` as columns, sorted by key), a `README.md`
dataset card whose YAML header names the files and the features (`image` is an Image), and in each
file's schema the `huggingface` metadata that gives the same features to
`datasets.load_dataset("parquet", data_files=...)`. Per shard, `_stats/NAME.json` is written last
(a resumed export skips a shard that has it).

`iter_parquet` reads any Parquet with image bytes (ours, a Hub dataset's files, a DataComp-like
table with a binary image column) in batches of rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

from entitynet.interchange.webdataset import Sample, sidecar_schema
from entitynet.records import EXPORT_COLUMNS, EXPORT_LISTS, sample_row
from entitynet.storage import STORE, Store

DATA_DIR = "data"
STATS_DIR = "_stats"
CARD = "README.md"
ROWS_PER_GROUP = 256  # rows per row group: a reader holds about this many images at a time
_IMAGE = ("image", "jpg", "jpeg", "png", "webp", "img", "image_bytes")
_TEXT = ("caption", "text", "TEXT", "alt", "alt_text", "txt")


def file_name(split: str, index: int, shards: int) -> str:
    return f"{DATA_DIR}/{split}-{index:05d}-of-{shards:05d}.parquet"


def stats_name(split: str, index: int, shards: int) -> str:
    return f"{STATS_DIR}/{split}-{index:05d}-of-{shards:05d}.json"


def features() -> dict:
    """The `datasets` features of a row, as the `huggingface` schema metadata states them."""
    value = {"dtype": "string", "_type": "Value"}
    out: dict = {"image": {"_type": "Image"}}
    for c in EXPORT_COLUMNS:
        if c in EXPORT_LISTS:
            out[c] = {"feature": value, "_type": "List"}
        elif c in ("width", "height"):
            out[c] = {"dtype": "int32", "_type": "Value"}
        else:
            out[c] = value
    return out


def schema():
    import pyarrow as pa

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    base = sidecar_schema()
    meta = {b"huggingface": json.dumps({"info": {"features": features()}}).encode()}
    return pa.schema([pa.field("image", image), *base], metadata=meta)


def write_shard(path: str, samples: Iterable[tuple[bytes, dict]], store: Store = STORE) -> int:
    """One Parquet file of `samples` ((JPEG bytes, `export_sample` fields), sorted by key), written
    whole; returns its size in bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    s = schema()
    with store.open_write(path) as f:
        with pq.ParquetWriter(f, s, compression="zstd") as w:
            batch: list[dict] = []
            for jpeg, fields in samples:
                batch.append({"image": {"bytes": jpeg, "path": f"{fields['key']}.jpg"}, **sample_row(fields)})
                if len(batch) == ROWS_PER_GROUP:
                    w.write_table(pa.Table.from_pylist(batch, schema=s))
                    batch = []
            if batch:
                w.write_table(pa.Table.from_pylist(batch, schema=s))
    return store.stat(path)[0]


def card(split: str, about: str) -> str:
    """The dataset card: YAML for `datasets` (the files of the split, the features), then prose."""
    lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    lines += [f"  - split: {split}", f"    path: {DATA_DIR}/{split}-*.parquet"]
    lines += ["dataset_info:", "  features:", "  - name: image", "    dtype: image"]
    for c in EXPORT_COLUMNS:
        if c in EXPORT_LISTS:
            lines += [f"  - name: {c}", "    list: string"]
        else:
            lines += [f"  - name: {c}", f"    dtype: {'int32' if c in ('width', 'height') else 'string'}"]
    lines += ["---", ""]
    return "\n".join(lines) + about


def _first(names: list[str], wanted: tuple[str, ...]) -> str | None:
    return next((n for n in wanted if n in names), None)


def iter_parquet(path: str, row_group: int, store: Store = STORE) -> Iterator[Sample]:
    """The samples of one row group of a Parquet file with image bytes: the image from a struct
    column `{bytes, path}` or a binary column (`image`, `jpg`, ...), the texts from a string or
    list column (`caption`, `text`, ...), every other scalar column as the sample's JSON."""
    import pyarrow.parquet as pq

    with store.open(path) as fh:
        pf = pq.ParquetFile(fh)
        names = pf.schema_arrow.names
        image_col = _first(names, _IMAGE)
        text_col = _first(names, _TEXT)
        for batch in pf.iter_batches(batch_size=64, row_groups=[row_group]):
            rows = batch.to_pylist()
            for i, row in enumerate(rows):
                key = str(row.get("key") or row.get("__key__") or f"{row_group}-{i}")
                sample = Sample(key)
                image = row.get(image_col) if image_col else None
                if isinstance(image, dict):
                    image = image.get("bytes")
                if isinstance(image, bytes | bytearray):
                    sample.image = bytes(image)
                text = row.get(text_col) if text_col else None
                if isinstance(text, str):
                    sample.texts.append(text)
                elif isinstance(text, list):
                    sample.texts += [t for t in text if isinstance(t, str)]
                sample.meta = {
                    k: v
                    for k, v in row.items()
                    if k != image_col
                    and (isinstance(v, str | int | float | bool) or v is None or k in EXPORT_LISTS)
                }
                yield sample


def row_groups(path: str, store: Store = STORE) -> int:
    import pyarrow.parquet as pq

    with store.open(path) as fh:
        return pq.ParquetFile(fh).num_row_groups
