"""robots.txt as RFC 9309 reads it (entitynet/fetch/robots.py): the RFC's own examples, Google's
documented precedence and wildcard examples, property tests against a brute-force reference, hostile
files, and the fetcher over loopback (a disallowed image is never requested; one parse per origin)."""

import re
import urllib.parse

import pytest
from hostile import tried
from hypothesis import given, settings
from hypothesis import strategies as st
from loopback import LoopbackHandler, LoopbackServer
from test_fetch import JPEG, fetcher

from entitynet.fetch.fetcher import robots_origin
from entitynet.fetch.policy import robots_allows
from entitynet.fetch.robots import RobotsTxt, Rule, octets, parse, product_token


def allowed(robots: str, agent: str, target: str) -> bool:
    return parse(robots).allows(agent, target)


# ---------------------------------------------------------------- RFC 9309, section by section


def test_groups_by_product_token_rfc_2_2_1():
    # the RFC's example of groups: a, b, e+f share one, h has no rules
    robots = "user-agent: a\ndisallow: /c\n\nuser-agent: b\ndisallow: /d\n\nuser-agent: e\nuser-agent: f\ndisallow: /g\n\nuser-agent: h\n"
    assert not allowed(robots, "a", "/c") and allowed(robots, "a", "/d")
    assert not allowed(robots, "b", "/d") and allowed(robots, "b", "/c")
    assert not allowed(robots, "e", "/g") and not allowed(robots, "f", "/g") and allowed(robots, "e", "/c")
    assert allowed(robots, "h", "/c") and allowed(robots, "h", "/g")  # its group has no rules
    assert allowed(robots, "zbot", "/c")  # no group names it and there is no * group: no rules apply


def test_product_tokens_match_case_insensitively_and_by_their_token_part():
    robots = "User-Agent: ExampleBot/1.0\nDisallow: /x\n"
    for agent in ("ExampleBot", "examplebot", "EXAMPLEBOT"):
        assert not allowed(robots, agent, "/x"), agent
    assert allowed(robots, "example", "/x") and allowed(
        robots, "examplebotnet", "/x"
    )  # equality, not substring
    assert product_token("Googlebot-Image/1.0") == "googlebot-image" and product_token(" * ") == "*"


def test_groups_naming_the_same_agent_are_merged_rfc_2_2_1():
    robots = (
        "user-agent: ExampleBot\ndisallow: /foo\ndisallow: /bar\n\nuser-agent: ExampleBot\ndisallow: /baz\n"
    )
    assert not any(allowed(robots, "examplebot", p) for p in ("/foo", "/bar", "/baz"))
    assert allowed(robots, "examplebot", "/qux")


def test_the_star_group_is_the_fallback_and_star_groups_merge():
    robots = "User-agent: *\nDisallow: /a\n\nUser-agent: other\nDisallow: /b\n\nUser-agent: *\nDisallow: /c\n"
    assert not allowed(robots, "entitynet", "/a") and not allowed(robots, "entitynet", "/c")
    assert allowed(robots, "entitynet", "/b")
    assert not allowed(robots, "other", "/b") and allowed(robots, "other", "/a")  # its own group only


@pytest.mark.parametrize(
    "rule,target",
    [  # RFC 9309 section 2.2.2's table: a path, and the URI octets it must match
        ("/foo/bar?baz=quz", "/foo/bar?baz=quz"),
        ("/foo/bar?baz=https://foo.bar", "/foo/bar?baz=https%3A%2F%2Ffoo.bar"),
        ("/foo/bar/\u30c4", "/foo/bar/%E3%83%84"),
        ("/foo/bar/%E3%83%84", "/foo/bar/%E3%83%84"),
        ("/foo/bar/%62%61%7A", "/foo/bar/baz"),
        # and each the other way round, and lower-case hex: the same octets
        ("/foo/bar/%E3%83%84", "/foo/bar/\u30c4"),
        ("/foo/bar/baz", "/foo/bar/%62%61%7a"),
        ("/foo/bar?baz=https%3a%2f%2ffoo.bar", "/foo/bar?baz=https://foo.bar"),
    ],
)
def test_percent_encoding_examples_rfc_2_2_2(rule, target):
    robots = f"User-agent: *\nDisallow: {rule}\n"
    assert not allowed(robots, "entitynet", target)
    assert allowed(robots, "entitynet", "/foo/other")


def test_the_most_specific_match_wins_and_allow_wins_a_tie_rfc_2_2_2():
    robots = "User-agent: *\nDisallow: /folder\nAllow: /folder/page\nAllow: /same\nDisallow: /same\n"
    assert allowed(robots, "entitynet", "/folder/page") and not allowed(robots, "entitynet", "/folder/other")
    assert allowed(robots, "entitynet", "/same/x")  # equivalent rules: allow
    assert allowed("User-agent: *\nDisallow: /\n", "entitynet", "/robots.txt")  # always allowed
    assert not allowed("User-agent: *\nDisallow: /\n", "entitynet", "/robots.txt.bak")


def test_special_characters_rfc_2_2_3():
    robots = (
        "# comment on its own line\n"
        "User-agent: *   # comment in line\n"
        "Disallow: /this/path/exactly$\n"
        "Disallow: /this/*/wild\n"
        "Disallow: /path/file-with-a-%2A.html\n"
        "Disallow: /path/foo-%24\n"
    )
    assert not allowed(robots, "x", "/this/path/exactly")
    assert allowed(robots, "x", "/this/path/exactly/more") and allowed(robots, "x", "/this/path/exactly?q")
    assert not allowed(robots, "x", "/this/a/b/wild") and allowed(robots, "x", "/this/wild")
    # a percent-encoded * or $ in a pattern is that character in the URL, not a wildcard or anchor
    assert not allowed(robots, "x", "/path/file-with-a-*.html")
    assert allowed(robots, "x", "/path/file-with-a-b.html")
    assert not allowed(robots, "x", "/path/foo-$") and allowed(robots, "x", "/path/foo-")


RFC_5_1 = """User-Agent: *
Disallow: *.gif$
Disallow: /example/
Allow: /publications/

User-Agent: foobot
Disallow:/
Allow:/example/page.html
Allow:/example/allowed.gif

User-Agent: barbot
User-Agent: bazbot
Disallow: /example/page.html

User-Agent: quxbot

EOF
"""


@pytest.mark.parametrize(
    "agent,target,verdict",
    [
        ("otherbot", "/image.gif", False),
        ("otherbot", "/image.gif?x", True),
        ("otherbot", "/example/page.html", False),
        ("otherbot", "/publications/a.html", True),
        ("otherbot", "/publications/a.gif", True),  # /publications/ (14 octets) beats *.gif$ (6)
        ("otherbot", "/a.gif", False),
        ("foobot", "/example/page.html", True),
        ("foobot", "/example/allowed.gif", True),
        ("foobot", "/example/other.html", False),
        ("foobot", "/", False),
        ("barbot", "/example/page.html", False),
        ("bazbot", "/example/page.html", False),
        ("barbot", "/example/other.html", True),  # the * group is not theirs
        ("barbot", "/image.gif", True),
        ("quxbot", "/example/page.html", True),
        ("quxbot", "/image.gif", True),
    ],
)
def test_the_simple_example_rfc_5_1(agent, target, verdict):
    assert allowed(RFC_5_1, agent, target) is verdict


def test_longest_match_example_rfc_5_2():
    robots = "User-Agent: foobot\nAllow: /example/page/\nDisallow: /example/page/disallowed.gif\n"
    assert allowed(robots, "foobot", "/example/page/")
    assert allowed(robots, "foobot", "/example/page/other.gif")
    assert not allowed(robots, "foobot", "/example/page/disallowed.gif")


# ---------------------------------------------------------------- Google's documented examples


@pytest.mark.parametrize(
    "target,allow,disallow,verdict",
    [  # "Order of precedence for rules" (developers.google.com, robots.txt specification)
        ("/page", "/p", "/", True),
        ("/folder/page", "/folder", "/folder", True),
        ("/page.htm", "/page", "/*.htm", False),
        ("/page.php5", "/page", "/*.ph", True),
        ("/", "/$", "/", True),
        ("/page.htm", "/$", "/", False),
    ],
)
def test_google_precedence_examples(target, allow, disallow, verdict):
    robots = f"User-agent: *\nAllow: {allow}\nDisallow: {disallow}\n"
    assert allowed(robots, "entitynet", target) is verdict
    flipped = f"User-agent: *\nDisallow: {disallow}\nAllow: {allow}\n"  # order does not matter
    assert allowed(flipped, "entitynet", target) is verdict


GOOGLE_PATTERNS = {  # "URL matching based on path values": pattern -> (matches, does not match)
    "/fish": (
        [
            "/fish",
            "/fish.html",
            "/fish/salmon.html",
            "/fishheads",
            "/fishheads/yummy.html",
            "/fish.php?id=anything",
        ],
        ["/Fish.asp", "/catfish", "/?id=fish", "/desert/fish"],
    ),
    "/fish*": (["/fish", "/fish.html", "/fishheads/yummy.html"], ["/Fish.asp", "/catfish"]),
    "/fish/": (
        ["/fish/", "/fish/?id=anything", "/fish/salmon.htm"],
        ["/fish", "/fish.html", "/animals/fish/", "/Fish/Salmon.asp"],
    ),
    "/*.php": (
        [
            "/index.php",
            "/filename.php",
            "/folder/filename.php",
            "/folder/filename.php?parameters",
            "/folder/any.php.file.html",
            "/filename.php/",
        ],
        ["/", "/windows.PHP"],
    ),
    "/*.php$": (
        ["/filename.php", "/folder/filename.php"],
        ["/filename.php?parameters", "/filename.php/", "/filename.php5", "/windows.PHP"],
    ),
    "/fish*.php": (["/fish.php", "/fishheads/catfish.php?parameters"], ["/Fish.PHP"]),
    "/$": (["/"], ["/index.html"]),
    "/*": (["/", "/anything?at=all"], []),
}


@pytest.mark.parametrize("pattern", sorted(GOOGLE_PATTERNS))
def test_google_path_matching_examples(pattern):
    yes, no = GOOGLE_PATTERNS[pattern]
    robots = f"User-agent: *\nDisallow: {pattern}\n"
    for target in yes:
        assert not allowed(robots, "entitynet", target), (pattern, target)
    for target in no:
        assert allowed(robots, "entitynet", target), (pattern, target)


# ---------------------------------------------------------------- what real files do


def test_lenient_reading_of_real_files():
    assert not allowed("\ufeffUser-agent: *\rDisallow: /a\r", "x", "/a")  # BOM, CR line ends
    assert not allowed("User-agent: *\r\nDisallow /a\r\n", "x", "/a")  # missing colon
    assert not allowed("USER-AGENT: *\nDISALLOW: /a\n", "x", "/a")  # keys are case-insensitive
    assert not allowed("User-agent: *\nDissallow: /a\n", "x", "/a")  # a common misspelling
    assert not allowed("User-agent: *\nDisallow: private/\n", "x", "/private/x")  # read as /private/
    assert allowed("User-agent: *\nDisallow:\n", "x", "/anything")  # empty disallow: no rule
    assert allowed("Disallow: /a\nUser-agent: *\nAllow: /b\n", "x", "/a")  # a rule in no group
    # sitemap and crawl-delay neither end the group nor add rules
    robots = "User-agent: a\nSitemap: https://e.com/s.xml\nUser-agent: b\nCrawl-delay: 5\nDisallow: /x\n"
    assert not allowed(robots, "a", "/x") and not allowed(robots, "b", "/x")
    # a user-agent line after a rule starts a new group
    assert allowed("User-agent: a\nDisallow: /x\nUser-agent: b\nDisallow: /y\n", "a", "/y")
    assert not allowed("User-agent: *\nDisallow: /a\n", "x", "/a") and allowed("", "x", "/a")


def test_case_sensitive_paths_and_queries():
    robots = "User-agent: *\nDisallow: /Private\nDisallow: /*?sessionid=\n"
    assert allowed(robots, "x", "/private") and not allowed(robots, "x", "/Private/a")
    assert not allowed(robots, "x", "/page?sessionid=1") and allowed(robots, "x", "/page?id=1")


def test_policy_wrapper_matches_whole_urls():
    robots = "User-agent: *\nDisallow: /*.jpg$\n"
    assert not robots_allows(robots, "entitynet", "http://h.example/a/b.jpg")
    assert robots_allows(robots, "entitynet", "http://h.example/a/b.jpg?w=200")
    assert robots_allows(robots, "entitynet", "http://h.example")  # empty path is "/"


def test_parsed_rules_are_kept_per_agent():
    robots = parse("User-agent: *\nDisallow: /a\n")
    assert robots.for_agent("entitynet") is robots.for_agent("EntityNet")  # computed once


# ---------------------------------------------------------------- property tests against a reference

ALPHABET = "ab/"


def reference_match(pattern: str, target: str) -> bool:
    anchored = pattern.endswith("$")
    body = pattern[:-1] if anchored else pattern
    rx = "".join(".*" if c == "*" else re.escape(c) for c in body) + (r"\Z" if anchored else "")
    return re.match(rx, target, re.S) is not None


patterns = st.builds(
    lambda head, body, end: head + body + end,
    st.sampled_from(["/", "*"]),
    st.text(alphabet=ALPHABET + "*", max_size=8),
    st.sampled_from(["", "$"]),
)
targets = st.builds(lambda s: "/" + s, st.text(alphabet=ALPHABET, max_size=12))


@settings(max_examples=400, deadline=None, derandomize=True)
@given(patterns, targets)
def test_matching_agrees_with_a_regex_reference(pattern, target):
    rule = Rule.make(pattern.encode(), allow=False)
    assert rule is not None and rule.matches(octets(target)) == reference_match(pattern, target)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.booleans(), patterns), max_size=8), targets)
def test_the_decision_is_the_longest_match_with_allow_winning_ties(rules, target):
    text = "User-agent: *\n" + "".join(f"{'Allow' if a else 'Disallow'}: {p}\n" for a, p in rules)
    matching = [(len(p), a) for a, p in rules if reference_match(p, target)]
    expected = max(matching)[1] if matching else True
    assert parse(text).allows("entitynet", target) is expected


PLAIN = "abcXYZ019-._~:@!&'()+,;=/"


def percent_encode_some(text: str, picks: list[bool], lower: list[bool]) -> str:
    out = []
    for i, c in enumerate(text):
        if picks[i % len(picks)] and c not in "*$":
            hexed = f"%{ord(c):02X}"
            out.append(hexed.lower() if lower[i % len(lower)] else hexed)
        else:
            out.append(c)
    return "".join(out)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    st.text(alphabet=PLAIN + "*", min_size=1, max_size=10),
    st.text(alphabet=PLAIN, max_size=14),
    st.lists(st.booleans(), min_size=1, max_size=6),
    st.lists(st.booleans(), min_size=1, max_size=3),
)
def test_percent_encoding_never_changes_a_decision(pattern, target, picks, lower):
    pattern, target = "/" + pattern, "/" + target
    plain = allowed(f"User-agent: *\nDisallow: {pattern}\n", "x", target)
    encoded_target = allowed(
        f"User-agent: *\nDisallow: {pattern}\n", "x", percent_encode_some(target, picks, lower)
    )
    encoded_rule = allowed(
        f"User-agent: *\nDisallow: {percent_encode_some(pattern, picks, lower)}\n", "x", target
    )
    assert plain == encoded_target == encoded_rule


# ---------------------------------------------------------------- hostile files


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(max_size=400), st.text(max_size=30))
def test_any_bytes_parse_and_any_target_gets_a_verdict(data, target):
    tried("robots")
    for body in (data, b"User-agent: *\n" + data):
        assert parse(body).allows("entitynet", target) in (True, False)


def test_hostile_files_parse_and_match_in_bounded_time():
    tried("robots", 5)
    stars = "User-agent: *\nDisallow: /" + "a*" * 100_000 + "b$\n"  # a backtracking regex would never end
    assert allowed(stars, "x", "/" + "a" * 5000 + "b")  # too few a's
    assert not allowed(stars, "x", "/" + "a" * 100_001 + "b")
    controls = b"User-agent: *\n\x00junk\x00\nDisallow: /\x00a\nDisallow: /\xff\xfe\n"  # NUL, not UTF-8
    assert not allowed(controls, "x", "/%00a") and not allowed(controls, "x", "/%FF%FE")
    many = "User-agent: *\n" + "".join(f"Disallow: /private{i}/\n" for i in range(20_000))
    rules = parse(many).for_agent("x")
    assert not rules.allows("/private19999/x.jpg") and rules.allows("/public/x.jpg")
    long_line = "User-agent: *\nDisallow: /" + "x" * (500 << 10) + "\n"
    assert allowed(long_line, "x", "/xx") and not allowed(long_line, "x", "/" + "x" * (500 << 10))
    assert RobotsTxt.parse("\n" * 100_000).groups == []


# ---------------------------------------------------------------- the fetcher over loopback


class RobotsSite(LoopbackHandler):
    robots = b""
    hits: list = []

    def do_GET(self):
        type(self).hits.append((self.path, self.headers.get("Authorization")))
        if self.path == "/robots.txt":
            return self.send(200, type(self).robots, "text/plain")
        if self.path.startswith(("/img", "/photos/", "/public/")):
            return self.send(200, JPEG)
        return self.send(404, b"", "text/plain")


@pytest.fixture(scope="module")
def site():
    """One server for the module (starting and stopping one costs half a second); each test sets
    the robots.txt it serves with `robots_site`."""
    handler = type("Site", (RobotsSite,), {"robots": b"", "hits": []})
    with LoopbackServer(handler) as server:
        server.handler = handler
        yield server


def robots_site(site, robots: bytes):
    site.handler.robots = robots
    site.handler.hits.clear()
    return site, site.handler.hits


def test_a_wildcard_disallowed_image_is_never_requested(site):
    tried("robots")
    server, hits = robots_site(site, b"User-agent: *\nDisallow: /*.jpg$\n")
    f = fetcher()
    r = f.fetch(server.base + "/img/cat.jpg")
    assert r.reason == "robots_disallowed", (r.reason, r.detail)
    assert f.fetch(server.base + "/img/cat.jpg?w=200").ok  # `$` anchors the end of path and query
    assert f.fetch(server.base + "/img/cat.png").ok
    paths = [p for p, _ in hits]
    assert "/img/cat.jpg" not in paths and "/img/cat.jpg?w=200" in paths and "/img/cat.png" in paths


def test_longest_match_and_dot_segments_at_fetch_time(site):
    tried("robots", 2)
    server, hits = robots_site(site, b"User-agent: *\nDisallow: /photos/\nAllow: /photos/public/\n")
    f = fetcher()
    assert f.fetch(server.base + "/photos/public/a.jpg").ok
    assert f.fetch(server.base + "/photos/secret.jpg").reason == "robots_disallowed"
    # matched against the path as sent: /public/../photos/secret.jpg goes out as /photos/secret.jpg
    assert f.fetch(server.base + "/public/../photos/secret.jpg").reason == "robots_disallowed"
    assert not any(p.startswith("/photos/secret") or "/.." in p for p, _ in hits)


def test_robots_txt_is_parsed_once_per_origin(site):
    many = b"User-agent: *\n" + b"".join(b"Disallow: /private%d/\n" % i for i in range(20_000))
    server, hits = robots_site(site, many)
    f = fetcher()
    for i in range(30):
        assert f.fetch(f"{server.base}/img/{i}.jpg").ok
    assert f.fetch(server.base + "/private7/x.jpg").reason == "robots_disallowed"
    assert f.robots_parsed == 1 and [p for p, _ in hits].count("/robots.txt") == 1


def test_the_robots_origin_is_scheme_host_and_port_without_userinfo():
    key = lambda url: robots_origin(urllib.parse.urlsplit(url))  # noqa: E731
    assert key("http://u:p@Example.COM:80/a") == key("http://example.com/b") == "http://example.com"
    assert key("https://example.com:443/") == "https://example.com" != key("http://example.com/")
    assert key("http://example.com:8080/") == "http://example.com:8080"
    assert key("http://[::1]:81/x") == "http://[::1]:81"
