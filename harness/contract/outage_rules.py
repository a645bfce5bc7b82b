"""Contract rules for a server that does not answer: every call's outcome is then unknown.

A client that cannot tell whether a call took effect must raise ``BackendUnavailable`` (the history
records it as indeterminate); an answer is a claim about the lock it cannot have. Real adapters get
this wrong by swallowing the error into a plausible value: "nobody holds it" from ``holder()``, "not
acquired" from an acquire (sometimes after "undoing" it), "lost the lock" from a renew, "was not
mine" or "done" from a release. The soaks catch some of these only when a fault lands on the right
call; here the server is frozen (SIGSTOP, or the fake's pause) while one call of each kind is in
flight, so each must raise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from lockchaos.backends.base import BackendUnavailable, FaultUnsupported
from lockchaos.harness.contract.context import ContractContext, RuleSkipped, Timed, expect
from lockchaos.harness.contract.rules import _granted, rule

FROZEN_CALL_BOUND_S = 30.0
"""How long a call to a frozen server may block before it counts as hung: far above any client timeout
a lock should have (ours: 1-2 s), short enough that the contract ends."""
RESUMED_CALL_BOUND_S = 30.0
SETUP_BOUND_S = 30.0
"""How long a client may take to set up its call (acquire a lease) on the live server."""
"""How long a call still blocked when the server resumes may take to return after that."""


@runtime_checkable
class PausesServer(Protocol):
    """A contract target that can freeze its server with sockets open, and thaw it."""

    def pause_server(self) -> None: ...

    def resume_server(self) -> None: ...


@dataclass
class _Call:
    """One client on a thread of its own, which sets up (a lease to renew or release) and, once the
    server is frozen, makes one call: the thread that acquired is the one that calls, as lock libraries
    keeping ownership in thread-local state (redis-py's ``Lock``) require."""

    name: str
    setup: Callable[[], object]
    call: Callable[[], object]
    frozen: threading.Event
    ready: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    returned: object = None
    raised: BaseException | None = None
    setup_failed: BaseException | None = None

    def run(self) -> None:
        try:
            self.setup()
        except BaseException as exc:  # reported by the rule, which must not freeze anything then
            self.setup_failed = exc
            self.ready.set()
            self.done.set()
            return
        self.ready.set()
        if not self.frozen.wait(SETUP_BOUND_S):
            self.done.set()
            return
        try:
            self.returned = self.call()
        except BaseException as exc:  # judged below, whatever it is
            self.raised = exc
        finally:
            self.done.set()


@rule
def calls_to_a_frozen_server_raise_backend_unavailable(ctx: ContractContext) -> None:
    """With the server frozen, acquire, renew, release and holder each raise ``BackendUnavailable``
    within a bound: none may answer "not acquired", "lost", "not yours", "done" or "free"."""
    server = ctx.server
    if not isinstance(server, PausesServer):
        raise RuleSkipped("no server control that can freeze the server (the contract was not given one)")
    ttl = ctx.ttl_with_room(60_000)  # the leases outlive the outage and its timeouts
    acquirer, renewer, releaser, looker = ctx.client(), ctx.client(), ctx.client(), ctx.client()
    fresh, renewed, released = ctx.key("frozen-acquire"), ctx.key("frozen-renew"), ctx.key("frozen-release")
    warm = ctx.key("frozen-warm")
    owner = ctx.owner("a")
    frozen = threading.Event()

    def warm_up() -> None:  # a round trip before the freeze, so the call has a live connection to use
        _granted(ctx, acquirer, warm, owner, ctx.ttl_ms)
        expect(acquirer.release(warm, owner) is True, "release by the holder did not return True")

    calls = [
        _Call("acquire of a free key", warm_up, lambda: acquirer.acquire(fresh, owner, ttl), frozen),
        _Call("renew by the holder", lambda: _granted(ctx, renewer, renewed, owner, ttl),
              lambda: renewer.renew(renewed, owner, ttl), frozen),
        _Call("release by the holder", lambda: _granted(ctx, releaser, released, owner, ttl),
              lambda: releaser.release(released, owner), frozen),
    ]
    if ctx.caps.holder_info != "none":
        calls.append(_Call("holder() of a held key", lambda: looker.holder(warm),
                           lambda: looker.holder(renewed), frozen))
    for c in calls:
        threading.Thread(target=c.run, name=f"lockchaos-frozen-{c.name}", daemon=True).start()
    try:
        for c in calls:
            expect(c.ready.wait(SETUP_BOUND_S), f"{c.name}: setting up took over {SETUP_BOUND_S:g} s")
            if c.setup_failed is not None:
                raise c.setup_failed
        try:
            server.pause_server()
        except FaultUnsupported as exc:
            raise RuleSkipped(f"the server cannot be frozen: {exc}") from None
        try:
            frozen.set()
            deadline = ctx.now_ns() + int(FROZEN_CALL_BOUND_S * 1e9)
            for c in calls:
                c.done.wait(max(0.0, (deadline - ctx.now_ns()) / 1e9))
            hung = [c.name for c in calls if not c.done.is_set()]
        finally:
            server.resume_server()
    finally:
        frozen.set()  # a thread still waiting to call makes its call on the live server and ends
        for c in calls:  # every call finishes on the thawed server before the clients are closed
            c.done.wait(RESUMED_CALL_BOUND_S)
    expect(not hung, f"{', '.join(hung)} still blocked after {FROZEN_CALL_BOUND_S:g} s on a frozen server: "
           "every call needs a timeout")
    wrong = []
    for c in calls:
        if c is calls[0] and c.raised is None and c.returned is None and ctx.caps.spurious_refusals:
            continue  # a declared spurious refusal: a quorum lock counts unreachable masters as refusing
        if c.raised is None:
            wrong.append(f"{c.name} returned {c.returned!r}")
        elif not isinstance(c.raised, BackendUnavailable):
            wrong.append(f"{c.name} raised {type(c.raised).__name__}: {c.raised}")
    expect(not wrong, f"while the server was frozen {'; '.join(wrong)}: a client that cannot know a call's "
           "outcome must raise BackendUnavailable (recorded as indeterminate), never answer")


@rule
def acquire_cut_off_by_a_frozen_server_leaves_no_lease_past_its_ttl(ctx: ContractContext) -> None:
    """An acquire sent to a frozen server gives up; its request is applied when the server thaws, so
    the key may be held then, but only for the TTL: an acquire in several round trips (SET NX, then
    EXPIRE in another) leaves a key that never expires, since its second request is never sent."""
    server = ctx.server
    if not isinstance(server, PausesServer):
        raise RuleSkipped("no server control that can freeze the server (the contract was not given one)")
    ctx.require_expiry()
    c, prober = ctx.client(), ctx.client()
    key, owner, ttl = ctx.key("thawed-acquire"), ctx.owner("a"), ctx.ttl_ms
    frozen = threading.Event()
    warm = ctx.key("thawed-warm")

    def warm_up() -> None:
        _granted(ctx, c, warm, owner, ttl)
        expect(c.release(warm, owner) is True, "release by the holder did not return True")

    call = _Call("acquire on a frozen server", warm_up, lambda: c.acquire(key, owner, ttl), frozen)
    threading.Thread(target=call.run, name="lockchaos-thawed-acquire", daemon=True).start()
    expect(call.ready.wait(SETUP_BOUND_S), f"setting up took over {SETUP_BOUND_S:g} s")
    if call.setup_failed is not None:
        raise call.setup_failed
    if ctx.caps.holder_info != "none":
        prober.holder(warm)  # the prober's connection too is made before the freeze
    try:
        server.pause_server()
    except FaultUnsupported as exc:
        frozen.set()
        raise RuleSkipped(f"the server cannot be frozen: {exc}") from None
    try:
        frozen.set()
        call.done.wait(FROZEN_CALL_BOUND_S)
    finally:
        server.resume_server()
        thawed_ns = ctx.now_ns()
    expect(call.done.wait(RESUMED_CALL_BOUND_S), f"the acquire was still blocked {RESUMED_CALL_BOUND_S:g} s "
           "after the server thawed")
    # Whatever the acquire answered, a lease it left lives from the thaw (or its late reply) for the TTL.
    last = Timed(thawed_ns, max(thawed_ns, ctx.now_ns()), call.returned)
    left = ctx.probe_gone(prober, key, last, ttl)
    answer = f"raised {type(call.raised).__name__}" if call.raised is not None else f"returned {call.returned!r}"
    expect(left is None, f"an acquire of {ttl} ms cut off by a frozen server left the key held {ttl} ms + declared "
           f"lag {ctx.caps.expiry_lag_ms} ms after the server thawed (holder: {left!r}; the call {answer}): "
           "a lease without an expiry")
