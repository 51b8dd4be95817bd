"""`entitynet explore`: a harvest or curated dataset (and a run's evaluations) as a static site
(beam_pipelines/explore.py)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from entitynet.errors import ConfigError
from entitynet.locks import claimed_output
from entitynet.storage import STORE, is_remote, staged_dir
from entitynet_cli.common import load_entities


def add_parser(sub) -> argparse.ArgumentParser:
    e = sub.add_parser(
        "explore",
        help="a static site to look at a dataset entity by entity, and at evaluations class by class",
        description="Write a self-contained site (HTML, a little JavaScript, JPEG thumbnails) for a harvest "
        "or curated dataset: an index of entities with their counts and link statistics, a page per entity "
        "with every image, its texts, licence, the queries and evidence that linked it and why curation "
        "removed it; and with --eval, per class the held-out images with their top-5 predictions and the "
        "most confused pairs; with --embeddings, each image's nearest neighbours and a 2-D map of each "
        "entity's images. Open DIR/index.html from disk, or --serve it. Arguments after the known flags "
        "are passed to Apache Beam.",
    )
    e.add_argument("dataset", metavar="DIR", help="the --out of `entitynet harvest` or `entitynet curate`")
    e.add_argument("--entities", required=True, metavar="FILE", help="the entities.jsonl of the dataset")
    e.add_argument(
        "--left-out",
        action="append",
        metavar="FILE",
        help="left_out.jsonl of `entitynet kg classify` (repeatable; default: the one beside --entities): "
        "the entities judged not visual, listed on the index with why",
    )
    e.add_argument(
        "--queries", metavar="FILE", help="queries.jsonl, to show the queries that found each image"
    )
    e.add_argument(
        "--eval",
        action="append",
        metavar="DIR",
        help="an `entitynet eval` output directory, or a run's workdir (all its evaluations); repeatable",
    )
    e.add_argument(
        "--embeddings",
        metavar="DIR",
        help="an `entitynet embed` output of the dataset or its harvest (local): each image shows its "
        "nearest neighbours with their scores, each entity page a map of its images (PCA of their "
        "embeddings); its index is built first when it has none or a stale one",
    )
    e.add_argument("--out", metavar="DIR", help="where to write the site (default: DATASET/../explorer)")
    from entitynet.explore.site import PAGE_SIZE
    from entitynet.images.thumbnail import THUMB_SIZE

    e.add_argument(
        "--thumb-size", type=int, default=THUMB_SIZE, help="the longer side of the thumbnails, in pixels"
    )
    e.add_argument("--page-size", type=int, default=PAGE_SIZE, help="images per page of an entity")
    e.add_argument("--serve", action="store_true", help="then serve the site on 127.0.0.1 until interrupted")
    e.add_argument("--port", type=int, default=8765, help="the --serve port (0: any free port)")
    e.set_defaults(func=cmd_explore, beam=True)
    return e


def default_site(dataset: str) -> str:
    if is_remote(dataset):
        return dataset.rstrip("/").rsplit("/", 1)[0] + "/explorer"
    return str(Path(dataset).resolve().parent / "explorer")


def explore_summary(result: dict) -> str:
    near = ""
    if result.get("embedded") is not None:
        near = (
            f", {result['embedded']:,} with their nearest neighbours, "
            f"{result['mapped']:,} entit{'y' if result['mapped'] == 1 else 'ies'} mapped"
        )
    return (
        f"explorer: {result['entities']:,} entities ({result.get('unimaged', 0):,} without images"
        + (f", {result['left_out']:,} left out as not visual" if result.get("left_out") else "")
        + "), "
        f"{result['images']:,} images{near}, "
        f"{result['evaluations']} evaluation(s) in {result['seconds']:.1f} s\n"
        f"open {Path(result['index']).resolve()} in a browser (it works from disk), "
        "or `entitynet explore ... --serve`"
    )


def _build(args, out: str, claim, queries, evals: list[str], beam_args) -> dict:
    """The site built into `out`, or into a local directory then uploaded when `out` is a bucket."""
    from beam_pipelines import explore

    with claim, staged_dir(out, prefix="entitynet-explorer-") as site_dir:
        result = explore.run(
            args.dataset,
            load_entities(args.entities),
            site_dir,
            queries,
            evals,
            args.thumb_size,
            args.page_size,
            beam_args,
            embeddings=args.embeddings,
            say=lambda line: print(line, file=sys.stderr, flush=True),
            left_out=_left_out(args),
        )
        result["local_index"] = str(Path(result["index"]).resolve())
    return result


def _left_out(args) -> list:
    """The entities `kg classify` left out: --left-out files, else the left_out.jsonl beside --entities."""
    from entitynet.kg import classify
    from entitynet.records import Entity, read_jsonl

    if not args.left_out:
        return classify.read_left_out(args.entities)
    return [e for path in args.left_out for e in read_jsonl(path, Entity)]


def cmd_explore(args, beam_args) -> int:
    from train.workdir import reader_copy

    if not 16 <= args.thumb_size <= 1024:
        raise ConfigError(f"--thumb-size {args.thumb_size}: give 16 to 1024 pixels")
    if args.page_size < 1:
        raise ConfigError(f"--page-size {args.page_size}: give at least 1")
    queries = None
    if args.queries:
        from entitynet.records import Query, read_jsonl

        queries = {q.id: q.text for q in read_jsonl(args.queries, Query)}
    out = args.out or default_site(args.dataset)
    if args.serve and is_remote(out):
        raise ConfigError(f"--serve serves a local site; give a local --out (not {out})")
    # a run in a bucket: its evaluations are read from a local copy of its workdir
    claim = claimed_output(out, "explore", ("index.html",)) if is_remote(out) else contextlib.nullcontext()
    with contextlib.ExitStack() as cleanup:
        local_of = {}
        for e in args.eval or []:
            if is_remote(e):
                copy = reader_copy(e)
                cleanup.callback(copy.drop)
                local_of[e] = copy.pull(only=("eval/", "results.json"))
        evals = [local_of.get(e, e) for e in args.eval or []]
        result = _build(args, out, claim, queries, evals, beam_args)
    if is_remote(out):  # built locally and uploaded
        result["index"] = STORE.join(out, "index.html")
        print(explore_summary(result).replace(f"open {result['local_index']}", result["index"]))
        print(
            f"copy it down to browse it (`gcloud storage cp -r {out} .` or `aws s3 cp --recursive {out} site`)"
        )
        return 0
    print(explore_summary(result))
    if args.serve:
        from entitynet.explore.serve import server

        try:
            srv = server(out, args.port)
        except OSError as e:
            raise ConfigError(
                f"--port {args.port}: cannot listen on 127.0.0.1 ({e.strerror}); give another"
            ) from None
        print(f"serving {out} at http://127.0.0.1:{srv.server_address[1]}/ (Ctrl-C stops)", flush=True)
        try:
            srv.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            srv.server_close()
    return 0
