"""Backend URLs (``scheme://host:port...?prefix=...&timeout_ms=...``), read the same way by every backend.

A typo in a URL must be one clear error before any I/O, worded alike whatever the scheme, and never
show a password (``shown`` is always redacted). ``check_server_url`` is what the command line calls at
argument time: it runs the backend's own parser, so there is one parser and one verdict.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from urllib.parse import SplitResult, parse_qs, urlsplit

from .base import ConfigurationError
from .redaction import redact_url

MAX_TIMEOUT_MS = 600_000

_PARSERS = {
    "redis": "lockchaos.backends.redis:parse_redis_url",
    "etcd": "lockchaos.backends.etcd:parse_etcd_url",
    "redis+sentinel": "lockchaos.backends.sentinel:parse_sentinel_url",
}
"""scheme -> the backend's own URL parser (pure: no I/O), imported only when that scheme is used."""
DEFAULT_PORTS = {"redis": 6379, "etcd": 2379, "redis+sentinel": 26379}


def split_url(url: str, scheme: str) -> SplitResult:
    """``urlsplit``, with a malformed URL (``redis://[::1``) as one ConfigurationError, not a traceback."""
    try:
        return urlsplit(url)
    except ValueError as exc:
        raise ConfigurationError(f"malformed {scheme} URL {redact_url(url)!r}: {exc}") from None


def scheme_of_url(url: str) -> str:
    """The scheme (lowercase), or ``""``; never raises, so that even a malformed URL is judged by the
    parser of its own scheme."""
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep and scheme.isascii() and scheme.replace("+", "").isalnum() else ""


def parse_endpoint(item: str, scheme: str, url: str, default_port: int) -> tuple[str, int]:
    """One ``host[:port]`` of a URL's authority, checked: a host, and a port in 1-65535."""
    shown = redact_url(url)
    if not item:
        raise ConfigurationError(f"{scheme} URL {shown!r} has an empty endpoint (stray comma?)")
    try:
        split = urlsplit(f"//{item}")
        host, port = split.hostname, split.port
    except ValueError as exc:
        raise ConfigurationError(f"bad host:port {item!r} in {scheme} URL {shown!r}: {exc}") from None
    if not host:
        raise ConfigurationError(f"endpoint {item!r} in {scheme} URL {shown!r} names no host")
    if port == 0:
        raise ConfigurationError(f"endpoint {item!r} in {scheme} URL {shown!r} has port 0")
    return (f"[{host}]" if ":" in host else host), (port or default_port)


def check_server_url(url: str, *, options: bool = True) -> None:
    """Refuse a bad ``redis://`` or ``etcd://`` URL with one ConfigurationError line, before anything runs.

    ``options=True``: the whole URL as our backend of that scheme reads it (endpoints, database, path,
    options). ``options=False``, for a user's adapter that reads its own options: only what every
    server URL must have (a parseable authority with valid host:port endpoints, no #fragment).
    """
    scheme = scheme_of_url(url)
    if scheme not in _PARSERS:
        raise ConfigurationError(f"--url must be a redis:// or etcd:// URL (a cluster: etcd://h1:p,h2:p,... or "
                                 f"redis+sentinel://h1:p,h2:p/SERVICE), got {redact_url(url)!r}")
    if options:
        module_name, func_name = _PARSERS[scheme].split(":")
        getattr(importlib.import_module(module_name), func_name)(url)
        return
    parts = split_url(url, scheme)
    if parts.fragment:
        raise ConfigurationError(f"{scheme} URL {redact_url(url)!r} has a #fragment; options go in ?query")
    hosts = parts.netloc.rpartition("@")[2]
    if not hosts:
        raise ConfigurationError(f"{scheme} URL {redact_url(url)!r} names no host (expected {scheme}://host:port)")
    for item in hosts.split(","):
        parse_endpoint(item, scheme, url, DEFAULT_PORTS[scheme])


def url_options(query: str, allowed: Sequence[str], scheme: str, shown: str) -> dict[str, str]:
    """The options of a URL's query; unknown or repeated ones are a ConfigurationError."""
    shown = redact_url(shown)
    parsed = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(parsed) - set(allowed))
    if unknown:
        raise ConfigurationError(
            f"unknown {scheme} URL option(s) {unknown} in {shown!r}; supported: {', '.join(allowed)}"
        )
    repeated = sorted(k for k, v in parsed.items() if len(v) > 1)
    if repeated:
        raise ConfigurationError(f"{scheme} URL option(s) {repeated} given more than once in {shown!r}")
    return {k: v[0] for k, v in parsed.items()}


def ms_option(opts: dict[str, str], name: str, default: int, shown: str, maximum: int = MAX_TIMEOUT_MS) -> int:
    if name not in opts:
        return default
    shown = redact_url(shown)
    raw = opts[name]
    if not (raw.isascii() and raw.isdigit()):
        raise ConfigurationError(f"{name} must be a whole number of ms, got {raw!r} in {shown!r}")
    value = int(raw)
    if not 1 <= value <= maximum:
        raise ConfigurationError(f"{name} must be between 1 and {maximum}, got {value} in {shown!r}")
    return value


def prefix_option(opts: dict[str, str], default: str, shown: str) -> str:
    prefix = opts.get("prefix", default)
    shown = redact_url(shown)
    if not prefix:
        raise ConfigurationError(f"prefix must not be empty in {shown!r}: it keeps lockchaos keys apart")
    return prefix
