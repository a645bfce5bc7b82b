"""What the fault proxy costs, in one run: latency and throughput through it vs direct.

One private ``redis-server``; every figure is taken three ways, side by side, on the same machine
in the same minute: direct, through a healthy FaultProxy (kernel path: splice(2) relay threads) and
through a FaultProxy forced onto its Python path (``splice=False``, what every fault uses).

- latency: redis-py PING round trips, in alternating blocks (p50 / p99, and what the proxy adds),
  once with this process otherwise idle and once with a thread spinning in Python beside it (as the
  harness's own threads do under load: the relay, like every client here, then waits for the GIL);
- throughput: ``redis-benchmark -t set -c C -n N`` against one proxy, for C in 1, 16, 64, and the
  CPU this process (that is, the proxy: nothing else here runs meanwhile) spent per request, user
  (mostly Python) and system (mostly the kernel's TCP and splice work);
- aggregate: P ``redis-benchmark -t set -c 1`` processes at once, each through its own proxy (all P
  proxies in this one process), for P in 16, 64: total SET/s over the wall time of the batch.

    nice -n 5 .venv/bin/python bench/bench_proxy.py [--n 3000] [--requests 20000] [--agg-requests 40000]
                                                     [--switch-interval S]
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lockchaos.harness.faults.proxy import FaultProxy
from lockchaos.harness.servers.process import RedisServer

PATHS = ("direct", "kernel", "python")
BENCH_TIMEOUT_S = 300


def _ping_sample(client: redis.Redis, n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        client.ping()
        out.append((time.perf_counter() - start) * 1e6)
    return out


def _p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100)[98]


def _benchmark_cmd(port: int, conns: int, requests: int) -> list[str]:
    return ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set",
            "-c", str(conns), "-n", str(requests), "--csv"]


def _rps(csv: str) -> float:
    """redis-benchmark --csv: a header line, then "SET","<rps>",..."""
    for line in csv.splitlines():
        fields = [f.strip('"') for f in line.split(",")]
        if fields[0] == "SET":
            return float(fields[1])
    raise RuntimeError(f"no SET line in redis-benchmark output: {csv!r}")


def set_per_s(port: int, conns: int, requests: int) -> tuple[float, float, float]:
    """SET/s, and this process's user and system CPU per request (µs) meanwhile."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    done = subprocess.run(_benchmark_cmd(port, conns, requests), capture_output=True, text=True,
                          timeout=BENCH_TIMEOUT_S, check=True)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return (_rps(done.stdout), (after.ru_utime - before.ru_utime) / requests * 1e6,
            (after.ru_stime - before.ru_stime) / requests * 1e6)


def aggregate_set_per_s(ports: list[int], requests: int) -> float:
    """One ``-c 1`` redis-benchmark per port, all at once: total requests / wall time of the batch."""
    each = max(1, requests // len(ports))
    start = time.perf_counter()
    procs = [subprocess.Popen(_benchmark_cmd(port, 1, each), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for port in ports]
    try:
        for proc in procs:
            proc.communicate(timeout=BENCH_TIMEOUT_S)
            if proc.returncode:
                raise RuntimeError(f"redis-benchmark failed with status {proc.returncode}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return each * len(ports) / (time.perf_counter() - start)


def latency_table(clients: dict[str, redis.Redis], n: int, busy: bool) -> None:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(100))

    spinner = threading.Thread(target=spin, daemon=True)
    if busy:
        spinner.start()
    lat: dict[str, list[float]] = {name: [] for name in PATHS}
    try:
        for _ in range(10):  # alternate blocks so every path sees the same machine load
            for name in PATHS:
                lat[name] += _ping_sample(clients[name], n // 10)
    finally:
        stop.set()
        if busy:
            spinner.join()
    print(f"\nPING round trip, redis-py, {n} per path (µs), "
          + ("a thread spinning in Python beside" if busy else "this process otherwise idle"))
    print(f"{'path':<8}{'p50':>8}{'p99':>9}{'added p50':>11}{'added p99':>11}{'ratio p50':>11}")
    d50, d99 = statistics.median(lat["direct"]), _p99(lat["direct"])
    for name in PATHS:
        p50, p99 = statistics.median(lat[name]), _p99(lat[name])
        print(f"{name:<8}{p50:>8.1f}{p99:>9.1f}{p50 - d50:>+11.1f}{p99 - d99:>+11.1f}{p50 / d50:>11.2f}")


@contextlib.contextmanager
def proxies(server: RedisServer, count: int, splice: bool) -> Iterator[list[FaultProxy]]:
    made: list[FaultProxy] = []
    try:
        for i in range(count):
            made.append(FaultProxy(server.host, server.port, name=f"bench{i}", splice=splice).start())
        yield made
    finally:
        for proxy in made:
            proxy.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="PINGs per path for latency")
    parser.add_argument("--requests", type=int, default=20000, help="redis-benchmark -n for one proxy")
    parser.add_argument("--agg-requests", type=int, default=40000, help="total SETs per aggregate batch")
    parser.add_argument("--switch-interval", type=float, help="sys.setswitchinterval(S) first")
    args = parser.parse_args()
    if min(args.n, args.requests, args.agg_requests) < 100:
        parser.error("--n, --requests and --agg-requests must be >= 100")
    if args.switch_interval is not None:
        if not 0 < args.switch_interval <= 1:
            parser.error("--switch-interval must be in (0, 1] seconds")
        sys.setswitchinterval(args.switch_interval)
    if shutil.which("redis-benchmark") is None:
        parser.error("redis-benchmark is not on PATH (Debian: apt-get install redis-tools)")
    with open("/proc/loadavg") as f:
        print(f"load before: {f.read().strip()}; python {sys.version.split()[0]}; "
              f"GIL switch interval {sys.getswitchinterval() * 1000:g} ms")

    with RedisServer() as server, proxies(server, 1, True) as (kernel,), proxies(server, 1, False) as (python,):
        ports = {"direct": server.port, "kernel": kernel.port, "python": python.port}
        clients = {name: redis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
                   for name, port in ports.items()}
        for client in clients.values():
            _ping_sample(client, 100)  # warm-up: connect, and let the kernel path take the connection
        for busy in (False, True):
            latency_table(clients, args.n, busy)
        for client in clients.values():
            client.close()

        print(f"\nSET/s through one proxy: redis-benchmark -t set -c C -n {args.requests}")
        print(f"{'C':>3}{'direct':>10}{'kernel':>10}{'python':>10}{'kernel/direct':>15}{'python/direct':>15}"
              f"   proxy CPU µs/req user+sys: kernel, python")
        for conns in (1, 16, 64):
            got = {name: set_per_s(ports[name], conns, args.requests) for name in PATHS}
            rps = {name: got[name][0] for name in PATHS}
            print(f"{conns:>3}{rps['direct']:>10.0f}{rps['kernel']:>10.0f}{rps['python']:>10.0f}"
                  f"{rps['kernel'] / rps['direct']:>15.2f}{rps['python'] / rps['direct']:>15.2f}"
                  f"   {got['kernel'][1]:.1f}+{got['kernel'][2]:.1f}, {got['python'][1]:.1f}+{got['python'][2]:.1f}")

        print(f"\naggregate SET/s, P redis-benchmark -c 1 at once, each through its own proxy in this process"
              f" ({args.agg_requests} SETs per batch)")
        print(f"{'P':>3}{'direct':>10}{'kernel':>10}{'python':>10}{'kernel/direct':>15}{'python/direct':>15}")
        for count in (16, 64):
            agg = {"direct": aggregate_set_per_s([server.port] * count, args.agg_requests)}
            for name, splice in (("kernel", True), ("python", False)):
                with proxies(server, count, splice) as made:
                    agg[name] = aggregate_set_per_s([p.port for p in made], args.agg_requests)
            print(f"{count:>3}{agg['direct']:>10.0f}{agg['kernel']:>10.0f}{agg['python']:>10.0f}"
                  f"{agg['kernel'] / agg['direct']:>15.2f}{agg['python'] / agg['direct']:>15.2f}")
    with open("/proc/loadavg") as f:
        print(f"\nload after: {f.read().strip()}")


if __name__ == "__main__":
    main()
