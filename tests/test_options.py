"""Options declared once (`entitynet.options`): the harvest's and the curation's flags are made from
the fields of their options dataclasses, so a flag's default, help and range are the field's."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from entitynet.errors import ConfigError
from entitynet.options import add_flags, build, check_all, declared, option


@dataclass(frozen=True)
class Inner:
    size: int = option(256, "side", flag="--image-size", low=8)
    strict: bool = option(True, "do not check", flag="--no-check")


@dataclass(frozen=True)
class Outer:
    threads: int = option(2, "threads", low=1, high=1024)
    roots: tuple[str, ...] = option((), "a root (repeatable)", flag="--root", repeat=True)
    inner: Inner = field(default_factory=Inner)
    hidden: int = 7  # no flag: keeps its default

    def __post_init__(self):
        check_all(self, declared(Outer))


def parser(cls) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_flags(p, declared(cls))
    return p


def test_nested_options_get_their_flags_and_are_built_back():
    p = parser(Outer)
    assert build(Outer, p.parse_args([])) == Outer()
    got = build(
        Outer,
        p.parse_args(["--threads", "4", "--root", "a", "--root", "b", "--image-size", "64", "--no-check"]),
    )
    assert got == Outer(threads=4, roots=("a", "b"), inner=Inner(size=64, strict=False))
    assert [o.flag for o in declared(Outer)] == ["--threads", "--root", "--image-size", "--no-check"]
    with pytest.raises(ConfigError, match="--threads must be within 1..1024, got 0"):
        build(Outer, p.parse_args(["--threads", "0"]))


def test_the_harvest_flags_are_its_options_fields():
    from entitynet.harvest import HarvestOptions
    from entitynet_cli.harvest import add_harvest_flags, harvest_options

    p = argparse.ArgumentParser()
    add_harvest_flags(p)
    assert harvest_options(p.parse_args([])) == HarvestOptions()  # the flags' defaults are the fields'
    o = harvest_options(
        p.parse_args(["--ignore-robots-txt", "--image-size", "128", "--link-max-rank", "5", "--allow-private",
                      "--per-host-rps", "2", "--jpeg-quality", "70", "--licenses", "cc0"])
    )  # fmt: skip
    assert (o.fetch.robots_txt, o.image.size, o.links.max_rank, o.image.quality, o.licenses) == (
        False, 128, 5, 70, "cc0"
    )  # fmt: skip
    assert (
        o.fetch.address.allow_private and not o.fetch.address.allow_loopback and o.fetch.per_host_rps == 2.0
    )
    assert harvest_options(p.parse_args([]), allow_loopback=True).fetch.address.allow_loopback
