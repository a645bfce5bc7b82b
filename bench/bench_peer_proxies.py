"""What routing a cluster's own traffic through fault proxies costs in steady state: start time and
lock-call latency, with and without the peer proxies that ``leader-isolated`` needs.

    nice -n 5 .venv/bin/python bench/bench_peer_proxies.py [--rounds 3] [--calls 300]
        [--clusters etcd-cluster,redis-sentinel]

Per round, for each cluster kind, a cluster with peer proxies and one without are started
alternately (timed until a leader or primary is agreed); one client acquires a lock and renews it
``--calls`` times back to back, each renew timed. An etcd renew is a lease keep-alive and a put the
leader replicates to a quorum, so it crosses the proxies between members; a Redis client is sent by
Sentinel to the primary's proxy, so its calls cross one proxy too. Prints p50 / max of the start
times and p50 / p99 of the renew latency, per kind and routing.
"""

from __future__ import annotations

import argparse
import statistics
import time

from lockchaos.backends import open_backend
from lockchaos.harness.servers.clusters import EtcdCluster, ProcessCluster, SentinelCluster

TTL_MS = 10_000


def _cluster(kind: str, routed: bool) -> ProcessCluster:
    if kind == "etcd-cluster":
        return EtcdCluster(route_peers=routed)
    return SentinelCluster(route_peers=routed)


def one_round(kind: str, routed: bool, calls: int) -> tuple[float, list[float]]:
    t0 = time.monotonic()
    cluster = _cluster(kind, routed).start()
    started = time.monotonic() - t0
    try:
        lock = open_backend(cluster.url)
        try:
            assert lock.acquire("bench", "a", TTL_MS) is not None
            lat = []
            for _ in range(calls):
                t1 = time.perf_counter()
                assert lock.renew("bench", "a", TTL_MS) is not None
                lat.append(time.perf_counter() - t1)
            return started, lat
        finally:
            lock.close()
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--clusters", default="etcd-cluster,redis-sentinel")
    args = parser.parse_args()
    for kind in args.clusters.split(","):
        starts: dict[bool, list[float]] = {False: [], True: []}
        lats: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds):
            for routed in (False, True):
                started, lat = one_round(kind, routed, args.calls)
                starts[routed].append(started)
                lats[routed].extend(lat)
        for routed in (False, True):
            lat = sorted(lats[routed])
            p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
            print(f"{kind} {'peer proxies' if routed else 'direct      '}: start p50 "
                  f"{statistics.median(starts[routed]):.2f} s max {max(starts[routed]):.2f} s; renew p50 "
                  f"{statistics.median(lat) * 1000:.2f} ms p99 {p99 * 1000:.2f} ms ({len(lat)} calls)")


if __name__ == "__main__":
    main()
