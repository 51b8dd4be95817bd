"""Parse SPARQL 1.1 JSON results (the W3C format) into rows of typed Python values.

Both clients go through this one parser, so the remote endpoint and the embedded store
produce identical rows for identical data.
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from entitynet.errors import KGDataError, KGError

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
# the integers a graph gives us are counts and ids: 30 digits is far beyond any, and Python's int()
# of thousands of digits is slow and then refused (sys.int_info.default_max_str_digits)
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")
_DECIMAL = re.compile(
    r"[+-]?([0-9]{1,300}(\.[0-9]{0,300})?|\.[0-9]{1,300})([eE][+-]?[0-9]{1,4})?|[+-]?INF|NaN"
)


class BadLiteral(ValueError):
    """A typed literal whose text is not a value of its datatype that we can use."""


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
            if not _INTEGER.fullmatch(value.strip()):
                raise BadLiteral(dtype, value)
            return Term(int(value), "literal")
        if dtype in _FLOATS:
            if not _DECIMAL.fullmatch(value.strip()):
                raise BadLiteral(dtype, value)
            return Term(float(value), "literal")
        if dtype == XSD + "boolean":
            return Term(value in ("true", "1"), "literal")
        return Term(value, "literal", binding.get("xml:lang"))
    raise ValueError(f"unknown binding type {kind!r}")


def _cast_named(var: str, binding: dict[str, Any], row: dict) -> Term:
    try:
        return _cast(binding)
    except BadLiteral as e:
        # the row's first IRI names what the value is about (the entity), where there is one
        about = next(
            (b.get("value") for b in row.values() if isinstance(b, dict) and b.get("type") == "uri"), ""
        )
        raise BadLiteral(var, str(about)[:200], *e.args) from None


def parse_results(payload: bytes | str, source: str) -> list[Row]:
    """Rows of a SELECT result. A payload that is not SPARQL JSON results is a KGError naming `source`."""
    try:
        doc = json.loads(payload)
        bindings = doc["results"]["bindings"]
        if not isinstance(bindings, list):
            raise ValueError("results.bindings is not a list")
        return [{var: _cast_named(var, b, row) for var, b in row.items()} for row in bindings]
    except BadLiteral as e:
        var, subject, dtype, value = e.args
        dtype = dtype.replace(XSD, "xsd:")
        shown = value if len(value) <= 40 else f"{value[:20]}...{value[-8:]} ({len(value)} characters)"
        want = (
            "an integer of at most 30 digits" if dtype.replace("xsd:", XSD) in _INTS else "a decimal number"
        )
        raise KGDataError(
            f"{source}: the {dtype} literal {shown!r} (?{var}{' of ' + subject if subject else ''}) is not "
            f"{want}; fix that value in the knowledge graph"
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        head = payload[:80] if isinstance(payload, str) else payload[:80].decode("utf-8", "replace")
        raise KGError(
            f"malformed SPARQL response from {source} ({type(e).__name__}: {e}; starts {head!r}); "
            "check that the URL is a SPARQL endpoint that answers application/sparql-results+json"
        ) from e
