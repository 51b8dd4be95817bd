"""robots.txt as RFC 9309 reads it: parsed once into groups, then asked about many URLs.

- Groups: one or more `user-agent` lines, then rules. A crawler's product token matches a
  user-agent line case-insensitively, by the line's product-token part (`Googlebot/2.1` names
  `googlebot`); every group naming us is merged into one; with none, the `*` groups (merged);
  with none of those either, everything is allowed. Other records (`sitemap`, `crawl-delay`,
  unknown lines) neither end a group nor add rules; a rule before any user-agent line belongs to
  no group and is ignored.
- Rules: `allow` / `disallow` with a path pattern matched from the first octet of the path (and
  query): `*` is any run of octets, a final `$` anchors the end. The most specific match wins:
  the pattern with the most octets (wildcards and the anchor counted, as Google counts them);
  on a tie, allow. An empty `disallow:` is no rule. A pattern that starts with neither `/` nor
  `*` is read with a leading `/` (what its author meant; the RFC's grammar requires it).
- Octets are compared, not characters: both the pattern and the URL are percent-decoded before
  matching (`%62%61%7A` is `baz`, `/foo/bar/ツ` is `/foo/bar/%E3%83%84`, and `%3A` is `:` on
  either side, as RFC 9309's own example table has it); only in a pattern do `%2A` and `%24`
  stay a literal `*` and `$`. Matching is case-sensitive.
- `/robots.txt` itself is always allowed.

Matching is linear in the URL's length per candidate rule (no regular expressions: a hostile
pattern of many `*` cannot make it backtrack), and rules are indexed by their literal head, so a
URL is checked only against the rules whose head is a prefix of it.
"""

from __future__ import annotations

import re
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass

_EOL = re.compile(rb"\r\n|\r|\n")
_TOKEN = re.compile(rb"[A-Za-z_-]*")
_BOM = b"\xef\xbb\xbf"
# Keys as written, and the spellings of them that crawlers commonly accept.
_USER_AGENT = {b"user-agent", b"useragent", b"user agent"}
_ALLOW = {b"allow"}
_DISALLOW = {b"disallow", b"dissallow", b"dissalow", b"disalow", b"diasllow", b"disallaw"}
_KNOWN = _USER_AGENT | _ALLOW | _DISALLOW


def octets(text: str | bytes) -> bytes:
    """Percent-decoded octets of a path (and query): what both sides of a match are compared as."""
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    return urllib.parse.unquote_to_bytes(text)


def product_token(value: str | bytes) -> str:
    """The product token a user-agent value names, lower case: `Googlebot/2.1` -> `googlebot`,
    `*` -> `*`; "" when it names none."""
    if isinstance(value, str):
        value = value.encode("utf-8", "replace")
    value = value.strip()
    if value == b"*":
        return "*"
    m = _TOKEN.match(value)
    return m.group(0).decode("ascii").lower() if m else ""


@dataclass(frozen=True)
class Rule:
    pattern: str  # as written (for explanations)
    allow: bool
    length: int  # specificity: the pattern's octets, each `*` and a final `$` counted
    head: bytes  # the literal octets before the first `*`
    pieces: tuple[bytes, ...]  # the literal octets after each `*` (empty when there is no `*`)
    anchored: bool  # a final `$`: the match must reach the end of the URL

    @classmethod
    def make(cls, value: bytes, allow: bool) -> Rule | None:
        """The rule a line's value states, or None (an empty pattern: no rule)."""
        if not value:
            return None
        anchored = value.endswith(b"$")
        body = value[:-1] if anchored else value
        parts = [octets(p) for p in body.split(b"*")]
        if not body.startswith(b"*") and not parts[0].startswith(b"/"):
            parts[0] = b"/" + parts[0]  # `private/` (or `%2Fprivate/`, the same octets) is `/private/`
        length = sum(map(len, parts)) + len(parts) - 1 + anchored
        return cls(value.decode("utf-8", "replace"), allow, length, parts[0], tuple(parts[1:]), anchored)

    def matches(self, target: bytes) -> bool:
        """Whether the rule matches `target` (octets of a path and query, see `octets`)."""
        if not target.startswith(self.head):
            return False
        if not self.pieces:
            return len(target) == len(self.head) if self.anchored else True
        pos = len(self.head)
        # After a `*`, placing each literal piece at its earliest occurrence leaves the most room
        # for the rest, so a greedy scan decides the match: no backtracking, linear in the URL.
        last = self.pieces[-1]
        middle = self.pieces[:-1] if self.anchored else self.pieces
        for piece in middle:
            if piece:
                found = target.find(piece, pos)
                if found < 0:
                    return False
                pos = found + len(piece)
        if self.anchored:
            # a final `*$` (empty last piece) matches any rest; otherwise the rest must end in it
            return len(target) - len(last) >= pos and target.endswith(last)
        return True


class Rules:
    """One crawler's rules (its groups merged), indexed by literal head for fast matching."""

    def __init__(self, rules: list[Rule] | tuple[Rule, ...] = ()):
        self.rules = tuple(rules)
        by_head: dict[bytes, list[Rule]] = defaultdict(list)
        for r in self.rules:
            by_head[r.head].append(r)
        # the best candidate of each head first: most specific, and allow before disallow
        self._by_head = {
            h: sorted(rs, key=lambda r: (r.length, r.allow), reverse=True) for h, rs in by_head.items()
        }
        self._head_lengths = sorted({len(h) for h in self._by_head})

    def decide(self, target: str | bytes) -> Rule | None:
        """The rule that decides `target` (a path with its query), or None when none matches."""
        t = octets(target) if isinstance(target, str) else target
        if not t:
            t = b"/"
        best: Rule | None = None
        for n in self._head_lengths:
            if n > len(t):
                break
            for r in self._by_head.get(t[:n], ()):
                if best is not None and (r.length, r.allow) <= (best.length, best.allow):
                    break  # sorted: nothing later in this bucket beats the best so far
                if r.matches(t):
                    best = r
                    break
        return best

    def allows(self, target: str | bytes) -> bool:
        """Whether a path with its query (e.g. `/a/b.jpg?x=1`) may be fetched."""
        t = octets(target) if isinstance(target, str) else target
        if t == b"/robots.txt" or t.startswith(b"/robots.txt?"):
            return True
        best = self.decide(t)
        return best is None or best.allow


ALLOW_ALL = Rules()


@dataclass
class Group:
    agents: list[str]
    rules: list[Rule]


class RobotsTxt:
    """A parsed robots.txt: its groups, and each crawler's merged rules (computed once)."""

    def __init__(self, groups: list[Group]):
        self.groups = groups
        self._for: dict[str, Rules] = {}

    @classmethod
    def parse(cls, text: str | bytes) -> RobotsTxt:
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        if data.startswith(_BOM):
            data = data[len(_BOM) :]
        groups: list[Group] = []
        current: Group | None = None
        taking_agents = False  # the last record was a user-agent line: another joins the group
        for raw in _EOL.split(data):
            line = raw.split(b"#", 1)[0].strip()
            if not line:
                continue
            key, sep, value = line.partition(b":")
            if not sep:  # "Disallow /x": a missing colon, as lenient crawlers accept it
                key, _, value = line.partition(b" ") if b" " in line else line.partition(b"\t")
            key = b" ".join(key.split()).lower()
            if key not in _KNOWN:
                continue  # sitemap, crawl-delay, anything else: no part of the groups
            value = value.strip()
            if key in _USER_AGENT:
                if current is None or not taking_agents:
                    current = Group([], [])
                    groups.append(current)
                    taking_agents = True
                current.agents.append(product_token(value))
                continue
            taking_agents = False
            if current is None:
                continue  # a rule before any user-agent line belongs to no group
            rule = Rule.make(value, allow=key in _ALLOW)
            if rule is not None:
                current.rules.append(rule)
        return cls(groups)

    def for_agent(self, token: str) -> Rules:
        """The rules `token` (our product token) obeys: its groups merged, else the `*` groups."""
        token = product_token(token)
        found = self._for.get(token)
        if found is None:
            mine = [g for g in self.groups if token and token in g.agents]
            if not mine:
                mine = [g for g in self.groups if "*" in g.agents]
            found = self._for[token] = Rules([r for g in mine for r in g.rules])
        return found

    def allows(self, token: str, target: str | bytes) -> bool:
        return self.for_agent(token).allows(target)


def parse(text: str | bytes) -> RobotsTxt:
    return RobotsTxt.parse(text)


def target_of(url: str) -> str:
    """The part of a URL robots.txt rules are matched against: the path (`/` when empty) and query."""
    parts = urllib.parse.urlsplit(url)
    return (parts.path or "/") + ("?" + parts.query if parts.query else "")
