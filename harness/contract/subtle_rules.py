"""Contract rules for subtle bugs: the ones a lock gets wrong while every blatant clause holds.

The first rules only ever ask ``holder()`` from a fresh observer, keep the TTL fixed between acquire
and renew, and draw a handful of tokens from one process. Real lock code goes wrong just outside
that: a client that caches what it saw, a renew that applies another TTL than it reports or makes
the key permanent, tokens from a clock, from a counter that expires when idle, or from a counter
that lives in the client process. Each rule below aims at one of those classes. They register into
the same ``RULES`` list (imported by the package), so ``lockchaos contract`` and the pytest plugin
run them like the others, with the same probe windows and "inconclusive -> retry on a fresh key".
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from typing import Protocol, runtime_checkable

from lockchaos.backends.base import Lease, LockBackend
from lockchaos.backends.clock import NS_PER_MS
from lockchaos.harness.contract.context import (
    ContractContext,
    ContractFailure,
    Inconclusive,
    RuleSkipped,
    Timed,
    expect,
)
from lockchaos.harness.contract.process_client import ClientSpec
from lockchaos.harness.contract.rules import _granted, _lease, _require_fencing, _token, rule

BACK_TO_BACK_GRANTS = 300
"""Enough grants in a row that a token drawn from a millisecond (or coarser) clock repeats."""
IDLE_TTLS = 10
"""How many TTLs a key lies idle before the next grant: past any "expire the counter too" shortcut."""
PROCESS_GRANTS = 3
"""Grants by the second OS process, and then by this one again."""
SECOND_PROCESS_TIMEOUT_S = 60.0


# --- what holder() may be compared on ------------------------------------------------------------


def _require_holder(ctx: ContractContext) -> None:
    if ctx.caps.holder_info == "none":
        raise RuleSkipped("the backend declares holder_info='none': holder() tells nothing")


def _seen_as(ctx: ContractContext, seen: Lease | None, lease: Lease) -> bool:
    """``seen`` (a holder() answer) tells ``lease`` as far as the backend declares it can."""
    if seen is None:
        return False
    info = ctx.caps.holder_info
    if info == "lease":
        return seen == lease
    if info == "owner":
        return seen.owner == lease.owner and seen.token == lease.token
    return True  # presence: someone holds it, which is all it may say


def _probe_held_as(ctx: ContractContext, c: LockBackend, key: str, lease: Lease, until_ns: int,
                   what: str) -> None:
    seen = ctx.probe_held(c, key, until_ns)
    expect(_seen_as(ctx, seen, lease),
           f"{what}: holder() from the same client says {seen!r}, expected {lease!r} "
           f"(compared as holder_info={ctx.caps.holder_info!r})")


def _probe_is_held(ctx: ContractContext, prober: LockBackend, key: str, until_ns: int) -> bool:
    """Whether someone holds ``key``, by a call that completes before ``until_ns`` (else inconclusive):
    ``holder()`` where it tells anything, else an acquire by a bystander, which a held key refuses."""
    if ctx.caps.holder_info != "none":
        return ctx.probe_held(prober, key, until_ns) is not None
    probe = ctx.timed(lambda: prober.acquire(key, ctx.owner("bystander"), ctx.ttl_ms))
    if probe.complete_ns >= until_ns:
        raise Inconclusive("the bystander's acquire completed after the lease could have expired")
    return probe.value is None


def _probe_is_gone(ctx: ContractContext, prober: LockBackend, key: str, last: Timed, ttl: int) -> bool:
    """Whether ``key`` is free once the lease granted or renewed in ``last`` must have expired."""
    if ctx.caps.holder_info != "none":
        return ctx.probe_gone(prober, key, last, ttl) is None
    ctx.require_expiry()
    ctx.sleep_until(ctx.latest_expiry_ns(last, ttl) + 1)
    return prober.acquire(key, ctx.owner("bystander"), ctx.ttl_ms) is not None


# --- holder() from the client that acts ----------------------------------------------------------


@rule
def holder_from_the_same_client_follows_its_calls(ctx: ContractContext) -> None:
    """holder() asked by the client that acquires, renews and releases tells each change at once."""
    _require_holder(ctx)
    c, other = ctx.client(), ctx.client()
    key, owner = ctx.key("own-holder"), ctx.owner("a")
    expect(c.holder(key) is None, "holder() of a never-used key is not None")
    ttl = ctx.ttl_with_room(2000)
    granted = _granted(ctx, c, key, owner, ttl)
    lease = _lease(granted)
    _probe_held_as(ctx, c, key, lease, ctx.earliest_expiry_ns(granted, ttl), "after its own acquire")
    longer = ctx.caps.applied_ttl(ttl + max(ctx.caps.ttl_granularity_ms, 1000))
    renewed = ctx.timed(lambda: c.renew(key, owner, longer))
    new = renewed.value
    expect(isinstance(new, Lease), f"renew by the holder returned {new!r}")
    assert isinstance(new, Lease)
    _probe_held_as(ctx, c, key, new, ctx.earliest_expiry_ns(renewed, longer), "after its own renew")
    expect(c.release(key, owner) is True, "release by the holder did not return True")
    seen = c.holder(key)
    expect(seen is None, f"after its own release, holder() from the same client still says {seen!r}")
    theirs = _granted(ctx, other, key, ctx.owner("b"), ttl)
    _probe_held_as(ctx, c, key, _lease(theirs), ctx.earliest_expiry_ns(theirs, ttl),
                   "after another client took the released key")


@rule
def holder_from_the_same_client_sees_its_lease_expire(ctx: ContractContext) -> None:
    """holder() asked by the client whose lease expired says None once TTL + declared lag are over."""
    _require_holder(ctx)
    c = ctx.client()
    key, owner = ctx.key("own-expiry"), ctx.owner("a")
    ttl = ctx.ttl_ms
    granted = _granted(ctx, c, key, owner, ttl)
    lease = _lease(granted)
    margin = min(ttl // 4, 4 * ctx.slack_ms)
    if margin >= ctx.slack_ms:  # asked while held first, so that a client may cache the answer
        early = ctx.earliest_expiry_ns(granted, ttl)
        ctx.sleep_until(early - margin * NS_PER_MS)
        _probe_held_as(ctx, c, key, lease, early, "before its lease expired")
    gone = ctx.probe_gone(c, key, granted, ttl)
    expect(gone is None, f"holder() from the client whose lease expired still says {gone!r} after TTL "
           f"{ttl} ms + declared lag {ctx.caps.expiry_lag_ms} ms")


# --- renew with another TTL, and renewed leases that must still end ------------------------------


@rule
def renew_applies_the_ttl_it_reports(ctx: ContractContext) -> None:
    """renew with a shorter or a longer TTL than the acquire's makes the key expire by the new TTL."""
    c, prober = ctx.client(), ctx.client()
    lag, slack = ctx.caps.expiry_lag_ms, ctx.slack_ms
    short = ctx.ttl_ms
    # Long enough that the lengthened lease is surely still held when the short one is surely over.
    long = ctx.caps.applied_ttl(2 * short + 2 * lag + 6 * slack)
    shortened, lengthened = ctx.key("renew-shorter"), ctx.key("renew-longer")
    owner = ctx.owner("a")
    granted_short = _granted(ctx, c, lengthened, owner, short)
    _granted(ctx, c, shortened, owner, long)
    cut = _renewed(ctx, c, shortened, owner, short)
    stretched = _renewed(ctx, c, lengthened, owner, long)
    # The shortened lease must be gone by its new TTL, long before the acquire's TTL would end it.
    expect(_probe_is_gone(ctx, prober, shortened, cut, short),
           f"renewed with {short} ms (acquired with {long} ms), the key was still held after {short} ms "
           "+ declared lag: the renew did not apply the TTL it reported")
    # The lengthened one must outlive the acquire's TTL.
    ctx.sleep_until(ctx.latest_expiry_ns(granted_short, short) + 1)
    expect(_probe_is_held(ctx, prober, lengthened, ctx.earliest_expiry_ns(stretched, long)),
           f"renewed with {long} ms (acquired with {short} ms), the key was gone once the acquire's "
           f"{short} ms had run out: the renew did not apply the TTL it reported")


def _renewed(ctx: ContractContext, c: LockBackend, key: str, owner: str, ttl: int) -> Timed:
    renewed = ctx.timed(lambda: c.renew(key, owner, ttl))
    lease = renewed.value
    expect(isinstance(lease, Lease), f"renew by the holder returned {lease!r}")
    assert isinstance(lease, Lease)
    expect(lease.ttl_ms == ctx.caps.applied_ttl(ttl),
           f"renew with {ttl} ms reported {lease.ttl_ms} ms, declared rounding gives {ctx.caps.applied_ttl(ttl)}")
    return renewed


@rule
def renewed_lease_still_expires(ctx: ContractContext) -> None:
    """A lease renewed and then left alone is gone TTL + declared lag after its last renew."""
    c, other = ctx.client(), ctx.client()
    key, owner = ctx.key("renewed-expires"), ctx.owner("a")
    ttl = ctx.ttl_ms
    _granted(ctx, c, key, owner, ttl)
    last = _renewed(ctx, c, key, owner, ttl)
    last = _renewed(ctx, c, key, owner, ttl)
    expect(_probe_is_gone(ctx, other, key, last, ttl), f"a renewed lease was still held {ttl} ms + "
           f"declared lag {ctx.caps.expiry_lag_ms} ms after its last renew")
    if ctx.caps.holder_info != "none":  # (else the probe above was this very acquire)
        expect(other.acquire(key, ctx.owner("b"), ttl) is not None,
               "the key of a renewed lease that ran out could not be acquired")


@rule
def renew_with_another_ttl_keeps_owner_and_token(ctx: ContractContext) -> None:
    """A renew that changes the TTL (longer, then shorter) keeps owner and token, as the renew's lease
    and holder() tell: a backend that must move the key to change its TTL (etcd: a new lease) must not
    hand out the move's revision as the token."""
    c = ctx.client()
    short = ctx.ttl_with_room(2000)
    long = ctx.caps.applied_ttl(2 * short)
    key, owner = ctx.key("renew-ttl-token"), ctx.owner("a")
    lease = _lease(_granted(ctx, c, key, owner, short))
    for ttl in (long, short):
        renewed = c.renew(key, owner, ttl)  # the TTL it applies is renew_applies_the_ttl_it_reports' matter
        expect(renewed is not None and (renewed.owner, renewed.token) == (lease.owner, lease.token),
               f"renew with {ttl} ms (the lease had another TTL) returned {renewed!r}: owner and token must "
               f"stay those of {lease!r}")
        if ctx.caps.holder_info in ("lease", "owner"):
            seen = c.holder(key)
            expect(seen is not None and (seen.owner, seen.token) == (lease.owner, lease.token),
                   f"after a renew with {ttl} ms holder() says {seen!r}: owner and token must stay those of "
                   f"{lease!r}")


@rule
def refused_calls_by_another_owner_leave_the_lease_alone(ctx: ContractContext) -> None:
    """A renew (with a longer TTL) or a release by an owner that does not hold the key is refused and
    leaves the holder's lease ending when it would have: an act-then-check renew that extends first,
    or a release that takes the record away and puts it back with a fresh TTL, keeps it longer."""
    holder, other, prober = ctx.client(), ctx.client(), ctx.client()
    ttl = ctx.ttl_with_room(4 * (ctx.caps.expiry_lag_ms + 2 * ctx.slack_ms))
    long = ctx.caps.applied_ttl(4 * ttl)
    renewed_key, released_key = ctx.key("refused-renew"), ctx.key("refused-release")
    owner, stranger = ctx.owner("a"), ctx.owner("b")
    granted = {k: _granted(ctx, holder, k, owner, ttl) for k in (renewed_key, released_key)}
    ctx.sleep_until(granted[released_key].invoke_ns + ttl * NS_PER_MS // 2)
    refused_renew = other.renew(renewed_key, stranger, long)
    expect(refused_renew is None, f"renew by a non-holder returned {refused_renew!r}")
    refused_release = other.release(released_key, stranger)
    expect(refused_release is False, f"release by a non-holder returned {refused_release!r}")
    for k, what in ((renewed_key, f"a refused renew with {long} ms"), (released_key, "a refused release")):
        expect(_probe_is_gone(ctx, prober, k, granted[k], ttl),
               f"{what} by another owner kept the holder's lease past its own TTL of {ttl} ms + declared lag "
               f"{ctx.caps.expiry_lag_ms} ms")


# --- tokens under stress -------------------------------------------------------------------------


@rule
def tokens_increase_after_a_long_idle_gap(ctx: ContractContext) -> None:
    """A grant after the key lay idle for ten TTLs past expiry carries a larger token than before."""
    _require_fencing(ctx)
    a, b = ctx.client(), ctx.client()
    key = ctx.key("idle-tokens")
    ttl = ctx.caps.applied_ttl(max(ctx.slack_ms, ctx.caps.min_ttl_ms))  # the shortest TTL worth probing
    granted = _granted(ctx, a, key, ctx.owner("a"), ttl)
    first = _token(_lease(granted))
    ctx.sleep_until(ctx.latest_expiry_ns(granted, ttl) + IDLE_TTLS * ttl * NS_PER_MS)
    later = b.acquire(key, ctx.owner("b"), ttl)
    expect(later is not None, "acquire of a key idle for ten TTLs returned None")
    expect(_token(later) > first, f"after {IDLE_TTLS} idle TTLs the token is {_token(later)}, not above "
           f"{first}: the token counter does not outlive an idle key")


@runtime_checkable
class SpawnsClients(Protocol):
    """A contract target whose clients another OS process can open (same factory, same server)."""

    def client_spec(self) -> ClientSpec | None: ...


@rule
def tokens_increase_over_hundreds_of_grants_and_across_processes(ctx: ContractContext) -> None:
    """Hundreds of back-to-back grants, then grants from a second OS process: tokens strictly increase."""
    _require_fencing(ctx)
    clients = [(ctx.client(), ctx.owner("a")), (ctx.client(), ctx.owner("b"))]
    key = ctx.key("many-tokens")
    ttl = ctx.ttl_with_room(2000)
    tokens: list[tuple[str, int]] = []
    for i in range(BACK_TO_BACK_GRANTS):  # acquire-release by alternating clients, as fast as it goes
        c, owner = clients[i % 2]
        tokens += [(f"grant {i + 1} back to back", t) for t in _grants_here(ctx, c, key, owner, ttl, 1)]
    _expect_increasing(tokens)
    # A counter kept in the client's process starts again in another one: a second process must be
    # able to reach the server (not the in-process fake, not a server the contract was not given).
    spec = ctx.server.client_spec() if isinstance(ctx.server, SpawnsClients) else None
    if spec is not None:
        c, owner = clients[0]
        tokens += [("second process", t) for t in _grants_in_second_process(spec, key, ctx.owner("second"), ttl)]
        tokens += [("this process", t) for t in _grants_here(ctx, c, key, owner, ttl, PROCESS_GRANTS)]
        _expect_increasing(tokens)


def _expect_increasing(tokens: list[tuple[str, int]]) -> None:
    for (who_x, x), (who_y, y) in itertools.pairwise(tokens):
        expect(x < y, f"token {y} ({who_y}) is not above the previous {x} ({who_x}): tokens are not "
               f"strictly increasing (last ones: {[t for _, t in tokens[-8:]]})")


def _grants_here(ctx: ContractContext, c: LockBackend, key: str, owner: str, ttl: int, n: int) -> list[int]:
    tokens = []
    for _ in range(n):
        tokens.append(_token(_lease(_granted(ctx, c, key, owner, ttl))))
        expect(c.release(key, owner) is True, "release by the holder failed")
    return tokens


def _grants_in_second_process(spec: ClientSpec, key: str, owner: str, ttl: int) -> list[int]:
    """Run ``process_client`` in a fresh interpreter: its own imports, its own module state."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    argv = [sys.executable, "-m", "lockchaos.harness.contract.process_client", spec.factory, spec.url,
            key, owner, str(ttl), str(PROCESS_GRANTS)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=SECOND_PROCESS_TIMEOUT_S,
                              check=False)
    except subprocess.TimeoutExpired:
        raise Inconclusive(f"the second process did not finish within {SECOND_PROCESS_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ContractFailure(f"the second process's client failed: {tail}")
    tokens = json.loads(done.stdout)
    expect(isinstance(tokens, list) and all(isinstance(t, int) for t in tokens),
           f"the second process's leases carry no int tokens: {done.stdout.strip()!r}")
    return [int(t) for t in tokens]
