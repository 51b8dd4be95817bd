"""Wikidata identifiers and SPARQL literals: validated and escaped before they enter a query."""

from __future__ import annotations

import re
from collections.abc import Iterable

from entitynet.errors import ConfigError

WD = "http://www.wikidata.org/entity/"
WDT = "http://www.wikidata.org/prop/direct/"

_QID = re.compile(r"Q[1-9][0-9]*")  # ASCII digits only: \d matches any script's digits
_PID = re.compile(r"P[1-9][0-9]*")
_LANG = re.compile(r"[a-zA-Z]{1,8}(-[a-zA-Z0-9]{1,8})*")


def qid(value: str, what: str = "entity id") -> str:
    """Return `value` if it is a Wikidata item id (Q123), else raise a ConfigError naming it."""
    if not isinstance(value, str) or not _QID.fullmatch(value):
        raise ConfigError(f"malformed {what} {value!r}: expected a Wikidata item id like Q729")
    return value


def is_qid(value: str) -> bool:
    """Whether `value` is spelled as a Wikidata item id (Q123)."""
    return isinstance(value, str) and _QID.fullmatch(value) is not None


def pid(value: str, what: str = "property id") -> str:
    if not isinstance(value, str) or not _PID.fullmatch(value):
        raise ConfigError(f"malformed {what} {value!r}: expected a Wikidata property id like P171")
    return value


def lang(value: str) -> str:
    if not isinstance(value, str) or not _LANG.fullmatch(value):
        raise ConfigError(f"malformed language code {value!r}: expected a BCP 47 tag like en or pt-br")
    return value.lower()


def qids(values: Iterable[str], what: str = "entity id") -> list[str]:
    return [qid(v, what) for v in values]


def id_from_iri(iri: str) -> str | None:
    """`http://www.wikidata.org/entity/Q42` -> `Q42`; anything else -> None."""
    if iri.startswith(WD):
        local = iri[len(WD) :]
        if _QID.fullmatch(local) or _PID.fullmatch(local):
            return local
    return None


def numeric(entity_id: str) -> int:
    return int(entity_id[1:])


def escape_literal(text: str) -> str:
    """A SPARQL string literal (with quotes) whose content cannot end the string early."""
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
