"""Parse SPARQL 1.1 JSON results (the W3C format) into rows of typed Python values.

Both clients go through this one parser, so the remote endpoint and the embedded store
produce identical rows for identical data.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from entitynet.errors import KGError

XSD = "http://www.w3.org/2001/XMLSchema#"
_INTS = {
    XSD + t
    for t in (
        "integer",
        "int",
        "long",
        "short",
        "byte",
        "nonNegativeInteger",
        "positiveInteger",
        "unsignedInt",
        "unsignedLong",
        "unsignedShort",
    )
}
_FLOATS = {XSD + t for t in ("double", "float", "decimal")}


class Term(NamedTuple):
    value: Any  # str for IRIs and strings; int, float or bool for typed literals
    type: str  # "uri", "literal" or "bnode"
    lang: str | None = None


Row = dict[str, Term]


def _cast(binding: dict[str, Any]) -> Term:
    kind = binding["type"]
    value = binding["value"]
    if not isinstance(value, str):
        raise ValueError(f"binding value {value!r} is not a string")
    if kind == "uri":
        return Term(value, "uri")
    if kind == "bnode":
        return Term(value, "bnode")
    if kind in ("literal", "typed-literal"):
        dtype = binding.get("datatype")
        if dtype in _INTS:
            return Term(int(value), "literal")
        if dtype in _FLOATS:
            return Term(float(value), "literal")
        if dtype == XSD + "boolean":
            return Term(value in ("true", "1"), "literal")
        return Term(value, "literal", binding.get("xml:lang"))
    raise ValueError(f"unknown binding type {kind!r}")


def parse_results(payload: bytes | str, source: str) -> list[Row]:
    """Rows of a SELECT result. A payload that is not SPARQL JSON results is a KGError naming `source`."""
    try:
        doc = json.loads(payload)
        bindings = doc["results"]["bindings"]
        if not isinstance(bindings, list):
            raise ValueError("results.bindings is not a list")
        return [{var: _cast(b) for var, b in row.items()} for row in bindings]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        head = payload[:80] if isinstance(payload, str) else payload[:80].decode("utf-8", "replace")
        raise KGError(
            f"malformed SPARQL response from {source} ({type(e).__name__}: {e}; starts {head!r}); "
            "check that the URL is a SPARQL endpoint that answers application/sparql-results+json"
        ) from e
