"""One small interface over both kinds of knowledge graph, and a picklable spec to open it.

Beam pickles the spec into each worker; the worker opens the client in `DoFn.setup`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from entitynet.errors import ConfigError
from entitynet.kg.results import Row

DEFAULT_TOTAL_TIMEOUT = 600.0  # seconds for one query, its retries and their waits included
DEFAULT_MAX_BYTES = 256 << 20  # one answer; a batch of 200 ids with all their texts is a few MiB


def check_limits(total_timeout: float, max_bytes: int) -> None:
    """The deadline and size cap of a remote endpoint, refused (named as flags) when they make no sense."""
    if not (isinstance(total_timeout, int | float) and math.isfinite(total_timeout) and total_timeout > 0):
        raise ConfigError(f"--total-timeout must be a positive number of seconds, got {total_timeout!r}")
    if not (isinstance(max_bytes, int) and max_bytes >= 1):
        raise ConfigError(f"--max-response-mb must be positive, got {max_bytes / (1 << 20):g}")


class SparqlClient(Protocol):
    def select(self, query: str) -> list[Row]: ...


@dataclass(frozen=True)
class KGSource:
    """Where the graph is: a SPARQL endpoint URL (or preset name), or local RDF files."""

    endpoint: str | None = None
    kg_files: tuple[str, ...] = ()
    contact: str | None = None
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT  # one query, retries included (--total-timeout)
    max_response_bytes: int = DEFAULT_MAX_BYTES  # one answer (--max-response-mb)
    max_retries: int = 5
    backoff: float = 1.0
    requests_per_second: float | None = None

    def __post_init__(self):
        if bool(self.endpoint) == bool(self.kg_files):
            raise ConfigError(
                "give exactly one knowledge graph: --endpoint URL|wikidata|qlever or --kg-file PATH"
            )
        check_limits(self.total_timeout, self.max_response_bytes)

    def describe(self) -> str:
        return self.endpoint or ", ".join(self.kg_files)

    def resolved_endpoint(self) -> tuple[str, float | None]:
        from entitynet.kg.remote import PRESETS

        preset = PRESETS.get(self.endpoint or "")
        if preset:
            return preset.url, self.requests_per_second or preset.requests_per_second
        if not (self.endpoint or "").startswith(("http://", "https://")):
            raise ConfigError(
                f"unknown endpoint {self.endpoint!r}: give an http(s) URL or one of {', '.join(PRESETS)}"
            )
        assert self.endpoint is not None  # None would have been refused just above
        return self.endpoint, self.requests_per_second

    def open(self) -> SparqlClient:
        if self.kg_files:
            from entitynet.kg.embedded import EmbeddedSparql

            return EmbeddedSparql(self.kg_files)
        from entitynet.kg.remote import RemoteSparql, user_agent

        url, rps = self.resolved_endpoint()
        return RemoteSparql(
            url,
            agent=user_agent(self.contact),
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            total_timeout=self.total_timeout,
            max_bytes=self.max_response_bytes,
            max_retries=self.max_retries,
            backoff=self.backoff,
            requests_per_second=rps,
        )
