"""Adapters that show what the harness hands a user's factory: the URL options it reads.

``needs_timeout`` is a user's adapter that honours the scenario's client timeout the documented way
(``?timeout_ms=`` read with ``lockchaos.backends.urlopts``), and refuses to run without it, so a
harness that dropped the timeout would fail the run instead of passing it untested.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from lockchaos.backends import open_backend
from lockchaos.backends.base import ConfigurationError, LockBackend
from lockchaos.backends.urlopts import ms_option, url_options

SEEN_TIMEOUTS: list[int] = []
"""Every client timeout the factory was given in this process (tests read it)."""


def needs_timeout(url: str) -> LockBackend:
    parts = urlsplit(url)
    opts = url_options(parts.query, ("timeout_ms",), parts.scheme, url)
    if "timeout_ms" not in opts:
        raise ConfigurationError(f"needs_timeout: no timeout_ms in {url!r}")
    timeout_ms = ms_option(opts, "timeout_ms", 0, url)
    SEEN_TIMEOUTS.append(timeout_ms)
    return open_backend(urlunsplit(parts._replace(query=f"timeout_ms={timeout_ms}")))
