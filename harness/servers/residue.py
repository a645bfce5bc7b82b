"""What a lock left on its server after a run: keys and their TTLs, etcd leases and their keys.

Read-only: SCAN + PTTL on Redis, a range read and the lease list on etcd, the live entries of the
fake. On a server the harness started every key is the run's, so all are listed; on a user's server
(external mode) only keys under the run's own prefix are looked at, and etcd leases (which carry no
prefix) are not listed at all. The residue checker judges what is found here.

A snapshot is a plain dict (it goes into the history as a ``residue`` note):
``{"scope": "server" | "prefix:<p>", "keys": [{"key", "ttl_ms"}], "leases": [{"id", "ttl_s",
"granted_ttl_s", "keys"}] | None, "truncated": bool, "error": str | None}``; ``ttl_ms`` is None for
a key that never expires.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lockchaos.backends.fake import FakeKVLock

Snapshot = dict[str, Any]

MAX_KEYS = 2000
"""A bound on what is listed: a lock that leaves more than this has said enough."""
TIMEOUT_S = 3.0


def fake_snapshot(server: FakeKVLock) -> Snapshot:
    """The fake's unexpired entries, read off its table (it is ours and in this process: no client
    call, so no fault or pause of its clients can hide it). Every entry has a TTL by construction."""
    now = server.server_now_ns()
    with server._lock:
        entries = list(server._entries.items())
    keys = [{"key": key, "ttl_ms": max(0, (e.expires_at_ns - now) // 1_000_000)}
            for key, e in entries if e.expires_at_ns > now]
    return {"scope": "server", "keys": keys, "leases": None, "truncated": False, "error": None}


def server_snapshot(url: str, prefix: str | None) -> Snapshot:
    """A Redis or etcd server's keys (under ``prefix`` when it is not ours), never raising."""
    scope = "server" if prefix is None else f"prefix:{prefix}"
    try:
        scheme = urlsplit(url).scheme
        inspect = {"redis": _redis, "redlock": _redlock, "redis+sentinel": _sentinel}.get(scheme, _etcd)
        snap = inspect(url, prefix)
    except Exception as exc:  # a dead or paused server: the checker says it could not look
        return {"scope": scope, "keys": [], "leases": None, "truncated": False,
                "error": f"{type(exc).__name__}: {exc}"}
    snap["scope"] = scope
    return snap


def _bounded(items: Iterator[Any]) -> tuple[list[Any], bool]:
    out: list[Any] = []
    for item in items:
        if len(out) >= MAX_KEYS:
            return out, True
        out.append(item)
    return out, False


def _redis(url: str, prefix: str | None) -> Snapshot:
    import redis

    parts = urlsplit(url)
    client = redis.Redis.from_url(urlunsplit(parts._replace(query="")), socket_timeout=TIMEOUT_S,
                                  socket_connect_timeout=TIMEOUT_S)
    try:
        pattern = None if prefix is None else "".join("\\" + c if c in "*?[]\\" else c for c in prefix) + "*"
        names, truncated = _bounded(client.scan_iter(match=pattern, count=500))
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.pttl(name)
        ttls = pipe.execute() if names else []
        keys = [{"key": _text(name), "ttl_ms": None if ttl == -1 else int(ttl)}
                for name, ttl in zip(names, ttls, strict=True) if ttl != -2]  # -2: expired meanwhile
        return {"keys": keys, "leases": None, "truncated": truncated, "error": None}
    finally:
        client.close()


def _redlock(url: str, prefix: str | None) -> Snapshot:
    """Every master's keys, each named ``<master>/<key>``: a key left on any one of them is residue."""
    parts = urlsplit(url)
    keys: list[dict[str, Any]] = []
    truncated = False
    for hostport in parts.netloc.split(","):
        snap = _redis(urlunsplit(parts._replace(scheme="redis", netloc=hostport)), prefix)
        keys += [{**k, "key": f"{hostport}/{k['key']}"} for k in snap["keys"]]
        truncated = truncated or bool(snap["truncated"])
    return {"keys": keys, "leases": None, "truncated": truncated, "error": None}


def _sentinel(url: str, prefix: str | None) -> Snapshot:
    """The keys on the primary the Sentinels name now: what a client would be granted against."""
    from lockchaos.backends.sentinel import discover_primary

    host, port = discover_primary(url, TIMEOUT_S)
    return _redis(f"redis://{host}:{port}/0", prefix)


def _etcd(url: str, prefix: str | None) -> Snapshot:
    import etcd3

    from lockchaos.backends.etcd import lease_ids_from_wire, parse_etcd_url

    config = parse_etcd_url(url)
    host, port = config.endpoints[0]
    client = etcd3.client(host=host, port=port, timeout=TIMEOUT_S)
    try:
        found = client.get_prefix(prefix) if prefix is not None else client.get_all()
        entries, truncated = _bounded(iter(found))
        lease_ttl: dict[int, int] = {}
        leases: list[dict[str, Any]] | None = None
        if prefix is None:  # leases carry no prefix: on a user's server they are not ours to list
            leases = []
            ids = _lease_ids(client.channel, lease_ids_from_wire)
            truncated = truncated or len(ids) > MAX_KEYS
            for lease_id in ids[:MAX_KEYS]:
                info = client.get_lease_info(lease_id)
                if info.TTL < 0:
                    continue  # expired between the list and the look
                lease_ttl[lease_id] = int(info.TTL)
                leases.append({"id": lease_id, "ttl_s": int(info.TTL), "granted_ttl_s": int(info.grantedTTL),
                               "keys": [_text(k) for k in info.keys]})
        keys = []
        for _value, meta in entries:
            lease = int(meta.lease_id)
            ttl_ms: int | None = None
            if lease:
                ttl_ms = lease_ttl.get(lease, -1) * 1000 if prefix is None else -1
            keys.append({"key": _text(meta.key), "ttl_ms": ttl_ms})
        return {"keys": keys, "leases": leases, "truncated": truncated, "error": None}
    finally:
        with contextlib.suppress(Exception):
            client.close()


def _lease_ids(channel: Any, decode: Callable[[bytes], list[int]]) -> list[int]:
    """``Lease/LeaseLeases`` (etcd >= 3.3), which python3-etcd3 does not wrap: decoded as the adapter does."""
    call: Callable[..., list[int]] = channel.unary_unary(
        "/etcdserverpb.Lease/LeaseLeases", request_serializer=lambda _: b"", response_deserializer=decode)
    return call(None, timeout=TIMEOUT_S)


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
