"""Secrets in URLs are never shown or stored: every message and file that names a URL goes through here.

``redis://:PASSWORD@host:port/0`` is how users give credentials, and a URL ends up in messages,
summaries, reports and reproduce lines. One function decides what of it is secret:

- the user-info: ``user:password@`` becomes ``user:***@`` (the username stays: it says which account);
  user-info without a colon is taken for a bare token (``https://TOKEN@host`` style) and becomes ``***@``;
- the value of every query (or fragment) parameter whose name looks secret (``password``, ``token``,
  ``secret``, ``auth``, ``key``, ...) becomes ``***``.

Everything else is kept byte for byte, so a redacted URL still names the same server and options
(``?prefix=myapp:`` stays as given). Redaction never raises, also on URLs that do not parse: the
error message about a malformed URL is exactly where a secret would otherwise leak.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

MASK = "***"

SECRET_WORDS = ("pass", "pwd", "secret", "token", "auth", "key", "credential", "sig", "session", "cookie")
"""A query parameter whose name contains one of these (case-insensitive) has its value masked."""

_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*")


def is_secret_option(name: str) -> bool:
    lowered = unquote_plus(name).lower()
    return any(word in lowered for word in SECRET_WORDS)


def redact_url(url: str) -> str:
    """The URL with its user-info and secret parameters replaced by ``***``; never raises."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority_end = _first_of(rest, "?#")
    at = rest.rfind("@", 0, authority_end)
    if at < 0 and authority_end < len(rest):
        # An unencoded '?' or '#' inside a password: the '@' comes later, with no '=' or '&' before it
        # (which a query parameter would have).
        later = rest.find("@", authority_end)
        if later >= 0 and not re.search(r"[=&]", rest[authority_end:later]):
            at = later
    host_start = 0
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        userinfo = f"{user}:{MASK}" if colon else MASK
        rest, host_start = userinfo + rest[at:], len(userinfo) + 1
    head_end = _first_of(rest, "?#", host_start)
    head, tail = rest[:head_end], rest[head_end:]
    return f"{scheme}://{head}{_redact_parameters(tail)}"


def redact_text(text: str) -> str:
    """Every URL inside a message redacted, for text that came from elsewhere (an exception, an adapter)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def _first_of(text: str, chars: str, start: int = 0) -> int:
    found = [i for i in (text.find(c, start) for c in chars) if i >= 0]
    return min(found) if found else len(text)


def _redact_parameters(tail: str) -> str:
    """``?a=1&password=x#token=y`` with the secret values masked, separators and order kept."""
    out = []
    for part in re.split(r"([?#&;])", tail):
        name, eq, _ = part.partition("=")
        out.append(f"{name}={MASK}" if eq and is_secret_option(name) else part)
    return "".join(out)
