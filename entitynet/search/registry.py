"""The search backends' registry: each backend module declares itself once, with `register`, and
nothing else lists backends.

A declaration (`Backend`) says what the backend is called, how the harvest uses it (asked query by
query, or read whole), whether it needs the entities, which query modifiers its API expresses, its
own options (`Option`: a `SearchSpec` field, its flag, help, default and range — the command line's
flags are made from them), what it requires of a spec, how it opens, and what decides its answers
(the search cache's key). A new query backend is one module in `entitynet/search/` that defines
its class and calls `register`; it is found by importing the package's modules (`load`).

    register(Backend("my-api", "my image API", "web", modifiers=frozenset({"photo_type"}),
                     open=lambda spec, entities, queries, url: MyApi(url, spec.max_results)))
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from entitynet.errors import ConfigError
from entitynet.options import Option

# how the harvest uses a backend, in the order --backend's help lists them
GROUPS = {
    "web": "web search",
    "identifier": "by the entities' identifiers",
    "whole": "files read whole",
}


@dataclass(frozen=True)
class Backend:
    """A search backend as the harvest sees it.

    `open(spec, entities, queries, url)` makes its `SearchBackend` (query backends); `check(spec)`
    returns what a spec that selects it lacks (one line) or ""; `settings(spec, store)` what,
    besides the query, decides its answers (a changed value searches anew)."""

    name: str
    describes: str
    group: str  # a key of GROUPS
    needs_entities: bool = False
    modifiers: frozenset[str] = frozenset()
    options: tuple[Option, ...] = ()
    open: Callable[..., Any] | None = None
    check: Callable[[Any], str] | None = None
    settings: Callable[..., dict] | None = None

    @property
    def reads_whole(self) -> bool:
        """Read whole by the harvest (a file or an archive), not asked query by query."""
        return self.group == "whole"


_REGISTRY: dict[str, Backend] = {}
_LOADED = False


def register(backend: Backend) -> Backend:
    """Declare a backend (at the end of its module). A name is declared once."""
    if backend.group not in GROUPS:
        raise ValueError(f"backend {backend.name}: group must be one of {', '.join(GROUPS)}")
    known = _REGISTRY.get(backend.name)
    if known is not None and known is not backend:
        raise ValueError(f"search backend {backend.name!r} is declared twice")
    _REGISTRY[backend.name] = backend
    return backend


def load() -> None:
    """Import every module of `entitynet.search`, so that each backend has declared itself."""
    global _LOADED
    if _LOADED:
        return
    import entitynet.search as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    _LOADED = True


def backends() -> list[Backend]:
    """Every declared backend: web search first, then by identifier, then read whole; by name."""
    load()
    rank = {g: i for i, g in enumerate(GROUPS)}
    return sorted(_REGISTRY.values(), key=lambda b: (rank[b.group], b.name))


def names() -> tuple[str, ...]:
    return tuple(b.name for b in backends())


def get(name: str) -> Backend:
    """The backend called `name`; a ConfigError naming the known ones otherwise."""
    load()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown search backend {name!r}: use one of {', '.join(names())}")
    return _REGISTRY[name]


def options() -> list[tuple[Option, tuple[str, ...]]]:
    """Each backend option once (several backends may share one), with the backends that use it."""
    found: dict[str, tuple[Option, list[str]]] = {}
    for b in backends():
        for o in b.options:
            if o.flag in found and found[o.flag][0] != o:
                raise ValueError(
                    f"option {o.flag} is declared differently by {found[o.flag][1][0]} and {b.name}"
                )
            found.setdefault(o.flag, (o, []))[1].append(b.name)
    return [(o, tuple(users)) for o, users in found.values()]
