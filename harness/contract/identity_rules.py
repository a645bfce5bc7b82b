"""Contract rules for names: two keys (or owners) that differ are two locks (or two owners).

Every other rule draws its keys and owners far apart (``.../grant/3``, ``a-<run>``, ``b-<run>``), so a
lock that compares names loosely passes them all. Real lock code does: a key cut to a fixed length or
hashed into a few slots, case folded, matched as a glob (a release by ``SCAN MATCH key*``), or Unicode
normalised; an owner compared with ``startswith`` or ``in``, case-insensitively, or after trimming. A
soak names its workers ``w1`` .. ``w16`` and its keys ``lock-0`` .. ``lock-N`` and would catch only
some of these, and only when the timing happens to line them up. Each rule below puts near names side
by side, on purpose, and every pair is a valid name of its own (``validate_call``), so a backend must
keep them apart byte for byte.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from lockchaos.backends.base import MAX_KEY_BYTES, MAX_OWNER_BYTES, LockBackend
from lockchaos.harness.contract.context import ContractContext, Inconclusive, Timed, expect
from lockchaos.harness.contract.rules import _granted, _lease, rule
from lockchaos.harness.contract.subtle_rules import _probe_is_held

ROOM_MS = 3000
"""Each pair's leases must outlive its handful of calls, with room for a loaded machine."""

_E_ACUTE = "\u00e9"
_E_COMBINING = unicodedata.normalize("NFD", _E_ACUTE)
assert _E_COMBINING != _E_ACUTE


def _near_pairs(base: str, limit: int) -> list[tuple[str, str, str]]:
    """(why, first, second): two distinct valid names that loose comparisons take for one.

    The long pair shares everything but its last character and fits ``limit`` bytes of UTF-8."""
    filler = "x" * (limit - len(base.encode()) - 2)
    return [
        ("one is a prefix of the other", base, base + "0"),
        ("the other is a prefix of the one", base + "0", base),
        ("they differ only in case", base + "-abc", base + "-ABC"),
        ("one is the other with a trailing space", base, base + " "),
        ("one is a glob pattern matching the other", base + "*", base + "-x"),
        ("they differ only in their last character, a long way in", base + "-" + filler + "1",
         base + "-" + filler + "2"),
        ("they are the same text in two Unicode normal forms", base + _E_ACUTE, base + _E_COMBINING),
    ]


def _within(ctx: ContractContext, granted: list[Timed], ttl_ms: int) -> None:
    """Every lease of the pair was still surely in force when the last call completed, else the
    pair proves nothing (a loaded machine): the rule is retried on fresh names."""
    if ctx.now_ns() >= min(ctx.earliest_expiry_ns(g, ttl_ms) for g in granted):
        raise Inconclusive("a lease of the pair could have expired before its calls were done")


@rule
def keys_are_compared_exactly(ctx: ContractContext) -> None:
    """Two keys that differ, however little (prefix, case, a trailing space, a glob character, the last
    of a thousand bytes, a Unicode normal form), are two locks: holding, releasing one leaves the other."""
    a, b = ctx.client(), ctx.client()
    ttl = ctx.ttl_with_room(ROOM_MS)
    for why, first, second in _near_pairs(ctx.key("exact"), MAX_KEY_BYTES):
        one = _granted(ctx, a, first, ctx.owner("a"), ttl)
        got = ctx.timed(lambda: b.acquire(second, ctx.owner("b"), ttl))  # noqa: B023 (called at once)
        expect(got.value is not None, f"acquire of {second!r} was refused while only {first!r} was held: "
               f"keys that differ are one lock to this backend ({why})")
        _within(ctx, [one, got], ttl)
        expect(a.release(first, ctx.owner("a")) is True, f"release of {first!r} by its holder did not return True")
        still = _probe_is_held(ctx, a, second, ctx.earliest_expiry_ns(got, ttl))
        expect(still, f"releasing {first!r} freed {second!r} as well ({why})")
        expect(b.release(second, ctx.owner("b")) is True,
               f"release of {second!r} by its holder did not return True after {first!r} was released ({why})")


def _owner_pairs(ctx: ContractContext) -> list[tuple[str, str, str]]:
    return _near_pairs(ctx.owner("w1"), MAX_OWNER_BYTES)


@rule
def owners_are_compared_exactly(ctx: ContractContext) -> None:
    """An owner that differs from the holder, however little (a prefix of it, case, a trailing space,
    the last of 256 bytes, a Unicode normal form), is another owner: it cannot renew or release."""
    holder_client, other_client = ctx.client(), ctx.client()
    ttl = ctx.ttl_with_room(ROOM_MS)
    for why, holder, other in _owner_pairs(ctx):
        key = ctx.key("owner-exact")
        granted = _granted(ctx, holder_client, key, holder, ttl)
        calls: list[tuple[str, Callable[[LockBackend], object], object]] = [
            ("renew", lambda c: c.renew(key, other, ttl), None),  # noqa: B023 (called in this iteration)
            ("release", lambda c: c.release(key, other), False),  # noqa: B023
            ("acquire", lambda c: c.acquire(key, other, ttl), None),  # noqa: B023
        ]
        for op, call, refused in calls:
            answer = call(other_client)
            expect(answer == refused, f"{op} of {key!r} by {other!r} returned {answer!r} while {holder!r} "
                   f"held it: owners that differ are one owner to this backend ({why})")
        _within(ctx, [granted], ttl)
        lease = _lease(granted)
        renewed = holder_client.renew(key, holder, ttl)
        expect(renewed is not None and renewed.owner == holder and renewed.token == lease.token,
               f"after {other!r} was refused, the holder {holder!r} could not renew its lease: {renewed!r} ({why})")
        expect(holder_client.release(key, holder) is True, f"release by the holder {holder!r} did not return True")
