"""Which entities can be photographed, and what kind of thing each one is: `entitynet kg classify`.

The EntityNet reference asks an LLM, for every entity, for its "natural type" (the class a person
would name, neither too general nor too specific) among the entity's top super-types, and whether
it is visual; non-visual entities get no search queries. For living things it checks that each
entity under the animal (plant) kingdom is an animal (a plant). This module does both, in one
place, with two deciders:

- an LLM (`entitynet.text.llm.LLMClient`: any OpenAI-compatible chat-completions server), asked
  about `batch_size` entities per request under a JSON schema, the answer validated again here;
  requests run `concurrency` at a time under a rate limit, and every answer is cached by a
  digest of the model and the whole request (`AnswerCache`), so a re-run, or a run resumed after
  a kill, asks nothing twice;
- without an LLM, the KG rule (`kg_rule`), deterministic and labelled "kg-rule" wherever its
  decisions show:

      world mode:  visual  <=>  under physical object (Q223557)
                                or (has an image (P18) and not under abstract object (Q7184903))
      living mode: in scope and visual  <=>  a taxon or a fruit (reached by parent taxon, or with
                                a taxon name), or a class with an image that is not abstract

  ("under" = instance or subclass of, at any depth). The natural type stays the expansion's.

An entity the model gives no valid answer for after `tries` requests, or that the model refuses,
is decided by the KG rule, and says so ("kg-rule (no valid answer from MODEL)").

Candidates for the natural type come from the graph, as in the reference: the entity's
super-types within `hops` (3) steps up its mode's links (P279 in world mode; P171 and P279 in
living mode), the `candidates` (10) with the most sitelinks.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from entitynet.errors import ConfigError
from entitynet.http_policy import RateLimiter
from entitynet.kg import ids, sparql
from entitynet.kg.client import SparqlClient
from entitynet.kg.expand import fetch_sitelinks, label_of, parse_texts
from entitynet.records import Entity
from entitynet.storage import STORE, Store

PHYSICAL_OBJECT = "Q223557"
ABSTRACT_OBJECT = "Q7184903"
KINGDOM_NAMES = {"Q729": "an animal", "Q756": "a plant", "Q764": "a fungus"}
REASON_CHARS = 200
KG_RULE = "kg-rule"


@dataclass(frozen=True)
class ClassifyConfig:
    """What decides the classification (saved as classify_config.json)."""

    mode: str = "world"  # living | world: the expansion's mode
    hops: int = 3  # natural-type candidates: super-types within this many steps up
    candidates: int = 10  # ... the ones with the most sitelinks
    batch_size: int = 10  # entities per LLM request
    concurrency: int = 4  # requests in flight
    requests_per_second: float | None = None  # None: no limit
    tries: int = 3  # requests per batch before its entities fall back to the KG rule
    kg_batch_size: int = 200  # ids per SPARQL query

    def check(self) -> ClassifyConfig:
        if self.mode not in ("living", "world"):
            raise ConfigError(f"unknown mode {self.mode!r}: use living or world")
        for name, value, lo, hi in (
            ("--hops", self.hops, 1, 6),
            ("--candidates", self.candidates, 1, 50),
            ("--llm-batch-size", self.batch_size, 1, 100),
            ("--llm-concurrency", self.concurrency, 1, 256),
            ("--llm-tries", self.tries, 1, 10),
        ):
            if not lo <= value <= hi:
                raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
        if self.requests_per_second is not None and not self.requests_per_second > 0:
            raise ConfigError(f"--llm-requests-per-second must be > 0, got {self.requests_per_second}")
        return self

    @property
    def via(self) -> tuple[str, ...]:
        return ("P171", "P279") if self.mode == "living" else ("P279",)


@dataclass(frozen=True)
class Facts:
    """What the graph says about one entity, for its classification."""

    candidates: tuple[
        tuple[str, str], ...
    ] = ()  # (id, label) of natural-type candidates, most sitelinks first
    physical: bool = False  # under physical object
    abstract: bool = False  # under abstract object


@dataclass(frozen=True)
class Decision:
    entity: str
    visual: bool
    by: str  # "llm:MODEL", "kg-rule" or "kg-rule (why the model did not decide)"
    reason: str
    natural_type: str = ""  # "" keeps the expansion's
    natural_type_label: str = ""


# ---------------------------------------------------------------- the graph's facts


def fetch_facts(
    client: SparqlClient, entities: Sequence[Entity], cfg: ClassifyConfig, languages: Sequence[str]
) -> dict[str, Facts]:
    """Candidates and upper-ontology membership of every entity, in batches of `kg_batch_size`."""
    out: dict[str, Facts] = {}
    ents = [e.id for e in entities]
    for start in range(0, len(ents), cfg.kg_batch_size):
        batch = ents[start : start + cfg.kg_batch_size]
        supers: dict[str, set[str]] = {e: set() for e in batch}
        for r in client.select(sparql.supertypes(batch, cfg.via, cfg.hops)):
            e, s = _id(r.get("e")), _id(r.get("s"))
            if e in supers and s and s.startswith("Q") and s != e:
                supers[e].add(s)
        tops: dict[str, set[str]] = {e: set() for e in batch}
        for r in client.select(sparql.under(batch, (PHYSICAL_OBJECT, ABSTRACT_OBJECT))):
            e, t = _id(r.get("e")), _id(r.get("top"))
            if e in tops and t:
                tops[e].add(t)
        every = sorted({s for ss in supers.values() for s in ss}, key=ids.numeric)
        links: dict[str, int] = {}
        labels: dict = {}
        for i in range(0, len(every), cfg.kg_batch_size):
            part = every[i : i + cfg.kg_batch_size]
            links.update(fetch_sitelinks(client, part))
            labels.update(parse_texts(client.select(sparql.texts(part, languages, labels_only=True))))
        for e in batch:
            ranked = sorted(supers[e], key=lambda s: (-links.get(s, 0), ids.numeric(s)))
            named = [(s, label_of(labels, s, languages)) for s in ranked]
            named = [(s, label) for s, label in named if label][: cfg.candidates]
            out[e] = Facts(
                candidates=tuple(named),
                physical=PHYSICAL_OBJECT in tops[e] or e == PHYSICAL_OBJECT,
                abstract=ABSTRACT_OBJECT in tops[e] or e == ABSTRACT_OBJECT,
            )
    return out


def _id(term) -> str | None:
    return ids.id_from_iri(term.value) if term is not None and term.type == "uri" else None


# ---------------------------------------------------------------- the KG rule


def kg_rule(entity: Entity, facts: Facts, mode: str, by: str = KG_RULE) -> Decision:
    """The deterministic decision from the graph alone (see the module's docstring)."""
    image = bool(entity.image)
    if mode == "living":
        if entity.kind in ("taxon", "fruit"):
            return Decision(entity.id, True, by, f"a {entity.kind} under {entity.root}")
        if image and not facts.abstract:
            return Decision(entity.id, True, by, "not a taxon, but a class with an image")
        why = "under abstract object" if facts.abstract else "no image"
        return Decision(entity.id, False, by, f"not a taxon or a fruit, and {why}")
    if facts.physical:
        return Decision(entity.id, True, by, "under physical object")
    if image and not facts.abstract:
        return Decision(entity.id, True, by, "has an image and is not under abstract object")
    if facts.abstract:
        return Decision(entity.id, False, by, "under abstract object, not under physical object")
    return Decision(entity.id, False, by, "no image, and not under physical object")


# ---------------------------------------------------------------- the LLM's request and answer


def schema(batch: Sequence[Entity], facts: dict[str, Facts], mode: str) -> dict:
    """The JSON schema of one answer: one object per entity of the batch."""
    candidates = sorted({c for e in batch for c, _ in facts[e.id].candidates}, key=ids.numeric)
    props: dict = {
        "id": {"type": "string", "enum": [e.id for e in batch]},
        "natural_type": {"type": "string", "enum": [*candidates, ""]},
        "visual": {"type": "boolean"},
        "reason": {
            "type": "string"
        },  # cut to REASON_CHARS here (no length keywords: not every server takes them)
    }
    if mode == "living":
        props["in_kingdom"] = {"type": "boolean"}
    item = {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}
    return {
        "type": "object",
        "properties": {"entities": {"type": "array", "items": item}},
        "required": ["entities"],
        "additionalProperties": False,
    }


def messages(batch: Sequence[Entity], facts: dict[str, Facts], mode: str) -> list[dict]:
    system = (
        "You judge entities of a knowledge graph for an image dataset that is built by searching the "
        "web for photos of each entity. Answer with JSON only."
    )
    asks = [
        "natural_type: the id of the candidate class a person would name for it - neither too general "
        'nor too specific - or "" when none fits',
        "visual: true when photos can show it (an object, organism, material, place, building, food, "
        "vehicle...), false for abstract things (concepts, fields of study, methods, events without a "
        "fixed look, processes, services, software, properties)",
        "reason: one short sentence",
    ]
    if mode == "living":
        asks.append("in_kingdom: true when it really is a living thing of the kingdom named after it")
    lines = []
    for e in batch:
        f = facts[e.id]
        cands = "; ".join(f"{c} {label}" for c, label in f.candidates) or "none"
        kingdom = f" [kingdom: {KINGDOM_NAMES.get(e.root, e.root)}]" if mode == "living" else ""
        lines.append(
            f"- {e.id}: {e.label} - {e.description or 'no description'}{kingdom}. Candidates: {cands}"
        )
    user = (
        "For each entity below give:\n"
        + "\n".join(f"{i + 1}. {a}" for i, a in enumerate(asks))
        + "\n\nEntities:\n"
        + "\n".join(lines)
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_answer(
    content: str, batch: Sequence[Entity], facts: dict[str, Facts], mode: str, by: str
) -> dict[str, Decision]:
    """The valid decisions of an answer (ValueError when it is not the schema's JSON at all). An
    entity given twice, or with a natural type that is not among its candidates, or with a field
    of the wrong type, gets no decision (the caller asks again)."""
    doc = json.loads(content)
    items = doc.get("entities") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ValueError("no 'entities' list")
    wanted = {e.id: e for e in batch}
    seen: Counter = Counter(it.get("id") for it in items if isinstance(it, dict))
    out: dict[str, Decision] = {}
    for it in items:
        if not isinstance(it, dict):
            continue
        e, nt, visual, reason = it.get("id"), it.get("natural_type"), it.get("visual"), it.get("reason")
        if e not in wanted or seen[e] != 1:
            continue
        if not (isinstance(nt, str) and isinstance(visual, bool) and isinstance(reason, str)):
            continue
        names = dict(facts[e].candidates)
        if nt and nt not in names:
            continue
        reason = " ".join(reason.split())[:REASON_CHARS]
        if mode == "living":
            in_kingdom = it.get("in_kingdom")
            if not isinstance(in_kingdom, bool):
                continue
            if not in_kingdom:
                kingdom = KINGDOM_NAMES.get(wanted[e].root, wanted[e].root)
                visual, reason = False, f"not {kingdom}: {reason}"
        out[e] = Decision(e, visual, by, reason, nt, names.get(nt, ""))
    return out


# ---------------------------------------------------------------- the answer cache


class AnswerCache:
    """Answers stored as one JSON file per request, named by a digest of the model and the whole
    request (messages and schema): a re-run, or a run resumed after a kill, sends only what has no
    answer yet. Each file is written whole (`Store.write`), so a kill never leaves half of one."""

    def __init__(self, directory: str, store: Store = STORE):
        self.dir, self.store = directory, store

    @staticmethod
    def key(model: str, msgs: list[dict], json_schema: dict) -> str:
        body = json.dumps([model, msgs, json_schema], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(body.encode()).hexdigest()[:32]

    def get(self, key: str) -> dict | None:
        data = self.store.read(self.store.join(self.dir, f"{key}.json"))
        if data is None:
            return None
        try:
            doc = json.loads(data)
        except ValueError:
            return None  # garbled: asked again
        return doc if isinstance(doc, dict) and ("content" in doc or "refusal" in doc) else None

    def put(self, key: str, doc: dict) -> None:
        self.store.write(
            self.store.join(self.dir, f"{key}.json"), json.dumps(doc, ensure_ascii=False).encode()
        )


# ---------------------------------------------------------------- the run


@dataclass
class Tally:
    """What a classification did, for its stats and its summary (thread-safe counters)."""

    requests: int = 0  # sent to the model
    cached: int = 0  # answered from the cache
    invalid: int = 0  # answers that were not the schema's JSON, or left entities undecided
    refused: int = 0  # requests the model refused
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)


def ask_batch(
    llm, batch: list[Entity], facts: dict[str, Facts], cfg: ClassifyConfig, cache: AnswerCache | None,
    limiter: RateLimiter, tally: Tally,
) -> dict[str, Decision]:  # fmt: skip
    """Decisions for one batch: asked until every entity has a valid one or `tries` requests are
    spent; the rest fall back to the KG rule, labelled with why."""
    from entitynet.text.llm import LLMRefusal

    by = f"llm:{llm.model}"
    decided: dict[str, Decision] = {}
    pending = list(batch)
    fallback = f"{KG_RULE} (no valid answer from {llm.model})"
    for _ in range(cfg.tries):
        msgs, sch = messages(pending, facts, cfg.mode), schema(pending, facts, cfg.mode)
        key = AnswerCache.key(llm.model, msgs, sch)
        doc = cache.get(key) if cache is not None else None
        if doc is not None:
            tally.add(cached=1)
        else:
            limiter.wait()
            tally.add(requests=1)
            try:
                doc = {"content": llm.complete(msgs, sch, name="entities")}
            except LLMRefusal as e:
                doc = {"refusal": str(e)}
        if "refusal" in doc:
            tally.add(refused=1)
            if cache is not None:
                cache.put(key, doc)
            fallback = f"{KG_RULE} (the model refused)"
            break
        try:
            got = parse_answer(doc["content"], pending, facts, cfg.mode, by)
        except (ValueError, TypeError, AttributeError):
            tally.add(invalid=1)
            continue  # not cached: asked again
        if len(got) < len(pending):
            tally.add(invalid=1)
        if not got:
            continue  # nothing usable: not cached, asked again
        if cache is not None:
            cache.put(key, doc)
        decided.update(got)
        pending = [e for e in pending if e.id not in got]
        if not pending:
            break
    for rest in pending:
        decided[rest.id] = kg_rule(rest, facts[rest.id], cfg.mode, by=fallback)
    return decided


def classify(
    entities: Sequence[Entity],
    facts: dict[str, Facts],
    cfg: ClassifyConfig,
    llm=None,
    cache: AnswerCache | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Decision], Tally]:
    """A decision for every entity: by the LLM when one is given, else by the KG rule. Batches are
    fixed by the entities' order (so a re-run sends the same requests and finds them cached)."""
    tally = Tally()
    if llm is None:
        decided = {e.id: kg_rule(e, facts[e.id], cfg.mode) for e in entities}
        if progress:
            progress(len(entities))
        return decided, tally
    batches = [list(entities[i : i + cfg.batch_size]) for i in range(0, len(entities), cfg.batch_size)]
    limiter = RateLimiter(cfg.requests_per_second)
    out: dict[str, Decision] = {}
    with ThreadPoolExecutor(cfg.concurrency) as pool:
        futures = [pool.submit(ask_batch, llm, b, facts, cfg, cache, limiter, tally) for b in batches]
        try:
            for f in futures:
                out.update(f.result())
                if progress:
                    progress(len(out))
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return out, tally


def apply(entity: Entity, d: Decision) -> Entity:
    """The entity with its decision (and the model's natural type, when it chose one)."""
    e = replace(entity, visual=d.visual, visual_by=d.by, visual_reason=d.reason)
    if d.natural_type:
        e = replace(e, natural_type=d.natural_type, natural_type_label=d.natural_type_label or d.natural_type)
    return e


@dataclass
class Counts:
    """The stats of a classification, counted as entities are written (nothing held per entity)."""

    entities: int = 0
    left_out: int = 0
    changed: int = 0
    decided_by: Counter = field(default_factory=Counter)
    left_out_by: Counter = field(default_factory=Counter)
    per_natural_type: Counter = field(default_factory=Counter)

    def add(self, before: Entity, after: Entity) -> None:
        self.entities += 1
        self.changed += before.natural_type != after.natural_type
        self.decided_by[after.visual_by] += 1
        if after.visual is False:
            self.left_out += 1
            self.left_out_by[after.visual_by] += 1
        else:
            self.per_natural_type[after.natural_type_label] += 1

    def stats(self, tally: Tally, seconds: float) -> dict:
        return {
            "entities": self.entities,
            "kept": self.entities - self.left_out,
            "left_out": self.left_out,
            "decided_by": dict(self.decided_by.most_common()),
            "left_out_by": dict(self.left_out_by.most_common()),
            "natural_types_changed": self.changed,
            "requests": tally.requests,
            "cached_answers": tally.cached,
            "invalid_answers": tally.invalid,
            "refused": tally.refused,
            "seconds": round(seconds, 2),
            "per_natural_type": dict(self.per_natural_type.most_common()),
        }


ENTITIES = "entities.jsonl"
LEFT_OUT = "left_out.jsonl"
STATS = "classify_stats.json"
CONFIG = "classify_config.json"
CACHE = "llm_cache"


def expansion_settings(entities_path: str) -> dict:
    """The mode and languages of the expansion that wrote `entities_path` (its expand_config.json;
    a classified directory carries a copy)."""
    path = STORE.beside(entities_path, "expand_config.json")
    data = STORE.read(path)
    if data is None:
        raise ConfigError(
            f"{path} is missing: give the entities.jsonl of an `entitynet kg expand` output (its "
            "expand_config.json says the mode)"
        )
    try:
        doc = json.loads(data)
        expand = doc["expand"]
        return {"doc": doc, "mode": str(expand["mode"]), "languages": tuple(expand["languages"])}
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{path} is not an expansion's config; re-run `entitynet kg expand`") from None


def run(
    entities: Iterable[Entity],
    entities_path: str,
    client: SparqlClient,
    source: str,
    out_dir: str,
    cfg: ClassifyConfig,
    llm=None,
    endpoint: str = "",
    progress: Callable[[int], None] | None = None,
    chunk: int = 5000,
) -> dict:
    """Classify and write OUT/entities.jsonl (the kept entities), OUT/left_out.jsonl, the stats and
    the config. The entities go `chunk` at a time (their facts, their decisions, then written), so
    memory does not grow with the graph; each file is put in place whole when all are done, and
    the LLM's answers are cached in OUT/llm_cache as they arrive. `progress(n)`: n entities done."""
    import time

    from entitynet.records import to_json

    started = time.time()
    settings = expansion_settings(entities_path)
    cfg = replace(cfg, mode=settings["mode"]).check()
    cache = AnswerCache(STORE.join(out_dir, CACHE)) if llm is not None else None
    counts, tally = Counts(), Tally()
    stream = iter(entities)
    with (
        STORE.open_write(STORE.join(out_dir, ENTITIES), text=True) as kept,
        STORE.open_write(STORE.join(out_dir, LEFT_OUT), text=True) as left,
    ):
        while part := list(itertools.islice(stream, chunk)):
            facts = fetch_facts(client, part, cfg, settings["languages"])
            decided, t = classify(part, facts, cfg, llm, cache, _shifted(progress, counts.entities))
            tally.add(requests=t.requests, cached=t.cached, invalid=t.invalid, refused=t.refused)
            for e in part:
                done = apply(e, decided[e.id])
                counts.add(e, done)
                (left if done.visual is False else kept).write(to_json(done) + "\n")
    st = counts.stats(tally, time.time() - started)
    doc = {
        "source": source,
        "entities": entities_path,
        "decider": f"llm:{llm.model}" if llm is not None else KG_RULE,
        "llm_endpoint": endpoint,
        "classify": dict(cfg.__dict__),
    }
    STORE.write(STORE.join(out_dir, "expand_config.json"), json.dumps(settings["doc"], indent=2).encode())
    STORE.write(STORE.join(out_dir, CONFIG), json.dumps(doc, indent=2, sort_keys=True).encode())
    STORE.write(STORE.join(out_dir, STATS), json.dumps(st, indent=2, sort_keys=True).encode())
    return st


def _shifted(progress: Callable[[int], None] | None, base: int) -> Callable[[int], None] | None:
    return None if progress is None else (lambda n: progress(base + n))


def iter_left_out(entities_path: str) -> Iterator[Entity]:
    """The entities `kg classify` left out beside an entities.jsonl, read as they are used (none
    when it has no left_out.jsonl)."""
    from entitynet.records import read_jsonl

    path = STORE.beside(entities_path, LEFT_OUT)
    if STORE.exists(path):
        yield from read_jsonl(path, Entity)


def read_left_out(entities_path: str, limit: int | None = None) -> list[Entity]:
    """`iter_left_out`, the first `limit` (None: all)."""
    return list(itertools.islice(iter_left_out(entities_path), limit))


def left_out_summary(left: Iterable[Entity], shown: int = 50) -> dict | None:
    """For a data card: how many were left out, by whom, and the first `shown` with why (read once,
    nothing more held)."""
    count, by = 0, Counter[str]()
    first: list[list[str]] = []
    for e in left:
        count += 1
        by[e.visual_by] += 1
        if len(first) < shown:
            first.append([e.id, e.label, e.visual_by, e.visual_reason])
    if not count:
        return None
    return {"count": count, "by": dict(by.most_common()), "entities": first}
