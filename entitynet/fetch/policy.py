"""What may be fetched: decisions only, no I/O (the fetcher does the I/O and asks these).

- Address guard: loopback, private, link-local (cloud metadata lives there), multicast, reserved
  and unspecified addresses are refused unless the user explicitly allows a class of them; the
  check runs on every resolved address, also after each redirect. IPv6 forms that embed an IPv4
  address (IPv4-mapped, 6to4 `2002::/16`, Teredo `2001::/32`, NAT64 `64:ff9b::/96` and
  `64:ff9b:1::/48`) are judged by the IPv4 address inside, by the same rules; the IETF protocol
  block `192.0.0.0/24` and the deprecated site-local `fec0::/10` are always refused.
- Opt-out: `X-Robots-Tag` directives (noai, noimageai, noindex, noimageindex by default), also in
  their user-agent-scoped form ("mybot: noai"), decided from the headers before the body is read;
  and robots.txt rules for our user agent (RFC 9309: `entitynet.fetch.robots`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from entitynet.fetch import robots
from entitynet.options import option

DEFAULT_OPT_OUT = ("noai", "noimageai", "noindex", "noimageindex")
# Cloud metadata services that are not link-local (AWS IPv6, Alibaba Cloud).
_METADATA = {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
_IETF_PROTOCOL = ipaddress.ip_network("192.0.0.0/24")  # DS-Lite, NAT64 discovery, PCP anycast, ...
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo server and client, NAT64)."""
    found = []
    if ip.ipv4_mapped is not None:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in net for net in _NAT64):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


@dataclass(frozen=True)
class AddressPolicy:
    # the demo and the tests serve images on 127.0.0.1
    allow_loopback: bool = option(False, "fetch from 127.0.0.0/8 (local test servers)")
    # 10/8, 172.16/12, 192.168/16, fc00::/7 (an intranet crawl)
    allow_private: bool = option(False, "fetch from private networks (an intranet)")

    def refusal(self, address: str) -> str | None:
        """Why `address` must not be contacted, or None when it may be."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address):
            inner = embedded_ipv4(ip)
            if ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped  # the same host: judged as itself
            elif inner:
                for v4 in inner:
                    why = self.refusal(str(v4))
                    if why:
                        return f"{ip} embeds {v4}: {why}"
                return None  # a tunnel or translator form of public IPv4 addresses
            elif ip.is_site_local:
                return f"{ip} is a deprecated site-local address"
        if ip in _METADATA:
            return f"{ip} is a cloud metadata address"
        if isinstance(ip, ipaddress.IPv4Address) and ip in _IETF_PROTOCOL:
            return f"{ip} is in the IETF protocol block 192.0.0.0/24"
        if ip.is_loopback:
            return None if self.allow_loopback else f"{ip} is a loopback address"
        if ip.is_link_local:
            return f"{ip} is a link-local address (cloud metadata lives there)"
        if ip.is_multicast or ip.is_unspecified or ip.is_reserved:
            return f"{ip} is not a unicast host address"
        if ip.is_private or (
            isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10")
        ):
            return None if self.allow_private else f"{ip} is a private address"
        if not ip.is_global:
            return f"{ip} is not a public address"
        return None


def x_robots_opt_out(
    values: Iterable[str], agent_tokens: Iterable[str], disallowed: Iterable[str] = DEFAULT_OPT_OUT
) -> str | None:
    """The first disallowed directive that applies to us in the X-Robots-Tag header values, or None.

    A value is a comma-separated list of directives, optionally scoped to one crawler by a
    leading "name:" ("googlebot: noindex" binds only googlebot). Matching is case-insensitive.
    """
    disallowed = {d.lower() for d in disallowed}
    tokens = {t.lower() for t in agent_tokens}
    for value in values:
        scope = None
        head, sep, rest = value.partition(":")
        # "unavailable_after: <date>" is a directive with an argument, not a scope
        if (
            sep
            and " " not in head.strip()
            and head.strip().lower()
            not in ("unavailable_after", "max-snippet", "max-image-preview", "max-video-preview")
        ):
            scope, value = head.strip().lower(), rest
        if scope is not None and scope not in tokens:
            continue
        for directive in value.split(","):
            d = directive.strip().lower()
            if d in disallowed:
                return d
    return None


def robots_allows(robots_txt: str | bytes, agent: str, url: str) -> bool:
    """Whether robots.txt lets `agent` fetch `url` (RFC 9309, `entitynet.fetch.robots`; an empty
    file allows all). Parses the file on every call: a crawler parses once per host and asks
    `robots.parse(text).for_agent(agent)` instead."""
    return robots.parse(robots_txt).allows(agent, robots.target_of(url))
