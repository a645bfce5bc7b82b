"""Faithful wrappers of the lock libraries Python teams use, so lockchaos can judge them as shipped.

Each wrapper calls the library's own acquire / extend / release and fixes nothing: a library's
defect must show up in the contract and the soak, never be papered over here. What a wrapper does
add is only the mapping the interface needs:

- one library lock object per ``(key, owner)`` inside one client, since libraries keep ownership as
  a random value inside a lock object (that is one process's state, as in production; clients share
  nothing but the server);
- unit conversion (the harness speaks ms, libraries take seconds) and the library's own rounding,
  declared in ``Capabilities``;
- exceptions: an unknown outcome (connection lost, timeout) is ``BackendUnavailable``; the library's
  "not yours / not held" answers are ``None`` / ``False``; anything else the library raises is left
  as it is, for the harness to report.

``LIBRARIES`` names them for ``--backend``; the libraries themselves are the optional extra
``pip install 'lockchaos[libs]'`` and are imported only when a backend is opened.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LibrarySpec:
    """A shipped library backend: which server it needs, how to open a client, what to install."""

    server_kind: str
    opener: str
    """``module:function`` taking the server URL (``redis://...`` or ``etcd://...``)."""
    distribution: str
    """The PyPI distribution whose version a finding is about."""


LIBRARIES: dict[str, LibrarySpec] = {
    "redis-py-lock": LibrarySpec("redis", "lockchaos.backends.libs.redis_py_lock:open_redis_py_lock", "redis"),
    "python-redis-lock": LibrarySpec(
        "redis", "lockchaos.backends.libs.python_redis_lock:open_python_redis_lock", "python-redis-lock"),
    "python-redis-lock-autorenew": LibrarySpec(
        "redis", "lockchaos.backends.libs.python_redis_lock:open_python_redis_lock_autorenew", "python-redis-lock"),
    "pottery": LibrarySpec("redis", "lockchaos.backends.libs.pottery_redlock:open_pottery_redlock", "pottery"),
    "sherlock": LibrarySpec("redis", "lockchaos.backends.libs.sherlock_lock:open_sherlock_lock", "sherlock"),
    "etcd3-lock": LibrarySpec("etcd", "lockchaos.backends.libs.etcd3_lock:open_etcd3_lock", "python3-etcd3"),
}

__all__ = ["LIBRARIES", "LibrarySpec"]
