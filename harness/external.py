"""Servers the harness did not start: a private key prefix per run, removed at the end, and no faults.

On someone else's Redis or etcd the harness must leave no trace and touch nothing of theirs: every
key lives under ``lockchaos-<run id>`` (inside the user's own ``prefix`` if the URL has one), the
prefix is deleted key by key when the run ends, and nothing is ever flushed.
"""

from __future__ import annotations

import uuid
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

from lockchaos.backends.base import ConfigurationError, InfrastructureError

from .serverflags import LOOPBACK

SEPARATOR = {"redis": ":", "etcd": "/"}
DEFAULT_PREFIX = {"redis": "lockchaos:", "etcd": "lockchaos/"}


def scheme_of(url: str) -> str:
    scheme = urlsplit(url).scheme
    if scheme not in SEPARATOR:
        raise ConfigurationError(f"--url must be a redis:// or etcd:// URL, got {url!r}")
    return scheme


def with_run_prefix(url: str, run_id: str | None = None) -> tuple[str, str]:
    """The URL with a fresh per-run ``prefix`` option, and that prefix."""
    scheme = scheme_of(url)
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    base = query.get("prefix", DEFAULT_PREFIX[scheme])
    prefix = f"{base}run-{run_id or uuid.uuid4().hex[:12]}{SEPARATOR[scheme]}"
    query["prefix"] = prefix
    return urlunsplit(parts._replace(query=urlencode(query))), prefix


def is_loopback(url: str) -> bool:
    hosts = [h.rsplit(":", 1)[0] for h in urlsplit(url).netloc.rsplit("@", 1)[-1].split(",")]
    return all(h in (LOOPBACK, "localhost") for h in hosts)


def purge_prefix(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` (ours alone, by construction); returns how many."""
    scheme = scheme_of(url)
    if "run-" not in prefix:
        raise ConfigurationError(f"refusing to purge {prefix!r}: not a per-run lockchaos prefix")
    try:
        return _purge_redis(url, prefix) if scheme == "redis" else _purge_etcd(url, prefix)
    except ConfigurationError:
        raise
    except Exception as exc:
        raise InfrastructureError(f"could not remove the run's keys under {prefix!r}: {exc}") from None


def _purge_redis(url: str, prefix: str) -> int:
    import redis

    parts = urlsplit(url)
    client = redis.Redis.from_url(urlunsplit(parts._replace(query="")), socket_timeout=5, socket_connect_timeout=5)
    try:
        removed = 0
        pattern = "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        for key in client.scan_iter(match=pattern, count=500):
            removed += int(client.unlink(key))
        return removed
    finally:
        client.close()


def _purge_etcd(url: str, prefix: str) -> int:
    import etcd3

    host, _, port = urlsplit(url).netloc.split(",")[0].rpartition(":")
    client = etcd3.client(host=host, port=int(port), timeout=5)
    try:
        deleted = client.delete_prefix(prefix)
        return int(getattr(deleted, "deleted", 0))
    finally:
        client.close()
