"""Benchmark of the etcd adapter against a real etcd: latency, overhead and etcd's lease behaviour.

Run:  .venv/bin/python bench/bench_etcd_adapter.py [--n 1000] [--lag-n 200]
                                                     [--etcd3-012-python /path/to/venv/bin/python]

One run starts one etcd with fast flags (and one with default flags for the TTL minimum and its
expiry lag) and prints:
- median and p99 of every adapter operation next to the raw python3-etcd3 client making the same
  RPCs (the ratio is the adapter's own overhead: validation, JSON, error translation);
- the raw acquire cycle (lease + create-if-absent txn + delete + revoke) and one lease refresh, for
  python3-etcd3 and, given ``--etcd3-012-python``, for ``etcd3`` 0.12.0 (which only imports with
  PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python under protobuf >= 4), both measured out of process
  by the same code below, interleaved A B B A;
- etcd's TTL rounding and minimum, and the expiry lag: (time the key vanished - grant invoke
  - TTL) over many leases, polled every ~2 ms.

The raw-client mode (``--raw-client HOST PORT N``) imports nothing but ``etcd3`` so that another
venv can run it. No fork happens once this process has opened a gRPC channel: subprocesses run first.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 50
HELD_TTL_MS = 600_000
"""The "held" key's lease: long enough to outlast a phase on a loaded machine (a 30 s lease expired
before the renew phase in 2 of 3 runs with --n 1000), and each phase re-takes it first anyway."""


# --- helpers ------------------------------------------------------------------------------------------


def summary(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    n = len(ordered)
    return {
        "n": n,
        "p50_ms": statistics.median(ordered) / 1e6,
        "p99_ms": ordered[max(0, math.ceil(0.99 * n) - 1)] / 1e6,
        "max_ms": ordered[-1] / 1e6,
    }


def timed(call: Callable[[], object]) -> int:
    start = time.perf_counter_ns()
    call()
    return time.perf_counter_ns() - start


# --- raw client, importable from any venv that has an etcd3 package -----------------------------------


def raw_client_figures(host: str, port: int, n: int) -> dict[str, Any]:
    """The raw acquire cycle and a lease refresh with whatever ``etcd3`` this interpreter has."""
    import etcd3  # python3-etcd3 or etcd3, whichever this venv holds
    from google.protobuf.internal import api_implementation

    c = etcd3.client(host=host, port=port, timeout=2)
    tx = c.transactions
    key = f"bench/raw/{uuid.uuid4().hex[:8]}"

    def cycle() -> None:
        lease = c.lease(2)
        ok, _ = c.transaction(compare=[tx.create(key) == 0],
                              success=[tx.put(key, "v", lease=lease.id)], failure=[])
        assert ok
        c.delete(key)
        c.revoke_lease(lease.id)

    for _ in range(WARMUP):
        cycle()
    cpu = time.process_time()
    cycles = [timed(cycle) for _ in range(n)]
    cycle_cpu_us = (time.process_time() - cpu) / n * 1e6
    lease = c.lease(60)
    for _ in range(WARMUP):
        list(c.refresh_lease(lease.id))
    cpu = time.process_time()
    refreshes = [timed(lambda: list(c.refresh_lease(lease.id))) for _ in range(n)]
    refresh_cpu_us = (time.process_time() - cpu) / n * 1e6
    c.revoke_lease(lease.id)
    c.close()
    version = getattr(etcd3, "__version__", "?")
    return {"version": version, "protobuf": api_implementation.Type(), "cycle": cycles, "refresh": refreshes,
            "cycle_cpu_us": cycle_cpu_us, "refresh_cpu_us": refresh_cpu_us}


def run_raw_client(
    python: str, host: str, port: int, n: int, *, pure_python_protobuf: bool
) -> dict[str, Any]:
    env = dict(os.environ)
    if pure_python_protobuf:
        env["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    out = subprocess.run(
        [python, str(Path(__file__).resolve()), "--raw-client", host, str(port), str(n)],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"raw client run with {python} failed:\n{out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# --- the adapter next to the raw client making the same RPCs ----------------------------------------


def adapter_vs_raw(url: str, n: int) -> dict[str, tuple[dict[str, float], dict[str, float]]]:
    from lockchaos.backends.etcd import _encode, open_etcd

    prefix = f"bench/{uuid.uuid4().hex[:8]}/"
    lock = open_etcd(f"{url}?prefix={prefix}")
    raw: Any = lock._client  # the very same channel, without the adapter around it
    tx = raw.transactions

    def raw_acquire_release(key: str) -> None:
        full = prefix + key
        lease = raw.lease(2)
        put = tx.put(full, _encode("o", lease.ttl), lease=lease.id)
        ok, resp = raw.transaction(compare=[tx.create(full) == 0], success=[put], failure=[])
        assert ok and resp[0].response_put.header.revision > 0
        value, meta = raw.get(full)
        ok, _ = raw.transaction(compare=[tx.value(full) == value, tx.create(full) == meta.create_revision],
                                success=[tx.delete(full)], failure=[])
        assert ok
        raw.revoke_lease(meta.lease_id)

    def adapter_acquire_release(key: str) -> None:
        assert lock.acquire(key, "o", 2000) is not None
        assert lock.release(key, "o")

    held_key = prefix + "held"

    def hold() -> None:
        """Make sure "held" is ours with HELD_TTL_MS before a phase that needs it."""
        if lock.renew("held", "o", HELD_TTL_MS) is None:
            assert lock.acquire("held", "o", HELD_TTL_MS) is not None, "someone else holds the bench key"

    def raw_renew() -> None:
        _value, meta = raw.get(held_key)
        replies = list(raw.refresh_lease(meta.lease_id))
        assert replies[0].TTL > 0

    def raw_holder() -> None:
        value, _meta = raw.get(held_key)
        assert json.loads(value)["owner"] == "o"

    pairs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "acquire+release": (lambda: adapter_acquire_release("cycle"), lambda: raw_acquire_release("cycle")),
        "renew (same TTL)": (lambda: lock.renew("held", "o", HELD_TTL_MS), raw_renew),
        "holder": (lambda: lock.holder("held"), raw_holder),
    }
    results = {}
    for label, (adapter_call, raw_call) in pairs.items():
        hold()
        for _ in range(WARMUP):
            adapter_call()
            raw_call()
        a_samples, r_samples = [], []
        for i in range(n):  # alternate, so that drift hits both alike
            if i % 2:
                a_samples.append(timed(adapter_call))
                r_samples.append(timed(raw_call))
            else:
                r_samples.append(timed(raw_call))
                a_samples.append(timed(adapter_call))
        results[label] = (summary(a_samples), summary(r_samples))
    # A renew that changes the TTL: grant + move txn + revoke on top of the read.
    ttls = [5000, 6000]
    hold()
    moves = []
    for i in range(min(n, 300)):
        ttl = ttls[i % 2]
        moves.append(timed(lambda: lock.renew("held", "o", ttl)))  # noqa: B023 - called at once
    results["renew (new TTL, moves lease)"] = (summary(moves), {})
    lock.release("held", "o")
    lock.close()
    return results


# --- etcd's lease behaviour ---------------------------------------------------------------------------


def ttl_rounding(url: str) -> dict[int, int]:
    from lockchaos.backends.etcd import open_etcd

    lock = open_etcd(f"{url}?prefix=bench-round/{uuid.uuid4().hex[:8]}/")
    granted = {}
    for requested in (1, 999, 1000, 1001, 1500, 1999, 2000, 2001, 2999):
        lease = lock.acquire(f"r{requested}", "o", requested)
        assert lease is not None
        granted[requested] = lease.ttl_ms
        lock.release(f"r{requested}", "o")
    lock.close()
    return granted


def expiry_lag(url: str, count: int, ttl_ms: int) -> dict[str, Any]:
    """Grant ``count`` leases at random moments over ~1.5 s; poll until each key is gone."""
    from lockchaos.backends.etcd import open_etcd

    prefix = f"bench-lag/{uuid.uuid4().hex[:8]}/"
    lock = open_etcd(f"{url}?prefix={prefix}")
    poller = open_etcd(f"{url}?prefix={prefix}")
    raw: Any = poller._client
    granted: dict[str, tuple[int, int]] = {}  # etcd key -> (grant invoke ns, applied TTL ms)
    visible: dict[str, int] = {}  # etcd key -> when its acquire completed
    gone: dict[str, int] = {}
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            now = time.perf_counter_ns()
            present = {meta.key.decode() for _v, meta in raw.get_prefix(prefix, keys_only=True)}
            for key, seen_ns in list(visible.items()):
                # Only keys whose acquire completed before this read began can be missing from it.
                if seen_ns < now and key not in present and key not in gone:
                    gone[key] = now  # absent in a read that started at ``now``
            time.sleep(0.002)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    grant_rtts = []
    for i in range(count):
        start = time.perf_counter_ns()
        lease = lock.acquire(f"k{i}", "o", ttl_ms)
        grant_rtts.append(time.perf_counter_ns() - start)
        assert lease is not None
        granted[lock.etcd_key(f"k{i}")] = (start, lease.ttl_ms)
        visible[lock.etcd_key(f"k{i}")] = time.perf_counter_ns()
        time.sleep(random.uniform(0, 3.0 / count))
    deadline = time.monotonic() + ttl_ms / 1000 + 10
    while len(gone) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    done.set()
    thread.join()
    lags = [gone[k] - start - applied * 1_000_000 for k, (start, applied) in granted.items() if k in gone]
    lock.close()
    poller.close()
    result: dict[str, Any] = summary(lags)
    result.update(min_ms=min(lags) / 1e6, missing=count - len(lags),
                  grant_rtt_p50_ms=summary(grant_rtts)["p50_ms"])
    return result


# --- report -------------------------------------------------------------------------------------------


def fmt(s: dict[str, float]) -> str:
    return f"p50 {s['p50_ms']:6.3f} ms  p99 {s['p99_ms']:6.3f} ms"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="timed repetitions per operation")
    parser.add_argument("--lag-n", type=int, default=200, help="leases per expiry-lag measurement")
    parser.add_argument("--etcd3-012-python", help="python of a venv with etcd3==0.12.0, to compare clients")
    parser.add_argument("--raw-client", nargs=3, metavar=("HOST", "PORT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.raw_client:  # child mode: stdout is JSON
        host, port, n = args.raw_client
        print(json.dumps(raw_client_figures(host, int(port), int(n))))
        return 0

    sys.path.insert(0, str(ROOT))
    from lockchaos.harness.servers.process import EtcdServer

    with EtcdServer() as fast, EtcdServer(fast=False) as slow:
        print(f"etcd {fast.url} (fast flags: --heartbeat-interval 10 --election-timeout 100); "
              f"second server {slow.url} with default flags; n={args.n}")

        # 1. Client comparison, out of process, before this process opens any gRPC channel.
        print("\n== raw client: acquire cycle (lease + create-if-absent txn + delete + revoke), "
              "lease refresh")
        runs: list[tuple[str, str, bool]] = [("python3-etcd3", sys.executable, False)]
        if args.etcd3_012_python:
            runs.append(("etcd3", args.etcd3_012_python, True))
        order = runs + runs[::-1]  # A B B A
        samples: dict[str, dict[str, Any]] = {}
        for label, python, pure in order:
            got = run_raw_client(python, fast.host, fast.port, args.n // 2, pure_python_protobuf=pure)
            entry = samples.setdefault(label, {"version": got["version"], "protobuf": got["protobuf"],
                                               "cycle": [], "refresh": [], "cpu": []})
            entry["cycle"] += got["cycle"]
            entry["refresh"] += got["refresh"]
            entry["cpu"].append((got["cycle_cpu_us"], got["refresh_cpu_us"]))
        for label, entry in samples.items():
            cycle_cpu = statistics.mean(c for c, _r in entry["cpu"])
            refresh_cpu = statistics.mean(r for _c, r in entry["cpu"])
            print(f"  {label:14} {entry['version']:8} protobuf={entry['protobuf']:6} "
                  f"cycle {fmt(summary(entry['cycle']))} | refresh {fmt(summary(entry['refresh']))}")
            print(f"  {'':14} {'':8} {'':15} client CPU per cycle {cycle_cpu:5.0f} us | "
                  f"per refresh {refresh_cpu:5.0f} us")

        # 2. Adapter overhead.
        print("\n== adapter vs raw python3-etcd3 making the same RPCs (ratio = adapter / raw, medians)")
        for label, (adapter, raw) in adapter_vs_raw(fast.url, args.n).items():
            if raw:
                ratio = adapter["p50_ms"] / raw["p50_ms"]
                print(f"  {label:29} adapter {fmt(adapter)} | raw {fmt(raw)} | ratio {ratio:.2f}")
            else:
                print(f"  {label:29} adapter {fmt(adapter)}")

        # 3. TTL rounding and minimum.
        print("\n== TTL: requested ms -> granted ms")
        for server, name in ((fast, "fast flags"), (slow, "default flags")):
            from lockchaos.backends.etcd import open_etcd

            with open_etcd(server.url) as probe:
                minimum = probe.capabilities.min_ttl_ms
            rounding = ttl_rounding(server.url)
            shown = ", ".join(f"{req}->{got}" for req, got in rounding.items())
            print(f"  {name:13} min {minimum} ms (handle says {server.min_lease_ttl_ms}); {shown}")

        # 4. Expiry lag.
        print(f"\n== expiry lag: key vanished - grant invoke - TTL, {args.lag_n} leases, polled every ~2 ms")
        for server, name, ttl in ((fast, "fast flags", 1000), (slow, "default flags", 2000)):
            lag = expiry_lag(server.url, args.lag_n, ttl)
            print(f"  {name:13} TTL {ttl} ms: min {lag['min_ms']:.0f} ms  p50 {lag['p50_ms']:.0f} ms  "
                  f"p99 {lag['p99_ms']:.0f} ms  max {lag['max_ms']:.0f} ms  (missing {lag['missing']}, "
                  f"grant RTT p50 {lag['grant_rtt_p50_ms']:.2f} ms)")
        from lockchaos.backends.etcd import EXPIRY_LAG_MS

        print(f"  declared expiry_lag_ms = {EXPIRY_LAG_MS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
