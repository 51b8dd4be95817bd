"""MetaCLIP-style substring matching of many names in many texts, with an Aho-Corasick automaton.

Texts and names are case-folded and punctuation is padded with spaces, then a name matches
only as whole space-delimited words (" red fox " in " a red fox . "), never inside a word.
One pass over a text finds every name, however many names there are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import ahocorasick

_PUNCT = re.compile(r"([^\w\s])")


def normalise(text: str) -> str:
    """Case-folded, punctuation padded, single-spaced, with a space at both ends."""
    return " " + " ".join(_PUNCT.sub(r" \1 ", text.casefold()).split()) + " "


class Matcher:
    """Finds which of `names` occur in a text. `names[i]` maps to `values[i]` (e.g. an entity id)."""

    def __init__(self, names: Iterable[str], values: Iterable[object]):
        self._automaton = ahocorasick.Automaton()
        slots: dict[str, list[object]] = {}
        for name, value in zip(names, values, strict=True):
            key = normalise(name)
            if key.strip():
                slots.setdefault(key, []).append(value)
        for key, vals in slots.items():
            self._automaton.add_word(key, tuple(vals))
        self.size = len(slots)
        if slots:
            self._automaton.make_automaton()

    def find(self, text: str) -> set[object]:
        if not self.size:
            return set()
        found: set[object] = set()
        for _, vals in self._automaton.iter(normalise(text)):
            found.update(vals)
        return found
