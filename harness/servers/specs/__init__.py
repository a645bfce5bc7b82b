"""The server kinds lockchaos ships, by name: one spec each (``base.py`` says what a spec holds).

A new shipped server kind is a module here with its ``ServerSpec`` and one line in ``SERVER_SPECS``;
process mode, container mode, external mode and the fault proxy read it from here.
"""

from __future__ import annotations

from lockchaos.backends.base import ConfigurationError
from lockchaos.harness.servers.specs.base import ServerSpec
from lockchaos.harness.servers.specs.etcd import ETCD, EtcdSpec
from lockchaos.harness.servers.specs.redis import REDIS, REDIS_AOF, RedisSpec

SERVER_SPECS: dict[str, ServerSpec] = {spec.name: spec for spec in (REDIS, REDIS_AOF, ETCD)}
"""Registry name -> spec; the first spec of each kind is what a URL of that scheme means."""

SPECS_BY_SCHEME: dict[str, ServerSpec] = {}
for _spec in SERVER_SPECS.values():
    SPECS_BY_SCHEME.setdefault(_spec.kind, _spec)


def server_spec(name: str) -> ServerSpec:
    """The spec registered as ``name``, or one clear ConfigurationError naming the choices."""
    try:
        return SERVER_SPECS[name]
    except KeyError:
        choices = " or ".join(repr(k) for k in SPECS_BY_SCHEME)
        raise ConfigurationError(f"unknown server kind {name!r}: expected {choices}") from None


def default_ports() -> dict[str, int]:
    """Each scheme's client port when a URL names none."""
    return {scheme: spec.default_port for scheme, spec in SPECS_BY_SCHEME.items()}


__all__ = ["ETCD", "REDIS", "REDIS_AOF", "SERVER_SPECS", "SPECS_BY_SCHEME", "EtcdSpec", "RedisSpec",
           "ServerSpec", "default_ports", "server_spec"]
