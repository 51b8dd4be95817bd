"""Harvest shards on local disk: ArrayRecord files of `records.encode_image` examples plus the
TFDS metadata that makes the directory a TFDS dataset (`tfds.builder_from_directory`), readable
without TensorFlow; Grain's `ArrayRecordDataSource` reads the same files.

Records go to splits by a stable hash of their key (fractions configurable) and to shards by
CRC32 of the key, so a re-run puts every record in the same place. Each shard is written to a
temp name and renamed; readers ignore temp files. A shard directory may be local or in a bucket
(`entitynet.storage`): ArrayRecord reads and writes only local files, so pipelines write shards
locally and upload them, a reader of one shard reads a temporary copy (`read_shard`), and the
trainer reads copies kept in a cache keyed by the dataset's fingerprint (`local_shard_paths`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from entitynet.errors import EntityNetError
from entitynet.files import temp_name
from entitynet.records import IMAGE_DATASET_VERSION, ImageRecord, decode_image, image_features
from entitynet.storage import STORE, is_remote, local_copy, local_file

DATASET_NAME = "entitynet"
WRITER_OPTIONS = "group_size:1,uncompressed"  # JPEG payloads do not compress; random access stays fast
DEFAULT_SPLITS = {"train": 0.98, "validation": 0.01, "test": 0.01}
_SHARD = re.compile(
    rf"^{DATASET_NAME}-(?P<split>[a-z_]+)\.array_record-(?P<i>[0-9]{{5}})-of-(?P<n>[0-9]{{5}})$"
)


def split_of(key: str, fractions: dict[str, float] = DEFAULT_SPLITS) -> str:
    """The split of a record: a stable hash of its key against cumulative fractions."""
    u = int(hashlib.sha256(f"split\x1f{key}".encode()).hexdigest()[:16], 16) / 2**64
    total = sum(fractions.values())
    acc = 0.0
    for name, share in fractions.items():
        acc += share / total
        if u < acc:
            return name
    return next(reversed(fractions))


def shard_of(key: str, num_shards: int) -> int:
    return zlib.crc32(key.encode()) % num_shards  # not hash(): salted per process


def shard_filename(split: str, index: int, num_shards: int) -> str:
    return f"{DATASET_NAME}-{split}.array_record-{index:05d}-of-{num_shards:05d}"


FINGERPRINT = "entitynet_dataset.json"  # beside dataset_info.json: a digest of every shard's content


ATTRIBUTION_DIR = "attribution"  # one TSV per shard file: the credit every record is owed
ATTRIBUTION_HEADER = "key\turl\tpage_url\tlicense\tlicense_url\tattribution\tsources"
# what the harvest and the curation write beside their shards (the pipelines write them, the
# explorer and the CLI read them)
HARVEST_STATS = "harvest_stats.json"
CURATION_STATS = "curation_stats.json"
ENTRY_COUNTS = "entry_counts.tsv"  # curated: entity, label, records before and after
REMOVED_DIR = "removed"  # curated: removed/removed-*.jsonl, one `records.Removal` a line


def harvest_of(curated: str | os.PathLike, recorded: str) -> str | None:
    """The harvest a curated dataset was made from, by the path its curation_stats.json records
    (absolute or a bucket path; curations before that recorded it as typed, relative to where
    curate ran: then looked for beside the curated dataset, and from here); None when it is not there."""
    if not recorded:
        return None
    if is_remote(recorded) or os.path.isabs(recorded):
        candidates = [recorded]
    elif is_remote(curated):
        parent = os.fspath(curated).rstrip("/").rsplit("/", 1)[0]
        candidates = [STORE.join(parent, os.path.basename(recorded)), STORE.join(parent, recorded), recorded]
    else:
        path, parent = Path(recorded), Path(curated).parent
        candidates = [str(parent / path.name), str(parent / path), recorded]
    for c in candidates:
        if STORE.isfile(STORE.join(c, HARVEST_STATS)):
            return c
    return None


def attribution_name(shard_name: str) -> str:
    """`attribution/<shard file>.tsv`: the attribution rows of one shard."""
    return f"{ATTRIBUTION_DIR}/{shard_name}.tsv"


def _cell(text: str) -> str:
    return " ".join(text.replace("\t", " ").split())


def attribution_lines(records: Iterable[ImageRecord]) -> Iterator[str]:
    """The attribution file of a shard: a header and one row per record (key, the URL and page
    whose licence the record carries, licence, licence URL, whom to credit, every source)."""
    yield ATTRIBUTION_HEADER
    for r in records:
        credit = next(
            (p for p in r.provenance if p.license == r.license and p.attribution == r.attribution), None
        )
        url, page = (credit.url, credit.page_url) if credit else (r.url, r.page_url)
        cells = (r.key, url, page, r.license, r.license_url, r.attribution, ",".join(r.sources))
        yield "\t".join(_cell(c) for c in cells)


def license_counts(records: Iterable[ImageRecord]) -> tuple[dict[str, int], dict[str, int]]:
    """Records per licence and per source (an image with two sources counts in both)."""
    per_license: dict[str, int] = {}
    per_source: dict[str, int] = {}
    for r in records:
        per_license[r.license] = per_license.get(r.license, 0) + 1
        for s in r.sources:
            per_source[s] = per_source.get(s, 0) + 1
    return per_license, per_source


def shard_digest() -> hashlib.blake2b:
    """The running digest of one shard's encoded records (in the order written)."""
    return hashlib.blake2b(digest_size=16)


def write_fingerprint(directory: str | os.PathLike, digests: dict[str, str]) -> str:
    """FINGERPRINT in `directory`: one digest over every shard file's content digest (`digests`:
    file name -> hex digest, empty shards included); what a trainer checks before resuming."""
    lines = "".join(f"{name}\t{d}\n" for name, d in sorted(digests.items()))
    fingerprint = hashlib.blake2b(lines.encode(), digest_size=16).hexdigest()
    Path(directory, FINGERPRINT).write_text(
        json.dumps({"fingerprint": fingerprint, "shards": len(digests)}) + "\n"
    )
    return fingerprint


def fingerprint(directory: str | os.PathLike) -> str:
    """What identifies the records of a shard directory: its FINGERPRINT, or for data written
    before it existed, a digest of its dataset_info.json (the layout and counts)."""
    try:
        return json.loads(STORE.read(STORE.join(directory, FINGERPRINT)) or b"")["fingerprint"]
    except (ValueError, KeyError, TypeError):
        pass
    data = STORE.read(STORE.join(directory, "dataset_info.json"))
    if data is None:
        return ""
    return "info-" + hashlib.blake2b(data, digest_size=16).hexdigest()


def write_shard(path: str | os.PathLike, records: Iterable[bytes], digest=None) -> tuple[int, int]:
    """Write encoded records to `path` atomically; returns (count, bytes). `digest` (hashlib), if
    given, is fed every record as written."""
    from array_record.python.array_record_module import ArrayRecordWriter

    final = os.fspath(path)
    tmp = temp_name(final)
    count = size = 0
    try:
        writer = ArrayRecordWriter(tmp, WRITER_OPTIONS)
        try:
            for r in records:
                writer.write(r)
                if digest is not None:
                    digest.update(len(r).to_bytes(8, "little"))
                    digest.update(r)
                count += 1
                size += len(r)
        finally:
            writer.close()
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return count, size


def shard_paths(directory: str | os.PathLike, split: str) -> list[str]:
    """The shards of a split as the dataset's own metadata (`dataset_info.json`, written last) lists
    them, never a glob: files of another layout or another run beside them are not read. A split
    the metadata does not list has none; a listed file that is missing is an EntityNetError. Paths
    in the directory's store (local or bucket)."""
    info = check_directory(directory)
    names = layout(info).get(split, [])
    paths = [STORE.join(directory, name) for name in names]
    # each file looked up by name (a bucket's listing may lag its writes; a lookup does not),
    # many at a time in a bucket
    if is_remote(directory) and len(paths) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(16) as pool:
            present = list(pool.map(STORE.isfile, paths))
    else:
        present = [STORE.isfile(p) for p in paths]
    missing = [n for n, ok in zip(names, present, strict=True) if not ok]
    if missing:
        raise EntityNetError(
            f"{directory} lacks {len(missing)} shard file(s) its dataset_info.json lists (first: "
            f"{missing[0]}); re-run the stage that wrote it"
        )
    return paths


def local_shard_paths(directory: str | os.PathLike, split: str) -> list[str]:
    """`shard_paths` as local files for the readers that need one (Grain, ArrayRecord): the files
    themselves when local; for a bucket, copies in the local cache (`storage.local_copy`, under
    ENTITYNET_CACHE), filled once and kept apart per dataset fingerprint."""
    paths = shard_paths(directory, split)
    if not is_remote(directory):
        return paths
    key = fingerprint(directory)
    return [local_copy(p, key=key) for p in paths]


def layout(info: dict) -> dict[str, list[str]]:
    """split -> its shard file names, from a dataset_info dict (TFDS's shardLengths)."""
    return layout_of({s["name"]: s.get("shardLengths", []) for s in info.get("splits", [])})


def layout_of(shard_lengths: dict[str, list]) -> dict[str, list[str]]:
    """split -> its shard file names, for records per (split, shard) as `write_metadata` takes them
    (a split with no shards has no files)."""
    return {
        split: [shard_filename(split, i, len(lengths)) for i in range(len(lengths))]
        for split, lengths in shard_lengths.items()
        if lengths
    }


def is_shard_name(name: str) -> bool:
    return _SHARD.match(name) is not None


_TEMP = re.compile(r"\.(tmp-[0-9]+-[0-9]+|staged-[0-9]+)$")


def is_temp_name(name: str) -> bool:
    """A temp file of the atomic writers (`*.tmp-<pid>-<ns>`, `*.staged-<ns>`)."""
    return _TEMP.search(name) is not None


def write_metadata(
    directory: str | os.PathLike,
    shard_lengths: dict[str, list[int]],
    num_bytes: dict[str, int],
    description: str = "",
) -> None:
    """TFDS dataset_info.json and features.json for the shards in `directory`."""
    import tensorflow_datasets as tfds

    splits = [
        tfds.core.SplitInfo(name=s, shard_lengths=lengths, num_bytes=num_bytes.get(s, 0))
        for s, lengths in shard_lengths.items()
        if lengths
    ]
    tfds.folder_dataset.write_metadata(
        data_dir=os.fspath(directory),
        features=image_features(),
        split_infos=splits,
        version=IMAGE_DATASET_VERSION,
        check_data=False,
        description=description or "EntityNet harvest: one record per unique image.",
    )


def check_directory(directory: str | os.PathLike) -> dict:
    """The dataset_info of a shard directory; an EntityNetError if it is missing or of another schema."""
    info_path = STORE.join(directory, "dataset_info.json")
    data = STORE.read(info_path)
    if data is None:
        raise EntityNetError(
            f"{directory} holds no harvest shards (no dataset_info.json); run `entitynet harvest` first"
        )
    try:
        info = json.loads(data)
    except ValueError as e:
        raise EntityNetError(f"{info_path} is not valid JSON; re-run `entitynet harvest`") from e
    if info.get("version") != IMAGE_DATASET_VERSION:
        raise EntityNetError(
            f"shards in {directory} have schema version {info.get('version')!r}, this EntityNet reads "
            f"{IMAGE_DATASET_VERSION}; re-run `entitynet harvest` with this version"
        )
    return info


def corrupt(path, error: BaseException) -> EntityNetError:
    """The one line for a shard that cannot be read (truncated, garbled, not ArrayRecord)."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
    return EntityNetError(
        f"shard {path} is truncated or corrupt ({first}); re-run the stage that wrote it "
        "(`entitynet harvest` or `entitynet curate`) into a fresh --out"
    )


def open_reader(path: str | os.PathLike):
    from array_record.python.array_record_module import ArrayRecordReader

    try:
        return ArrayRecordReader(os.fspath(path))
    except (RuntimeError, OSError, ValueError) as e:
        raise corrupt(path, e) from None


def read_shard(path: str | os.PathLike, decode=decode_image, chunk: int = 1) -> Iterator:
    """Every record of one ArrayRecord shard (local or in a bucket: then read from a temporary
    copy), in file order, as `decode` makes it of the record's bytes (`records.decode_image`; the
    training decoder reads only the fields it needs), read `chunk` records at a time;
    EntityNetError naming the file when it is truncated or corrupt, or holds bytes that are not
    records."""
    if is_remote(path):
        with local_file(path) as local:
            try:
                yield from read_shard(local, decode, chunk)
            except EntityNetError as e:
                raise EntityNetError(str(e).replace(local, os.fspath(path))) from None
        return
    reader = open_reader(path)
    finished = False
    try:
        count = reader.num_records()
        for start in range(0, count, chunk):
            try:
                batch = reader.read(start, min(count, start + chunk)) if chunk > 1 else reader.read([start])
                decoded = [decode(data) for data in batch]
            except (RuntimeError, ValueError, OSError) as e:
                raise corrupt(path, e) from None
            yield from decoded
        finished = True
    finally:
        try:
            reader.close()  # the reader checks the file's end when closed
        except (RuntimeError, OSError) as e:
            if finished:
                raise corrupt(path, e) from None


def check_shard(path: str | os.PathLike) -> int:
    """The number of records of a shard whose index and end are sound; EntityNetError otherwise."""
    reader = open_reader(path)
    try:
        n = reader.num_records()
    except (RuntimeError, OSError) as e:
        raise corrupt(path, e) from None
    finally:
        try:
            reader.close()
        except (RuntimeError, OSError) as e:
            raise corrupt(path, e) from None
    return n


class CheckedSource:
    """Grain's ArrayRecordDataSource over the given shards, checked when opened and on every read:
    a truncated or garbled shard is an EntityNetError naming the file, not a reader traceback."""

    def __init__(self, paths: list[str]):
        import grain

        self.paths, self._ends = paths, []
        total = 0
        for p in paths:  # the index and end of each file are read here: truncation shows now
            total += check_shard(p)
            self._ends.append(total)
        try:
            self._source = grain.sources.ArrayRecordDataSource(paths)
        except (RuntimeError, OSError, ValueError) as e:
            raise corrupt(", ".join(paths[:3]), e) from None

    def _path_of(self, index: int) -> str:
        import bisect

        return self.paths[min(bisect.bisect_right(self._ends, index), len(self.paths) - 1)]

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index):
        try:
            return self._source[index]
        except (RuntimeError, OSError) as e:
            raise corrupt(self._path_of(int(index)), e) from None

    def __getitems__(self, indices):
        try:
            return self._source.__getitems__(indices)
        except (RuntimeError, OSError) as e:
            raise corrupt(self._path_of(int(indices[0])) if len(indices) else self.paths[0], e) from None

    def __repr__(self) -> str:
        return f"CheckedSource({len(self.paths)} shards)"


def iter_records(directory: str | os.PathLike, split: str = "train") -> Iterator[ImageRecord]:
    """Every record of a split, shard by shard (for tools and tests; training reads through Grain)."""
    for path in shard_paths(directory, split):  # checks the directory first
        yield from read_shard(path)
