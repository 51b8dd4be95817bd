"""MetaCLIP-style substring matching of many names in many texts, with an Aho-Corasick automaton.

Texts and names are case-folded and punctuation is padded with spaces, then a name matches
only as whole space-delimited words (" red fox " in " a red fox . "), never inside a word.
One pass over a text finds every name, however many names there are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Generic, TypeVar

import ahocorasick

_PUNCT = re.compile(r"([^\w\s])")

V = TypeVar("V")


def normalise(text: str) -> str:
    """Case-folded, punctuation padded, single-spaced, with a space at both ends."""
    return " " + " ".join(_PUNCT.sub(r" \1 ", text.casefold()).split()) + " "


class Matcher(Generic[V]):
    """Finds which of `names` occur in a text. `names[i]` maps to `values[i]` (e.g. an entity id)."""

    def __init__(self, names: Iterable[str], values: Iterable[V]):
        self._automaton = ahocorasick.Automaton()
        slots: dict[str, list[V]] = {}
        for name, value in zip(names, values, strict=True):
            key = normalise(name)
            if key.strip():
                slots.setdefault(key, []).append(value)
        for key, vals in slots.items():
            self._automaton.add_word(key, tuple(vals))
        self.size = len(slots)
        if slots:
            self._automaton.make_automaton()

    def find(self, text: str) -> set[V]:
        if not self.size:
            return set()
        found: set[V] = set()
        for _, vals in self._automaton.iter(normalise(text)):
            found.update(vals)
        return found


class Prefilter:
    """Which texts of a batch may hold one of `names`, in one automaton pass over the whole batch.

    Each name's longest token (of its normalised form) is looked for as a bare substring of the
    case-folded texts. Normalising only pads punctuation and collapses whitespace, never changing a
    run of word characters, so a text whose normalised form holds a name holds that token: the
    prefilter never misses a match; it may pass texts that do not match (the exact `Matcher` then
    decides). Case folding is per character, so the batch is folded as one string."""

    SEP = "\x00"  # between texts; never part of a token

    def __init__(self, names: Iterable[str]):
        self._automaton = ahocorasick.Automaton()
        tokens = {max(normalise(n).split(), key=len) for n in names if normalise(n).strip()}
        for t in tokens:
            self._automaton.add_word(t, None)
        self.size = len(tokens)
        if tokens:
            self._automaton.make_automaton()

    def rows(self, texts) -> list[int]:
        """Indices of `texts` (a pyarrow string array) that may hold a name, ascending."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        if not self.size or not len(texts):
            return []
        texts = pc.replace_substring(pc.cast(texts, pa.string()).fill_null(""), self.SEP, " ")
        joined = pc.binary_join(
            pa.ListArray.from_arrays(pa.array([0, len(texts)], pa.int32()), texts), self.SEP
        )
        big = joined[0].as_py().casefold()
        ends = np.flatnonzero(np.frombuffer(big.encode("utf-32-le"), dtype=np.uint32) == 0)
        found = np.fromiter((end for end, _ in self._automaton.iter(big)), dtype=np.int64)
        return np.unique(np.searchsorted(ends, found)).tolist()
