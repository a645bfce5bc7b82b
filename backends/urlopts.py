"""Options in backend URLs (``?prefix=...&timeout_ms=...``), read the same way by every backend.

A typo in an option must be one clear error before any I/O, worded alike whatever the scheme.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qs

from .base import ConfigurationError

MAX_TIMEOUT_MS = 600_000


def url_options(query: str, allowed: Sequence[str], scheme: str, shown: str) -> dict[str, str]:
    """The options of a URL's query; unknown or repeated ones are a ConfigurationError."""
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
    raw = opts[name]
    if not (raw.isascii() and raw.isdigit()):
        raise ConfigurationError(f"{name} must be a whole number of ms, got {raw!r} in {shown!r}")
    value = int(raw)
    if not 1 <= value <= maximum:
        raise ConfigurationError(f"{name} must be between 1 and {maximum}, got {value} in {shown!r}")
    return value


def prefix_option(opts: dict[str, str], default: str, shown: str) -> str:
    prefix = opts.get("prefix", default)
    if not prefix:
        raise ConfigurationError(f"prefix must not be empty in {shown!r}: it keeps lockchaos keys apart")
    return prefix
