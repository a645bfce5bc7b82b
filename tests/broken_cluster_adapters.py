"""Cluster lock adapters that lie about failover, on a real cluster the harness starts.

Each opens lockchaos's own client for the cluster URL and changes one declaration, nothing in its
calls: the failover rules (harness/contract/failover_rules.py) must catch the claim, not the code.
"""

from __future__ import annotations

import dataclasses

from lockchaos.backends import open_backend
from lockchaos.backends.base import LockBackend

UNDERSTATED_FAILOVER_MS = 1
"""Far below any election: etcd's followers wait out an election timeout (100 ms, fast flags) first."""


def sentinel_claiming_linearizable(url: str) -> LockBackend:
    """Redis with Sentinel (asynchronous replication) declaring ``replication="linearizable"``."""
    backend = open_backend(url)
    backend.capabilities = dataclasses.replace(backend.capabilities, replication="linearizable")
    return backend


def etcd_cluster_understating_failover(url: str) -> LockBackend:
    """Three etcd members declaring a failover time far below their real election time."""
    backend = open_backend(url)
    backend.capabilities = dataclasses.replace(backend.capabilities, failover_ms=UNDERSTATED_FAILOVER_MS)
    return backend
