"""Image licences as short SPDX-like ids, from the ways sources write them, and the filter that
`harvest --licenses` / `--exclude-licenses` applies to candidates before they are fetched.

Sources spell a licence many ways: Wikimedia Commons' `extmetadata` gives "CC BY-SA 4.0",
"CC0", "Public domain"; GBIF gives a URL ("http://creativecommons.org/licenses/by-nc/4.0/legalcode")
or an enum ("CC_BY_4_0"); iNaturalist a code ("cc-by-nc", "cc0"; none for all rights reserved).
`normalize` turns each into one id: `CC0-1.0`, `CC-BY-4.0`, `CC-BY-SA-3.0`, `CC-BY-NC-ND-4.0`, ...,
`public-domain` (a public-domain mark, not a licence), or `unknown` (anything else, including no
licence: all rights reserved). A licence without a version (iNaturalist's codes) gets 4.0, the
version those codes stand for.

A filter works on families, the id without its version (`cc0`, `cc-by`, `cc-by-sa`, `cc-by-nc`,
`cc-by-nc-sa`, `cc-by-nd`, `cc-by-nc-nd`, `public-domain`, `unknown`): `--licenses cc0,cc-by,cc-by-sa`
keeps only those; `--exclude-licenses` drops the families named, and `*-` with licence elements
drops every family that has them all (`*-nc` drops cc-by-nc, cc-by-nc-sa and cc-by-nc-nd; `*-nd`
drops cc-by-nd and cc-by-nc-nd).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from entitynet.errors import ConfigError

UNKNOWN = "unknown"
PUBLIC_DOMAIN = "public-domain"
# the Creative Commons licence elements, in the order their ids name them
_ELEMENTS = ("by", "nc", "sa", "nd")
FAMILIES = (
    "cc0",
    "cc-by",
    "cc-by-sa",
    "cc-by-nc",
    "cc-by-nc-sa",
    "cc-by-nd",
    "cc-by-nc-nd",
    PUBLIC_DOMAIN,
    UNKNOWN,
)
_DEFAULT_VERSION = "4.0"
_VERSION = re.compile(r"(?<![\d.])(\d(?:\.\d)?)(?![\d.])")


def normalize(text: str | None) -> str:
    """The short id of a licence however a source writes it; `unknown` when it is none we know."""
    if not text or not isinstance(text, str):
        return UNKNOWN
    t = text.strip().lower()
    # "_" and "/" separate words in enums and URLs; a URL's path carries the elements and version
    t = re.sub(r"https?://(www\.)?creativecommons\.org/", " ", t)
    t = t.replace("_", " ").replace("/", " ").replace("-", " ")
    words = t.split()
    if not words:
        return UNKNOWN
    if "publicdomain" in words or "pdm" in words or " ".join(words[:2]) in ("public domain", "pd mark"):
        # creativecommons.org/publicdomain/zero/1.0 is CC0; .../publicdomain/mark/1.0 is the mark
        return "CC0-1.0" if "zero" in words else PUBLIC_DOMAIN
    if "cc0" in words or ("cc" in words and "zero" in words):
        return "CC0-1.0"
    if words[0] == "licenses":  # what is left of a creativecommons.org/licenses/... URL
        words = ["cc", *words[1:]]
    if words[0] != "cc" and not words[0].startswith("cc"):
        return UNKNOWN
    if words[0] != "cc":  # "ccby" written together
        words = ["cc", words[0][2:], *words[1:]]
    elements = [w for w in words[1:] if w in _ELEMENTS]
    if not elements or elements[0] != "by" or len(set(elements)) != len(elements):
        return UNKNOWN
    if "sa" in elements and "nd" in elements:
        return UNKNOWN  # not a licence Creative Commons publishes
    version = next((m.group(1) for w in words[1:] if (m := _VERSION.fullmatch(w))), _DEFAULT_VERSION)
    if "." not in version:
        version += ".0"
    ordered = [e for e in _ELEMENTS if e in elements]
    return "CC-" + "-".join(e.upper() for e in ordered) + "-" + version


def family(spdx: str) -> str:
    """The licence family of an id from `normalize` (its version dropped)."""
    if spdx in (UNKNOWN, PUBLIC_DOMAIN):
        return spdx
    if spdx.startswith("CC0"):
        return "cc0"
    name = re.sub(r"-\d+(\.\d+)?$", "", spdx).lower()
    return name if name in FAMILIES else UNKNOWN


# most open first: of two copies of the same bytes, a record keeps the more open licence
_OPENNESS = (
    "cc0",
    PUBLIC_DOMAIN,
    "cc-by",
    "cc-by-sa",
    "cc-by-nd",
    "cc-by-nc",
    "cc-by-nc-sa",
    "cc-by-nc-nd",
    UNKNOWN,
)


def openness(spdx: str) -> int:
    """0 for the most open family (CC0) up to the last for `unknown`: a sort key."""
    return _OPENNESS.index(family(spdx or UNKNOWN))


@dataclass(frozen=True)
class LicenseFilter:
    """Which licence families a harvest keeps (`include` empty: all), minus `exclude`."""

    include: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, include: str = "", exclude: str = "") -> LicenseFilter:
        """From the flags' comma-separated lists; a family we do not know is a ConfigError."""
        return cls(
            frozenset(_families(include, "--licenses", patterns=False)),
            frozenset(_families(exclude, "--exclude-licenses", patterns=True)),
        )

    @property
    def active(self) -> bool:
        return bool(self.include or self.exclude)

    def allows(self, spdx: str) -> bool:
        f = family(spdx or UNKNOWN)
        return (not self.include or f in self.include) and f not in self.exclude


def _families(spec: str, flag: str, patterns: bool) -> Iterable[str]:
    for name in (x.strip().lower() for x in spec.split(",")):
        if not name:
            continue
        if patterns and name.startswith("*"):
            wanted = set(name[1:].strip("-").split("-"))
            matched = [f for f in FAMILIES if f.startswith("cc-") and wanted <= set(f.split("-"))]
            if not matched or not wanted <= set(_ELEMENTS):
                raise ConfigError(
                    f"{flag}: {name!r} matches no licence family (families: {', '.join(FAMILIES)})"
                )
            yield from matched
            continue
        if name not in FAMILIES:
            close = difflib.get_close_matches(name, FAMILIES, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"{flag}: unknown licence family {name!r}{hint}; use some of {', '.join(FAMILIES)}"
            )
        yield name
