"""The contract: one rule per clause of the reference semantics and per declared capability.

A rule is a function of a ``ContractContext`` that raises ``ContractFailure`` when the backend
breaks the clause named by the rule; its docstring is the clause, shown to adapter authors.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lockchaos.backends.base import MAX_KEY_BYTES, MAX_OWNER_BYTES, Lease, LockBackend
from lockchaos.backends.clock import NS_PER_MS
from lockchaos.harness.contract.context import (
    ContractContext,
    ContractFailure,
    Inconclusive,
    RuleSkipped,
    Timed,
    expect,
)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    check: Callable[[ContractContext], None]

    @property
    def statement(self) -> str:
        return (self.check.__doc__ or self.name).strip().splitlines()[0]


RULES: list[Rule] = []


def rule(check: Callable[[ContractContext], None]) -> Callable[[ContractContext], None]:
    RULES.append(Rule(check.__name__, check))
    return check


def _granted(ctx: ContractContext, backend: LockBackend, key: str, owner: str, ttl_ms: int) -> Timed:
    """Acquire that must succeed: the rules below need a held key to talk about."""
    granted = ctx.timed(lambda: backend.acquire(key, owner, ttl_ms))
    lease = granted.value
    expect(isinstance(lease, Lease), f"acquire of free key {key!r} returned {lease!r}, not a Lease")
    return granted


def _lease(timed: Timed) -> Lease:
    assert isinstance(timed.value, Lease)
    return timed.value


def _token(lease: Lease | None) -> int:
    """The fencing token of a lease from a lock that declared fencing tokens (None is a violation)."""
    expect(lease is not None and lease.token is not None,
           f"{lease!r} carries no token, yet the backend declared fencing_tokens=True")
    assert lease is not None and lease.token is not None
    return lease.token


def _require_fencing(ctx: ContractContext) -> None:
    if not ctx.caps.fencing_tokens:
        raise RuleSkipped("the backend does not declare fencing-grade tokens")


def _holder_shows(ctx: ContractContext, seen: Lease | None, lease: Lease | None) -> bool:
    """Whether ``holder()``'s answer is ``lease`` as far as ``capabilities.holder_info`` lets it tell."""
    info = ctx.caps.holder_info
    if seen is None or lease is None:
        return seen is None and lease is None
    if info == "lease":
        return seen == lease
    if info == "owner":
        return seen.key == lease.key and seen.owner == lease.owner and seen.token == lease.token
    return seen.key == lease.key  # presence: only that someone holds it


def _expect_holder(ctx: ContractContext, c: LockBackend, key: str, lease: Lease | None, message: str) -> None:
    """``holder()`` shows ``lease`` (or a free key), judged only by what the backend declares it can tell;
    nothing is asked of a backend whose ``holder()`` tells nothing (``holder_info="none"``)."""
    if ctx.caps.holder_info == "none":
        return
    seen = c.holder(key)
    expect(_holder_shows(ctx, seen, lease), f"{message} (holder: {seen!r}, expected {lease!r} as far as "
           f"holder_info={ctx.caps.holder_info!r} tells)")


# --- acquire and holder ---------------------------------------------------------------------------


@rule
def acquire_free_key_grants(ctx: ContractContext) -> None:
    """acquire on a free key grants a Lease for that key and owner with the applied TTL."""
    c = ctx.client()
    key, owner = ctx.key("grant"), ctx.owner("a")
    lease = _lease(_granted(ctx, c, key, owner, ctx.ttl_ms))
    expect(lease.key == key, f"lease.key is {lease.key!r}, expected {key!r}")
    expect(lease.owner == owner, f"lease.owner is {lease.owner!r}, expected {owner!r}")
    if ctx.caps.fencing_tokens:
        expect(isinstance(lease.token, int), f"lease.token is {lease.token!r}, not an int")
    else:
        expect(lease.token is None, f"lease.token is {lease.token!r}, yet the backend declared fencing_tokens=False "
               "(a token no checker may rely on must not be made up)")
    expect(lease.ttl_ms == ctx.caps.applied_ttl(ctx.ttl_ms),
           f"lease.ttl_ms is {lease.ttl_ms}, capabilities say {ctx.caps.applied_ttl(ctx.ttl_ms)}")


@rule
def acquire_is_not_reentrant(ctx: ContractContext) -> None:
    """acquire of a key held by the same owner returns None (locks are not re-entrant)."""
    c = ctx.client()
    key, owner = ctx.key("reentrant"), ctx.owner("a")
    first = _lease(_granted(ctx, c, key, owner, ctx.ttl_with_room(2000)))
    again = c.acquire(key, owner, ctx.ttl_ms)
    expect(again is None, f"second acquire by the holder returned {again!r}")
    _expect_holder(ctx, c, key, first, "a refused re-entrant acquire changed the holder")


@rule
def acquire_held_by_other_fails(ctx: ContractContext) -> None:
    """acquire of a key another owner holds returns None, from any client."""
    a, b = ctx.client(), ctx.client()
    key = ctx.key("held")
    first = _lease(_granted(ctx, a, key, ctx.owner("a"), ctx.ttl_with_room(2000)))
    other = b.acquire(key, ctx.owner("b"), ctx.ttl_ms)
    expect(other is None, f"acquire of a held key by another owner returned {other!r}")
    _expect_holder(ctx, b, key, first, "a refused acquire changed the holder")


@rule
def holder_reports_current_lease(ctx: ContractContext) -> None:
    """holder returns None for a free key and, for a held one, what capabilities.holder_info declares."""
    a, b = ctx.client(), ctx.client()
    key = ctx.key("holder")
    info = ctx.caps.holder_info
    if info == "none":
        try:
            told = b.holder(key)
        except NotImplementedError:
            return
        raise ContractFailure(f"holder_info='none' declared, but holder() answered {told!r} instead of raising "
                              "NotImplementedError")
    expect(b.holder(key) is None, "holder of a never-used key is not None")
    lease = _lease(_granted(ctx, a, key, ctx.owner("a"), ctx.ttl_with_room(2000)))
    seen = b.holder(key)
    expected = {"lease": lease, "owner": Lease(key, lease.owner, lease.token, 0),
                "presence": Lease(key, "", None, 0)}[info]
    expect(seen == expected, f"holder from another client is {seen!r}; holder_info={info!r} declares {expected!r}")


@rule
def acquire_is_atomic_under_contention(ctx: ContractContext) -> None:
    """Many clients acquiring one free key at once: exactly one wins, every round.

    A backend declaring ``spurious_refusals`` (a quorum lock whose contenders split the votes) may see
    nobody win a round: never two winners, and the rule is then skipped with the declared reason."""
    threads, rounds = 8, 25
    clients = [ctx.client() for _ in range(threads)]
    ttl = ctx.ttl_with_room(5000)
    nobody: list[int] = []
    for round_no in range(rounds):
        key = ctx.key(f"race{round_no}")
        results = _race(ctx, clients, key, ttl)
        errors = [r for r in results if isinstance(r, Exception)]
        expect(not errors, f"round {round_no}: acquire raised {errors[0]!r}" if errors else "")
        winners = [r for r in results if isinstance(r, Lease)]
        if not winners and ctx.caps.spurious_refusals:
            nobody.append(round_no)
            continue
        expect(len(winners) == 1,
               f"round {round_no}: {len(winners)} of {threads} simultaneous acquires won "
               f"({sorted(w.owner for w in winners)})")
        for c in clients[:1]:
            _expect_holder(ctx, c, key, winners[0], f"round {round_no}: the holder is not the winner")
    if nobody:
        raise RuleSkipped(f"nobody won {len(nobody)} of {rounds} rounds (e.g. round {nobody[0]}: 0 of {threads} "
                          "simultaneous acquires won), never two: the declared hazard of spurious_refusals=True "
                          "(informational)")


def _race(ctx: ContractContext, clients: list[LockBackend], key: str, ttl: int) -> list[object]:
    """Every client calls acquire on ``key`` at once (released by one barrier)."""
    barrier = threading.Barrier(len(clients))
    results: list[object] = [None] * len(clients)

    def contend(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = clients[i].acquire(key, ctx.owner(f"w{i}"), ttl)
        except Exception as exc:
            results[i] = exc

    workers = [threading.Thread(target=contend, args=(i,)) for i in range(len(clients))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    return results


# --- renew ----------------------------------------------------------------------------------------


@rule
def renew_by_owner_extends(ctx: ContractContext) -> None:
    """renew by the holder keeps owner and token and pushes expiry to now + TTL."""
    c = ctx.client()
    key, owner = ctx.key("renew"), ctx.owner("a")
    lag, slack = ctx.caps.expiry_lag_ms, ctx.slack_ms
    # Room to renew after the old lease could have lagged out, and probe before the new one ends.
    ttl = ctx.ttl_with_room(2 * (lag + 3 * slack))
    granted = _granted(ctx, c, key, owner, ttl)
    lease = _lease(granted)
    ctx.sleep_until(granted.invoke_ns + ttl * NS_PER_MS // 2)
    renewed = ctx.timed(lambda: c.renew(key, owner, ttl))
    new = renewed.value
    expect(isinstance(new, Lease), f"renew by the holder returned {new!r}")
    assert isinstance(new, Lease)
    expect((new.owner, new.token) == (lease.owner, lease.token),
           f"renew changed the lease from {lease!r} to {new!r}")
    expect(new.ttl_ms == ctx.caps.applied_ttl(ttl), f"renew applied TTL {new.ttl_ms}, expected "
           f"{ctx.caps.applied_ttl(ttl)}")
    if ctx.caps.holder_info == "none":
        return  # whether the renewed lease outlived the first one cannot be asked of holder()
    # After the first lease surely expired, the renewed one must still be held.
    ctx.sleep_until(ctx.latest_expiry_ns(granted, ttl) + 1)
    seen = ctx.probe_held(c, key, ctx.earliest_expiry_ns(renewed, ttl))
    expect(seen is not None and (ctx.caps.holder_info == "presence" or seen.owner == owner),
           f"renewed lease was gone when only the original TTL had run out (holder: {seen!r})")


@rule
def renew_many_times_keeps_the_lease(ctx: ContractContext) -> None:
    """Renewing repeatedly before each expiry holds the lease well past its first TTL."""
    c = ctx.client()
    key, owner = ctx.key("renew-many"), ctx.owner("a")
    ttl = ctx.ttl_with_room(4 * (ctx.caps.expiry_lag_ms + 2 * ctx.slack_ms))
    granted = _granted(ctx, c, key, owner, ttl)
    first, last_invoke = _lease(granted), granted.invoke_ns
    for i in range(4):
        ctx.clock.sleep(ttl / 1000 / 3)
        if ctx.now_ns() >= last_invoke + ttl * NS_PER_MS:
            raise Inconclusive("the machine slept past the lease before the renewal was sent")
        renewal = ctx.timed(lambda: c.renew(key, owner, ttl))
        renewed, last_invoke = renewal.value, renewal.invoke_ns
        expect(isinstance(renewed, Lease) and renewed.token == first.token,
               f"renewal {i + 1} returned {renewed!r}")
    if ctx.caps.holder_info != "none":
        seen = c.holder(key)
        expect(seen is not None and (ctx.caps.holder_info == "presence" or
                                     (seen.owner, seen.token) == (first.owner, first.token)),
               f"lease lost after renewals: {seen!r}")


@rule
def renew_by_other_owner_fails(ctx: ContractContext) -> None:
    """renew by an owner that does not hold the key returns None and changes nothing."""
    a, b = ctx.client(), ctx.client()
    key = ctx.key("renew-other")
    lease = _lease(_granted(ctx, a, key, ctx.owner("a"), ctx.ttl_with_room(2000)))
    stolen = b.renew(key, ctx.owner("b"), ctx.ttl_ms)
    expect(stolen is None, f"renew by a non-holder returned {stolen!r}")
    _expect_holder(ctx, a, key, lease, "a refused renew changed the holder")


@rule
def renew_of_free_key_fails(ctx: ContractContext) -> None:
    """renew of a key nobody holds returns None and does not create a lease."""
    c = ctx.client()
    key = ctx.key("renew-free")
    expect(c.renew(key, ctx.owner("a"), ctx.ttl_ms) is None, "renew of a free key succeeded")
    _expect_holder(ctx, c, key, None, "renew of a free key created a holder")


@rule
def renew_after_expiry_fails(ctx: ContractContext) -> None:
    """renew after the lease expired returns None; the key stays free."""
    c = ctx.client()
    key, owner = ctx.key("renew-late"), ctx.owner("a")
    granted = _granted(ctx, c, key, owner, ctx.ttl_ms)
    expect(ctx.probe_gone(c, key, granted, ctx.ttl_ms) is None, "lease outlived TTL + declared lag")
    late = c.renew(key, owner, ctx.ttl_ms)
    expect(late is None, f"renew after expiry returned {late!r}")
    _expect_holder(ctx, c, key, None, "renew after expiry revived the lease")


# --- release --------------------------------------------------------------------------------------


@rule
def release_by_owner_frees_key(ctx: ContractContext) -> None:
    """release by the holder returns True; the key is free and another owner can acquire it."""
    a, b = ctx.client(), ctx.client()
    key = ctx.key("release")
    _granted(ctx, a, key, ctx.owner("a"), ctx.ttl_with_room(2000))
    expect(a.release(key, ctx.owner("a")) is True, "release by the holder did not return True")
    _expect_holder(ctx, b, key, None, "key still held after its holder released it")
    expect(b.acquire(key, ctx.owner("b"), ctx.ttl_ms) is not None, "released key could not be acquired")


@rule
def release_by_other_owner_fails(ctx: ContractContext) -> None:
    """release by a non-holder returns False (no exception) and the holder keeps the lease."""
    a, b = ctx.client(), ctx.client()
    key = ctx.key("release-other")
    lease = _lease(_granted(ctx, a, key, ctx.owner("a"), ctx.ttl_with_room(2000)))
    expect(b.release(key, ctx.owner("b")) is False, "release by a non-holder did not return False")
    _expect_holder(ctx, a, key, lease, "release by a non-holder changed the holder")


@rule
def release_of_free_key_fails(ctx: ContractContext) -> None:
    """release of a key nobody holds returns False."""
    c = ctx.client()
    expect(c.release(ctx.key("release-free"), ctx.owner("a")) is False, "release of a free key was True")


@rule
def release_after_expiry_fails(ctx: ContractContext) -> None:
    """release after the lease expired returns False, and does not free a later holder's lease."""
    a, b = ctx.client(), ctx.client()
    key = ctx.key("release-late")
    granted = _granted(ctx, a, key, ctx.owner("a"), ctx.ttl_ms)
    expect(ctx.probe_gone(a, key, granted, ctx.ttl_ms) is None, "lease outlived TTL + declared lag")
    expect(a.release(key, ctx.owner("a")) is False, "release after expiry returned True")
    later = _lease(_granted(ctx, b, key, ctx.owner("b"), ctx.ttl_with_room(2000)))
    expect(a.release(key, ctx.owner("a")) is False, "stale owner released the new holder's lease")
    _expect_holder(ctx, b, key, later, "stale release changed the new holder")


# --- expiry and tokens ----------------------------------------------------------------------------


@rule
def expired_lease_frees_key(ctx: ContractContext) -> None:
    """Within TTL + declared expiry lag the key is free and another owner can acquire it."""
    a, b = ctx.client(), ctx.client()
    key = ctx.key("expiry")
    granted = _granted(ctx, a, key, ctx.owner("a"), ctx.ttl_ms)
    gone = ctx.probe_gone(b, key, granted, ctx.ttl_ms)
    expect(gone is None, f"lease still visible after TTL + declared lag: {gone!r}")
    expect(b.acquire(key, ctx.owner("b"), ctx.ttl_ms) is not None, "expired key could not be acquired")


@rule
def tokens_increase_across_release(ctx: ContractContext) -> None:
    """Tokens strictly increase per key across acquire / release / acquire, whoever acquires."""
    _require_fencing(ctx)
    a, b = ctx.client(), ctx.client()
    key = ctx.key("tokens")
    tokens = []
    for i in range(6):
        c, owner = (a, ctx.owner("a")) if i % 2 == 0 else (b, ctx.owner("b"))
        tokens.append(_token(_lease(_granted(ctx, c, key, owner, ctx.ttl_with_room(2000)))))
        expect(c.release(key, owner), "release by the holder failed")
    expect(all(x < y for x, y in itertools.pairwise(tokens)),
           f"tokens not strictly increasing: {tokens}")


@rule
def tokens_increase_across_expiry(ctx: ContractContext) -> None:
    """A lease granted after another expired carries a larger token."""
    _require_fencing(ctx)
    a, b = ctx.client(), ctx.client()
    key = ctx.key("tokens-expiry")
    granted = _granted(ctx, a, key, ctx.owner("a"), ctx.ttl_ms)
    expect(ctx.probe_gone(b, key, granted, ctx.ttl_ms) is None, "lease outlived TTL + declared lag")
    second = _lease(_granted(ctx, b, key, ctx.owner("b"), ctx.ttl_ms))
    expect(_token(second) > _token(_lease(granted)),
           f"token after expiry {second.token} is not above {_lease(granted).token}")


# --- bad input ------------------------------------------------------------------------------------

_BAD_KEYS: list[object] = ["", None, 42, b"key"]
_BAD_OWNERS: list[object] = ["", None, 7, b"me"]
_BAD_TTLS: list[object] = [0, -1, 1.5, "100", None, True]


@rule
def bad_input_raises_value_error(ctx: ContractContext) -> None:
    """Empty or non-str key/owner, non-int or non-positive TTL raise ValueError and change nothing."""
    c: Any = ctx.client()  # deliberately called with wrong types
    key, owner, ttl = ctx.key("bad"), ctx.owner("a"), ctx.ttl_ms
    calls = _calls_with_bad(key, owner, ttl, _BAD_KEYS, _BAD_OWNERS)
    for bad in _BAD_TTLS:
        calls += [("acquire", (key, owner, bad)), ("renew", (key, owner, bad))]
    _each_raises_value_error(c, calls, lambda op, args: f"{op}{args!r}")
    _expect_holder(ctx, c, key, None, "a rejected call changed the key's state")


Call = tuple[str, tuple[object, ...]]


def _calls_with_bad(key: str, owner: str, ttl: int, bad_keys: Sequence[object],
                    bad_owners: Sequence[object]) -> list[Call]:
    """Every operation once with each bad key, and each one taking an owner with each bad owner."""
    calls: list[Call] = []
    for bad in bad_keys:
        calls += [("acquire", (bad, owner, ttl)), ("renew", (bad, owner, ttl)),
                  ("release", (bad, owner)), ("holder", (bad,))]
    for bad in bad_owners:
        calls += [("acquire", (key, bad, ttl)), ("renew", (key, bad, ttl)), ("release", (key, bad))]
    return calls


def _each_raises_value_error(c: Any, calls: list[Call], label: Callable[[str, tuple[object, ...]], str]) -> None:
    for op, args in calls:
        try:
            result = getattr(c, op)(*args)
        except ValueError:
            continue
        except Exception as exc:
            raise ContractFailure(f"{label(op, args)} raised {type(exc).__name__}, not ValueError: {exc}") from None
        raise ContractFailure(f"{label(op, args)} returned {result!r} instead of raising ValueError")


def _padded(base: str, size: int, fill: str = "\u00e9") -> str:
    """``base`` padded to exactly ``size`` bytes of UTF-8 with two-byte characters (then one ASCII
    byte if needed), so that an adapter counting characters instead of bytes shows up."""
    room = size - len(base.encode())
    return base + fill * (room // 2) + "x" * (room % 2)


@rule
def names_beyond_the_shared_limits_raise_value_error(ctx: ContractContext) -> None:
    """A key or owner that is not valid UTF-8, or longer than 1024 / 256 bytes of UTF-8, raises
    ValueError before any I/O; a key and an owner exactly at the limits work."""
    c: Any = ctx.client()
    key, owner, ttl = ctx.key("limits"), ctx.owner("a"), ctx.ttl_ms
    bad_keys = [key + "\ud800", "\udcff" + key, _padded(key, MAX_KEY_BYTES + 1)]
    bad_owners = [owner + "\ud800", _padded(owner, MAX_OWNER_BYTES + 1)]
    _each_raises_value_error(c, _calls_with_bad(key, owner, ttl, bad_keys, bad_owners),
                             lambda op, args: f"{op}({', '.join(_shown(a) for a in args)})")
    longest_key, longest_owner = _padded(key, MAX_KEY_BYTES), _padded(owner, MAX_OWNER_BYTES)
    lease = _lease(_granted(ctx, c, longest_key, longest_owner, ctx.ttl_with_room(2000)))
    expect(lease.key == longest_key and lease.owner == longest_owner,
           f"the lease of a {MAX_KEY_BYTES}-byte key and a {MAX_OWNER_BYTES}-byte owner names another "
           f"key or owner ({len(lease.key.encode())} and {len(lease.owner.encode())} bytes)")
    if ctx.caps.holder_info in ("lease", "owner"):
        seen = c.holder(longest_key)
        expect(seen is not None and seen.owner == longest_owner,
               f"holder of a {MAX_KEY_BYTES}-byte key does not name its {MAX_OWNER_BYTES}-byte owner")
    expect(c.release(longest_key, longest_owner) is True, "release of a key at the length limit failed")


def _shown(arg: object) -> str:
    """An argument for a failure message: long names by their size, not 1 KiB of text."""
    if isinstance(arg, str) and len(arg) > 40:
        return f"<{len(arg)} chars, {len(arg.encode('utf-8', 'surrogatepass'))} bytes>"
    return repr(arg)


# --- declared capabilities ------------------------------------------------------------------------


def _requests_off_grid(ctx: ContractContext) -> list[int]:
    """Requested TTLs that a backend rounding more coarsely than it declares would round away."""
    g = ctx.caps.ttl_granularity_ms
    base = max(ctx.ttl_ms, ctx.caps.min_ttl_ms)
    return sorted({base + g // 2 + 1 if g > 1 else base + 37, base + g + 1, base + 2 * g - 1})


@rule
def declared_ttl_rounding_is_applied(ctx: ContractContext) -> None:
    """The applied TTL is the declared rounding of the request, in the lease and in behaviour."""
    c = ctx.client()
    for requested in _requests_off_grid(ctx):
        applied = ctx.caps.applied_ttl(requested)
        key = ctx.key(f"round{requested}")
        granted = _granted(ctx, c, key, ctx.owner("a"), requested)
        expect(_lease(granted).ttl_ms == applied,
               f"requested {requested} ms: lease says {_lease(granted).ttl_ms} ms, declared rounding "
               f"gives {applied} ms")
        _expect_lives_exactly(ctx, c, key, granted, applied, f"requested {requested} ms")


@rule
def declared_minimum_ttl_is_applied(ctx: ContractContext) -> None:
    """A TTL below the declared minimum is raised to it, and the lease lives that long."""
    if ctx.caps.refuses_below_min:
        raise RuleSkipped("the backend declares it refuses TTLs below its minimum "
                          "(checked by declared_refusal_below_minimum)")
    c = ctx.client()
    applied = ctx.caps.applied_ttl(1)
    key = ctx.key("min")
    granted = _granted(ctx, c, key, ctx.owner("a"), 1)
    expect(_lease(granted).ttl_ms == applied,
           f"requested 1 ms: lease says {_lease(granted).ttl_ms} ms, declared minimum gives {applied} ms")
    _expect_lives_exactly(ctx, c, key, granted, applied, "requested 1 ms")


def _expect_lives_exactly(
    ctx: ContractContext, c: LockBackend, key: str, granted: Timed, applied: int, label: str
) -> None:
    """Held until just before the applied TTL, gone by TTL + declared lag."""
    margin = min(applied // 4, 4 * ctx.slack_ms)
    if margin >= ctx.slack_ms:  # a TTL too short to probe before expiry is only checked for being gone
        early = ctx.earliest_expiry_ns(granted, applied)
        ctx.sleep_until(early - margin * NS_PER_MS)
        seen = ctx.probe_held(c, key, early)
        expect(seen is not None, f"{label}: lease gone before its applied TTL of {applied} ms")
    gone = ctx.probe_gone(c, key, granted, applied)
    expect(gone is None, f"{label}: lease still held after applied TTL {applied} ms + declared lag "
           f"{ctx.caps.expiry_lag_ms} ms")


@rule
def declared_durability_holds_across_restart(ctx: ContractContext) -> None:
    """A durable backend keeps the holder and its token counter across a server restart."""
    if ctx.server is None:
        raise RuleSkipped("no server control: the contract was not given a server it may restart")
    if not ctx.caps.durable:
        raise RuleSkipped("the backend does not declare durability")
    a = ctx.client()
    key = ctx.key("durable")
    ttl = ctx.ttl_with_room(30_000)
    lease = _lease(_granted(ctx, a, key, ctx.owner("a"), ttl))
    ctx.server.restart_server()
    b = ctx.client()
    if ctx.caps.holder_info != "none":
        seen = _retry_unavailable(ctx, lambda: b.holder(key))
        expect(_holder_shows(ctx, seen, lease), f"after a restart the holder is {seen!r}, expected {lease!r}")
    else:  # the lease must still refuse another owner
        other = _retry_unavailable(ctx, lambda: b.acquire(key, ctx.owner("c"), ctx.ttl_ms))
        expect(other is None, f"after a restart another owner was granted the held key: {other!r}")
    # The holder's own client releases, as its process would: a lock library keeps ownership in the
    # lock object of the client that acquired, so a second client can never release it.
    released, retried = _release_after_restart(ctx, a, key, ctx.owner("a"))
    expect(released or retried, "release after restart failed")
    after = b.acquire(key, ctx.owner("b"), ctx.ttl_ms)
    expect(after is not None, "a released key could not be acquired after a restart")
    if ctx.caps.fencing_tokens:
        expect(_token(after) > _token(lease), f"token after restart {after!r} is not above {lease.token}")


def _release_after_restart(ctx: ContractContext, c: LockBackend, key: str, owner: str) -> tuple[bool, bool]:
    """``(released, retried)``: the release, retried on BackendUnavailable for a bounded while.

    A retried release may answer False because the failed attempt did free the key (its outcome
    was unknown); the acquire that follows then shows whether the key really is free.
    """
    from lockchaos.backends.base import BackendUnavailable

    deadline = ctx.now_ns() + 10_000 * NS_PER_MS
    retried = False
    while True:
        try:
            return c.release(key, owner), retried
        except BackendUnavailable:
            if ctx.now_ns() > deadline:
                raise ContractFailure("server unavailable for 10 s after restart") from None
            retried = True
            ctx.clock.sleep(0.05)


def _retry_unavailable(ctx: ContractContext, call: Callable[[], Lease | None]) -> Lease | None:
    """A freshly restarted server may refuse for a moment; give it a bounded while."""
    from lockchaos.backends.base import BackendUnavailable

    deadline = ctx.now_ns() + 10_000 * NS_PER_MS
    while True:
        try:
            return call()
        except BackendUnavailable:
            if ctx.now_ns() > deadline:
                raise ContractFailure("server unavailable for 10 s after restart") from None
            ctx.clock.sleep(0.05)


# --- declared TTL refusals and truncation (issue 13: lock libraries that truncate or refuse TTLs) ---


@rule
def declared_refusal_below_minimum(ctx: ContractContext) -> None:
    """A backend declaring refuses_below_min raises ValueError for a TTL below its minimum, changing nothing."""
    if not ctx.caps.refuses_below_min:
        raise RuleSkipped("the backend does not declare refuses_below_min (low TTLs are raised to the minimum)")
    c = ctx.client()
    key, owner = ctx.key("refuse"), ctx.owner("a")
    low = sorted({1, ctx.caps.min_ttl_ms - 1} - {0})
    if not low or ctx.caps.min_ttl_ms == 1:
        raise RuleSkipped("a minimum of 1 ms leaves no valid TTL below it to refuse")
    for ttl in low:
        expect(ctx.caps.refuses_ttl(ttl), f"internal: {ttl} ms is not below the declared minimum")
        for op in ("acquire", "renew"):
            try:
                result = c.acquire(key, owner, ttl) if op == "acquire" else c.renew(key, owner, ttl)
            except ValueError:
                continue
            except Exception as exc:
                raise ContractFailure(f"{op} with ttl_ms={ttl} (below the declared minimum {ctx.caps.min_ttl_ms} "
                                      f"ms) raised {type(exc).__name__}, not ValueError: {exc}") from None
            raise ContractFailure(f"{op} with ttl_ms={ttl} returned {result!r}; the backend declares it refuses "
                                  f"TTLs below {ctx.caps.min_ttl_ms} ms with ValueError")
    _expect_holder(ctx, c, key, None, "a refused TTL changed the key's state")
    at_min = ctx.timed(lambda: c.acquire(key, owner, ctx.caps.min_ttl_ms))
    if at_min.value is None:
        # A lock that budgets the round trip out of the lease (Redlock's validity: pottery) may refuse a
        # free key at its minimum when the call was slow: a timing miss, retried on a fresh key (five
        # misses in a row fail the rule).
        raise Inconclusive(f"acquire of free key {key!r} at the declared minimum {ctx.caps.min_ttl_ms} ms "
                           "was refused")
    expect(isinstance(at_min.value, Lease), f"acquire at the declared minimum returned {at_min.value!r}")
    granted = _lease(at_min)
    expect(granted.ttl_ms == ctx.caps.applied_ttl(ctx.caps.min_ttl_ms),
           f"the minimum TTL {ctx.caps.min_ttl_ms} ms was applied as {granted.ttl_ms} ms")


@rule
def declared_refusal_happens_before_io(ctx: ContractContext) -> None:
    """A declared refusal is decided before any I/O: ValueError even while the server cannot be reached."""
    if not ctx.caps.refuses_below_min or ctx.caps.min_ttl_ms == 1:
        raise RuleSkipped("the backend does not declare refuses_below_min above 1 ms")
    c = ctx.client()
    c.close()  # a closed client can do no I/O: only a check made before any can still answer ValueError
    try:
        c.acquire(ctx.key("refuse-io"), ctx.owner("a"), ctx.caps.min_ttl_ms - 1)
    except ValueError:
        return
    except Exception as exc:
        raise ContractFailure(f"a refused TTL on a closed client raised {type(exc).__name__}, not ValueError: "
                              "the refusal is not decided before I/O") from None
    raise ContractFailure("a refused TTL on a closed client returned instead of raising ValueError")


@rule
def declared_truncation_expires_at_the_truncated_ttl(ctx: ContractContext) -> None:
    """A backend declaring ttl_rounding='down' grants, and expires at, the truncated TTL (1.9 s -> 1 s)."""
    if ctx.caps.ttl_rounding != "down" or ctx.caps.ttl_granularity_ms == 1:
        raise RuleSkipped("the backend does not declare truncating TTLs (ttl_rounding='down' over a granularity)")
    g = ctx.caps.ttl_granularity_ms
    c = ctx.client()
    requested = max(ctx.ttl_ms, ctx.caps.min_ttl_ms) + g - 1  # just under the next step: truncation shows most
    applied = ctx.caps.applied_ttl(requested)
    expect(applied < requested, f"internal: {requested} ms does not truncate")
    key = ctx.key("truncate")
    granted = _granted(ctx, c, key, ctx.owner("a"), requested)
    expect(_lease(granted).ttl_ms == applied,
           f"requested {requested} ms: lease says {_lease(granted).ttl_ms} ms; truncation declares {applied} ms")
    # Gone at the truncated TTL (+ lag), long before the requested one.
    gone = ctx.probe_gone(c, key, granted, applied)
    if ctx.now_ns() >= ctx.earliest_expiry_ns(granted, requested):
        raise Inconclusive("the probe ran after the requested TTL: it cannot tell truncation from rounding")
    expect(gone is None, f"requested {requested} ms, declared truncated to {applied} ms, but the lease was still "
           f"held after {applied} ms + declared lag {ctx.caps.expiry_lag_ms} ms: the TTL is not truncated")


def rule_names() -> list[str]:
    return [r.name for r in RULES]


def find_rule(name: str) -> Rule:
    for r in RULES:
        if r.name == name:
            return r
    raise KeyError(name)


__all__ = ["RULES", "ContractFailure", "Rule", "find_rule", "rule_names"]
