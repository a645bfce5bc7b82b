"""The fault registry: every fault the harness can inject, by name, in the soak menu's order.

Adding a fault is one ``Fault`` object in the module of its target (holder.py, link.py, server.py,
cluster.py) and its line here. The nemesis applies faults through it, the environments ask it
whether they can take one, the soak draws its menu from it, the checkers read its lease-timing
meanings and the report its colours: no other module names a fault by a string.
"""

from __future__ import annotations

from collections.abc import Callable

from lockchaos.backends.base import ConfigurationError
from lockchaos.harness.faults import cluster, holder, link, server
from lockchaos.harness.faults.fault import Fault, FaultStep, LeaseTiming, Reach, TargetKind

__all__ = ["FAULTS", "Fault", "FaultStep", "LeaseTiming", "Reach", "TargetKind", "lookup", "named", "soak_menu"]

FAULTS: dict[str, Fault] = {f.name: f for f in (
    # The soak draws from the menu in this order (seed -> schedule): add new faults at the end.
    holder.HOLDER_CRASH,
    holder.HOLDER_PAUSE,
    holder.RENEWER_DEATH,
    server.SERVER_KILL,
    server.SERVER_PAUSE,
    link.PARTITION,
    link.LATENCY,
    link.REPLY_DELAY,
    link.LOSE_RELEASE_REPLY,
    link.RESET_STORM,
    server.CLOCK_JUMP,
    link.LATE_RELEASE,
    link.LOSE_ACQUIRE_REPLY,
    cluster.LEADER_CRASH,  # cluster faults: refused (so never drawn) on a single server
    cluster.LEADER_PAUSE,
    cluster.REDLOCK_MINORITY_KILL,  # Redlock's: refused (so never drawn) without independent masters
    cluster.REDLOCK_MASTER_AMNESIA,
    cluster.LEADER_ISOLATED,
    cluster.FOLLOWER_CRASH,
    cluster.LEADER_AMNESIA,
    link.LOSE_RELEASE_REQUEST,
    link.LOSE_RENEW_REQUEST,
)}


def lookup(name: str) -> Fault:
    """The fault called ``name``; a clear error for a name nobody registered."""
    try:
        return FAULTS[name]
    except KeyError:
        raise ConfigurationError(f"unknown fault {name!r}; known faults: {', '.join(FAULTS)}") from None


def named(meaning: Callable[[LeaseTiming], bool]) -> tuple[str, ...]:
    """The names of the faults whose lease timing has ``meaning``: what the checkers filter windows by."""
    return tuple(f.name for f in FAULTS.values() if meaning(f.timing))


def soak_menu() -> tuple[FaultStep, ...]:
    """Every registered fault's soak steps, in registry order: what the soak draws from."""
    return tuple(step for f in FAULTS.values() for step in f.soak)
