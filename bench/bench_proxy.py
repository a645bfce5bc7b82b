"""What the fault proxy costs: Redis PING round trips direct vs through a FaultProxy, in one run.

    .venv/bin/python bench/bench_proxy.py [--n 3000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lockchaos.harness.proxy import FaultProxy
from lockchaos.harness.servers import RedisServer


def _sample(client: redis.Redis, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        client.ping()
        out.append((time.perf_counter() - start) * 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    args = parser.parse_args()
    with RedisServer() as server, FaultProxy(server.host, server.port).start() as proxy:
        direct = redis.Redis(host=server.host, port=server.port, retry=Retry(NoBackoff(), 0))
        proxied = redis.Redis(host="127.0.0.1", port=proxy.port, retry=Retry(NoBackoff(), 0))
        d: list[float] = []
        p: list[float] = []
        for _ in range(10):  # alternate blocks so both see the same machine load
            d += _sample(direct, args.n // 10)
            p += _sample(proxied, args.n // 10)
    for name, xs in (("direct", d), ("proxied", p)):
        q = statistics.quantiles(xs, n=100)
        print(f"{name:8} PING p50 {statistics.median(xs):7.1f} us  p99 {q[98]:7.1f} us  (n={len(xs)})")
    print(f"proxy adds {statistics.median(p) - statistics.median(d):.1f} us at the median "
          f"({statistics.median(p) / statistics.median(d):.2f}x)")


if __name__ == "__main__":
    main()
