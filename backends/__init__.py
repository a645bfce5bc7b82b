"""Lock backends: the public interface, the reference fake, and adapters for real lock services."""

from __future__ import annotations

import importlib

from .base import (
    BackendTimeout,
    BackendUnavailable,
    Capabilities,
    ConfigurationError,
    FaultUnsupported,
    InfrastructureError,
    Lease,
    LockBackend,
    LockChaosError,
    validate_call,
)
from .redaction import redact_url
from .urlopts import split_url

# scheme -> "module:function"; imported lazily so a missing optional client library only
# matters to the URLs that need it.
_OPENERS = {
    "fake": "lockchaos.backends.fake:open_fake",
    "redis": "lockchaos.backends.redis:open_redis",
    "etcd": "lockchaos.backends.etcd:open_etcd",
    "redis+sentinel": "lockchaos.backends.sentinel:open_sentinel",
    "redlock": "lockchaos.backends.libs.pottery_quorum:open_pottery_quorum",
}


def open_backend(url: str) -> LockBackend:
    """Open one client: ``fake://NAME``, ``redis://host:port/db``, ``etcd://host:port[,host:port...]``."""
    if not isinstance(url, str) or "://" not in url:
        shown = redact_url(url) if isinstance(url, str) else url
        raise ConfigurationError(f"not a backend URL: {shown!r} (expected scheme://...)")
    scheme = split_url(url, "backend").scheme
    target = _OPENERS.get(scheme)
    if target is None:
        raise ConfigurationError(
            f"unknown backend scheme {scheme!r} in {redact_url(url)!r}; supported: {', '.join(sorted(_OPENERS))}"
        )
    module_name, func_name = target.split(":")
    opener = getattr(importlib.import_module(module_name), func_name)
    backend: LockBackend = opener(url)
    return backend


__all__ = [
    "BackendTimeout",
    "BackendUnavailable",
    "Capabilities",
    "ConfigurationError",
    "FaultUnsupported",
    "InfrastructureError",
    "Lease",
    "LockBackend",
    "LockChaosError",
    "open_backend",
    "validate_call",
]
