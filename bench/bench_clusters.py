"""Cluster start and failover times, as the README reports them.

    .venv/bin/python bench/bench_clusters.py [--rounds 5] [--clusters etcd-cluster,redis-sentinel]

Per round: start a fresh process-mode cluster (timed until a leader or primary is agreed), let one
client acquire a lock, kill -9 the leader or primary, and time until the same client's renew is
granted again (the client retries every 20 ms; calls that hit the dead member count as waiting).
Prints p50 / max of both, and how often the lock survived the failover.
"""

from __future__ import annotations

import argparse
import statistics
import time

from lockchaos.backends import open_backend
from lockchaos.backends.base import BackendUnavailable
from lockchaos.harness.servers.clusters import EtcdCluster, ProcessCluster, SentinelCluster

TTL_MS = 10_000
BOUND_S = 30.0


def _cluster(kind: str) -> ProcessCluster:
    return EtcdCluster() if kind == "etcd-cluster" else SentinelCluster()


def one_round(kind: str) -> tuple[float, float, bool]:
    t0 = time.monotonic()
    cluster = _cluster(kind).start()
    started = time.monotonic() - t0
    try:
        lock = open_backend(cluster.url)
        try:
            granted = lock.acquire("bench", "a", TTL_MS)
            assert granted is not None
            cluster.kill_member(cluster.leader())
            t1 = time.monotonic()
            while time.monotonic() - t1 < BOUND_S:
                try:
                    lease = lock.renew("bench", "a", TTL_MS)
                    return started, time.monotonic() - t1, lease is not None
                except BackendUnavailable:
                    time.sleep(0.02)
            raise RuntimeError(f"{kind}: no answer within {BOUND_S} s of the leader's death")
        finally:
            lock.close()
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--clusters", default="etcd-cluster,redis-sentinel")
    args = parser.parse_args()
    for kind in args.clusters.split(","):
        rows = [one_round(kind) for _ in range(args.rounds)]
        starts, failovers, kept = zip(*rows, strict=True)
        print(f"{kind}: start p50 {statistics.median(starts):.2f} s max {max(starts):.2f} s; "
              f"failover p50 {statistics.median(failovers):.2f} s max {max(failovers):.2f} s; "
              f"lock kept {sum(kept)}/{len(kept)}")


if __name__ == "__main__":
    main()
