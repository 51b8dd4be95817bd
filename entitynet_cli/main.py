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
    entitynet explore out/curated --entities out/kg/entities.jsonl --eval runs/tiny
    entitynet demo --out demo-out

Errors a user can cause print one line and exit 2; anything else is a bug with a traceback.
"""

from __future__ import annotations

import argparse
import sys

from entitynet import __version__
from entitynet.errors import EntityNetError
from entitynet_cli.common import all_flags, beam_flags, did_you_mean, setup_logging, unknown_beam_flags
from entitynet_cli.curate import add_curate_flags, cmd_curate
from entitynet_cli.demo import cmd_demo
from entitynet_cli.explore import add_parser as add_explore
from entitynet_cli.harvest import add_harvest_flags, cmd_harvest
from entitynet_cli.kg import cmd_kg_expand
from entitynet_cli.queries import cmd_captions, cmd_queries
from entitynet_cli.train import cmd_eval, cmd_export, cmd_tokenizer_train, cmd_train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="entitynet", description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log Beam's progress too")
    p.add_argument("--version", action="version", version=f"entitynet {__version__}")
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
    ex.add_argument("--language", action="append", metavar="LANG", help="label languages in order")
    ex.add_argument(
        "--natural-type", action="append", metavar="QID", help="natural-type candidates (repeatable)"
    )
    ex.add_argument("--max-depth", type=int, default=64, help="levels below the roots")
    ex.add_argument("--batch-size", type=int, default=200, help="ids per VALUES query")
    ex.add_argument(
        "--strategy",
        choices=("auto", "closure", "levels"),
        default="auto",
        help="how the walk learns the graph: one closure query, batched queries level by level, or "
        "auto : the closure query, and level by level if the endpoint times out or refuses it",
    )
    ex.add_argument(
        "--closure-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="auto: how long the closure query may take before the walk goes level by level",
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
        "stock, animated); 'none' for no filter",
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
        "(files read whole)",
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
        help="commons-category: levels of subcategories listed below the entity's category",
    )
    h.add_argument(
        "--thumb-width",
        type=int,
        default=512,
        help="commons-category: width of the thumbnail fetched",
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

    add_explore(sub)

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


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows every flag's default (unless there is none, or the help says it already)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            "default" in text
            or action.default is None
            or action.default is False
            or action.default == argparse.SUPPRESS
            or action.help == argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


def with_defaults_shown(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """`parser` and every subcommand's parser formatted by `HelpFormatter`."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if (
            action.help is None
            and action.option_strings
            and action.default is not None
            and action.default is not False
        ):
            action.help = "default: %(default)s"  # a flag without help text still shows its default
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                with_defaults_shown(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = with_defaults_shown(build_parser())
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "beam", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    setup_logging(args.verbose)
    if extra and getattr(args, "extra", "beam") == "beam":
        unknown = unknown_beam_flags(extra)
        if unknown:
            flag, hint = unknown[0], did_you_mean(unknown[0], all_flags(parser) | beam_flags())
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
