"""Benchmark: deciding robots.txt for a host's URLs, ours (RFC 9309, parsed once) against Python's
`urllib.robotparser` (the peer: what the fetcher used before, parsing the file for every URL).

    .venv/bin/python benchmarks/robots.py                  # a 480 KiB robots.txt, 2,000 URLs
    .venv/bin/python benchmarks/robots.py --rules 2000 --urls 500

Makes a large robots.txt of the kind big sites serve (thousands of Disallow/Allow lines in a few
groups, some with `*` and `$`) and a host's worth of image URLs, then times, in one run:

- peer, as used before: `RobotFileParser.parse` + `can_fetch` for every URL (the old fetcher
  parsed the text again for each URL it was asked about);
- peer, parsed once: one `RobotFileParser`, `can_fetch` per URL (the peer at its best; it still
  ignores `*`, `$` and the longest-match rule, so its answers differ where those matter);
- ours: `robots.parse` once per host, `Rules.allows` per URL (the fetcher's path now).

It prints the time per URL of each and the ratios, how many of the URLs the peer decides
differently (RFC 9309 wildcards and longest match), and ends with the line
`robots: ours N.NN us/URL, Nx faster than the peer as used before, Nx than the peer parsed once`.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import urllib.robotparser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from entitynet.fetch import robots

AGENT = "entitynet"


WORDS = ["img", "photos", "static", "cdn", "user", "private", "tmp", "search", "api", "thumb", "media"]


def make_rules(rules: int, seed: int = 0) -> list[tuple[str, str, int, str]]:
    """(word, word, index, kind) per rule: kind "dir" (Disallow a directory), "glob" (Disallow
    `*...*.jpg$`) or "allow" (Allow a public sub-directory)."""
    rng = random.Random(seed)
    out = []
    for i in range(rules):
        r = rng.random()
        out.append(
            (rng.choice(WORDS), rng.choice(WORDS), i, "dir" if r < 0.6 else "glob" if r < 0.8 else "allow")
        )
    return out


def make_robots(rules: list[tuple[str, str, int, str]]) -> str:
    lines = ["# a big site's robots.txt", "User-agent: *"]
    for a, b, i, kind in rules:
        if kind == "dir":
            lines.append(f"Disallow: /{a}/{b}{i}/")
        elif kind == "glob":
            lines.append(f"Disallow: /{a}/*{b}{i}*.jpg$")
        else:
            lines += [f"Disallow: /{a}/{b}{i}/", f"Allow: /{a}/{b}{i}/public/"]
        if i % 500 == 499:
            lines += ["", f"User-agent: bot{i}", "Disallow: /", "", "User-agent: *"]
    lines += ["", "Sitemap: https://example.org/sitemap.xml"]
    return "\n".join(lines) + "\n"


def make_urls(n: int, rules: list[tuple[str, str, int, str]], seed: int = 1) -> list[str]:
    """Image paths of the site: under a rule's directory, in its public part, matching a glob
    rule in a sub-directory, or elsewhere."""
    rng = random.Random(seed)
    out = []
    for k in range(n):
        a, b, i, _ = rng.choice(rules)
        out.append(
            rng.choice(
                [
                    f"/{a}/{b}{i}/x{k}.jpg",
                    f"/{a}/{b}{i}/public/x{k}.jpg",
                    f"/{a}/sub/{b}{i}-x{k}.jpg",
                    f"/other/x{k}.png",
                ]
            )
        )
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rules", type=int, default=16000)
    ap.add_argument("--urls", type=int, default=2000)
    ap.add_argument("--reparsed-urls", type=int, default=40, help="URLs timed for the re-parse-per-URL peer")
    args = ap.parse_args()
    table = make_rules(args.rules)
    text = make_robots(table)
    urls = make_urls(args.urls, table)
    print(
        f"robots.txt: {len(text.encode()) / 1024:.0f} KiB, {text.count(chr(10)):,} lines; {len(urls):,} URLs"
    )

    # peer as used before: parsed again for every URL (timed on a sample: it is slow)
    sample = urls[: args.reparsed_urls]
    t = time.perf_counter()
    for u in sample:
        p = urllib.robotparser.RobotFileParser()
        p.parse(text.splitlines())
        p.can_fetch(AGENT, "https://example.org" + u)
    before = (time.perf_counter() - t) / len(sample)

    # peer parsed once
    t = time.perf_counter()
    peer = urllib.robotparser.RobotFileParser()
    peer.parse(text.splitlines())
    peer_parse = time.perf_counter() - t
    t = time.perf_counter()
    peer_answers = [peer.can_fetch(AGENT, "https://example.org" + u) for u in urls]
    peer_once = (time.perf_counter() - t) / len(urls)

    # ours: parsed once per host
    t = time.perf_counter()
    rules = robots.parse(text).for_agent(AGENT)
    ours_parse = time.perf_counter() - t
    t = time.perf_counter()
    ours_answers = [rules.allows(u) for u in urls]
    ours = (time.perf_counter() - t) / len(urls)

    differ = sum(a != b for a, b in zip(peer_answers, ours_answers, strict=True))
    print(f"peer, parsed for every URL:  {before * 1e3:9.2f} ms/URL")
    print(f"peer, parsed once:           {peer_parse * 1e3:9.1f} ms to parse, {peer_once * 1e6:9.2f} us/URL")
    print(f"ours (RFC 9309), once:       {ours_parse * 1e3:9.1f} ms to parse, {ours * 1e6:9.2f} us/URL")
    print(
        f"disallowed: ours {sum(not a for a in ours_answers):,}, peer {sum(not a for a in peer_answers):,}; "
        f"the peer decides {differ:,} of {len(urls):,} URLs differently (wildcards, $, longest match)"
    )
    print(
        f"robots: ours {ours * 1e6:.2f} us/URL, {before / ours:,.0f}x faster than the peer as used before, "
        f"{peer_once / ours:,.1f}x than the peer parsed once"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
