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


def declared(cls) -> list[Option]:
    """The `Option` of each field of the dataclass `cls` made with `option(...)`, in field order."""
    found = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("option")
        if meta is None:
            continue
        meta = dict(meta)
        flag = meta.pop("flag") or "--" + f.name.replace("_", "-")
        found.append(Option(field=f.name, flag=flag, default=f.default, **meta))
    return found


def check_all(obj, options: Iterable[Option]) -> None:
    """Each declared option of `obj` within its range (a ConfigError naming the flag)."""
    for o in options:
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
            kwargs = {"help": text, "action": "store_false" if o.default else "store_true"}
        elif o.repeat:
            kwargs["action"] = "append"
        else:
            kwargs.update(type=o.type, default=None if o.default == "" else o.default)
        if o.choices:
            kwargs.update(choices=o.choices, metavar=None)
        parser.add_argument(o.flag, dest=o.field, **kwargs)
        if o.off_flag:
            parser.add_argument(o.off_flag, dest=o.field, action="store_const", const=None, help=o.off_help)


def values(args: argparse.Namespace, options: Iterable[Option]) -> dict[str, Any]:
    """field -> value of each option, from parsed flags (a repeated flag not given: its default)."""
    out: dict[str, Any] = {}
    for o in options:
        value = getattr(args, o.field, o.default)
        if o.repeat:
            value = tuple(value) if value else o.default
        elif value is None and o.default == "":
            value = ""
        out[o.field] = value
    return out
