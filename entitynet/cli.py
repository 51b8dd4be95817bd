"""The `entitynet` command: one subcommand per stage, plus `demo`.

    entitynet kg expand --kg-file entitynet/data/sample_kg.ttl --out out/kg
    entitynet kg expand --endpoint qlever --mode living --root Q729 --root Q756 --out out/kg
    entitynet queries --entities out/kg/entities.jsonl --out out/queries
    entitynet captions --entities out/kg/entities.jsonl --entity Q140
    entitynet harvest --queries out/queries/queries.jsonl --backend searxng --searxng-url URL --out out/shards
    entitynet curate --shards out/shards --entities out/kg/entities.jsonl --t 20000 \
        --decontaminate eval/imagefolder --out out/curated
    entitynet tokenizer train --shards out/curated --entities out/kg/entities.jsonl
    entitynet train --config configs/tiny_cpu.py --workdir runs/tiny --config.total_steps=500
    entitynet demo --out demo-out

Errors a user can cause print one line and exit 2; anything else is a bug with a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import os
import sys
import time
from collections import Counter
from importlib import resources
from pathlib import Path

from entitynet.errors import ConfigError, EntityNetError

log = logging.getLogger("entitynet")

SAMPLE_ROOTS = ("Q729", "Q756", "Q764")  # animal, plant, fungus: everything in the sample graph


def sample_kg_path() -> str:
    return str(resources.files("entitynet") / "data" / "sample_kg.ttl")


def _setup_logging(verbose: bool) -> None:
    # Beam and Google client libraries log warnings at import that say nothing to our users.
    logging.basicConfig(level=logging.ERROR, format="%(message)s", stream=sys.stderr)
    logging.getLogger("entitynet").setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:
        logging.getLogger().setLevel(logging.INFO)
    else:  # a worker's failure comes back to us as an exception; Beam's logged traceback of it is noise
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)


def _table(counts: dict[str, int], indent: str = "  ") -> str:
    if not counts:
        return f"{indent}(none)"
    width = max(len(k) for k in counts)
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return "\n".join(f"{indent}{k:<{width}}  {v:>7,}" for k, v in rows)


# ---------------------------------------------------------------- kg expand


def _kg_source(args):
    from entitynet.kg.client import KGSource

    return KGSource(
        endpoint=args.endpoint,
        kg_files=tuple(args.kg_file or ()),
        contact=args.contact,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        max_retries=args.retries,
        requests_per_second=args.requests_per_second,
    )


def expand_summary(stats: dict, source: str, min_sitelinks: int, out: Path) -> str:
    below = stats["traversed"] - stats["selected"]
    return (
        f"expanded {stats['entities']:,} entities from {source} in {stats['seconds']:.1f} s "
        f"({stats['traversed']:,} traversed, {stats['products']:,} fruits, {below:,} below {min_sitelinks} "
        f"sitelinks, depth {stats['max_depth_reached']}; walked by {_walked(stats)})\n"
        f"entities per natural type:\n{_table(stats['per_natural_type'])}\n"
        f"wrote {out / 'entities.jsonl'}"
    )


def _walked(stats: dict) -> str:
    how = f"{stats.get('strategy', '?')}, {stats.get('traversal_queries', 0):,} queries"
    if stats.get("closure_fallback_reason"):
        how += "; the closure query did not answer"
    return how


def cmd_kg_expand(args, beam_args: list[str]) -> int:
    from beam_pipelines import expand_kg
    from entitynet.kg.expand import ExpandConfig

    source = _kg_source(args)
    cfg = ExpandConfig(
        mode=args.mode,
        roots=tuple(args.root or ()),
        min_sitelinks=args.min_sitelinks,
        languages=tuple(args.language or ("en",)),
        natural_types=tuple(args.natural_type) if args.natural_type else None,
        max_depth=args.max_depth,
        batch_size=args.batch_size,
    )
    stats = expand_kg.run(source, cfg, args.out, beam_args, args.strategy, args.closure_timeout)
    print(expand_summary(stats, source.describe(), cfg.min_sitelinks, Path(args.out)))
    return 0


# ---------------------------------------------------------------- queries


def _load_entities(path: str):
    from entitynet.records import Entity, read_jsonl

    entities = list(read_jsonl(path, Entity))
    if not entities:
        raise EntityNetError(f"{path} holds no entities; run `entitynet kg expand` first")
    return entities


def make_queries(entities, out_dir: str, cfg, llm=None, llm_top: int = 0) -> tuple[list, dict]:
    """Queries for `entities` (optionally with LLM attributes for the top `llm_top`), written to out_dir."""
    from tqdm import tqdm

    from entitynet.files import ensure_writable_dir, write_json
    from entitynet.records import write_jsonl
    from entitynet.text.queries import build_queries

    out = ensure_writable_dir(out_dir)
    started = time.time()
    llm_stats = {}
    if llm is not None and llm_top > 0:
        ranked = sorted(range(len(entities)), key=lambda i: -entities[i].sitelinks)[:llm_top]
        failed = 0
        for i in tqdm(ranked, desc="LLM attributes", unit="entity", file=sys.stderr):
            attrs = llm.attributes(entities[i])
            if attrs is None:
                failed += 1
                continue
            entities[i] = dataclasses.replace(entities[i], attributes=entities[i].attributes + tuple(attrs))
        llm_stats = {"llm_entities": len(ranked), "llm_failed": failed}
    queries = build_queries(entities, cfg)
    write_jsonl(out / "queries.jsonl", queries)
    stats = {
        "entities": len(entities),
        "queries": len(queries),
        "per_kind": dict(Counter(q.kind for q in queries).most_common()),
        "seconds": round(time.time() - started, 2),
        **llm_stats,
    }
    write_json(out / "queries_config.json", {"queries": dataclasses.asdict(cfg), "stats": stats})
    return queries, stats


def exclude_terms(args) -> tuple[str, ...]:
    from entitynet.text.queries import EXCLUDE_TERMS

    if args.no_exclude_terms:
        return ()
    if args.exclude_terms is None:
        return EXCLUDE_TERMS
    terms = tuple(t.strip() for t in args.exclude_terms.split(",") if t.strip())
    if not terms or any(" " in t or t.startswith("-") for t in terms):
        raise ConfigError(
            f"--exclude-terms {args.exclude_terms!r}: give comma-separated single words without '-' "
            "(e.g. drawing,clipart), or --no-exclude-terms"
        )
    return terms


def cmd_queries(args, _extra) -> int:
    from entitynet.text.llm import LLMClient
    from entitynet.text.queries import QueryConfig

    entities = _load_entities(args.entities)
    cfg = QueryConfig(
        base_budget=args.base_budget,
        max_per_entity=args.max_per_entity,
        attribute_queries=not args.no_attribute_queries,
        living=any(e.kind in ("taxon", "fruit") for e in entities),
        photo_type=None if args.photo_type.strip().lower() in ("", "none") else args.photo_type.strip(),
        exclude_terms=exclude_terms(args),
        or_terms=not args.no_or_terms,
    )
    llm = None
    if args.llm_endpoint:
        if not args.llm_model:
            raise ConfigError("--llm-endpoint needs --llm-model NAME")
        llm = LLMClient(args.llm_endpoint, args.llm_model, api_key_env=args.llm_key_env)
    _, stats = make_queries(entities, args.out, cfg, llm, args.llm_top)
    print(
        f"{stats['queries']:,} queries for {stats['entities']:,} entities in {stats['seconds']:.1f} s\n"
        f"queries per kind:\n{_table(stats['per_kind'])}\n"
        f"modifiers: photo type {cfg.photo_type or 'none'}; exclude terms "
        f"{' '.join(cfg.exclude_terms) or 'none'}; or-terms {'on' if cfg.or_terms else 'off'} "
        "(each backend sends what its API can express)\n"
        f"wrote {Path(args.out) / 'queries.jsonl'}"
    )
    return 0


# ---------------------------------------------------------------- harvest


def harvest_summary(stats: dict, out: str | Path) -> str:
    dropped = (stats.get("modifiers") or {}).get("dropped") or {}
    note = (
        "search modifiers no backend of this harvest can express, dropped: "
        + ", ".join(f"{k.replace('_', ' ')} ({n:,} queries)" for k, n in dropped.items())
        + "\n"
        if dropped
        else ""
    )
    pb = stats.get("pool_balance")
    if pb:
        note += (
            f"pool balanced at t={pb['t']:,} before fetching: {pb['before']['entries']:,} entries "
            f"({pb['before']['head_entries']:,} above t), {stats['fetched']:,} of {stats['candidates']:,} "
            f"candidates fetched, {pb['fetches_saved']:,} fetches saved; per entry in pool_balance.tsv\n"
        )
    fetched = stats.get("fetched", stats["candidates"])
    return note + (
        f"{stats['candidates']:,} candidate images, {fetched:,} fetched, {stats['written']:,} written "
        f"({stats['success_rate']:.1%} of fetched) in {stats['seconds']:.1f} s\n"
        f"outcomes:\n{_table(stats['per_outcome'])}\n"
        f"{link_summary(stats.get('links') or {})}"
        f"{license_summary(stats)}"
        f"records per split:\n{_table(stats['per_split'])}\n"
        f"wrote {out}/ (ArrayRecord shards + TFDS metadata, attribution/, candidates/, outcomes/, hosts/, "
        "harvest_stats.json, DATACARD.md)"
    )


def license_summary(stats: dict) -> str:
    """Records per licence and per source, one line each (empty when nothing was written)."""
    from entitynet.datacard import by_count

    per_license, per_source = (
        by_count(stats.get("per_license") or {}),
        by_count(stats.get("per_source") or {}),
    )
    if not per_license:
        return ""
    return (
        "records per licence: " + ", ".join(f"{k} {n:,}" for k, n in per_license.items()) + "\n"
        "records per source: " + ", ".join(f"{k} {n:,}" for k, n in per_source.items()) + "\n"
    )


def link_summary(links: dict) -> str:
    images = links.get("images", 0)
    if not images:
        return ""
    found, kept = links.get("links_found", 0), links.get("links_kept", 0)
    return (
        f"entity links: {found:,} found, {kept:,} kept ({found / images:.2f} -> {kept / images:.2f} per image; "
        f"{links.get('kept_alt_text', 0) / max(kept, 1):.0%} of kept named by the alt text, "
        f"{links.get('kept_identifier', 0) / max(kept, 1):.0%} by identifier); "
        f"{links.get('dropped_generic', 0):,} dropped on {links.get('generic_images', 0):,} generic images, "
        f"{links.get('dropped_contradicted', 0):,} contradicted by the alt text, {links.get('dropped_weak', 0):,} weak\n"
    )


def _harvest_options(args, allow_loopback: bool = False):
    from entitynet.fetch.fetcher import FetchOptions
    from entitynet.fetch.policy import AddressPolicy
    from entitynet.harvest import HarvestOptions
    from entitynet.images.process import ImageOptions
    from entitynet.links import LinkRule

    fetch = FetchOptions(
        address=AddressPolicy(
            allow_loopback=allow_loopback or args.allow_loopback, allow_private=args.allow_private
        ),
        robots_txt=not args.ignore_robots_txt,
        total_timeout=args.total_timeout,
        retries=args.fetch_retries,
        dns_ttl=args.dns_ttl,
        in_flight=args.in_flight,
        per_host_concurrency=args.per_host_concurrency,
        per_host_rps=args.per_host_rps,
    )
    image = ImageOptions(
        resize_mode=args.resize_mode,
        size=args.image_size,
        min_side=args.min_image_size,
        max_aspect=args.max_aspect_ratio,
        quality=args.jpeg_quality,
        resample=args.resample,
    )
    return HarvestOptions(
        fetch=fetch,
        image=image,
        num_shards=args.num_shards,
        threads=args.threads,
        retry_failed=args.retry_failed,
        licenses=args.licenses,
        exclude_licenses=args.exclude_licenses,
        links=LinkRule(
            max_rank=args.link_max_rank, max_finders=args.link_max_finders, keep_unlinked=args.keep_unlinked
        ),
    )


def cmd_harvest(args, beam_args) -> int:
    from beam_pipelines import harvest as harvest_pipeline
    from entitynet.harvest import SearchSpec
    from entitynet.records import Query, read_jsonl

    queries = list(read_jsonl(args.queries, Query))
    entities = tuple(_load_entities(args.entities)) if args.entities else ()
    spec = SearchSpec(
        backend=args.backend,
        url=args.searxng_url or args.api_url or "",
        max_results=args.max_results,
        requests_per_second=args.search_rate,
        pool=tuple(args.pool or ()),
        entities=entities,
        balance_t=args.balance_t,
        balance_seed=args.balance_seed,
        endpoints=tuple(_endpoints(args.endpoint)),
        contact=args.contact or os.environ.get("ENTITYNET_CONTACT", ""),
        category_depth=args.category_depth,
        thumb_width=args.thumb_width,
        photo_size=args.photo_size,
        gbif_archive=args.gbif_archive or "",
        inaturalist_data=args.inaturalist_data or "",
    )
    labels = {e.id: e.label for e in entities}
    stats = harvest_pipeline.run(
        queries, spec, _harvest_options(args), args.out, beam_args, labels, entities=entities
    )
    print(harvest_summary(stats, args.out.rstrip("/")))
    return 0


def _endpoints(given) -> list[tuple[str, str]]:
    out = []
    for item in given or ():
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise ConfigError(f"--endpoint {item!r}: write it as BACKEND=URL, e.g. gbif=https://api.gbif.org")
        out.append((name.strip(), url.strip()))
    return out


def add_harvest_flags(h: argparse.ArgumentParser) -> None:
    h.add_argument("--max-results", type=int, default=20, help="images per query (default 20)")
    h.add_argument("--search-rate", type=float, default=1.0, help="search requests per second per worker")
    h.add_argument("--num-shards", type=int, default=4, help="ArrayRecord shards per split")
    h.add_argument(
        "--in-flight", type=int, default=128, help="requests a worker holds open at once, over all hosts"
    )
    h.add_argument(
        "--threads", type=int, default=2, help="threads per worker that decode and resize the fetched images"
    )
    h.add_argument("--resize-mode", choices=("shorter", "longer", "center_crop", "none"), default="shorter")
    h.add_argument("--image-size", type=int, default=256)
    h.add_argument("--min-image-size", type=int, default=64)
    h.add_argument("--max-aspect-ratio", type=float, default=3.0)
    h.add_argument("--jpeg-quality", type=int, default=90)
    h.add_argument(
        "--resample",
        choices=("bilinear", "bicubic", "lanczos", "box"),
        default="bilinear",
        help="resize filter (antialiased when downscaling)",
    )
    h.add_argument(
        "--total-timeout", type=float, default=30.0, help="seconds per download, redirects included"
    )
    h.add_argument("--fetch-retries", type=int, default=2)
    h.add_argument(
        "--per-host-concurrency",
        type=int,
        default=8,
        help="requests in flight per host, over all workers (default 8)",
    )
    h.add_argument("--per-host-rps", type=float, default=None, help="request starts per second per host")
    h.add_argument(
        "--dns-ttl",
        type=float,
        default=300.0,
        help="seconds a host's resolved addresses are reused (default 300)",
    )
    h.add_argument(
        "--retry-failed",
        action="store_true",
        help="re-run: fetch again only candidates that failed transiently (429, 5xx, timeouts, connection)",
    )
    h.add_argument(
        "--ignore-robots-txt",
        action="store_true",
        help="do not consult robots.txt (opt-out headers still count)",
    )
    h.add_argument(
        "--allow-loopback", action="store_true", help="fetch from 127.0.0.0/8 (local test servers)"
    )
    h.add_argument("--allow-private", action="store_true", help="fetch from private networks (an intranet)")
    h.add_argument(
        "--licenses",
        default="",
        metavar="FAMILIES",
        help="keep only images under these licence families, e.g. cc0,cc-by,cc-by-sa (families: "
        "cc0, cc-by, cc-by-sa, cc-by-nc, cc-by-nc-sa, cc-by-nd, cc-by-nc-nd, public-domain, unknown); "
        "the others are never fetched (outcome license_excluded)",
    )
    h.add_argument(
        "--exclude-licenses",
        default="",
        metavar="FAMILIES",
        help="leave out these licence families; '*-nc' leaves out every non-commercial one, '*-nd' "
        "every no-derivatives one",
    )
    h.add_argument(
        "--link-max-rank",
        type=int,
        default=20,
        help="an entity's own name query links an image found within its top N results (default 20)",
    )
    h.add_argument(
        "--link-max-finders",
        type=int,
        default=3,
        help="an image found by more entities than this keeps only the links its alt text supports (default 3)",
    )
    h.add_argument(
        "--keep-unlinked",
        action="store_true",
        help="keep images whose entity links were all pruned (they train on their alt texts only)",
    )


# ---------------------------------------------------------------- captions


def cmd_captions(args, _extra) -> int:
    from entitynet.text.captions import captions

    entities = {e.id: e for e in _load_entities(args.entities)}
    if args.entity not in entities:
        raise ConfigError(f"entity {args.entity} is not in {args.entities}")
    e = entities[args.entity]
    query = None
    if args.query:
        from entitynet.records import Query, query_id

        query = Query(
            id=query_id("attribute-noun", args.query),
            text=args.query,
            kind="attribute-noun",
            entity_ids=(e.id,),
            attribute=args.attribute,
        )
    parents = [entities[p] for p in e.parents if p in entities]
    for c in sorted(captions(e, query, parents), key=lambda c: -c.weight):
        print(f"{c.weight:6.3f}  {c.source:<18}  {c.text}")
    return 0


# ---------------------------------------------------------------- demo


def curate_summary(stats: dict, out: str | Path) -> str:
    b, a = stats["balance"]["before"], stats["balance"]["after"]
    read, kept = sum(stats["read"].values()), sum(stats["kept"].values())
    contamination = "".join(
        f"\n  {name}: {n:,} harvested images within the threshold of its {stats['eval_sets'][name]['images']:,}"
        for name, n in stats["contamination"].items()
    )
    return (
        f"{read:,} records read, {kept:,} kept in {stats['seconds']:.1f} s "
        f"(per split: {', '.join(f'{s} {n:,}' for s, n in stats['kept'].items())})\n"
        f"removed:\n{_table(stats['removed']) if stats['removed'] else '  nothing'}\n"
        f"balancing at t={stats['balance']['t']:,}: {b['entries']:,} entries, {b['head_entries']:,} above t; "
        f"matches {b['matches']:,} -> {a['matches']:,}\n"
        f"decontamination:{contamination or ' no evaluation set given'}\n"
        f"{license_summary(stats)}"
        f"wrote {out}/ ({'shards + TFDS metadata, attribution/' if stats['output'] == 'shards' else 'subset.npz'}, "
        "entry_counts.tsv, curation_stats.json, DATACARD.md)"
    )


def _curate_options(args):
    from beam_pipelines.curate import CurateOptions

    return CurateOptions(
        t=args.t,
        seed=args.seed,
        near_dup_threshold=None if args.no_near_dup else args.near_dup_threshold,
        decontam_threshold=args.decontam_threshold,
        subset_roots=tuple(args.subset_root or ()),
        balance_splits=tuple(args.balance_split or ("train",)),
        output=args.output,
        num_shards=args.num_shards,
    )


def _eval_sets(specs, tfds_data_dir):
    from entitynet.curation import evalsets

    found = []
    for spec in specs or ():
        ev = evalsets.load(spec, tfds_data_dir=tfds_data_dir)
        log.info("evaluation set %s: %d images hashed (%d unreadable)", spec, len(ev.hashes), ev.unreadable)
        found.append(ev)
    return found


def cmd_curate(args, beam_args) -> int:
    from beam_pipelines import curate

    opts = _curate_options(args)
    entities = _load_entities(args.entities)
    eval_sets = _eval_sets(args.decontaminate, args.tfds_data_dir)
    stats = curate.run(args.shards, entities, eval_sets, opts, args.out, beam_args)
    print(curate_summary(stats, args.out.rstrip("/")))
    return 0


def add_curate_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--t", type=int, default=20_000, help="MetaCLIP's per-entry threshold (default 20000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the balancing draws")
    p.add_argument(
        "--near-dup-threshold",
        type=int,
        default=4,
        metavar="BITS",
        help="Hamming distance of near-duplicates",
    )
    p.add_argument("--no-near-dup", action="store_true", help="do not merge near-duplicates")
    p.add_argument(
        "--decontam-threshold", type=int, default=4, metavar="BITS", help="Hamming distance to an eval image"
    )
    p.add_argument(
        "--subset-root",
        action="append",
        metavar="QID",
        help="keep records with an entity below this root (repeatable), e.g. Q729 Q756",
    )
    p.add_argument(
        "--balance-split", action="append", metavar="SPLIT", help="splits to balance (default: train)"
    )
    p.add_argument("--output", choices=("shards", "subset"), default="shards")


def train_tokenizer(
    shards_dir: str, entities, vocab_size: int, out_dir: str | None = None
) -> tuple[str, dict]:
    """A SentencePiece model on the shards' alt texts and the entities' KG captions, saved next to
    the shards (or in `out_dir`); returns its path and counts."""
    from entitynet.shards import check_directory, iter_records
    from entitynet.text import tokenizer as tokenizers
    from entitynet.text.captions import captions

    info = check_directory(shards_dir)
    texts = [
        t for s in info.get("splits", []) for r in iter_records(shards_dir, s["name"]) for t in r.alt_texts
    ]
    by_id = {e.id: e for e in entities}
    kg = [c.text for e in entities for c in captions(e, None, [by_id[p] for p in e.parents if p in by_id])]
    if not texts and not kg:
        raise EntityNetError(f"no texts to train a tokenizer on in {shards_dir}; harvest first")
    tok = tokenizers.SentencePieceTokenizer.train(texts + kg, vocab_size=vocab_size)
    path = tokenizers.save(tok, out_dir or shards_dir)
    return str(path), {"alt_texts": len(texts), "kg_captions": len(kg), "vocab_size": tok.vocab_size}


def cmd_tokenizer_train(args, _) -> int:
    entities = _load_entities(args.entities)
    path, n = train_tokenizer(args.shards, entities, args.vocab_size, args.out)
    print(
        f"SentencePiece tokenizer ({n['vocab_size']:,} pieces) from {n['alt_texts']:,} alt texts and "
        f"{n['kg_captions']:,} KG captions: {path}"
    )
    return 0


def compilation_cache() -> None:
    """JAX's persistent compilation cache, so that re-runs, resumed runs, evaluations and the demo's
    ablation runs skip XLA compiles they have done before: $JAX_COMPILATION_CACHE_DIR when set,
    else $ENTITYNET_JAX_CACHE, else ~/.cache/entitynet/jax."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return  # JAX reads it itself
    import jax

    d = os.environ.get("ENTITYNET_JAX_CACHE") or str(Path.home() / ".cache" / "entitynet" / "jax")
    jax.config.update("jax_compilation_cache_dir", d)


def cmd_train(args, overrides) -> int:
    from train import config as config_lib
    from train.train import summary, train

    compilation_cache()

    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        raise ConfigError(f"unrecognized arguments: {' '.join(bad)} (overrides look like --config.key=value)")
    cfg = config_lib.load(args.config, overrides)
    print(summary(train(cfg, args.workdir), args.workdir))
    return 0


def cmd_eval(args, _) -> int:
    from train.evaluate import run_from_args, summary

    compilation_cache()

    for line in summary(run_from_args(args)):
        print(line)
    return 0


def cmd_export(args, _) -> int:
    from train.export import export_open_clip

    r = export_open_clip(args.workdir, args.out)
    print(
        f"exported step {r['step']} ({r['tensors']} tensors) to {r['out']}/open_clip_model.safetensors "
        "and open_clip_config.json"
    )
    return 0


def demo_link_quality(web, shard_dir: Path) -> str:
    """The harvest's entity links scored against the sample web's truth (which a real web lacks)."""
    import itertools

    from entitynet import shards
    from entitynet.sampleweb.truth import link_quality

    splits = json.loads((shard_dir / "dataset_info.json").read_text()).get("splits", [])
    recs = itertools.chain.from_iterable(shards.iter_records(shard_dir, s["name"]) for s in splits)
    q = link_quality(web.by_id.values(), web.lineage, recs)  # web images and archive photos
    b, a = q["before"], q["after"]
    return (
        f"entity links against the sample web's truth, over the {a['images']:,} written images: "
        f"precision {b['precision']:.1%} -> {a['precision']:.1%}, recall {b['recall']:.1%} -> {a['recall']:.1%}, "
        f"{b['links_per_image']:.2f} -> {a['links_per_image']:.2f} links per image (before -> after pruning)"
    )


DEMO_PORT = 47315  # the sample web's preferred port: its URLs, and so the balancing draws, stay put


def _demo_web(entities):
    """The sample web on DEMO_PORT when it is free, so that the demo's URLs, and with them the
    curation's URL-keyed balancing draws and every figure after it, are the same on every run;
    on any free port otherwise (the figures then move by a few tenths of a point)."""
    from entitynet.sampleweb.server import SampleWeb

    try:
        return SampleWeb(entities, port=DEMO_PORT)
    except OSError:
        print(f"(port {DEMO_PORT} is taken: the sample web uses another, and the balancing draws with it)")
        return SampleWeb(entities)


def _demo_train(cfg, workdir: Path) -> dict:
    """Train, resuming an earlier demo run's workdir only when it was made from the same curated
    data, tokenizer and settings; otherwise (the data changed) from scratch."""
    import shutil

    from train.train import StaleCheckpoint, train

    try:
        return train(cfg, str(workdir))
    except StaleCheckpoint:
        print(
            f"{workdir}: an earlier demo run trained on other data; training again from scratch", flush=True
        )
        shutil.rmtree(workdir)
        return train(cfg, str(workdir))


def cmd_demo(args, beam_args) -> int:
    from beam_pipelines import expand_kg
    from entitynet.kg.client import KGSource
    from entitynet.kg.expand import ExpandConfig
    from entitynet.text.queries import QueryConfig

    started = time.time()
    out = Path(args.out)
    kg = sample_kg_path()
    print(f"== 1/7 knowledge graph: expanding the sample graph ({kg})", flush=True)
    cfg = ExpandConfig(mode="living", roots=SAMPLE_ROOTS)
    stats = expand_kg.run(KGSource(kg_files=(kg,)), cfg, str(out / "kg"), beam_args)
    print(expand_summary(stats, "the sample graph", cfg.min_sitelinks, out / "kg"))
    print("== 2/7 queries: search queries for every entity", flush=True)
    entities = _load_entities(str(out / "kg" / "entities.jsonl"))
    if args.limit_entities:
        entities = entities[: args.limit_entities]  # entities.jsonl is sorted by sitelinks
        print(f"(using the {len(entities)} entities with most sitelinks)")
    _, qstats = make_queries(entities, str(out / "queries"), QueryConfig(living=True))
    print(
        f"{qstats['queries']:,} queries for {qstats['entities']:,} entities\n"
        f"queries per kind:\n{_table(qstats['per_kind'])}\nwrote {out / 'queries' / 'queries.jsonl'}"
    )
    print(
        "== 3/7 harvest: search the sample web and its GBIF and iNaturalist APIs on 127.0.0.1, fetch, "
        "process, write shards",
        flush=True,
    )
    from beam_pipelines import curate
    from beam_pipelines import harvest as harvest_pipeline
    from entitynet.harvest import SearchSpec
    from entitynet.records import Query, read_jsonl

    queries = list(read_jsonl(out / "queries" / "queries.jsonl", Query))
    with _demo_web(entities) as web:
        photos = {s: sum(len(x) for x in web.archives[s].values()) for s in ("gbif", "inaturalist")}
        print(
            f"sample web: {len(web.corpus):,} images at {web.base_url}; its archives: {photos['gbif']:,} "
            f"GBIF occurrence photos, {photos['inaturalist']:,} iNaturalist observation photos",
            flush=True,
        )
        spec = SearchSpec(
            backend="searxng,gbif,inaturalist",  # web search + two open archives, one dataset
            url=web.base_url,
            max_results=20,
            requests_per_second=0,
            entities=tuple(entities),
            endpoints=(("gbif", web.base_url), ("inaturalist", web.base_url)),
        )
        hstats = harvest_pipeline.run(
            queries,
            spec,
            _harvest_options(args, allow_loopback=True),
            str(out / "shards"),
            beam_args,
            {e.id: e.label for e in entities},
            entities=entities,
        )
        print(harvest_summary(hstats, out / "shards"))
        print(demo_link_quality(web, out / "shards"))
        from entitynet.sampleweb.evalset import write_eval_folder

        print(
            "== 4/7 curate: decontaminate against an evaluation set, merge near-duplicates, balance",
            flush=True,
        )
        ev = write_eval_folder(web, out / "evalset")
        print(
            f"evaluation set: {ev['images']:,} images of {ev['entities']:,} entities in {out / 'evalset'} "
            f"({ev['held_out']:,} held out, {ev['planted']:,} near copies of web images)"
        )
    cstats = curate.run(
        str(out / "shards"),
        entities,
        _eval_sets([str(out / "evalset")], None),
        _curate_options(args),
        str(out / "curated"),
        beam_args,
    )
    print(curate_summary(cstats, out / "curated"))
    print("== 5/7 train: a tiny CLIP on the curated shards (configs/tiny_cpu.py)", flush=True)
    path, n = train_tokenizer(str(out / "curated"), entities, 1000)
    print(
        f"tokenizer: {n['vocab_size']:,} SentencePiece pieces from {n['alt_texts']:,} alt texts and "
        f"{n['kg_captions']:,} KG captions ({path})"
    )
    from train import config as config_lib
    from train.train import summary

    compilation_cache()
    root = Path(__file__).resolve().parent.parent
    cfg = config_lib.load(
        str(root / "configs" / "tiny_cpu.py"),
        [
            f"data.shards={out / 'curated'}",
            f"data.entities={out / 'kg' / 'entities.jsonl'}",
            f"data.tokenizer={path}",
            f"total_steps={args.train_steps}",
        ],
    )
    print(summary(_demo_train(cfg, out / "train"), out / "train"))
    print(
        "== 6/7 evaluate: zero-shot on the sample world's held-out renders, retrieval on the test split",
        flush=True,
    )
    from train.eval_data import heldout, image_folder
    from train.evaluate import evaluate, read_entities
    from train.evaluate import summary as eval_summary

    known = read_entities(str(out / "kg" / "entities.jsonl"))
    evalset = lambda run: image_folder(str(out / "evalset"), known)  # noqa: E731
    main_result = evaluate(str(out / "train"), evalset, args.templates)
    results = [main_result]
    if cstats["kept"].get("test"):
        test_split = lambda run: heldout(str(out / "curated"), "test", known)  # noqa: E731
        results.append(evaluate(str(out / "train"), test_split, args.templates))
    for line in eval_summary(results):
        print(line)
    if args.ablation_steps:
        print(
            "== 7/7 ablation: the same shards, three text mixes (KG captions + alt texts, alt texts only, "
            "KG captions only)",
            flush=True,
        )
        from train.report import write_comparison

        results, labels = [main_result], ["KG + alt text (0.5)"]
        for name, chance, label in (("alt", 1.0, "alt text only"), ("kg", 0.0, "KG text only")):
            run_cfg = config_lib.load(
                str(root / "configs" / "tiny_cpu.py"),
                [
                    f"data.shards={out / 'curated'}",
                    f"data.entities={out / 'kg' / 'entities.jsonl'}",
                    f"data.tokenizer={path}",
                    f"data.alt_text_chance={chance}",
                    f"total_steps={args.ablation_steps}",
                ],
            )
            print(
                f"training {label} (data.alt_text_chance={chance}, {args.ablation_steps} steps)", flush=True
            )
            _demo_train(run_cfg, out / f"train-{name}")
            results.append(evaluate(str(out / f"train-{name}"), evalset, args.templates))
            labels.append(label)
        if args.ablation_steps != args.train_steps:
            print(f"(note: the first run trained {args.train_steps} steps, the others {args.ablation_steps})")
        report_path = write_comparison(results, labels, out / "ablation", "Text-mix ablation")
        for label, r in zip(labels, results, strict=True):
            fx = r["zero_shot"]["fixed_templates"]
            print(f"  {label:<22} top-1 {fx['top1']:6.2%}  top-5 {fx['top5']:6.2%}  macro {fx['macro']:6.2%}")
        print(f"ablation report: {report_path}")
    print(f"report: {main_result['report']}")
    print(f"demo finished in {time.time() - started:.1f} s; outputs under {out}/")
    return 0


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="entitynet", description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log Beam's progress too")
    sub = p.add_subparsers(dest="command", required=True)

    kg = sub.add_parser("kg", help="knowledge-graph stage").add_subparsers(dest="kg_command", required=True)
    ex = kg.add_parser(
        "expand",
        help="expand roots into entities.jsonl",
        description="Expand a knowledge graph into entities.jsonl. Arguments after the known flags "
        "(e.g. --runner=DataflowRunner ...) are passed to Apache Beam.",
    )
    src = ex.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--kg-file", action="append", metavar="PATH", help=".ttl, .nt or .nt.gz file (repeatable)"
    )
    src.add_argument("--endpoint", metavar="URL", help="SPARQL endpoint URL, or a preset: wikidata, qlever")
    ex.add_argument("--mode", choices=("living", "world"), default="living")
    ex.add_argument(
        "--root", action="append", metavar="QID", help="root entity (repeatable; default by mode)"
    )
    ex.add_argument("--min-sitelinks", type=int, default=5)
    ex.add_argument(
        "--language", action="append", metavar="LANG", help="label languages in order (default en)"
    )
    ex.add_argument(
        "--natural-type", action="append", metavar="QID", help="natural-type candidates (repeatable)"
    )
    ex.add_argument("--max-depth", type=int, default=64, help="levels below the roots (default 64)")
    ex.add_argument("--batch-size", type=int, default=200, help="ids per VALUES query (default 200)")
    ex.add_argument(
        "--strategy",
        choices=("auto", "closure", "levels"),
        default="auto",
        help="how the walk learns the graph: one closure query, batched queries level by level, or "
        "auto (default): the closure query, and level by level if the endpoint times out or refuses it",
    )
    ex.add_argument(
        "--closure-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="auto: how long the closure query may take before the walk goes level by level (default 60)",
    )
    ex.add_argument("--contact", metavar="EMAIL_OR_URL", help="contact for the User-Agent (Wikimedia policy)")
    ex.add_argument("--connect-timeout", type=float, default=10.0)
    ex.add_argument("--read-timeout", type=float, default=120.0)
    ex.add_argument("--retries", type=int, default=5)
    ex.add_argument("--requests-per-second", type=float, help="request rate per worker (presets are polite)")
    ex.add_argument("--out", required=True, metavar="DIR")
    ex.set_defaults(func=cmd_kg_expand, beam=True)

    q = sub.add_parser("queries", help="search queries from entities.jsonl")
    q.add_argument("--entities", required=True, metavar="FILE")
    q.add_argument("--out", required=True, metavar="DIR")
    q.add_argument("--base-budget", type=int, default=3, help="queries per entity before the sitelinks bonus")
    q.add_argument("--max-per-entity", type=int, default=20)
    q.add_argument(
        "--no-attribute-queries", action="store_true", help="no shared 'attribute + natural type' queries"
    )
    # Search modifiers: fields of each query; every backend sends those its API can express and
    # drops the rest (see entitynet/search/web.py), never pasting them into the query text.
    mod = q.add_mutually_exclusive_group()
    mod.add_argument(
        "--exclude-terms",
        metavar="TERMS",
        help="comma-separated words the results must not show (default: the reference's "
        "drawing,clipart,illustration,cartoon,vector,painting; google-cse sends them as excludeTerms)",
    )
    mod.add_argument("--no-exclude-terms", action="store_true", help="no exclude terms")
    q.add_argument(
        "--photo-type",
        default="photo",
        help="image type for APIs that filter by it (google-cse imgType: photo, clipart, lineart, face, "
        "stock, animated); 'none' for no filter (default photo)",
    )
    q.add_argument(
        "--no-or-terms",
        action="store_true",
        help="no or-terms (alternative names and the natural type that google-cse may match instead)",
    )
    q.add_argument(
        "--llm-endpoint", metavar="URL", help="OpenAI-compatible base URL (…/v1) for LLM attributes"
    )
    q.add_argument("--llm-model", metavar="NAME")
    q.add_argument("--llm-key-env", metavar="VAR", help="environment variable holding the API key")
    q.add_argument(
        "--llm-top", type=int, default=500, help="LLM attributes for the N entities with most sitelinks"
    )
    q.set_defaults(func=cmd_queries, beam=False)

    c = sub.add_parser("captions", help="show the weighted training texts of one entity")
    c.add_argument("--entities", required=True, metavar="FILE")
    c.add_argument("--entity", required=True, metavar="QID")
    c.add_argument("--query", help="an attribute-noun query text (default: the entity's noun query)")
    c.add_argument("--attribute", help="the attribute inside --query")
    c.set_defaults(func=cmd_captions, beam=False)

    h = sub.add_parser(
        "harvest",
        help="search, fetch and process images into shards",
        description="Search images for queries.jsonl, fetch them safely, process them and write ArrayRecord "
        "shards with TFDS metadata. Arguments after the known flags are passed to Apache Beam.",
    )
    h.add_argument("--queries", required=True, metavar="FILE")
    h.add_argument(
        "--backend",
        default="searxng",
        metavar="NAME[,NAME...]",
        help="where images come from, one or several comma-separated, merged into one dataset: "
        "searxng, google-cse, brave (web search), commons (P18 images), commons-category, gbif, "
        "inaturalist (photos by the entities' identifiers), pool, gbif-archive, inaturalist-open-data "
        "(files read whole) (default searxng)",
    )
    h.add_argument("--searxng-url", metavar="URL", help="base URL of a SearXNG instance with JSON output")
    h.add_argument("--api-url", metavar="URL", help="with one backend: override its API URL")
    h.add_argument(
        "--endpoint",
        action="append",
        metavar="BACKEND=URL",
        help="override one backend's API URL (repeatable), e.g. gbif=http://127.0.0.1:8080",
    )
    h.add_argument(
        "--contact",
        metavar="EMAIL_OR_URL",
        help="who runs the harvest, sent in the User-Agent as Wikimedia, GBIF and iNaturalist ask "
        "(default: $ENTITYNET_CONTACT)",
    )
    h.add_argument(
        "--category-depth",
        type=int,
        default=1,
        help="commons-category: levels of subcategories listed below the entity's category (default 1)",
    )
    h.add_argument(
        "--thumb-width",
        type=int,
        default=512,
        help="commons-category: width of the thumbnail fetched (default 512)",
    )
    h.add_argument(
        "--photo-size",
        choices=("square", "small", "medium", "large", "original"),
        default="medium",
        help="inaturalist: photo size fetched (medium: 500 px; default medium)",
    )
    h.add_argument(
        "--gbif-archive", metavar="FILE.zip", help="gbif-archive: a GBIF Darwin Core Archive download"
    )
    h.add_argument(
        "--inaturalist-data",
        metavar="DIR",
        help="inaturalist-open-data: the directory of observations.csv.gz, photos.csv.gz, taxa.csv.gz "
        "(and observers.csv.gz for credits)",
    )
    h.add_argument(
        "--pool",
        metavar="FILE_OR_GLOB",
        action="append",
        help="url+text rows (.jsonl, .parquet, .csv, .tsv) for --backend pool; repeat it, or give globs "
        "(gs://bucket/pool/*.parquet): read in parallel, a Parquet row group at a time",
    )
    h.add_argument(
        "--balance-t",
        type=int,
        default=0,
        metavar="T",
        help="--backend pool: MetaCLIP-balance the matched rows over the entities before fetching, so "
        "only the kept ones are downloaded (needs --entities; the set `entitynet curate --t T` keeps)",
    )
    h.add_argument(
        "--balance-seed", type=int, default=0, help="seed of the --balance-t draws (as `curate --seed`)"
    )
    h.add_argument(
        "--entities",
        metavar="FILE",
        help="entities.jsonl: every name of each entity for the alt-text evidence of entity links "
        "(without it, the noun and alias queries' texts), labels for the data card; needed by --backend commons",
    )
    h.add_argument("--out", required=True, metavar="DIR")
    add_harvest_flags(h)
    h.set_defaults(func=cmd_harvest, beam=True)

    cu = sub.add_parser(
        "curate",
        help="balance, deduplicate and decontaminate harvest shards",
        description="MetaCLIP balancing over the knowledge graph's entities, near-duplicate merging and "
        "evaluation-set decontamination of harvest shards. Arguments after the known flags are passed to "
        "Apache Beam.",
    )
    cu.add_argument("--shards", required=True, metavar="DIR", help="a harvest output directory")
    cu.add_argument("--entities", required=True, metavar="FILE", help="the entities.jsonl of the harvest")
    cu.add_argument(
        "--decontaminate",
        action="append",
        metavar="PATH_OR_TFDS",
        help="evaluation set: ImageFolder dir, TFDS dataset dir, or tfds:NAME[:SPLIT] (repeatable)",
    )
    cu.add_argument("--tfds-data-dir", metavar="DIR", help="where tfds:NAME datasets are prepared")
    cu.add_argument("--num-shards", type=int, default=4, help="shards per split of the output")
    cu.add_argument("--out", required=True, metavar="DIR")
    add_curate_flags(cu)
    cu.set_defaults(func=cmd_curate, beam=True)

    tk = sub.add_parser("tokenizer", help="text tokenizer").add_subparsers(dest="tok_command", required=True)
    tt = tk.add_parser("train", help="train a SentencePiece model on a harvest's texts")
    tt.add_argument("--shards", required=True, metavar="DIR", help="harvest or curation output")
    tt.add_argument("--entities", required=True, metavar="FILE", help="entities.jsonl (for KG captions)")
    tt.add_argument("--vocab-size", type=int, default=8000)
    tt.add_argument("--out", metavar="DIR", help="where to save tokenizer.json (default: next to the shards)")
    tt.set_defaults(func=cmd_tokenizer_train, beam=False)

    tr = sub.add_parser(
        "train",
        help="train a CLIP from a config",
        description="Train (or resume) a CLIP in a workdir. Config fields are overridden with "
        "--config.key=value after the known flags.",
    )
    tr.add_argument("--config", required=True, metavar="FILE[:ARG]", help="e.g. configs/tiny_cpu.py")
    tr.add_argument("--workdir", required=True, metavar="DIR")
    tr.set_defaults(func=cmd_train, beam=True, extra="config overrides")

    ev = sub.add_parser(
        "eval",
        help="zero-shot classification and retrieval of a run (or an exported model)",
        description="Evaluate a run's latest checkpoint on an ImageFolder, a prepared TFDS dataset or "
        "a held-out split of its shards; writes results.json, report.md and plots. Several --workdir: "
        "a side-by-side comparison in --out.",
    )
    from train.eval_flags import add_arguments

    add_arguments(ev)
    ev.set_defaults(func=cmd_eval, beam=False)

    ex2 = sub.add_parser("export", help="export a run's latest checkpoint (open_clip)")
    ex2.add_argument("--workdir", required=True, metavar="DIR")
    ex2.add_argument("--format", choices=("open_clip",), default="open_clip")
    ex2.add_argument("--out", required=True, metavar="DIR")
    ex2.set_defaults(func=cmd_export, beam=False)

    d = sub.add_parser("demo", help="run the whole chain on the shipped sample")
    d.add_argument("--out", default="demo-out", metavar="DIR")
    d.add_argument(
        "--limit-entities",
        type=int,
        default=0,
        metavar="N",
        help="queries and harvest for the N entities with most sitelinks only (a quick look)",
    )
    add_harvest_flags(d)
    add_curate_flags(d)
    d.add_argument("--train-steps", type=int, default=400, help="training steps of the tiny CLIP")
    d.add_argument(
        "--ablation-steps",
        type=int,
        default=400,
        metavar="N",
        help="steps of each of the two text-mix ablation runs (0: no ablation)",
    )
    d.add_argument(
        "--templates",
        default=None,
        help="zero-shot templates: openai, photo, bare or a file (default: the run's training templates)",
    )
    d.set_defaults(func=cmd_demo, beam=True, t=12)  # the sample's entities have ~6-24 images each
    return p


@functools.cache
def beam_flags() -> frozenset[str]:
    """Every flag Apache Beam's pipeline options define (all runners, Dataflow's included)."""
    from apache_beam.options import pipeline_options as po

    parser = argparse.ArgumentParser(add_help=False)
    seen, todo = set(), [po.PipelineOptions]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen.add(sub)
                todo.append(sub)
                try:
                    sub._add_argparse_args(parser)
                except (argparse.ArgumentError, TypeError):
                    pass  # an option two classes both define
    return frozenset(o for a in parser._actions for o in a.option_strings if o.startswith("--"))


def unknown_beam_flags(extra: list[str]) -> list[str]:
    """The flags in `extra` (what argparse left) that Beam does not define either."""
    known = beam_flags()
    return [a.split("=", 1)[0] for a in extra if a.startswith("--") and a.split("=", 1)[0] not in known]


def did_you_mean(flag: str, choices) -> str:
    import difflib

    close = difflib.get_close_matches(flag, sorted(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _all_flags(parser: argparse.ArgumentParser) -> set[str]:
    flags = set()
    for action in parser._actions:
        flags.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= _all_flags(sub)
    return flags


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "beam", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _setup_logging(args.verbose)
    if extra and getattr(args, "extra", "beam") == "beam":
        unknown = unknown_beam_flags(extra)
        if unknown:
            flag, hint = unknown[0], did_you_mean(unknown[0], _all_flags(parser) | beam_flags())
            parser.error(
                f"unrecognized argument {flag}{hint} (arguments after the known flags go to Apache Beam, "
                "which does not know it either)"
            )
    try:
        return args.func(args, extra)
    except EntityNetError as e:
        print(f"entitynet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("entitynet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
