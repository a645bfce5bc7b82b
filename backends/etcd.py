"""etcd lease locks on python3-etcd3: one etcd lease per grant, fenced by the key's create revision.

URL: ``etcd://host:port[,host:port...][?prefix=...&timeout_ms=...&connect_timeout_ms=...]``
(plain-text gRPC; no TLS, no auth). Lock key ``K`` is the etcd key ``<prefix>K`` (default prefix
``lockchaos/``); nothing is ever written outside the prefix. Its value is JSON
``{"owner": ..., "ttl_s": <the lease's granted TTL>}`` and it is attached to a lease of its own.

- ``acquire``: LeaseGrant(ceil(ttl_ms / 1000) s; etcd may raise it to its minimum, and the granted
  TTL is what the Lease reports), then one Txn: *if create_revision(key) == 0, put key with that
  lease*. The fencing token is the revision of that put, which is the key's ``create_revision``:
  etcd revisions are global, strictly increasing and persisted, so tokens strictly increase per key,
  across restarts too. A Txn that finds the key held revokes the lease it just granted.
- ``renew``: read the key; if it is ours, one LeaseKeepAlive of its lease (TTL 0 / lease not found
  means it expired: None). A different TTL cannot be put on an existing lease, so then a new lease
  is granted, the key moved to it by a Txn that checks the value *and* the create revision are
  still ours, and the old lease revoked. The token never changes.
- ``release``: read the key; if it is ours, a Txn deletes it only if value and create revision are
  unchanged, then its lease is revoked.
- ``holder``: one linearizable read: owner and granted TTL from the value, token = create_revision.

Failure semantics: every gRPC call has a deadline (``timeout_ms``, default 2000). DEADLINE_EXCEEDED
raises ``BackendTimeout``; UNAVAILABLE, a lost connection or any other gRPC failure raises
``BackendUnavailable``: the outcome is unknown. acquire, renew and release are never retried (nor by
gRPC, which only retries requests that provably never left the client). Only the read-only
``holder`` retries a refused connection, within one timeout. A call whose outcome is unknown is
not undone either: if an acquire's Txn may have applied, its lease is left to expire by its TTL, as a
lost reply leaves a fake lease in place, rather than revoked (that could make a key another client
already saw held vanish before its TTL). Only a *definite* refusal revokes the lease just granted.

Endpoints: python3-etcd3's ``MultiEndpointEtcd3Client`` with ``failover=True``. An endpoint whose
call failed (UNAVAILABLE / DEADLINE_EXCEEDED) is skipped for ``FAILOVER_RETRY_S`` and the next call
goes to the next endpoint; the failed call itself is *not* re-sent. With one endpoint nothing is
ever marked failed (python3-etcd3's default would refuse every call for 300 s after one failure).
Reconnect backoff is capped at 500 ms, so a restarted server is used again within ~0.2 s
instead of gRPC's default exponential backoff of up to 120 s. Several endpoints are taken to be one
Raft cluster: the client declares ``replication="linearizable"`` (a grant is committed by a majority
before the reply) and a ``failover_ms`` for etcd's default timing plus its own timeout.

Threads: an ``EtcdLock`` may be shared by threads. gRPC channels do not survive ``fork()``: open
clients after forking, never before.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Self, TypeVar

import etcd3
import etcd3.exceptions as eex
import grpc
from tenacity import Retrying, retry_if_exception, stop_after_attempt, stop_before_delay, wait_exponential

from .base import (
    BackendTimeout,
    BackendUnavailable,
    Capabilities,
    Closing,
    ConfigurationError,
    Lease,
    LockChaosError,
    validate_call,
)
from .redaction import redact_url
from .urlopts import ms_option, parse_endpoint, prefix_option, split_url, url_options

T = TypeVar("T")

DEFAULT_PORT = 2379
DEFAULT_PREFIX = "lockchaos/"
DEFAULT_TIMEOUT_MS = 2000
DEFAULT_CONNECT_TIMEOUT_MS = 3000
MAX_LEASE_TTL_S = 9_000_000_000
"""etcd's MaxLeaseTTL: a longer lease is refused with OUT_OF_RANGE, so it is a ValueError here."""
TTL_GRANULARITY_MS = 1000
"""etcd lease TTLs are whole seconds."""
EXPIRY_LAG_MS = 1000
"""etcd's lessor (3.4) looks for expired leases every 500 ms and revokes them through raft, so a key
stays visible up to ~500 ms past its TTL: measured on loopback (bench/bench_etcd_adapter.py) p50
~250 ms, p99 ~500 ms, max ~510 ms, with fast and default flags alike. Declared with 2x margin for a
loaded machine. Holds while fewer than ~500 leases expire per half second (the lessor's revoke
rate limit is 1000/s)."""
FAILOVER_ELECTION_MS = 3000
"""What a cluster with etcd's default timing (1 s election timeout, randomised up to 2x, a pre-vote
round) may take to elect a new leader; a client also waits out its own timeout on a frozen one."""
FAILOVER_RETRY_S = 1.0
"""With several endpoints, one whose call failed is skipped for this long."""
HOLDER_ATTEMPTS = 3

_VALUE_KEYS = frozenset({"owner", "ttl_s"})

# gRPC options for every channel. A local subchannel pool gives each client its own connection
# (gRPC would otherwise share one TCP connection between all channels to the same address, so a
# fault on "one client's connection" would hit every client). Short reconnect backoff: see module doc.
_CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.enable_http_proxy", 0),  # endpoints are direct; an inherited http_proxy must not apply
]

# Codes with which a server refuses a request for reasons that retrying will not change.
_DEFINITE_CODES = frozenset(
    {"INVALID_ARGUMENT", "PERMISSION_DENIED", "UNAUTHENTICATED", "UNIMPLEMENTED", "OUT_OF_RANGE"}
)


# --- configuration ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EtcdConfig:
    """A parsed ``etcd://`` URL."""

    url: str
    endpoints: tuple[tuple[str, int], ...]
    prefix: str
    timeout_ms: int
    connect_timeout_ms: int

    @property
    def display_url(self) -> str:
        """The URL without secrets, for messages."""
        return redact_url(self.url)


_OPTIONS = ("prefix", "timeout_ms", "connect_timeout_ms")


def parse_etcd_url(url: str) -> EtcdConfig:
    """Parse and check an ``etcd://`` URL; any problem is one ConfigurationError line."""
    if not isinstance(url, str):
        raise ConfigurationError(f"etcd URL must be a str, got {type(url).__name__}")
    shown = redact_url(url)
    parts = split_url(url, "etcd")
    if parts.scheme != "etcd":
        raise ConfigurationError(f"not an etcd URL: {shown!r} (expected etcd://host:port[,host:port...])")
    if parts.fragment:
        raise ConfigurationError(f"etcd URL {shown!r} has a #fragment; options go in ?query")
    if parts.path not in ("", "/"):
        raise ConfigurationError(f"etcd URL {shown!r} has a path {parts.path!r}; use ?prefix=... for keys")
    if "@" in parts.netloc:
        raise ConfigurationError(f"etcd URL {shown!r} has credentials; etcd auth is not supported")
    if not parts.netloc:
        raise ConfigurationError(f"etcd URL {shown!r} names no endpoint (expected etcd://host:port)")
    endpoints: list[tuple[str, int]] = []
    for item in parts.netloc.split(","):
        endpoint = parse_endpoint(item, "etcd", url, DEFAULT_PORT)
        if endpoint in endpoints:
            raise ConfigurationError(f"etcd URL {shown!r} names endpoint {item!r} twice")
        endpoints.append(endpoint)

    opts = url_options(parts.query, _OPTIONS, "etcd", shown)
    prefix = prefix_option(opts, DEFAULT_PREFIX, shown)
    return EtcdConfig(
        url=url,
        endpoints=tuple(endpoints),
        prefix=prefix,
        timeout_ms=ms_option(opts, "timeout_ms", DEFAULT_TIMEOUT_MS, shown),
        connect_timeout_ms=ms_option(opts, "connect_timeout_ms", DEFAULT_CONNECT_TIMEOUT_MS, shown),
    )


# --- what a key holds -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Record:
    """One read of a lock key."""

    owner: str
    ttl_s: int
    lease_id: int
    create_revision: int
    raw: bytes


def _encode(owner: str, ttl_s: int) -> bytes:
    return json.dumps({"owner": owner, "ttl_s": ttl_s}, separators=(",", ":")).encode()


def _decode(raw: bytes) -> tuple[str, int] | None:
    """(owner, ttl_s) from a value lockchaos wrote, else None."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) != _VALUE_KEYS:
        return None
    owner, ttl_s = data["owner"], data["ttl_s"]
    if not isinstance(owner, str) or isinstance(ttl_s, bool) or not isinstance(ttl_s, int):
        return None
    return owner, ttl_s


# --- the adapter ------------------------------------------------------------------------------------


class EtcdLock(Closing):
    """One client of an etcd lock service: one gRPC channel per endpoint, thread-safe.

    ``open_etcd(url)`` is the usual way to make one: it connects (with a bounded retry) and measures
    this server's minimum lease TTL before returning.
    """

    name = "etcd"

    def __init__(self, config: EtcdConfig) -> None:
        self.config = config
        self.prefix = config.prefix
        self.timeout_ms = config.timeout_ms
        self._timeout_s = config.timeout_ms / 1000
        several = len(config.endpoints) > 1
        endpoints = [
            etcd3.Endpoint(host, port, secure=False, time_retry=FAILOVER_RETRY_S if several else 0.0,
                           opts=_CHANNEL_OPTIONS)
            for host, port in config.endpoints
        ]
        self._client: Any = etcd3.MultiEndpointEtcd3Client(
            endpoints=endpoints, timeout=self._timeout_s, failover=True
        )
        self._closed = False
        # Replaced by connect() with the minimum this server really grants.
        self.capabilities = Capabilities.fenced_server(
            ttl_granularity_ms=TTL_GRANULARITY_MS, min_ttl_ms=TTL_GRANULARITY_MS, expiry_lag_ms=EXPIRY_LAG_MS,
            durable=True)
        self._min_ttl_s = 1

    # --- opening --------------------------------------------------------------------------------

    def connect(self) -> Self:
        """First contact, retried with backoff for about ``connect_timeout_ms``: grant a 1 s lease,
        read the TTL the server really granted (its minimum: 1.5 election timeouts, rounded up to
        seconds) and revoke it."""
        budget_s = self.config.connect_timeout_ms / 1000
        start = time.monotonic()
        retrying = Retrying(
            stop=stop_before_delay(budget_s),
            wait=wait_exponential(multiplier=0.05, max=0.5),
            retry=retry_if_exception(_worth_reconnecting),
            reraise=True,
        )

        def probe() -> int:
            # Every attempt gets at most what is left of the budget, so open() is bounded even
            # against a server that accepts connections and never answers (SIGSTOPped).
            left = budget_s - (time.monotonic() - start)
            self._client.timeout = max(0.05, min(self._timeout_s, left))
            lease_id, granted = self._grant("open", 1)
            self._revoke_quietly(lease_id)
            return granted

        try:
            granted = retrying(probe)
        except _Refused as exc:
            self.close()
            raise ConfigurationError(f"etcd at {self.config.display_url} refused us: {exc}") from None
        except BackendUnavailable as exc:
            self.close()
            attempts = retrying.statistics.get("attempt_number", 1)
            kind = BackendTimeout if isinstance(exc, BackendTimeout) else BackendUnavailable
            code, details = _grpc_status(exc)
            raise kind(
                f"cannot reach etcd at {self.config.display_url}: {code}: {details} "
                f"({attempts} attempt(s) in {time.monotonic() - start:.1f} s)"
            ) from None
        finally:
            self._client.timeout = self._timeout_s
        self._min_ttl_s = max(1, granted)
        # Several endpoints: a Raft cluster, whose grants are committed by a majority before the reply.
        cluster = len(self.config.endpoints) > 1
        self.capabilities = replace(
            self.capabilities, min_ttl_ms=self._min_ttl_s * 1000,
            replication="linearizable" if cluster else "none",
            failover_ms=FAILOVER_ELECTION_MS + self.config.timeout_ms if cluster else 0,
        )
        return self

    # --- LockBackend ----------------------------------------------------------------------------

    def etcd_key(self, key: str) -> str:
        """The etcd key that holds lock ``key``."""
        return self.prefix + key

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        ttl_s = _ttl_seconds(ttl_ms)
        self._check_open()
        full = self.etcd_key(key)
        lease_id, granted = self._grant("acquire", ttl_s)
        tx = self._client.transactions
        try:
            succeeded, responses = self._call(
                "acquire", lambda: self._client.transaction(
                    compare=[tx.create(full) == 0],
                    success=[tx.put(full, _encode(owner, granted), lease=lease_id)],
                    failure=[],
                ),
            )
        except (_Refused, _NotFound):
            self._revoke_quietly(lease_id)  # refused for sure: nothing was put under the lease
            raise
        # Any other failure leaves the outcome unknown: the lease is *not* revoked (see module doc).
        if not succeeded:
            self._revoke_quietly(lease_id)  # held: the lease we granted must not outlive this call
            return None
        token = int(responses[0].response_put.header.revision)
        return Lease(key=key, owner=owner, token=token, ttl_ms=granted * 1000)

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        ttl_s = _ttl_seconds(ttl_ms)
        self._check_open()
        full = self.etcd_key(key)
        # A failed ownership check means the key changed between our read and our Txn; it may be a
        # concurrent renew by this very owner, so read again (bounded: every miss saw a change).
        for _ in range(3):
            rec = self._read("renew", full)
            if rec is None or rec.owner != owner or rec.lease_id == 0:
                return None
            if max(ttl_s, self._min_ttl_s) == rec.ttl_s:
                ttl = self._keep_alive(rec.lease_id)
                if ttl <= 0:
                    return None  # expired (and revoked) before the keep-alive arrived
                return Lease(key=key, owner=owner, token=rec.create_revision, ttl_ms=ttl * 1000)
            moved = self._move(full, rec, ttl_s)
            if moved is not None:
                return Lease(key=key, owner=owner, token=rec.create_revision, ttl_ms=moved * 1000)
        return None

    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        self._check_open()
        full = self.etcd_key(key)
        for _ in range(3):
            rec = self._read("release", full)
            if rec is None or rec.owner != owner:
                return False
            if self._txn_if_unchanged("release", full, rec, self._client.transactions.delete(full)):
                if rec.lease_id:
                    self._revoke_quietly(rec.lease_id)  # the key is gone: nothing may depend on it
                return True
        return False

    def holder(self, key: str) -> Lease | None:
        validate_call(key)
        self._check_open()
        full = self.etcd_key(key)
        try:
            rec = self._read("holder", full, strict=True)
        except BackendTimeout:
            raise  # a paused server must cost one timeout, not several
        except _Refused:
            raise
        except BackendUnavailable:
            # A read may be repeated: a refused or dropped connection is retried, with backoff,
            # within about one timeout.
            retrying = Retrying(
                stop=stop_after_attempt(HOLDER_ATTEMPTS - 1) | stop_before_delay(self._timeout_s),
                wait=wait_exponential(multiplier=0.01, max=0.2),
                retry=retry_if_exception(
                    lambda e: _worth_reconnecting(e) and not isinstance(e, BackendTimeout)
                ),
                reraise=True,
            )
            rec = retrying(lambda: self._read("holder", full, strict=True))
        if rec is None:
            return None
        return Lease(key=key, owner=rec.owner, token=rec.create_revision, ttl_ms=rec.ttl_s * 1000)

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self._client.close()

    def __repr__(self) -> str:
        return f"<EtcdLock {self.config.display_url} prefix={self.prefix!r}>"

    # --- beyond the interface: for tests and cleanup checks --------------------------------------

    def lease_ids(self) -> list[int]:
        """Every lease the server has (LeaseLeases, etcd >= 3.3), not only ours."""
        self._check_open()
        method = self._client.channel.unary_unary(
            "/etcdserverpb.Lease/LeaseLeases",
            request_serializer=lambda _req: b"",  # LeaseLeasesRequest has no fields
            response_deserializer=lease_ids_from_wire,
        )
        ids: list[int] = self._call("lease_ids", lambda: method(None, timeout=self._timeout_s))
        return ids

    # --- steps ----------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LockChaosError(f"{self!r} is closed")

    def _read(self, op: str, full: str, *, strict: bool = False) -> _Record | None:
        value, meta = self._call(op, lambda: self._client.get(full))
        if value is None:
            return None
        decoded = _decode(bytes(value))
        if decoded is None:
            if strict:
                raise LockChaosError(
                    f"etcd key {full!r} holds {bytes(value)[:80]!r}, not a lockchaos lock record: "
                    f"something other than lockchaos writes under the prefix {self.prefix!r}"
                )
            return None  # not ours to renew or release
        owner, ttl_s = decoded
        return _Record(owner, ttl_s, int(meta.lease_id), int(meta.create_revision), bytes(value))

    def _grant(self, op: str, ttl_s: int) -> tuple[int, int]:
        lease = self._call(op, lambda: self._client.lease(ttl_s))
        return int(lease.id), int(lease.ttl)

    def _keep_alive(self, lease_id: int) -> int:
        """One keep-alive; the lease's granted TTL, or 0 if it no longer exists."""
        replies = self._call("renew", lambda: list(self._client.refresh_lease(lease_id)))
        return int(replies[0].TTL) if replies else 0

    def _move(self, full: str, rec: _Record, ttl_s: int) -> int | None:
        """Put the key on a new lease of ``ttl_s`` if it is still ``rec``; the granted TTL, or None."""
        new_id, granted = self._grant("renew", ttl_s)
        put = self._client.transactions.put(full, _encode(rec.owner, granted), lease=new_id)
        succeeded = self._txn_if_unchanged("renew", full, rec, put)
        if not succeeded:
            self._revoke_quietly(new_id)
            return None
        self._revoke_quietly(rec.lease_id)  # holds no key any more
        return granted

    def _txn_if_unchanged(self, op: str, full: str, rec: _Record, action: object) -> bool:
        """Apply ``action`` iff the key still has the value and create revision of ``rec``."""
        tx = self._client.transactions
        succeeded, _ = self._call(
            op, lambda: self._client.transaction(
                compare=[tx.value(full) == rec.raw, tx.create(full) == rec.create_revision],
                success=[action],
                failure=[],
            ),
        )
        return bool(succeeded)

    def _revoke_quietly(self, lease_id: int) -> None:
        """Best effort: a lease we fail to revoke holds no key and expires by its own TTL."""
        with contextlib.suppress(BackendUnavailable):
            self._call("revoke", lambda: self._client.revoke_lease(lease_id))

    def _call(self, op: str, call: Callable[[], T]) -> T:
        """Run one request; every failure becomes a lockchaos error that says what is known."""
        try:
            return call()
        except eex.ConnectionTimeoutError as exc:
            raise BackendTimeout(
                f"etcd {op} at {self._where()}: no reply within {self._deadline_ms()} ms (outcome unknown)"
            ) from exc
        except eex.NoServerAvailableError as exc:
            raise BackendUnavailable(
                f"etcd {op}: every endpoint of {self.config.display_url} failed in the last {FAILOVER_RETRY_S:g} s"
            ) from exc
        except (eex.Etcd3Exception, grpc.RpcError) as exc:
            code, details = _grpc_status(exc)
            if code == "NOT_FOUND":
                raise _NotFound(details) from exc
            if code == "DEADLINE_EXCEEDED":
                raise BackendTimeout(
                    f"etcd {op} at {self._where()}: no reply within {self._deadline_ms()} ms (outcome unknown)"
                ) from exc
            if code in _DEFINITE_CODES:
                raise _Refused(f"{code}: {details}") from exc
            raise BackendUnavailable(
                f"etcd {op} at {self._where()}: {code}: {details} (outcome unknown)"
            ) from exc

    def _deadline_ms(self) -> int:
        return round(float(self._client.timeout) * 1000)

    def _where(self) -> str:
        with contextlib.suppress(Exception):
            return str(self._client.endpoint_in_use.netloc)
        return self.config.display_url


class _NotFound(BackendUnavailable):
    """NOT_FOUND from etcd: a lease that no longer exists. Expected only when revoking; elsewhere
    (a lease that expired between its grant and its Txn) it stays a BackendUnavailable."""


class _Refused(BackendUnavailable):
    """A request etcd refused for a reason that retrying will not change (auth, bad argument)."""


def _worth_reconnecting(exc: BaseException) -> bool:
    return isinstance(exc, BackendUnavailable) and not isinstance(exc, _Refused)


def _grpc_status(exc: BaseException) -> tuple[str, str]:
    """The gRPC status behind an exception: python3-etcd3 re-raises its own, chained to gRPC's."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, grpc.RpcError) and hasattr(seen, "code"):
            code = seen.code()
            details = seen.details() if hasattr(seen, "details") else ""
            name = str(getattr(code, "name", code))
            return name, " ".join(str(details or "").split())
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__, str(exc) or type(exc).__name__


def _ttl_seconds(ttl_ms: int) -> int:
    ttl_s = math.ceil(ttl_ms / 1000)
    if ttl_s > MAX_LEASE_TTL_S:
        raise ValueError(f"ttl_ms must be <= {MAX_LEASE_TTL_S * 1000} for etcd, got {ttl_ms}")
    return ttl_s


def _varints(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a protobuf message: enough for LeaseLeasesResponse."""
    pos = 0
    while pos < len(data):
        tag, pos = _varints(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varints(data, pos)
            yield number, wire, value
        elif wire == 2:
            size, pos = _varints(data, pos)
            yield number, wire, data[pos:pos + size]
            pos += size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            yield number, wire, data[pos:pos + width]
            pos += width
        else:
            raise LockChaosError(f"unexpected protobuf wire type {wire} in a LeaseLeases reply")


def lease_ids_from_wire(data: bytes) -> list[int]:
    """LeaseLeasesResponse{header = 1; repeated LeaseStatus leases = 2}, LeaseStatus{int64 ID = 1}.

    python3-etcd3 0.13 ships no stub for LeaseLeases, so the reply is decoded here.
    """
    ids = []
    for number, _wire, value in _fields(data):
        if number == 2 and isinstance(value, bytes):
            for inner, _w, lease_id in _fields(value):
                if inner == 1 and isinstance(lease_id, int):
                    ids.append(lease_id)
    return ids


def open_etcd(url: str) -> EtcdLock:
    """``etcd://host:port[,host:port...][?prefix=...&timeout_ms=...&connect_timeout_ms=...]``.

    Raises ConfigurationError for a bad URL (nothing is contacted) and BackendUnavailable when no
    endpoint answers within ``connect_timeout_ms`` (default 3 s).
    """
    return EtcdLock(parse_etcd_url(url)).connect()


__all__ = [
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT_MS",
    "EXPIRY_LAG_MS",
    "EtcdConfig",
    "EtcdLock",
    "open_etcd",
    "parse_etcd_url",
]
