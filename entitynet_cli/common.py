"""What every stage's command shares: logging, tables, the sample graph, entities, the JAX cache and
Beam's own flags."""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from importlib import resources
from pathlib import Path

from entitynet.errors import EntityNetError
from entitynet.printable import printable

log = logging.getLogger("entitynet")


SAMPLE_ROOTS = ("Q729", "Q756", "Q764")  # animal, plant, fungus: everything in the sample graph


def sample_kg_path() -> str:
    return str(resources.files("entitynet") / "data" / "sample_kg.ttl")


class PrintableFormatter(logging.Formatter):
    """Log lines with control characters escaped (`entitynet.printable`): a warning may quote a
    label, a URL or a host name."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


def setup_logging(verbose: bool) -> None:
    # Beam and Google client libraries log warnings at import that say nothing to our users.
    logging.basicConfig(level=logging.ERROR, format="%(message)s", stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # ours (basicConfig's), not a test harness's
            handler.setFormatter(PrintableFormatter("%(message)s"))
    logging.getLogger("entitynet").setLevel(logging.DEBUG if verbose else logging.INFO)
    if verbose:
        logging.getLogger().setLevel(logging.INFO)
    else:  # a worker's failure comes back to us as an exception; Beam's logged traceback of it is noise
        logging.getLogger("apache_beam").setLevel(logging.CRITICAL)


# What an interrupted command has kept, for the one line Ctrl-C prints (`on_interrupt`, main).
_KEPT: list = ["nothing of it was written"]


def on_interrupt(kept) -> None:
    """Say what a command keeps when Ctrl-C stops it from here on: a text, or a function that
    makes one then (a training's latest checkpoint)."""
    _KEPT[0] = kept


def interrupted_line(argv: list[str]) -> str:
    """The one line Ctrl-C prints: what was kept and the command that resumes or repeats it."""
    import shlex

    kept = _KEPT[0]() if callable(_KEPT[0]) else _KEPT[0]
    return f"entitynet: interrupted; {kept}; to go on, run again: entitynet {shlex.join(argv)}"


def sibling(out: str, name: str) -> str:
    """A directory beside `out` (the next stage's output, as a summary suggests it)."""
    head = out.rstrip("/").rsplit("/", 1)[0] if "/" in out.rstrip("/") else ""
    return f"{head}/{name}" if head else name


def next_command(stage: str, *flags: str) -> str:
    """A summary's last line: the command that goes on from here."""
    return f"next: entitynet {stage} {' '.join(flags)}".rstrip()


def table(counts: dict[str, int], indent: str = "  ") -> str:
    if not counts:
        return f"{indent}(none)"
    width = max(len(k) for k in counts)
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return "\n".join(f"{indent}{k:<{width}}  {v:>7,}" for k, v in rows)


def load_entities(path: str):
    from entitynet.records import Entity, read_jsonl

    entities = list(read_jsonl(path, Entity))
    if not entities:
        raise EntityNetError(
            f"{path} holds no entities; give the entities.jsonl that `entitynet kg expand` wrote (it never "
            "writes an empty one: its error says why nothing was found)"
        )
    return entities


def compilation_cache() -> None:
    """JAX's persistent compilation cache, so that re-runs, resumed runs, evaluations and the demo's
    ablation runs skip XLA compiles they have done before: $JAX_COMPILATION_CACHE_DIR when set,
    else $ENTITYNET_JAX_CACHE, else ~/.cache/entitynet/jax."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return  # JAX reads it itself
    import jax

    d = os.environ.get("ENTITYNET_JAX_CACHE") or str(Path.home() / ".cache" / "entitynet" / "jax")
    jax.config.update("jax_compilation_cache_dir", d)


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


def all_flags(parser: argparse.ArgumentParser) -> set[str]:
    flags = set()
    for action in parser._actions:
        flags.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= all_flags(sub)
    return flags
