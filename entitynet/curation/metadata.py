"""The knowledge graph as MetaCLIP metadata: every entity is one entry, its names (label, aliases,
common and scientific names) the strings that match it.

A record's entries are the entities whose names occur in its alt texts (space-delimited substring
matching after MetaCLIP's punctuation spacing, one Aho-Corasick pass per text) joined with the
entities whose search queries found it.
"""

from __future__ import annotations

from collections.abc import Iterable

from entitynet.records import Entity
from entitynet.text.matching import Matcher


class EntityMetadata:
    def __init__(self, entities: Iterable[Entity]):
        names, ids = [], []
        self.ids: set[str] = set()
        for e in entities:
            self.ids.add(e.id)
            for name in e.synonyms():
                names.append(name)
                ids.append(e.id)
        self.matcher = Matcher(names, ids)

    @property
    def size(self) -> int:
        """Distinct name strings in the automaton."""
        return self.matcher.size

    def match(self, texts: Iterable[str]) -> set[str]:
        """Entity ids whose names occur in any of `texts`."""
        found: set[str] = set()
        for t in texts:
            found |= self.matcher.find(t)
        return found

    def entries(self, alt_texts: Iterable[str], entity_ids: Iterable[str]) -> tuple[str, ...]:
        """A record's entries: matched in its alt texts, or the entities that found it (known ones)."""
        return tuple(sorted(self.match(alt_texts) | (set(entity_ids) & self.ids)))
