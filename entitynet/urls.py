"""Secrets in URLs: never sent, never written where a dataset is published.

A pool or a search answer may hold URLs with a user name and password (`https://user:pw@host/x`)
or with keys in the query string (`?api_key=...`, a presigned `X-Amz-Signature=...`, an Azure SAS
`sig=...`). The rules, in one place:

- userinfo (`user:password@`) is refused: such a candidate is never fetched (its outcome is
  `bad_url`), and the fetcher refuses it in a redirect too, so the credentials are never sent;
- everything a harvest writes for others to read (shards, attribution files, candidates,
  outcomes, hosts, stats) carries `public_url(url)`: without userinfo, and with the value of every
  query or fragment parameter whose name says it is a secret replaced by `REDACTED`. The fetch
  itself uses the URL as given (a signed URL needs its signature), and so do the harvest's own
  work files, which are not published.
"""

from __future__ import annotations

import re
import urllib.parse

REDACTED = "REDACTED"
# the detail of a URL refused for its userinfo: the URL itself is not repeated (it holds the password)
CREDENTIALS_REFUSED = (
    "the URL holds a user name or password (user:password@): credentials in URLs are never sent"
)

# scheme://[userinfo@]host...: the authority runs to the first /, ? or # (RFC 3986, as aiohttp reads it)
_AUTHORITY = re.compile(r"^(?P<head>(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//)(?P<authority>[^/?#]*)")

# parameter names (lower case, "-" read as "_") that hold secrets, and endings that say so
_SECRET_NAMES = {
    "key",
    "apikey",
    "api_key",
    "token",
    "auth",
    "authorization",
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "signature",
    "sig",
    "x_amz_credential",
    "x_amz_security_token",
    "x_goog_credential",
    "session",
    "sessionid",
    "session_id",
    "sid",
    "jwt",
    "credential",
    "credentials",
}
_SECRET_ENDINGS = ("_key", "apikey", "token", "secret", "signature", "password", "credential", "_sig")


def _authority(url: str) -> tuple[int, int, str] | None:
    m = _AUTHORITY.match(url)
    if m is None:
        return None
    return m.start("authority"), m.end("authority"), m.group("authority")


def has_credentials(url: str) -> bool:
    """Whether the URL's authority holds userinfo (`user@`, `user:password@`)."""
    found = _authority(url) if isinstance(url, str) else None
    return found is not None and "@" in found[2]


def without_credentials(url: str) -> str:
    """`url` with its userinfo removed (everything else as it was)."""
    found = _authority(url)
    if found is None or "@" not in found[2]:
        return url
    start, end, authority = found
    return url[:start] + authority.rpartition("@")[2] + url[end:]


def is_secret_name(name: str) -> bool:
    n = urllib.parse.unquote_plus(name).strip().lower().replace("-", "_")
    return n in _SECRET_NAMES or n.endswith(_SECRET_ENDINGS)


def _redact_params(params: str) -> str:
    out = []
    for part in params.split("&"):
        name, eq, value = part.partition("=")
        out.append(f"{name}={REDACTED}" if eq and value and is_secret_name(name) else part)
    return "&".join(out)


def public_url(url: str) -> str:
    """`url` as it may be published: no userinfo, secret parameters' values `REDACTED`."""
    if not isinstance(url, str) or not url:
        return url
    url = without_credentials(url)
    base, hash_, fragment = url.partition("#")
    path, q, query = base.partition("?")
    if q:
        base = f"{path}?{_redact_params(query)}"
    if hash_ and "=" in fragment:
        fragment = _redact_params(fragment)
    return base + hash_ + fragment


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://\S+")


def public_text(text: str) -> str:
    """`text` (an error's detail, say) with every URL in it made public (`public_url`)."""
    return _URL_IN_TEXT.sub(lambda m: public_url(m.group(0)), text)
