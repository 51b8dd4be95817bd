"""What every pipeline here shares: Beam options from standard flags, and running a pipeline so that
an error a user caused (bad endpoint, bad input) comes back as that error, not as a runner traceback."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from entitynet import errors
from entitynet.errors import EntityNetError

_USER_ERRORS = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, EntityNetError)]


def pipeline_options(beam_args: list[str] | None) -> PipelineOptions:
    """Standard Beam flags; DirectRunner in one process unless the flags say otherwise."""
    flags = list(beam_args or [])
    if not any(f.startswith("--direct_running_mode") for f in flags):
        flags.append("--direct_running_mode=in_memory")
    return PipelineOptions(flags=flags)


def user_error(exc: BaseException) -> EntityNetError | None:
    """The EntityNetError behind a pipeline failure. Runners wrap worker exceptions: follow the chain,
    and where only the text survived (another process), rebuild the error from it."""
    seen = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, EntityNetError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    text = str(exc)
    for cls in sorted(_USER_ERRORS, key=lambda c: len(c.__mro__), reverse=True):  # most specific first
        marker = f"{cls.__module__}.{cls.__name__}: "
        if marker in text:
            return cls(text.split(marker, 1)[1].splitlines()[0])
    return None


def run_pipeline(build: Callable[[beam.Pipeline], None], beam_args: list[str] | None) -> None:
    """Build and run a pipeline to completion; user errors surface as themselves."""
    try:
        with beam.Pipeline(options=pipeline_options(beam_args)) as p:
            build(p)
    except Exception as e:
        err = user_error(e)
        if err is not None:
            raise err from None
        raise
