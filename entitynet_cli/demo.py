"""`entitynet demo`: the whole chain on the shipped sample graph and the sample web."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from entitynet.text.queries import make_queries
from entitynet.text.tokenizer import train_tokenizer
from entitynet_cli.common import (
    SAMPLE_ROOTS,
    compilation_cache,
    load_entities,
    on_interrupt,
    sample_kg_path,
    table,
)
from entitynet_cli.curate import add_curate_flags, curate_options, curate_summary, load_eval_sets
from entitynet_cli.explore import explore_summary
from entitynet_cli.harvest import add_harvest_flags, harvest_options, harvest_summary
from entitynet_cli.kg import expand_summary


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
    on_interrupt(f"what the finished stages wrote is kept in {out}; the same command reuses their work")
    print(f"== 1/10 knowledge graph: expanding the sample graph ({kg})", flush=True)
    cfg = ExpandConfig(mode="living", roots=SAMPLE_ROOTS)
    stats = expand_kg.run(KGSource(kg_files=(kg,)), cfg, str(out / "kg"), beam_args)
    print(expand_summary(stats, "the sample graph", cfg.min_sitelinks, out / "kg"))
    _classify(out, kg, beam_args)
    print("== 2/10 queries: search queries for every entity", flush=True)
    entities = load_entities(str(out / "kg-classified" / "entities.jsonl"))
    if args.limit_entities:
        entities = entities[: args.limit_entities]  # entities.jsonl is sorted by sitelinks
        print(f"(using the {len(entities)} entities with most sitelinks)")
    _, qstats = make_queries(entities, str(out / "queries"), QueryConfig(living=True))
    print(
        f"{qstats['queries']:,} queries for {qstats['entities']:,} entities\n"
        f"queries per kind:\n{table(qstats['per_kind'])}\nwrote {out / 'queries' / 'queries.jsonl'}"
    )
    print(
        "== 3/10 harvest: search the sample web and its GBIF and iNaturalist APIs on 127.0.0.1, fetch, "
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
            max_results=args.max_results,
            requests_per_second=0,  # its own web, on loopback
            entities=tuple(entities),
            endpoints=(("gbif", web.base_url), ("inaturalist", web.base_url)),
        )
        hstats = harvest_pipeline.run(
            queries,
            spec,
            harvest_options(args, allow_loopback=True),
            str(out / "shards"),
            beam_args,
            {e.id: e.label for e in entities},
            entities=entities,
        )
        print(harvest_summary(hstats, out / "shards"))
        print(demo_link_quality(web, out / "shards"))
        from entitynet.sampleweb.evalset import write_eval_folder

        print(
            "== 4/10 curate: decontaminate against an evaluation set, merge near-duplicates, balance",
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
        load_eval_sets([str(out / "evalset")], None),
        curate_options(args),
        str(out / "curated"),
        beam_args,
    )
    print(curate_summary(cstats, out / "curated"))
    print("== 5/10 train: a tiny CLIP on the curated shards (configs/tiny_cpu.py)", flush=True)
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
        "== 6/10 evaluate: zero-shot on the sample world's held-out renders, retrieval on the test split",
        flush=True,
    )
    from train.eval_data import heldout, image_folder
    from train.evaluate import evaluate, read_entities
    from train.evaluate import summary as eval_summary

    known = read_entities(str(out / "kg-classified" / "entities.jsonl"))
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
            "== 7/10 ablation: the same shards, three text mixes (KG captions + alt texts, alt texts only, "
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
    print(
        "== 8/10 export: the trained model in open_clip's local-dir / hf-hub layout, with its model card; "
        "the curated set as WebDataset (img2dataset's layout) for open_clip's trainer",
        flush=True,
    )
    from train.export import export_open_clip, export_summary

    print(export_summary(export_open_clip(out / "train", out / "export")))
    _export_data(out, beam_args)
    print(
        "== 9/10 look at the pixels: embed the harvest with the trained model, curate again with the "
        "CLIP-score filters (the worst-matching tenth of the images goes, and each alt text below 0.1)",
        flush=True,
    )
    model_curated = _model_filtered(args, out, entities, beam_args)
    print("== 10/10 explore: the model-filtered curation and the evaluations as a static site", flush=True)
    from beam_pipelines import explore
    from entitynet.kg.classify import read_left_out

    site = explore.run(
        str(model_curated),
        entities,
        str(out / "explorer"),
        {q.id: q.text for q in queries},
        [str(out / "train")],
        beam_args=beam_args,
        embeddings=str(out / "embeddings"),
        left_out=[
            *read_left_out(str(out / "kg-classified" / "entities.jsonl")),
            *read_left_out(str(out / "kg-world-classified" / "entities.jsonl")),
        ],
    )
    print(explore_summary(site))
    print(f"report: {main_result['report']}")
    print(f"explorer: {Path(site['index']).resolve()}")
    print(f"demo finished in {time.time() - started:.1f} s; outputs under {out}/")
    return 0


def _export_data(out: Path, beam_args) -> None:
    """`entitynet data export` of the curated set (texts drawn as training draws them), and the open_clip
    training command that reads it: the demo's architecture and tokenizer, from its weights."""
    import shutil

    from beam_pipelines import data_export
    from entitynet.interchange.export import ExportOptions
    from entitynet_cli.data import export_summary

    shutil.rmtree(out / "wds", ignore_errors=True)  # made again from this run's curated set
    stats = data_export.run(
        str(out / "curated"),
        str(out / "wds"),
        ExportOptions(text="mix", alt_text_chance=0.5),
        str(out / "kg-classified" / "entities.jsonl"),
        beam_args,
    )
    print(export_summary(stats, str(out / "wds"), model=f"local-dir:{out / 'export'}"))


def _classify(out: Path, kg: str, beam_args) -> None:
    """`kg classify` of the expansion (the KG rule: the demo has no LLM), and the same for the sample
    graph's world part in world mode, where the rule has abstract things to leave out (listed by
    the explorer of step 10; they get no queries, and the demo does not harvest them)."""
    from beam_pipelines import expand_kg
    from entitynet.kg import classify
    from entitynet.kg.client import KGSource
    from entitynet.kg.expand import ExpandConfig
    from entitynet_cli.kg import classify_summary

    source = KGSource(kg_files=(kg,))
    for name, mode in (("kg", "living"), ("kg-world", "world")):
        if mode == "world":
            cfg = ExpandConfig(mode="world")
            stats = expand_kg.run(source, cfg, str(out / name), beam_args)
            print(
                f"world mode on the same graph: {stats['entities']:,} entities under the "
                f"{len(stats['per_root'])} of world mode's super-entities it holds"
            )
        entities_file = str(out / name / "entities.jsonl")
        target = str(out / f"{name}-classified")
        st = classify.run(
            load_entities(entities_file), entities_file, source.open(), kg, target, classify.ClassifyConfig()
        )
        print(
            classify_summary(
                st, classify.read_left_out(os.path.join(target, "entities.jsonl"), limit=12), target
            )
        )


def _model_filtered(args, out: Path, entities, beam_args) -> Path:
    """`entitynet embed` of the harvest with the demo's run, then the curation of step 4 again with
    the model filter: the worst-scoring tenth by CLIP score goes. Semantic deduplication only when
    asked (--semdedup-threshold): the tiny model's 64-d space puts different renders of one entity
    within 0.995 of each other (a fifth of the harvest), which would take them for copies."""

    from beam_pipelines import curate
    from train.embed import run as embed

    stats = embed(
        str(out / "shards"),
        str(out / "train"),
        str(out / "embeddings"),
        entities=str(out / "kg-classified" / "entities.jsonl"),
        index="auto",
    )
    print(
        f"embedded {stats['records']:,} records and {stats['texts']:,} texts ({stats['dim']}-d) in "
        f"{stats['seconds']:.1f} s: {out / 'embeddings'}"
    )
    opts = curate_options(args).replace(
        embeddings=str(out / "embeddings"),
        clip_score_top=args.clip_score_top or 0.9,
        alt_text_score_min=0.1 if args.alt_text_score_min is None else args.alt_text_score_min,
    )
    target = out / "curated-model"
    cstats = curate.run(
        str(out / "shards"),
        entities,
        load_eval_sets([str(out / "evalset")], None),
        opts,
        str(target),
        beam_args,
    )
    print(curate_summary(cstats, target))
    return target


def add_parser(sub) -> None:
    """The `demo` subcommand."""
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
    add_curate_flags(d, skip=("num_shards",))  # the harvest's --num-shards sets both
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
