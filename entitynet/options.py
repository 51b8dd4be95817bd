"""Options declared once: the field that holds an option, the flag that sets it, its help, default
and range, in one `Option`. The command line's flags are made from the declarations (`add_flags`)
and read back by the same declarations (`values`), so a flag and its field cannot drift apart.

Two ways to declare: a list of `Option`s (a search backend's, a curation filter's), or the fields
of an options dataclass, each made with `option(...)` (`declared(cls)` gives their `Option`s).

    @dataclass(frozen=True)
    class MyOptions:
        t: int = option(20_000, "MetaCLIP's per-entry threshold", low=1)

    add_flags(parser, declared(MyOptions))
    MyOptions(**values(args, declared(MyOptions)))
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from entitynet.errors import ConfigError


@dataclass(frozen=True)
class Option:
    """One option, declared once: the field it sets, its flag, help and default, and the inclusive
    range a number must be in (`check`). `off_flag`: a second flag that sets the field to None (a
    step turned off); `repeat`: the flag may be given several times (a tuple)."""

    field: str
    flag: str
    help: str
    type: type = str
    default: Any = None
    choices: tuple = ()
    metavar: str | None = None
    repeat: bool = False
    low: float | None = None
    high: float | None = None
    off_flag: str | None = None
    off_help: str = ""
    dest: str | None = None  # the parsed flags' attribute (default: the field)
    path: tuple[str, ...] = ()  # the fields of the nested options it sits in (`declared`)

    @property
    def attr(self) -> str:
        return self.dest or self.field

    def check(self, value) -> None:
        """A ConfigError naming the flag when `value` is outside the declared range."""
        if value is None or (self.low is None and self.high is None):
            return
        low = self.low if self.low is not None else float("-inf")
        high = self.high if self.high is not None else float("inf")
        if not low <= value <= high:
            if self.high is None:
                shown = f"at least {low:g}"
            elif self.low is None:
                shown = f"at most {high:g}"
            else:
                shown = f"within {low:g}..{high:g}"
            raise ConfigError(f"{self.flag} must be {shown}, got {value}")


def option(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    type: type | None = None,
    **kwargs: Any,
) -> Any:
    """A dataclass field declared as an option (its flag: `--field-name` unless given)."""
    declared_type = type if type is not None else (builtin_type(default) if default is not None else str)
    meta = {"flag": flag, "help": help, "type": declared_type, **kwargs}
    if isinstance(default, list | dict | set):
        raise TypeError("an option's default must be immutable (use a tuple)")
    return dataclasses.field(default=default, metadata={"option": meta})


def builtin_type(value: Any) -> type:
    if isinstance(value, tuple):
        return builtin_type(value[0]) if value else str
    return type(value)


def declared(cls, path: tuple[str, ...] = ()) -> list[Option]:
    """The `Option` of each field of the dataclass `cls` made with `option(...)`, in field order,
    and those of the options dataclasses nested in it (a field whose default is made by one), each
    parsed into the attribute its flag names (`--image-size` -> image_size)."""
    found = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("option")
        if meta is None:
            inner = f.default_factory
            if dataclasses.is_dataclass(inner) and isinstance(inner, type):
                found += declared(inner, (*path, f.name))
            continue
        meta = dict(meta)
        flag = meta.pop("flag") or "--" + f.name.replace("_", "-")
        dest = flag.lstrip("-").replace("-", "_")
        found.append(Option(field=f.name, flag=flag, default=f.default, dest=dest, path=path, **meta))
    return found


def build(cls, args: argparse.Namespace, path: tuple[str, ...] = ()):
    """An instance of the options dataclass `cls` (and of those nested in it) from parsed flags
    (`add_flags(parser, declared(cls))`); fields without a flag keep their defaults."""
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if "option" in f.metadata:
            mine = [o for o in declared(cls, path) if o.field == f.name and o.path == path]
            kwargs[f.name] = values(args, mine)[f.name]
        elif dataclasses.is_dataclass(f.default_factory) and isinstance(f.default_factory, type):
            kwargs[f.name] = build(f.default_factory, args, (*path, f.name))
    return cls(**kwargs)


def check_all(obj, options: Iterable[Option]) -> None:
    """Each declared option of `obj` within its range (a ConfigError naming the flag); options of
    nested dataclasses are checked by their own."""
    for o in options:
        if not o.path:
            o.check(getattr(obj, o.field))


def add_flags(
    parser: argparse.ArgumentParser | Any,
    options: Iterable[Option],
    help_prefix: dict[str, str] | None = None,
) -> None:
    """A flag for each option (and its off flag), with its help and default."""
    for o in options:
        text = (help_prefix or {}).get(o.flag, "") + o.help
        kwargs: dict = {"help": text, "metavar": o.metavar}
        if o.type is bool:
            # not given: no attribute (`values` takes the default), and no "(default: True)" in the help
            kwargs = {
                "help": text,
                "action": "store_false" if o.default else "store_true",
                "default": argparse.SUPPRESS,
            }
        elif o.repeat:
            kwargs["action"] = "append"
        else:
            kwargs.update(type=o.type, default=None if o.default == "" else o.default)
        if o.choices:
            kwargs.update(choices=o.choices, metavar=None)
        parser.add_argument(o.flag, dest=o.attr, **kwargs)
        if o.off_flag:
            parser.add_argument(o.off_flag, dest=o.attr, action="store_const", const=None, help=o.off_help)


def values(args: argparse.Namespace, options: Iterable[Option]) -> dict[str, Any]:
    """field -> value of each option, from parsed flags (a repeated flag not given: its default)."""
    out: dict[str, Any] = {}
    for o in options:
        value = getattr(args, o.attr, o.default)
        if o.repeat:
            value = tuple(value) if value else o.default
        elif value is None and o.default == "":
            value = ""
        out[o.field] = value
    return out
