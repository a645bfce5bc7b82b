"""Conveniences over the fault proxy that only the tests use (the harness faults one link at a time)."""

from __future__ import annotations

from lockchaos.harness.faults.proxy import ProxyPool


def heal_all(pool: ProxyPool) -> None:
    """Heal every proxy of the pool: each client's link back to normal."""
    for proxy in pool.proxies().values():
        proxy.heal()
