"""What every pipeline here shares: Beam options from standard flags, running a pipeline so that
an error a user caused (bad endpoint, bad input) comes back as that error, not as a runner traceback,
and outputs that may be remote (gs://, s3://: every file goes through `entitynet.storage`)."""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import re
import shutil
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from entitynet import datacard, errors, records, shards
from entitynet.errors import EntityNetError, OutputError
from entitynet.files import ensure_writable_dir
from entitynet.locks import OutputLock, claim_local_output, claim_output, unclaim_output
from entitynet.storage import STORE, filesystem, is_remote

log = logging.getLogger("entitynet.pipelines")

_USER_ERRORS = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, EntityNetError)]


def pipeline_options(beam_args: list[str] | None) -> PipelineOptions:
    """Standard Beam flags; DirectRunner in one process unless the flags say otherwise."""
    flags = list(beam_args or [])
    if not any(f.startswith("--direct_running_mode") for f in flags):
        flags.append("--direct_running_mode=in_memory")
    return PipelineOptions(flags=flags)


_BEAM_STEP = re.compile(r"\s*\[while running '[^']*'\]\s*$")  # what Beam appends to a worker's error


def user_error(exc: BaseException) -> EntityNetError | None:
    """The EntityNetError behind a pipeline failure. Runners wrap worker exceptions: follow the chain,
    and where only the text survived (another process), rebuild the error from it."""
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, EntityNetError):
            clean = _BEAM_STEP.sub("", str(cur))
            try:
                return cur if clean == str(cur) else type(cur)(clean)
            except TypeError:  # an error class that takes other arguments: keep it as it is
                return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    text = str(exc)
    for cls in sorted(_USER_ERRORS, key=lambda c: len(c.__mro__), reverse=True):  # most specific first
        marker = f"{cls.__module__}.{cls.__name__}: "
        if marker in text:
            # the first line of the message, without the step Beam appends ("[while running 'ReadPool']")
            line = text.split(marker, 1)[1].splitlines()[0]
            return cls(_BEAM_STEP.sub("", line))
    return None


def local_runner(options: PipelineOptions):
    """The runner for a pipeline whose flags name none: Beam's FnApiRunner (the direct runner's
    batch engine, honouring --direct_running_mode and --direct_num_workers). Beam's DirectRunner
    would first try its Prism runner, which downloads a binary from the internet on first use
    (a one-second failure here, where there is no route; a download and another engine elsewhere)."""
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    info = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return fn_runner.FnApiRunner(provision_info=info)


def make_pipeline(beam_args: list[str] | None) -> beam.Pipeline:
    """A pipeline on the runner the flags name, else on the local batch runner (`local_runner`)."""
    options = pipeline_options(beam_args)
    named = any(f == "--runner" or f.startswith("--runner=") for f in beam_args or [])
    return beam.Pipeline(runner=None if named else local_runner(options), options=options)


def run_pipeline(build: Callable[[beam.Pipeline], None], beam_args: list[str] | None) -> None:
    """Build and run a pipeline to completion; user errors surface as themselves."""
    try:
        with make_pipeline(beam_args) as p:
            build(p)
    except Exception as e:
        if str(e).startswith("KeyboardInterrupt"):  # Ctrl-C in a step, wrapped by the runner
            raise KeyboardInterrupt from None
        err = user_error(e)
        if err is not None:
            raise err from None
        raise


def check_output(path: str) -> None:
    """A remote output's filesystem must be known (gs:// needs gcsfs, s3:// s3fs); one clear line."""
    if is_remote(path):
        try:
            filesystem(path)
        except errors.ConfigError as e:
            raise OutputError(str(e)) from None


class PipelineOutput:
    """A driver's output directory, local or remote (gs://…), held by this run alone (an
    `entitynet.locks.OutputLock`, taken on entry). The driver writes its small files into
    `local_dir` (the directory itself when local, a temp directory otherwise) and calls `finish()`
    when done: it checks the lock is still this run's, removes what the run did not write (shards of
    another layout, temp files of killed runs, `obsolete` names) and uploads. Files the pipeline
    stages with `staged(name)` and the temp directory are removed on exit, whether the run succeeded
    or not; a directory this run created and left empty is removed too."""

    def __init__(self, out_dir: str, prefix: str, stage: str = "", earlier: tuple[str, ...] = ()):
        """`earlier`: the files an earlier run of the stage leaves in `out_dir` (its config), by
        which an output made before the ownership marker existed is recognised."""
        self.out_dir, self.remote = out_dir, is_remote(out_dir)
        self.earlier = earlier
        self._marked = False  # this run wrote the output's stage marker
        self.stage = stage or prefix.removeprefix("entitynet-").strip("-")
        self._created = not self.remote and not os.path.exists(out_dir)
        if self.remote:
            check_output(out_dir)
            self.local_dir = tempfile.mkdtemp(prefix=prefix)
        else:
            ensure_writable_dir(out_dir)
            self.local_dir = out_dir
        self.store = STORE
        self.lock = OutputLock(out_dir, self.stage, self.store)
        self._stamp = f".staged-{time.time_ns()}"
        self._staged: list[str] = []

    def staged(self, name: str) -> str:
        """A unique name beside `name` in the output, removed on exit unless renamed before."""
        path = self.store.join(self.out_dir, name + self._stamp)
        self._staged.append(path)
        return path

    def finish(self, keep: list[str] | None = None, obsolete: tuple[str, ...] = ()) -> list[str]:
        """The run's last step, before its results are in place: the lock must still be ours; then
        remove stale files (with `keep`, the shard files of this run's layout: every other shard
        file goes) and `obsolete` names, and upload the local files. Returns what was removed."""
        self.lock.check()
        removed = remove_stale(self.out_dir, keep, obsolete, skip=set(self._staged))
        if self.remote:
            STORE.upload_tree(self.local_dir, self.out_dir)
        return removed

    def __enter__(self) -> PipelineOutput:
        try:
            self.lock.__enter__()
        except BaseException:
            self._remove_if_empty()
            raise
        try:
            self._claim()
        except BaseException as e:
            self.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def _claim(self) -> None:
        """Refuse a directory that is neither new, empty nor an earlier output of this stage
        (`entitynet.locks.output_refusal`); mark it as this stage's."""
        if self.remote:
            names = STORE.list_names(self.out_dir)
            self._marked = claim_output(self.store, self.out_dir, names, self.stage, self.earlier)
        else:
            self._marked = claim_local_output(self.out_dir, self.stage, self.earlier)

    def __exit__(self, *exc) -> None:
        try:
            for leftover in self._staged:
                with contextlib.suppress(FileNotFoundError):
                    STORE.delete(leftover)
            if self.remote:
                shutil.rmtree(self.local_dir, ignore_errors=True)
        finally:
            self.lock.__exit__(*exc)
            if exc[0] is not None:
                self._remove_if_empty()

    def _remove_if_empty(self) -> None:
        """After a failure: a directory this run created, or marked as its stage's, goes back to
        how it was when it holds nothing else (no empty output left behind)."""
        if self._marked:
            with contextlib.suppress(Exception):
                names = STORE.list_names(self.out_dir) if self.remote else os.listdir(self.out_dir)
                unclaim_output(self.store, self.out_dir, names)
        if self._created:
            with contextlib.suppress(OSError):
                os.rmdir(self.out_dir)  # only when empty


def remove_stale(out_dir: str, keep: list[str] | None, obsolete: tuple[str, ...] = (), skip=()) -> list[str]:
    """Remove from `out_dir` the shard files not in `keep` (None: leave shards alone), temp files of
    killed writers, and the `obsolete` names; returns the names removed."""
    names = STORE.list_names(out_dir)
    doomed = [n for n in names if n in obsolete]
    if keep is not None:
        doomed += [n for n in names if shards.is_shard_name(n) and n not in set(keep)]
    doomed += [n for n in names if shards.is_temp_name(n)]
    paths = [p for p in (STORE.join(out_dir, n) for n in sorted(set(doomed))) if p not in skip]
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            STORE.delete(path)
    if paths:
        log.info("removed %d stale file(s) from %s", len(paths), out_dir)
    return [p.rsplit("/", 1)[-1] for p in paths]


# ---------------------------------------------------------------- shard directories


def write_to(out_dir: str, name: str, encoded, digest=None) -> tuple[int, int]:
    """A shard into `out_dir`: in place when local; in a bucket, written to a local temp file (the
    ArrayRecord writer needs one) and uploaded under its name."""
    if not is_remote(out_dir):
        return shards.write_shard(os.path.join(out_dir, name), encoded, digest)
    local_dir = tempfile.mkdtemp(prefix="entitynet-shard-")
    try:
        local = os.path.join(local_dir, name)
        result = shards.write_shard(local, encoded, digest)
        STORE.upload(local, STORE.join(out_dir, name))
        return result
    finally:
        shutil.rmtree(local_dir, ignore_errors=True)


def write_shard_records(out_dir: str, split: str, shard: int, num_shards: int, recs) -> tuple[list, dict]:
    """One (split, shard) group of ImageRecords as an ArrayRecord file, sorted by key; returns the
    sorted records and the shard's stats (split, shard, file, records, bytes, digest of its content)."""
    recs = sorted(recs, key=lambda r: r.key)
    name = shards.shard_filename(split, shard, num_shards)
    digest = shards.shard_digest()
    count, size = write_to(out_dir, name, (records.encode_image(r) for r in recs), digest)
    write_attribution(out_dir, name, recs)
    per_license, per_source = shards.license_counts(recs)
    stats = {"split": split, "shard": shard, "file": name, "records": count, "bytes": size}
    stats.update(per_license=per_license, per_source=per_source)
    return recs, {**stats, "digest": digest.hexdigest()}


def write_attribution(out_dir: str, shard_name: str, recs) -> None:
    """The shard's attribution file (`shards.attribution_lines`), written atomically."""
    data = ("\n".join(shards.attribution_lines(recs)) + "\n").encode()
    STORE.write(STORE.join(out_dir, shards.attribution_name(shard_name)), data)


def attribution_files(layout: dict[str, list[str]]) -> list[str]:
    """The attribution files a dataset of this layout holds (one per shard file)."""
    return [shards.attribution_name(n) for names in layout.values() for n in names]


def sum_shard_counts(shard_stats: list[dict], field: str) -> dict[str, int]:
    """A per-shard count (`per_license`, `per_source`) summed over the shards, largest first."""
    total: Counter = Counter()
    for s in shard_stats:
        total.update(s.get(field) or {})
    return datacard.by_count(total)


def shard_lengths(shard_stats: list[dict], splits: list[str], num_shards: int) -> tuple[dict, dict]:
    """Records per (split, shard) and bytes per split from the writers' stats (missing shards: 0)."""
    lengths = {s: [0] * num_shards for s in splits}
    sizes: dict[str, int] = dict.fromkeys(splits, 0)
    for s in shard_stats:
        lengths[s["split"]][s["shard"]] = s["records"]
        sizes[s["split"]] += s["bytes"]
    return lengths, sizes


def complete_dataset(
    out_dir: str, local_dir: str, lengths: dict, sizes: dict, num_shards: int, shard_stats: list[dict]
) -> None:
    """Make `out_dir` a TFDS dataset: the empty shards every (split, shard) needs, the metadata
    and the content fingerprint from the writers' `shard_stats` (made in `local_dir`, which is
    `out_dir` itself when local; the caller uploads it otherwise)."""
    digests = {s["file"]: s["digest"] for s in shard_stats}
    for split, counts in lengths.items():
        for i, n in enumerate(counts):
            if n == 0:
                name = shards.shard_filename(split, i, num_shards)
                write_to(out_dir, name, [])
                write_attribution(out_dir, name, [])
                digests[name] = shards.shard_digest().hexdigest()
    shards.write_fingerprint(local_dir, digests)
    placeholders = []
    if is_remote(out_dir):  # TFDS names the dataset from the shard files it finds: give it their names
        for split in lengths:
            for i in range(num_shards):
                placeholders.append(os.path.join(local_dir, shards.shard_filename(split, i, num_shards)))
                open(placeholders[-1], "wb").close()
    shards.write_metadata(local_dir, lengths, sizes)
    for path in placeholders:
        os.remove(path)


# ---------------------------------------------------------------- counts and sharded side files


class SumCounters(beam.CombineFn):
    """Sums `collections.Counter`s (or dicts of counts) into one dict: the way every count of a
    pipeline here reaches the driver, never a list of the elements counted."""

    def create_accumulator(self):
        return Counter()

    def add_input(self, acc, counts):
        acc.update(counts)
        return acc

    def merge_accumulators(self, accs):
        out = Counter()
        for a in accs:
            out.update(a)
        return out

    def extract_output(self, acc):
        return dict(acc)


def jsonl_name(kind: str, index: int, num_shards: int) -> str:
    return f"{kind}/{kind}-{index:05d}-of-{num_shards:05d}.jsonl"


class WriteJsonl(beam.PTransform):
    """Elements as JSON lines in `num_shards` files `OUT/<kind>/<kind>-0000i-of-0000N.jsonl`, each
    sorted by `key` and written atomically; outputs each written file's name. A worker holds one
    file's lines at a time (scale `num_shards` with the data, as for the record shards)."""

    def __init__(self, out_dir: str, kind: str, num_shards: int, key, line):
        super().__init__(f"Write{kind.title()}")
        self.out_dir, self.kind, self.num_shards, self.key, self.line = out_dir, kind, num_shards, key, line

    def expand(self, pcoll):
        n, key, line, out_dir, kind = self.num_shards, self.key, self.line, self.out_dir, self.kind

        def write(kv):
            index, items = kv
            rows = sorted((key(x), line(x)) for x in items)
            name = jsonl_name(kind, index, n)
            STORE.write(STORE.join(out_dir, name), "".join(text + "\n" for _, text in rows).encode())
            yield name

        return (
            pcoll
            | "ToFile" >> beam.Map(lambda x: (zlib.crc32(key(x).encode()) % n, x))
            | "ByFile" >> beam.GroupByKey()
            | "Write" >> beam.FlatMap(write)
        )


def remove_unlisted(out_dir: str, kind: str, keep: list[str]) -> list[str]:
    """Remove the files under `OUT/<kind>/` that `keep` does not name (another layout, a killed run)."""
    directory = STORE.join(out_dir, kind)
    doomed = [n for n in STORE.list_names(directory) if f"{kind}/{n}" not in set(keep)]
    for name in doomed:
        with contextlib.suppress(FileNotFoundError):
            STORE.delete(STORE.join(directory, name))
    return sorted(f"{kind}/{n}" for n in doomed)


def shard_inputs(shard_dir: str, allow_empty: bool = False) -> tuple[list[tuple[str, str]], list[str], int]:
    """(split, shard path) pairs, the splits, and the number of records the metadata lists;
    `allow_empty`: a dataset without shard files is no error (the explorer still shows a
    curation's removals)."""
    info = shards.check_directory(shard_dir)
    splits = sorted(s["name"] for s in info.get("splits", []))
    inputs = [(s, str(p)) for s in splits for p in shards.shard_paths(shard_dir, s)]
    if not inputs and not allow_empty:
        raise EntityNetError(f"{shard_dir} holds no shard files; run `entitynet harvest` first")
    if not is_remote(shard_dir):  # a truncated shard fails here, before anything is written (in a
        for _, path in inputs:  # bucket, when its worker reads it: the driver copies no shards)
            shards.check_shard(path)
    total = sum(int(n) for s in info.get("splits", []) for n in s.get("shardLengths", []))
    if not total and not allow_empty:
        raise EntityNetError(
            f"{shard_dir} holds no records: the stage that wrote it kept none (its summary, or the "
            "outcomes in its harvest_stats.json, say why); fix that and run it again"
        )
    return inputs, splits, total


class ReadShard(beam.DoFn):
    """(split, shard path) -> (split, record) for every record of the shard."""

    def process(self, item):
        split, path = item
        for r in shards.read_shard(path):
            yield split, r
