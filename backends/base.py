"""The public lock interface that every backend, ours or a user's, is written against.

These names are a contract: third-party adapters and the shipped contract suite import them, so
they change only with a major version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol, Self, runtime_checkable

HolderInfo = Literal["lease", "owner", "presence", "none"]
"""What ``holder()`` can tell, from most to least: see ``Capabilities.holder_info``."""
TtlRounding = Literal["up", "down"]
Replication = Literal["none", "async", "linearizable"]
"""How a grant reaches the servers that can take over from the one that granted it."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A grant as the lock service reported it.

    ``token`` is the fencing token: strictly increasing per key across successful acquires, so a
    guarded resource can refuse a writer whose lease has been superseded. It is ``None`` for a lock
    that issues none (``capabilities.fencing_tokens=False``: most lock libraries), and such a lock is
    judged by lease identity instead: its stale writes are its declared hazard, never token findings.
    ``ttl_ms`` is the TTL the backend really applied, after its own rounding, because checkers must
    judge expiry by what the service did, not by what the client asked for. In a lease returned by
    ``holder()`` it is 0 when ``capabilities.holder_info`` says the TTL cannot be told.
    """

    key: str
    owner: str
    token: int | None
    ttl_ms: int


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend promises, so that checkers and the contract suite judge it by its own word.

    Every field is itself verified by the contract suite: a declaration is a claim, not a hint.
    """

    ttl_granularity_ms: int = 1
    """Applied TTLs are rounded to a multiple of this (etcd: 1000), in the ``ttl_rounding`` direction."""
    ttl_rounding: TtlRounding = "up"
    """``"up"`` (etcd rounds a 1.2 s lease to 2 s) or ``"down"`` (a library that truncates with
    ``int(seconds)`` grants 1 s for 1.9 s: shorter than asked, which its users must know)."""
    min_ttl_ms: int = 1
    """Applied TTLs are never below this (etcd: 1.5 election timeouts, rounded up to seconds)."""
    refuses_below_min: bool = False
    """A TTL below ``min_ttl_ms`` is refused with ``ValueError`` before any I/O, instead of being
    raised to the minimum."""
    expiry_lag_ms: int = 0
    """How long after its TTL an expired lease may still be visible (held) at the server."""
    durable: bool = False
    """Holders and token counters survive a server crash and restart."""
    fencing_tokens: bool = True
    """Tokens strictly increase per key (while the server keeps its state). ``False``: every lease's
    token is ``None``, and no checker may rely on tokens."""
    holder_info: HolderInfo = "lease"
    """What ``holder()`` tells: ``"lease"`` the owner, token and applied TTL; ``"owner"`` the owner
    (token as for acquire, ``ttl_ms`` 0); ``"presence"`` only that someone holds the key (owner ``""``,
    token ``None``, ``ttl_ms`` 0); ``"none"`` nothing (``holder()`` raises ``NotImplementedError``).
    Lock libraries tie ownership to a random value inside one lock object, so most cannot name an
    owner they did not create; checkers and the contract use only what is declared."""
    replication: Replication = "none"
    """``"none"``: one server, no failover. ``"async"``: replicas receive grants after the reply (Redis
    with Sentinel), so a promotion may lose a granted lock: the declared hazard, known-unsafe.
    ``"linearizable"``: a grant is acknowledged only once a majority has it (etcd's Raft), so a
    failover that loses one is a failure. The reference never loses a granted lock."""
    renews_in_background: bool = False
    """The client renews every lease it holds from its own thread (python-redis-lock's ``auto_renewal``),
    unseen by the caller: a held lease stays in force until released, or until its holder's process
    dies or freezes, plus the TTL. Checkers bound a grant's end by that; the contract's expiry rules
    do not apply (expiry is judged by soaks that crash or pause the holder's process)."""
    spurious_refusals: bool = False
    """May refuse an acquire on a free key: a quorum lock whose votes split between contenders (none
    reaches a quorum, all give up) or whose slow masters count as unreachable (pottery's Redlock).
    Checkers report such a refusal as the declared hazard (known-unsafe), the contract's race rule
    skips a round nobody won with this reason; undeclared, it is a conformance violation."""
    failover_ms: int = 0
    """How long after its leader or primary fails the service grants again, as this client sees it
    (election or promotion, plus a call stuck on a frozen leader timing out). Liveness judges leader
    faults against it; 0 with ``replication="none"``."""

    def __post_init__(self) -> None:
        if self.ttl_granularity_ms < 1 or self.min_ttl_ms < 1 or self.expiry_lag_ms < 0 or self.failover_ms < 0:
            raise ValueError(f"impossible capabilities: {self}")
        if self.ttl_rounding not in ("up", "down") or self.holder_info not in ("lease", "owner", "presence", "none"):
            raise ValueError(f"impossible capabilities: {self}")
        if self.replication not in ("none", "async", "linearizable"):
            raise ValueError(f"impossible capabilities: {self}")

    @classmethod
    def fenced_server(cls, *, ttl_granularity_ms: int, min_ttl_ms: int, expiry_lag_ms: int,
                      durable: bool) -> Capabilities:
        """A lock server's own lease lock (ours on Redis and etcd): fencing tokens, full holder info.

        Declared once per adapter when the client is made; what only the server can tell (Redis's
        durability, etcd's minimum TTL and cluster) is filled in at connect with ``dataclasses.replace``."""
        return cls(ttl_granularity_ms=ttl_granularity_ms, min_ttl_ms=min_ttl_ms, expiry_lag_ms=expiry_lag_ms,
                   durable=durable, fencing_tokens=True)

    def applied_ttl(self, ttl_ms: int) -> int:
        """The TTL a conforming backend grants for a requested ``ttl_ms`` (refusals aside)."""
        gran = self.ttl_granularity_ms
        steps = math.ceil(ttl_ms / gran) if self.ttl_rounding == "up" else ttl_ms // gran
        return max(self.min_ttl_ms, steps * gran)

    def refuses_ttl(self, ttl_ms: int) -> bool:
        """Whether a conforming backend answers this TTL with ``ValueError`` (declared refusal)."""
        return self.refuses_below_min and ttl_ms < self.min_ttl_ms


@runtime_checkable
class LockBackend(Protocol):
    """One *client* of a lock service. Every ``open_backend`` call returns a new one."""

    name: str
    capabilities: Capabilities

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None: ...

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None: ...

    def release(self, key: str, owner: str) -> bool: ...

    def holder(self, key: str) -> Lease | None: ...

    def close(self) -> None: ...


class Closing:
    """``with open_backend(url) as lock:`` for any backend that defines ``close``."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- the one exception hierarchy -------------------------------------------------------------


class LockChaosError(Exception):
    """Base of every error lockchaos raises on purpose."""


class BackendUnavailable(LockChaosError):
    """The outcome of a call is unknown (timeout, connection lost mid-call, server down).

    Histories record such calls as *indeterminate*: the operation may or may not have taken effect,
    and checkers must allow both.
    """


class BackendTimeout(BackendUnavailable):
    """The call did not complete within the client's timeout."""


class ConfigurationError(LockChaosError, ValueError):
    """Bad usage or configuration, detected before anything runs (the user must change the call)."""


class InfrastructureError(LockChaosError):
    """A server or proxy could not be started, reached or faulted (nothing the lock did wrong)."""


class FaultUnsupported(LockChaosError):
    """A backend or provisioning mode cannot take a fault; the scenario is skipped with the reason."""


# --- input validation shared by every backend ------------------------------------------------

MAX_KEY_BYTES = 1024
"""The longest key every backend must store, in bytes of UTF-8: Redis allows 512 MiB and etcd 1.5 MiB
requests, but a lock name is a name, and one limit for all keeps "valid" the same on every backend
(etcd answered a 1 MiB key with RESOURCE_EXHAUSTED, an outcome-unknown error, not a refusal)."""
MAX_OWNER_BYTES = 256
"""The longest owner every backend must store, in bytes of UTF-8 (an id, a host name and a pid fit)."""


def _check_name(what: str, value: object, max_bytes: int) -> None:
    if type(value) is str and value.isascii() and 0 < len(value) <= max_bytes:
        return  # the common case, decided without encoding: ASCII is valid UTF-8, a byte a character
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must not be empty")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        # A lone surrogate (e.g. from os.fsdecode of a non-UTF-8 name) has no UTF-8 form: no server
        # can store it, so every backend refuses it here instead of failing in its codec.
        raise ValueError(f"{what} is not valid UTF-8 text: {exc.reason} at index {exc.start}") from None
    if size > max_bytes:
        raise ValueError(f"{what} is {size} bytes of UTF-8; at most {max_bytes} are allowed")


def validate_key(key: object) -> None:
    _check_name("key", key, MAX_KEY_BYTES)


def validate_owner(owner: object) -> None:
    _check_name("owner", owner, MAX_OWNER_BYTES)


def validate_ttl(ttl_ms: object) -> None:
    # bool is an int subclass; True as a TTL is always a bug in the caller.
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int):
        raise ValueError(f"ttl_ms must be an int, got {type(ttl_ms).__name__}")
    if ttl_ms <= 0:
        raise ValueError(f"ttl_ms must be > 0, got {ttl_ms}")


class _Absent:
    """Marks an argument the operation does not take (``None`` is a bad value, not an absence)."""


ABSENT = _Absent()


def validate_call(key: object, owner: object = ABSENT, ttl_ms: object = ABSENT) -> None:
    """Reject bad input identically on every backend, before any I/O: the one place that decides.

    ``ValueError`` for: a key or owner that is not a non-empty ``str``, is not valid UTF-8 (a lone
    surrogate), or is longer than ``MAX_KEY_BYTES`` (1024) / ``MAX_OWNER_BYTES`` (256) bytes of UTF-8;
    a ``ttl_ms`` that is not an ``int`` > 0 (``bool`` included). Every backend can store any key and
    owner that pass, so a call is never valid on one backend and refused, or indeterminate, on another.
    """
    validate_key(key)
    if owner is not ABSENT:
        validate_owner(owner)
    if ttl_ms is not ABSENT:
        validate_ttl(ttl_ms)
