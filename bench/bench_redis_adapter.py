"""What the Redis adapter costs over raw redis-py, and how late Redis expires a lease.

One run, one private ``redis-server`` (no persistence), one adapter client and one raw redis-py
client configured alike (same timeouts, no retries, RESP2, decoded replies). For each operation it
times N calls of the adapter and of the raw client doing the same commands, in alternating blocks
so that drift hits both sides alike, and prints median and p99 latency and the ratio adapter/raw:

- acquire+release cycle: adapter vs raw EVALSHA of the same two scripts (and, for scale, the
  naive SET NX PX + DEL that gives no fencing token and no owner check);
- renew of a held lock: adapter vs raw EVALSHA of the renew script;
- holder: adapter vs raw HMGET (and, for scale, GET of a plain string).

Then it measures the expiry lag the adapter declares: leases with a short TTL are polled with
``holder`` back to back; a probe that *starts* after the grant *completed* + TTL and still sees the
lease proves at least that much lag; the first probe that sees it gone bounds the lag from above.

    .venv/bin/python bench/bench_redis_adapter.py [--n 5000] [--lag-trials 200]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lockchaos.backends.redis import ACQUIRE_LUA, LOCK_FIELDS, RELEASE_LUA, RENEW_LUA, RedisLock, open_redis
from lockchaos.harness.servers.process import RedisServer

BLOCK = 250
TTL_MS = 30_000


def percentile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] / 1000


def timed_blocks(n: int, sides: dict[str, Callable[[], object]]) -> dict[str, list[int]]:
    """Time each side's call n times, alternating blocks of BLOCK calls between the sides."""
    out: dict[str, list[int]] = {name: [] for name in sides}
    for call in sides.values():  # warm-up: connections, script cache, branch predictors
        for _ in range(200):
            call()
    clock = time.perf_counter_ns
    while len(next(iter(out.values()))) < n:
        for name, call in sides.items():
            samples = out[name]
            for _ in range(min(BLOCK, n - len(samples))):
                start = clock()
                call()
                samples.append(clock() - start)
    return out


def raw_client(url_host: str, port: int, timeout_ms: int) -> redis.Redis:
    return redis.Redis(
        host=url_host, port=port, socket_timeout=timeout_ms / 1000,
        socket_connect_timeout=timeout_ms / 1000, retry=Retry(NoBackoff(), 0),
        decode_responses=True, protocol=2, driver_info=None,
    )


def bench_latency(lock: RedisLock, raw: redis.Redis, n: int) -> None:
    run = uuid.uuid4().hex[:8]
    acq_sha = raw.script_load(ACQUIRE_LUA)
    ren_sha = raw.script_load(RENEW_LUA)
    rel_sha = raw.script_load(RELEASE_LUA)
    owner = f"bench-{run}"

    k_cycle_a, k_cycle_r = f"cycle-a-{run}", f"cycle-r-{run}"
    lk_r, ck_r = lock.lock_key(k_cycle_r), lock.counter_key(k_cycle_r)
    naive_key = f"{lock.prefix}naive-{run}"

    def adapter_cycle() -> None:
        assert lock.acquire(k_cycle_a, owner, TTL_MS) is not None
        assert lock.release(k_cycle_a, owner)

    def raw_cycle() -> None:
        assert raw.evalsha(acq_sha, 2, lk_r, ck_r, owner, TTL_MS) is not None
        assert raw.evalsha(rel_sha, 1, lk_r, owner) == 1

    def naive_cycle() -> None:
        assert raw.set(naive_key, owner, nx=True, px=TTL_MS)
        assert raw.delete(naive_key) == 1

    k_held_a, k_held_r = f"held-a-{run}", f"held-r-{run}"
    assert lock.acquire(k_held_a, owner, TTL_MS) is not None
    assert raw.evalsha(acq_sha, 2, lock.lock_key(k_held_r), lock.counter_key(k_held_r), owner, TTL_MS)
    lk_held_r = lock.lock_key(k_held_r)
    raw.set(naive_key, owner, px=TTL_MS * 100)
    fields = list(LOCK_FIELDS)

    def adapter_renew() -> None:
        assert lock.renew(k_held_a, owner, TTL_MS) is not None

    def raw_renew() -> None:
        assert raw.evalsha(ren_sha, 1, lk_held_r, owner, TTL_MS) is not None

    def adapter_holder() -> None:
        assert lock.holder(k_held_a) is not None

    def raw_holder() -> None:
        assert raw.hmget(lk_held_r, fields)[0] is not None

    def naive_holder() -> None:
        assert raw.get(naive_key) is not None

    rows: list[tuple[str, dict[str, list[int]], str | None]] = []
    raw.delete(naive_key)
    rows.append(("acquire+release", timed_blocks(n, {"adapter": adapter_cycle, "raw": raw_cycle,
                                                     "naive": naive_cycle}), "SET NX PX + DEL"))
    rows.append(("renew", timed_blocks(n, {"adapter": adapter_renew, "raw": raw_renew}), None))
    raw.set(naive_key, owner, px=TTL_MS * 100)
    rows.append(("holder", timed_blocks(n, {"adapter": adapter_holder, "raw": raw_holder,
                                            "naive": naive_holder}), "GET"))

    print(f"\nlatency, {n} calls per side (µs; raw = same commands through redis-py directly)")
    header = (f"{'operation':<17}{'adapter p50':>12}{'raw p50':>10}{'ratio':>7}"
              f"{'adapter p99':>13}{'raw p99':>10}{'ratio':>7}   naive reference p50 / p99")
    print(header)
    print("-" * len(header))
    for op, samples, naive_label in rows:
        a50, r50 = percentile(samples["adapter"], 0.5), percentile(samples["raw"], 0.5)
        a99, r99 = percentile(samples["adapter"], 0.99), percentile(samples["raw"], 0.99)
        naive = ""
        if "naive" in samples:
            naive = (f"{naive_label}: {percentile(samples['naive'], 0.5):.1f} / "
                     f"{percentile(samples['naive'], 0.99):.1f}")
        print(f"{op:<17}{a50:>12.1f}{r50:>10.1f}{a50 / r50:>7.2f}{a99:>13.1f}{r99:>10.1f}{a99 / r99:>7.2f}"
              f"   {naive}")


def bench_expiry_lag(lock: RedisLock, trials: int, ttl_ms: int) -> None:
    """Lower bound (proven lag) and upper bound of how long after its TTL a lease stays visible."""
    run = uuid.uuid4().hex[:8]
    clock = time.perf_counter_ns
    proven: list[float] = []
    bounded: list[float] = []
    probes = 0
    for i in range(trials):
        key = f"lag-{run}-{i}"
        a_inv = clock()
        assert lock.acquire(key, "lag", ttl_ms) is not None
        a_comp = clock()
        # sleep to just before the earliest expiry, then probe back to back until gone
        time.sleep(max(0.0, (a_inv + (ttl_ms - 2) * 1_000_000 - clock()) / 1e9))
        last_held_inv = None
        while True:
            p_inv = clock()
            seen = lock.holder(key)
            p_comp = clock()
            probes += 1
            if seen is None:
                bounded.append((p_comp - a_inv) / 1e6 - ttl_ms)
                break
            last_held_inv = p_inv
        if last_held_inv is not None:
            proven.append((last_held_inv - a_comp) / 1e6 - ttl_ms)
    print(f"\nexpiry lag: {trials} leases of {ttl_ms} ms, {probes} holder probes (ms past the TTL)")
    print(f"  proven visible past TTL (probe start - grant completion - TTL): "
          f"max {max(proven):+.3f}  p99 {percentile([round(x * 1000) for x in proven], 0.99):+.3f}  "
          f"median {statistics.median(proven):+.3f}")
    print(f"  gone by (first 'gone' probe completion - grant start - TTL):    "
          f"max {max(bounded):+.3f}  p99 {percentile([round(x * 1000) for x in bounded], 0.99):+.3f}  "
          f"median {statistics.median(bounded):+.3f}")
    print(f"  declared expiry_lag_ms: {lock.capabilities.expiry_lag_ms}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="timed calls per side and operation")
    parser.add_argument("--lag-trials", type=int, default=200)
    parser.add_argument("--lag-ttl-ms", type=int, default=20)
    args = parser.parse_args()
    with RedisServer() as server:
        lock = open_redis(server.url)
        raw = raw_client(server.host, server.port, lock.timeout_ms)
        print(f"redis-server {raw.info('server')['redis_version']} at {server.url}, "
              f"redis-py {redis.__version__}, python {sys.version.split()[0]}")
        try:
            bench_latency(lock, raw, args.n)
            bench_expiry_lag(lock, args.lag_trials, args.lag_ttl_ms)
        finally:
            lock.close()
            raw.close()


if __name__ == "__main__":
    main()
