"""Harvest as plain functions: open a search backend from a spec, fetch and process one candidate,
merge exact duplicates, and account for every candidate. `beam_pipelines/harvest.py` runs these
at scale; tests call them directly."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import urllib.parse
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from entitynet.curation import balance
from entitynet.errors import ConfigError, EntityNetError
from entitynet.fetch.fetcher import TRANSIENT, Fetcher, FetchOptions, host_name
from entitynet.images.process import ImageOptions, ImageRejected, process_image
from entitynet.licenses import UNKNOWN, LicenseFilter
from entitynet.links import Linker, LinkRule
from entitynet.options import option
from entitynet.records import (
    Candidate,
    Entity,
    ImageRecord,
    Outcome,
    Provenance,
    Query,
    decode_unit,
    encode_unit,
    from_json,
    image_key,
    merge_images,
    read_jsonl,
)
from entitynet.search import registry
from entitynet.storage import STORE, Store
from entitynet.urls import CREDENTIALS_REFUSED, has_credentials, public_text, public_url, without_credentials

if TYPE_CHECKING:
    from entitynet.search.base import SearchBackend

log = logging.getLogger("entitynet.harvest")


# ---------------------------------------------------------------- records from files (any store)
#
# The pipelines never carry entities or queries inside their job graph: their DoFns get the path of
# entities.jsonl / queries.jsonl and read it on the worker, through the pipelines' store (local,
# gs://, s3://), whole in `setup()` (`records.read_jsonl`) or a byte range at a time (`read_part`).

PART_BYTES = 8 << 20  # a JSONL file is read in parts of about this many bytes (`parts_of`)


def parts_of(path: str, store: Store = STORE) -> list[tuple[str, int, int]]:
    """Small descriptors (path, part, parts) of a JSONL file's parts of about `PART_BYTES`, for
    `read_part` (a pipeline makes them on a worker from the path: its graph holds the path only)."""
    size, _ = store.stat(path)
    parts = max(1, -(-size // PART_BYTES))
    return [(path, i, parts) for i in range(parts)]


def read_part(path: str, part: int, parts: int, cls, store: Store = STORE) -> Iterator:
    """The records of part `part` of `parts` of a JSONL file: the lines whose first byte lies in the
    part's byte range, so every line is read by exactly one part."""
    size, _ = store.stat(path)
    start, end = size * part // parts, size * (part + 1) // parts
    with store.open(path) as f:
        pos = 0
        if start > 0:
            f.seek(start - 1)
            pos = start - 1 + len(f.readline())  # the line under way at `start` is the part before's
        while pos < end:
            line = f.readline()
            if not line:
                break
            at, pos = pos, pos + len(line)
            if line.strip():
                yield _parsed(cls, line, f"{path} (byte {at})")


def _parsed(cls, line: str | bytes, where: str):
    try:
        return from_json(cls, line.decode("utf-8") if isinstance(line, bytes) else line)
    except (ValueError, TypeError) as e:  # UnicodeDecodeError included
        raise EntityNetError(
            f"{where}: not a valid {cls.__name__} record ({e}); regenerate the file with this version"
        ) from None


@dataclass(frozen=True)
class SearchSpec:
    """Which backends and how to reach them; picklable, so workers can open the backends themselves.

    `backend` is one name or several, comma-separated (`searxng,gbif`): every query goes to each
    query backend, the source backends (a pool, a GBIF archive, iNaturalist open data) are read
    whole, and their candidates are merged by URL into one dataset.

    The entities are the file `entities_file` (entities.jsonl, local or remote): a spec that goes
    into a pipeline stays small, and each worker reads the file itself (`iter_entities`).
    `entities` holds them in memory instead, for tests and tools that search without a pipeline
    (the harvest pipeline writes them to a file first)."""

    backend: str = "searxng"
    url: str = ""  # searxng base URL; with one backend, its API URL (google-cse, brave, commons, ...)
    max_results: int = option(20, "images per query (per entity for the identifier backends)")
    requests_per_second: float = option(1.0, "search requests per second per worker", flag="--search-rate")
    pool: tuple[str, ...] | str = ()  # the pool's files and globs for backend "pool" (local or remote)
    entities: tuple[Entity, ...] = ()  # in memory (tests, tools): for the identifier backends, balance_t
    balance_t: int = option(
        0,
        "--backend pool: MetaCLIP-balance the matched rows over the entities before fetching, so only "
        "the kept ones are downloaded (needs --entities; the set `entitynet curate --t T` keeps)",
        metavar="T",
    )
    balance_seed: int = option(0, "seed of the --balance-t draws (as `curate --seed`)")
    endpoints: tuple[tuple[str, str], ...] = ()  # (backend, API URL) overrides, several backends
    contact: str = ""  # e-mail or URL for the User-Agent (Wikimedia, GBIF, iNaturalist etiquette)
    category_depth: int = 1  # commons-category: levels of subcategories listed below the category
    thumb_width: int = 512  # commons-category: width of the thumbnail fetched
    photo_size: str = "medium"  # inaturalist: square|small|medium|large|original
    gbif_archive: str = ""  # gbif-archive: a GBIF Darwin Core Archive download (.zip)
    inaturalist_data: str = ""  # inaturalist-open-data: the directory of its metadata files
    entities_file: str = ""  # entities.jsonl (local or remote): what `entities` holds, read where needed
    # (name, value) of the options of backends whose declarations name no field above (`option`)
    options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        names = self.backends
        declared = [registry.get(name) for name in names]  # an unknown name is refused here
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"--backend {self.backend!r}: name each backend once, comma-separated")
        for name, _ in self.endpoints:
            if name not in names:
                raise ConfigError(f"--endpoint {name}=...: {name} is not among --backend {self.backend}")
        if isinstance(self.pool, str):
            object.__setattr__(self, "pool", (self.pool,) if self.pool else ())
        for b in declared:  # each backend's own requirements and option ranges (its declaration)
            missing = b.check(self) if b.check else ""
            if missing:
                raise ConfigError(missing)
            for opt in b.options:
                opt.check(self.option(opt.field))
        if self.entities and self.entities_file:
            raise ConfigError("give the entities once: in memory or as a file, not both")
        needs = [b.name for b in declared if b.needs_entities]
        if needs and not self.has_entities:
            raise ConfigError(f"--backend {', '.join(needs)} needs --entities (their identifiers and images)")
        if not 1 <= self.max_results <= 1000:
            raise ConfigError(f"--max-results must be within 1..1000, got {self.max_results}")
        if not (self.requests_per_second >= 0 and self.requests_per_second < float("inf")):
            raise ConfigError(f"--search-rate must be a finite rate >= 0, got {self.requests_per_second}")
        if not 0 <= self.balance_t <= 10**12:
            raise ConfigError(f"--balance-t must be within 0..10^12, got {self.balance_t}")
        if self.balance_t and names != ("pool",):
            raise ConfigError(
                "--balance-t balances a pool before fetching (--backend pool alone); "
                "for other backends balance after the harvest with `entitynet curate --t`"
            )
        if self.balance_t and not self.has_entities:
            raise ConfigError("--balance-t needs --entities (the entities.jsonl the queries were made from)")

    def option(self, name: str):
        """A backend option's value: the field of that name, else the entry in `options` (None: not
        given)."""
        if name in _SPEC_FIELDS:
            return getattr(self, name)
        return dict(self.options).get(name)

    @property
    def has_entities(self) -> bool:
        return bool(self.entities or self.entities_file)

    def iter_entities(self, store: Store = STORE) -> Iterator[Entity]:
        """The entities, from memory or streamed from `entities_file` (through `store`)."""
        if self.entities_file:
            return read_jsonl(self.entities_file, Entity)
        return iter(self.entities)

    @property
    def backends(self) -> tuple[str, ...]:
        return tuple(b.strip() for b in self.backend.split(",") if b.strip())

    @property
    def query_backends(self) -> tuple[str, ...]:
        """The backends asked query by query (the others are read whole)."""
        return tuple(b for b in self.backends if not registry.get(b).reads_whole)

    def endpoint(self, name: str) -> str:
        """The API URL of backend `name`: --endpoint NAME=URL, else --searxng-url / --api-url."""
        given = dict(self.endpoints).get(name)
        if given:
            return given
        if name == "searxng" or (len(self.query_backends) == 1 and name in self.query_backends):
            return self.url
        return ""

    def modifiers(self) -> frozenset[str]:
        """The search modifiers at least one of the backends' APIs expresses (each backend drops
        those it cannot express)."""
        return frozenset().union(*(registry.get(b).modifiers for b in self.backends))

    def open_all(self, queries: Iterable[Query] = (), store: Store = STORE) -> list[SearchBackend]:
        """Every query backend, opened by its declaration (a pool alone: its in-memory search, for
        tests and tools); the identifier backends get the entities (`entities_file` read through
        `store`)."""
        names = self.query_backends or self.backends[:1]
        declared = [registry.get(n) for n in names]
        entities = tuple(self.iter_entities(store)) if any(b.needs_entities for b in declared) else ()
        out: list[SearchBackend] = []
        for b in declared:
            if b.open is None:
                raise ConfigError(f"{b.name} is read whole by the harvest, not searched query by query")
            out.append(b.open(self, entities, queries, self.endpoint(b.name) or None))
        return out


@dataclass(frozen=True)
class HarvestOptions:
    fetch: FetchOptions = field(default_factory=FetchOptions)
    image: ImageOptions = field(default_factory=ImageOptions)
    num_shards: int = option(4, "ArrayRecord shards per split", metavar="N")
    splits: tuple[tuple[str, float], ...] = (("train", 0.9), ("validation", 0.05), ("test", 0.05))
    threads: int = option(2, "threads per worker that decode and resize the fetched images")
    work_units: int = 256  # candidates are fetched in this many units (by host), saved in parts (resume)
    save_every: int = 256  # results of a unit saved together (one part file); also when it is done
    host_split: int = 1000  # a host with more candidates is split into slots of this many (`politeness`)
    retry_failed: bool = option(
        False, "re-run: fetch again only candidates that failed transiently (429, 5xx, timeouts, connection)"
    )
    links: LinkRule = field(default_factory=LinkRule)  # pruning of entity links (entitynet.links)
    licenses: str = option(
        "",
        "keep only images under these licence families, e.g. cc0,cc-by,cc-by-sa (families: cc0, cc-by, "
        "cc-by-sa, cc-by-nc, cc-by-nc-sa, cc-by-nd, cc-by-nc-nd, public-domain, unknown); the others are "
        "never fetched (outcome license_excluded)",
        metavar="FAMILIES",
    )
    exclude_licenses: str = option(
        "",
        "leave out these licence families; '*-nc' leaves out every non-commercial one, '*-nd' every "
        "no-derivatives one",
        metavar="FAMILIES",
    )

    @property
    def license_filter(self) -> LicenseFilter:
        return LicenseFilter.parse(self.licenses, self.exclude_licenses)

    def __post_init__(self):
        self.license_filter  # noqa: B018 - a family we do not know is a ConfigError now, not in a worker
        if not 1 <= self.threads <= 1024:
            raise ConfigError(f"--threads must be within 1..1024, got {self.threads}")
        if not 1 <= self.host_split <= 100_000_000:
            raise ConfigError(f"host_split must be between 1 and 100000000, got {self.host_split}")
        if not 1 <= self.save_every <= 1_000_000:
            raise ConfigError(f"save_every must be between 1 and 1000000, got {self.save_every}")
        if not 1 <= self.work_units <= 1_000_000:
            raise ConfigError(f"work units must be between 1 and 1000000, got {self.work_units}")
        if not 1 <= self.num_shards <= 100_000:
            raise ConfigError(f"--num-shards must be between 1 and 100000, got {self.num_shards}")
        if abs(sum(f for _, f in self.splits) - 1.0) > 1e-6 or any(f < 0 for _, f in self.splits):
            raise ConfigError(f"split fractions must be >= 0 and sum to 1, got {dict(self.splits)}")


def host_of(url: str) -> str:
    """The host (and port) a URL's outcome is counted under; never its userinfo."""
    try:
        return urllib.parse.urlsplit(without_credentials(url)).netloc or "(none)"
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return "(invalid)"


def outcome(url: str, reason: str, detail: str = "") -> Outcome:
    """A candidate's outcome as it is written: its URL and any URL quoted in the detail made public
    (`entitynet.urls.public_url`: no credentials, no secret parameters)."""
    return Outcome(public_url(url), host_of(url), reason, public_text(detail)[:200])


def public_candidate(c: Candidate) -> Candidate:
    """`c` as the candidates files show it (its URLs made public)."""
    return replace(c, url=public_url(c.url), page_url=public_url(c.page_url))


def fetch_and_process(fetcher: Fetcher, candidate: Candidate, opts: ImageOptions) -> ImageRecord | Outcome:
    """One candidate to an image record (keyed by content), or its failure outcome."""
    return to_result(candidate, fetcher.fetch(candidate.url), opts)


async def afetch_and_process(
    fetcher: Fetcher, candidate: Candidate, opts: ImageOptions, cpu, slot=None, share: int = 1
) -> ImageRecord | Outcome:
    """`fetch_and_process` on the fetcher's event loop: the image work goes to `cpu` (an executor),
    so the loop keeps the other fetches moving while one image is decoded and resized."""
    r = await fetcher.afetch(candidate.url, slot, share)
    if not r.ok:
        return to_result(candidate, r, opts)
    return await asyncio.get_running_loop().run_in_executor(cpu, to_result, candidate, r, opts)


def to_result(candidate: Candidate, r, opts: ImageOptions) -> ImageRecord | Outcome:
    """A fetch's result (`FetchResult`) to the candidate's record or outcome."""
    if not r.ok:
        return outcome(candidate.url, r.reason or "unknown", r.detail)
    try:
        img = process_image(r.data, opts)
    except ImageRejected as e:
        return outcome(candidate.url, e.reason, str(e))
    url = public_url(candidate.url)  # what the record publishes (`entitynet.urls`)
    return ImageRecord(
        key=image_key(img.sha256),
        jpeg=img.jpeg,
        width=img.width,
        height=img.height,
        url=url,
        page_url=public_url(candidate.page_url),
        alt_texts=candidate.alt_texts,
        query_ids=candidate.query_ids,
        entity_ids=candidate.entity_ids,
        sha256=img.sha256,
        phash=img.phash,
        urls=(url,),
        query_ranks=candidate.ranks or (-1,) * len(candidate.query_ids),
        license=candidate.license or UNKNOWN,
        license_url=candidate.license_url,
        attribution=candidate.attribution,
        provenance=(provenance_of(candidate),),
        id_entities=candidate.id_entities,
    )


def provenance_of(c: Candidate) -> Provenance:
    return Provenance(
        c.backend,
        public_url(c.url),
        public_url(c.page_url),
        c.license or UNKNOWN,
        c.license_url,
        c.attribution,
    )


def prefetch_outcome(c: Candidate, allowed: LicenseFilter) -> Outcome | None:
    """None when the candidate may be fetched, else its outcome (never fetched): a URL with
    credentials (`bad_url`: they are never sent, `entitynet.urls`), a licence that
    `--licenses`/`--exclude-licenses` leaves out (known before the download)."""
    if has_credentials(c.url):
        return outcome(c.url, "bad_url", CREDENTIALS_REFUSED)
    lic = c.license or UNKNOWN
    if allowed.allows(lic):
        return None
    return outcome(c.url, "license_excluded", f"{lic} from {c.backend or 'the source'}")


# ---------------------------------------------------------------- work units (resume)
#
# Candidates are fetched in units (by their host, see `politeness`); a unit's results are saved
# atomically in parts as they come (every `HarvestOptions.save_every` results, and when the unit
# is done). A re-run loads the saved parts instead of fetching those candidates again, so a run
# killed at any point and re-run ends with the same results; shards are always written afresh
# from all units. Units live in a directory named by a digest of the options that decide their
# content (`fetch_settings`): a re-run with other fetch or image options fetches again, never
# reuses results made under the old ones. Search answers are cached under a digest of the search
# settings the same way (`search_settings`).

Result = ImageRecord | Outcome

# FetchOptions fields that change how politely we fetch, not what a fetch gives
_POLITENESS = ("retries", "backoff", "max_retry_wait", "per_host_concurrency", "per_host_rps", "in_flight")


def fetch_settings(opts: HarvestOptions) -> dict:
    """What decides a fetched candidate's result: the fetch policy and the image processing."""
    fetch = {k: v for k, v in asdict(opts.fetch).items() if k not in _POLITENESS}
    return {"fetch": fetch, "image": asdict(opts.image)}


_SPEC_FIELDS = frozenset(f.name for f in fields(SearchSpec))


def search_settings(spec: SearchSpec, store: Store = STORE) -> dict:
    """What decides a search answer besides the query: backends, their endpoints, max results, the
    identifier backends' own options and entities, and for the sources read whole the files
    themselves (path, size, modification time; read through `store`: the local disk, or the
    pipelines' store over any Beam filesystem)."""
    declared = [registry.get(n) for n in spec.backends]
    settings: dict = {"backend": spec.backend, "url": spec.url, "max_results": spec.max_results}
    if spec.endpoints:
        settings["endpoints"] = sorted(spec.endpoints)
    for b in declared:  # each backend's own: its options, the files it reads
        if b.settings is not None:
            settings.update(b.settings(spec, store))
    if any(b.needs_entities for b in declared):
        settings["entities"] = settings_digest(sorted(_entity_sources(e) for e in spec.iter_entities(store)))
    return settings


def _entity_sources(e: Entity) -> list[str]:
    return [e.id, e.image, e.commons_category, e.gbif_id, e.inaturalist_id]


def settings_digest(settings) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:12]


def changed_settings(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted names of the leaves that differ between two settings dicts (e.g. "image.size")."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_settings(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


# Per-host politeness across workers. A host's URLs go to one work unit, so one worker fetches
# them and its per-host limit is the host's limit over the whole run, however many workers there
# are. A host with more than `HarvestOptions.host_split` candidates is split into `slots` (one per
# `host_split` candidates, at most the per-host concurrency) by a hash of the URL, each slot one
# unit with its share (1/slots) of the host's concurrency and rate: its fetching and image work
# spread over the workers (a harvest from one CDN or from Wikimedia Commons is not one worker's
# job) and no host puts more than `host_split` candidates into one unit. The big hosts are found by counting
# candidates per host (`BigHosts` in the pipeline); what reaches a worker is bounded by the number
# of candidates over `host_split`, not by the data. (A host with more than per-host concurrency x
# host_split candidates still gets that many slots only: its units are bigger, its politeness
# stays exact.)


def slots_for(count: int, per_host_concurrency: int, split: int) -> int:
    """How many slots a host with `count` candidates is split into (1 for all but big hosts)."""
    return max(1, min(per_host_concurrency, -(-count // split)))


def politeness(url: str, big_hosts: dict[str, int]) -> tuple[tuple[str, int], int]:
    """The URL's slot ((host, i)) and how many slots its host has."""
    host = host_name(url)
    share = big_hosts.get(host, 1)
    return (host, zlib.crc32(url.encode()) % share if share > 1 else 0), share


def unit_of(url: str, units: int, big_hosts: dict[str, int] | None = None) -> int:
    """The work unit of a URL: by its host's slot, so each slot is fetched by one worker."""
    (host, i), _ = politeness(url, big_hosts or {})
    return zlib.crc32(f"{host}\0{i}".encode()) % units


def unit_dir(work_dir: str, opts: HarvestOptions, store: Store = STORE) -> str:
    return store.join(work_dir, settings_digest(fetch_settings(opts)))


def unit_path(work_dir: str, unit: int, units: int, store: Store = STORE) -> str:
    """The unit's name; its results are saved in parts next to it (`part_path`)."""
    return store.join(work_dir, f"unit-{unit:06d}-of-{units:06d}")


def part_path(path: str, index: int) -> str:
    return f"{path}.{index:05d}.unit"


def load_unit(path: str, store: Store = STORE) -> tuple[dict[str, tuple[Candidate, Result]], int]:
    """url -> (candidate, result) from the unit's saved parts (a later part's answer wins), and how
    many parts there are. A part that cannot be read (another schema version, garbled) is logged
    and its candidates are fetched again."""
    out: dict[str, tuple[Candidate, Result]] = {}
    index = 0
    while (data := store.read(part_path(path, index))) is not None:
        try:
            out.update(decode_unit(data))
        except ValueError as e:
            log.warning(
                "work unit part %s is unusable (%s); fetching its candidates again", part_path(path, index), e
            )
        index += 1
    return out, index


def save_part(
    path: str, index: int, results: dict[str, tuple[Candidate, Result]], store: Store = STORE
) -> None:
    store.write(part_path(path, index), encode_unit(results))


def reusable(previous: tuple[Candidate, Result] | None, candidate: Candidate, retry_failed: bool) -> bool:
    if previous is None or previous[0] != candidate:
        return False
    result = previous[1]
    return not (retry_failed and isinstance(result, Outcome) and result.outcome in TRANSIENT)


def unit_todo(candidates: list[Candidate], previous: dict, retry_failed: bool) -> list[Candidate]:
    """The candidates of a unit that a saved earlier result does not answer."""
    return [c for c in candidates if not reusable(previous.get(c.url), c, retry_failed)]


def merge_duplicates(
    records: Iterable[ImageRecord], linker: Linker | None = None
) -> tuple[ImageRecord | None, list[Outcome]]:
    """Records with the same content key become one (the lowest URL's bytes, everything else merged);
    the other URLs are accounted as duplicates. With a `linker`, the merged record gets its entity
    links (evidence and pruning, `entitynet.links`); one left with no kept link is dropped unless
    the rule keeps unlinked images: (None, outcomes with "unlinked" for its URL)."""
    group = sorted(records, key=lambda r: r.url)
    first = group[0]
    merged = merge_images(first, group[1:])
    dups = [outcome(r.url, "duplicate", f"same bytes as {first.url}") for r in group[1:]]
    if linker is not None:
        merged = linker.apply(merged)
        if not merged.entity_ids and not linker.rule.keep_unlinked:
            found = ", ".join(f"{x.entity} ({x.why})" for x in merged.links[:5])
            detail = (
                f"no entity link kept of {len(merged.links)}: {found}"
                if merged.links
                else "no entity found it"
            )
            return None, [outcome(first.url, "unlinked", detail), *dups]
    return merged, dups


# ---------------------------------------------------------------- statistics from combined counts
#
# The pipeline never gathers outcomes or records in one place: each worker turns what it sees into
# small counters (`outcome_counts`, `record_counts`), Beam sums them, and `summary` makes the stats
# from the sums. Per-candidate outcomes and candidates go to sharded JSONL files instead.

SIZE_BIN = 16  # stored image sizes are counted in bins of this many pixels per side
TOP_HOSTS = 50  # hosts named in harvest_stats.json (all of them: hosts/hosts-*.tsv)


def outcome_counts(o: Outcome) -> Counter:
    return Counter({("outcome", o.outcome): 1})


def record_counts(r: ImageRecord) -> Counter:
    """One written record's share of the counters: its entities and its size bin."""
    c: Counter = Counter(("entity", e) for e in r.entity_ids)
    c[("size", r.width // SIZE_BIN * SIZE_BIN, r.height // SIZE_BIN * SIZE_BIN)] += 1
    return c


def host_row(host: str, per_outcome: dict[str, int]) -> dict:
    urls = sum(per_outcome.values())
    written = per_outcome.get("written", 0)
    return {
        "host": host,
        "urls": urls,
        "written": written,
        "success_rate": round(written / urls, 4) if urls else 0.0,
    }


# outcomes of candidates never fetched: a pool's balancing, the licence filter
NOT_FETCHED = ("balanced_out", "no_entry", "license_excluded")


def balance_candidate(
    c: Candidate, entries: tuple[str, ...], counts: dict[str, int], t: int, seed: int
) -> Outcome | None:
    """MetaCLIP's balancing of a pool before fetching: None when candidate `c` (its `entries`, the
    pool's `counts` per entry) is kept, else its outcome. The draws are `curate`'s (keyed by URL),
    so a pool of distinct images keeps the set `entitynet curate --t T --seed S` would keep."""
    if not entries:
        return outcome(c.url, "no_entry", "its text names no entity's entry")
    # keyed by the URL the record would carry, as curate's draws are
    if balance.keep(public_url(c.url), entries, counts, t, seed):
        return None
    return outcome(c.url, "balanced_out", f"t={t}")


def summary(counts: dict, top_hosts: list[dict]) -> dict:
    """The harvest's stats from the summed counters (`outcome_counts` + `record_counts` + link
    stats) and the hosts with the most URLs. The success rate is over the candidates fetched
    (those a pool's balancing left out were never asked for)."""
    per_outcome = Counter({k[1]: n for k, n in counts.items() if k[0] == "outcome"})
    total = sum(per_outcome.values())
    fetched = total - sum(per_outcome.get(k, 0) for k in NOT_FETCHED)
    sizes = sorted(([k[1], k[2], n] for k, n in counts.items() if k[0] == "size"), key=lambda x: (x[0], x[1]))
    return {
        "candidates": total,
        "fetched": fetched,
        "written": per_outcome.get("written", 0),
        "success_rate": round(per_outcome.get("written", 0) / fetched, 4) if fetched else 0.0,
        "per_outcome": dict(sorted(per_outcome.items(), key=lambda kv: (-kv[1], kv[0]))),
        "per_entity": dict(sorted((k[1], n) for k, n in counts.items() if k[0] == "entity")),
        "links": dict(sorted((k[1], n) for k, n in counts.items() if k[0] == "links")),
        "size_bins": {"bin": SIZE_BIN, "counts": sizes},  # [width, height, records] per bin
        "per_host": {h["host"]: {k: v for k, v in h.items() if k != "host"} for h in top_hosts},
    }


# What stopped every candidate of an empty harvest, by outcome: the cause and what to change.
EMPTY_CAUSES = {
    "blocked_address": "their addresses are loopback or private, which the fetcher refuses: for a "
    "server of your own add --allow-loopback (127.0.0.0/8) or --allow-private (an intranet)",
    "robots_disallowed": "the sites' robots.txt disallows them: for a site of your own add --ignore-robots-txt",
    "robots_unavailable": "the sites' robots.txt could not be read (5xx or unreachable): try again "
    "later, or add --ignore-robots-txt for a site of your own",
    "opted_out": "the servers opt out of AI use (X-Robots-Tag noai/noimageai); choose other sources",
    "license_excluded": "their licences are left out by --licenses/--exclude-licenses; widen them",
    "balanced_out": "the pool's balancing (--balance-t) left them all out; raise --balance-t",
    "no_entry": "their texts name no entity's entry; check the pool's texts against the entities' names",
    "too_small": "the images are smaller than --min-image-size; lower it",
    "bad_aspect": "the images are more elongated than --max-aspect-ratio; raise it",
    "not_an_image": "the URLs do not answer with images (an HTML page?); check the URLs",
    "connection_error": "the servers cannot be reached; check that they run and the URLs' hosts and ports",
    "timeout": "the servers did not answer in time; check them, or raise --total-timeout",
    "http_404": "the servers answer 404 Not Found; check the URLs",
    "http_429": "the servers answer 429 Too Many Requests; lower --per-host-rps and run again to resume",
    "http_5xx": "the servers answer 5xx errors; run again later (add --retry-failed)",
    "unlinked": "no image could be linked to an entity (the alt texts name none); see "
    "`entitynet harvest --help` for --keep-unlinked and --link-max-rank",
}


def empty_harvest(stats: dict, out: str) -> str | None:
    """Why a harvest wrote nothing, and what to do (the one line of its error); None when it wrote
    records."""
    if stats.get("written"):
        return None
    per_outcome = stats.get("per_outcome") or {}
    total = stats.get("candidates", 0)
    if not total:
        return (
            f"the harvest in {out} found no candidate image: no search result or pool row matched an "
            "entity's name (a pool's texts must contain the entities' labels, as queries.jsonl lists them)"
        )
    top, n = max(per_outcome.items(), key=lambda kv: (kv[1], kv[0]))
    share = "all" if n == total else f"{n:,} of the"
    cause = EMPTY_CAUSES.get(top, f"see {out}/outcomes/ for each URL's detail")
    return f"the harvest in {out} wrote no image: {share} {total:,} candidates ended as {top}: {cause}"


def read_outcomes(out_dir: str) -> list[Outcome]:
    """Every candidate's outcome from a harvest's `outcomes/` files, as its `harvest_stats.json`
    lists them (for tests and tools; `cat OUT/outcomes/*.jsonl` reads them too)."""
    return [Outcome(**row) for row in _listed_rows(out_dir, "outcomes")]


def read_candidates(out_dir: str) -> list[Candidate]:
    """Every candidate of a harvest from its `candidates/` files (for tests and tools)."""
    from entitynet.records import from_json

    return [from_json(Candidate, json.dumps(row)) for row in _listed_rows(out_dir, "candidates")]


def _listed_rows(out_dir: str, kind: str) -> list[dict]:
    with open(os.path.join(out_dir, "harvest_stats.json"), encoding="utf-8") as f:
        files = json.load(f)["files"][kind]
    rows = []
    for name in files:
        with open(os.path.join(out_dir, name), encoding="utf-8") as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows
