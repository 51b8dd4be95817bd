"""WebDataset shards in img2dataset's layout, written and read.

An export directory holds, for shard i (`00000`, `00001`, ...):

    00000.tar          KEY.jpg, KEY.txt (the sample's text), KEY.json (`records.export_sample`)
                       for each record, sorted by key; plain ustar, fixed dates: the same records
                       make the same bytes
    00000.parquet      the same fields as KEY.json, a row per sample (img2dataset's sidecar)
    00000_stats.json   img2dataset's per-shard stats (count, successes, status_dict, ...); written
                       last, so a shard with its stats is whole (what a resumed export skips)

and `sizes.json` (samples per tar, which open_clip's loader reads), `export_stats.json`,
`export_config.json`. Every file is written whole or not at all (`Store.open_write`).

`iter_tar` reads any WebDataset tar, ours or others' (img2dataset, DataComp, LAION): members are
grouped into samples by key (the path up to the first dot of the file name), as `webdataset` does.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from entitynet.records import EXPORT_COLUMNS, EXPORT_LISTS, sample_row
from entitynet.storage import STORE, Store

log = logging.getLogger("entitynet")

SIZES = "sizes.json"
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
MAX_MEMBER = 64 << 20  # a member larger than this is not read (a hostile tar cannot fill memory)


def shard_name(index: int) -> str:
    return f"{index:05d}"


def shard_files(index: int) -> tuple[str, str, str]:
    """(tar, sidecar, stats) file names of shard `index`."""
    name = shard_name(index)
    return f"{name}.tar", f"{name}.parquet", f"{name}_stats.json"


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def sidecar_schema():
    """The Arrow schema of a shard's sidecar (and, with the image, of a Parquet export's rows)."""
    import pyarrow as pa

    types = {"width": pa.int32(), "height": pa.int32()}
    return pa.schema(
        [
            (c, pa.list_(pa.string()) if c in EXPORT_LISTS else types.get(c, pa.string()))
            for c in EXPORT_COLUMNS
        ]
    )


def write_shard(
    out_dir: str, index: int, samples: Iterable[tuple[bytes, dict]], store: Store = STORE, split: str = ""
) -> dict:
    """Shard `index` of an export: the tar, its sidecar, then its stats; `samples`: (JPEG bytes,
    `export_sample` fields), sorted by key. Returns the stats (img2dataset's fields + ours)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tar_name, sidecar_name, stats_name = shard_files(index)
    rows: list[dict] = []
    size = 0
    with store.open_write(store.join(out_dir, tar_name)) as raw:
        counted = _Counting(raw)
        with tarfile.open(fileobj=counted, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
            for jpeg, fields in samples:
                key = fields["key"]
                _member(tar, f"{key}.jpg", jpeg)
                _member(tar, f"{key}.txt", fields["caption"].encode())
                _member(tar, f"{key}.json", json.dumps(fields, ensure_ascii=False, sort_keys=True).encode())
                rows.append(sample_row(fields))
        size = counted.count
    table = pa.Table.from_pylist(rows, schema=sidecar_schema())
    with store.open_write(store.join(out_dir, sidecar_name)) as f:
        pq.write_table(table, f, compression="zstd")
    stats = {
        "count": len(rows),
        "successes": len(rows),
        "failed_to_download": 0,
        "failed_to_resize": 0,
        "status_dict": {"success": len(rows)} if rows else {},
        "shard": shard_name(index),
        "bytes": size,
        "text_sources": _sources(rows),
        "split": split,
    }
    store.write(
        store.join(out_dir, stats_name), (json.dumps(stats, indent=1, sort_keys=True) + "\n").encode()
    )
    return stats


def _sources(rows: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r["text_source"]] = out.get(r["text_source"], 0) + 1
    return out


class _Counting(io.RawIOBase):
    """A write-only stream that counts what passes to `raw`."""

    def __init__(self, raw):
        self.raw, self.count = raw, 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        n = self.raw.write(b)
        n = len(b) if n is None else n
        self.count += n
        return n


def read_stats(out_dir: str, index: int, store: Store = STORE) -> dict | None:
    """A shard's stats when it was written whole, else None."""
    data = store.read(store.join(out_dir, shard_files(index)[2]))
    if data is None:
        return None
    try:
        stats = json.loads(data)
    except ValueError:
        return None
    return stats if isinstance(stats, dict) and isinstance(stats.get("count"), int) else None


def write_sizes(out_dir: str, counts: dict[int, int], store: Store = STORE) -> None:
    """`sizes.json`: samples per tar, as open_clip's WebDataset loader reads it."""
    sizes = {shard_files(i)[0]: n for i, n in sorted(counts.items())}
    store.write(store.join(out_dir, SIZES), (json.dumps(sizes, indent=1) + "\n").encode())


def brace_pattern(out_dir: str, shards: int) -> str:
    """The shards as the brace pattern open_clip's `--train-data` and `webdataset` take."""
    last = shards - 1
    inner = shard_name(0) if last == 0 else f"{{{shard_name(0)}..{shard_name(last)}}}"
    return f"{out_dir.rstrip('/')}/{inner}.tar"


# ---------------------------------------------------------------- reading anyone's tars


@dataclass
class Sample:
    """One sample of a WebDataset tar (or a Parquet row): its key, its image bytes, its texts and the
    JSON that came with it."""

    key: str
    image: bytes = b""
    texts: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    skipped: str = ""  # why the sample cannot be used ("" when it can)


def _split_name(name: str) -> tuple[str, str]:
    """(key, extension) of a member, as webdataset groups them: the extension starts at the first
    dot of the file name."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), (ext.lower() if dot else "")


def iter_tar(path: str, store: Store = STORE) -> Iterator[Sample]:
    """The samples of one tar, streamed (nothing is extracted to disk, a member is read only when
    its sample can use it); a member over MAX_MEMBER marks its sample skipped. A tar that ends
    early (truncated) or is not a tar raises `tarfile.TarError` (or OSError) after the samples
    before the damage."""
    current: Sample | None = None
    with store.open(path) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, ext = _split_name(member.name)
            if current is not None and key != current.key:
                yield current
                current = None
            if current is None:
                current = Sample(key)
            if ext not in (*IMAGE_EXTS, "txt", "json"):
                continue
            if member.size > MAX_MEMBER:
                current.skipped = f"member {member.name} is {member.size:,} bytes (over {MAX_MEMBER:,})"
                continue
            f = tar.extractfile(member)
            data = f.read() if f is not None else b""
            if ext in IMAGE_EXTS:
                if not current.image:
                    current.image = data
            elif ext == "txt":
                current.texts.append(data.decode("utf-8", "replace"))
            else:
                try:
                    meta = json.loads(data)
                except ValueError:
                    meta = None
                if isinstance(meta, dict):
                    current.meta = meta
        if current is not None:
            yield current
        # tarfile takes a header cut short for the end of the archive: a whole tar ends with two
        # zero blocks after its last member, a truncated one (a killed download) does not
        end = tar.offset
    if store.stat(path)[0] - end < 2 * tarfile.BLOCKSIZE:
        raise tarfile.ReadError(f"the tar ends at byte {end:,} without its end-of-archive blocks: truncated")
