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
    entitynet data export --data out/curated --format webdataset --out out/wds
    entitynet data import --input 'laion/*.tar' --queries out/queries/queries.jsonl --out out/imported
    entitynet explore out/curated --entities out/kg/entities.jsonl --eval runs/tiny
    entitynet demo --out demo-out

Errors a user can cause print one line and exit 2; anything else is a bug with a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from entitynet import __version__
from entitynet.errors import EntityNetError
from entitynet.printable import PrintableStream, printable
from entitynet_cli.common import (
    all_flags,
    beam_flags,
    did_you_mean,
    interrupted_line,
    setup_logging,
    unknown_beam_flags,
)
from entitynet_cli.curate import add_parser as add_curate
from entitynet_cli.data import add_parser as add_data
from entitynet_cli.demo import add_parser as add_demo
from entitynet_cli.explore import add_parser as add_explore
from entitynet_cli.harvest import add_parser as add_harvest
from entitynet_cli.kg import add_parser as add_kg
from entitynet_cli.queries import add_parser as add_queries
from entitynet_cli.train import add_parser as add_train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="entitynet", description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="log Beam's progress too")
    p.add_argument("--version", action="version", version=f"entitynet {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    for add in (add_kg, add_queries, add_harvest, add_curate, add_data, add_train, add_explore, add_demo):
        add(sub)
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
    # what a command prints may quote labels, texts, URLs and files: control characters are shown
    # escaped, never sent to the terminal (`entitynet.printable`)
    stdout, sys.stdout = sys.stdout, PrintableStream(sys.stdout)
    try:
        return args.func(args, extra)
    except EntityNetError as e:
        print(f"entitynet: error: {printable(str(e), newlines=False)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        fresh_line = "\n" if sys.stderr.isatty() else ""  # after ^C or a progress line
        print(f"{fresh_line}{interrupted_line(sys.argv[1:] if argv is None else argv)}", file=sys.stderr)
        if argv is None:  # the command line: end now, without the shutdown noise of the worker
            sys.stderr.flush()  # threads and event loops that Ctrl-C stopped mid-task
            stdout.flush()
            os._exit(130)
        return 130
    finally:
        sys.stdout = stdout
