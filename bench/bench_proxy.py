"""What the fault proxy costs, in one run: latency and throughput through it vs direct.

One private ``redis-server``; every figure is taken four ways, side by side, on the same machine
in the same minute: direct, through a healthy FaultProxy in this process (kernel path: splice(2)
relay threads), through one forced onto its Python path (``splice=False``, what every fault uses),
and through a healthy FaultProxy in a host process of its own (``ProxyPool``'s default, what a soak
uses: ``proxyhost.py``).

- latency: redis-py PING round trips, in alternating blocks (p50 / p99, and what the proxy adds),
  once with this process otherwise idle and once with a thread spinning in Python beside it (as the
  harness's own threads do under load: an in-process relay then waits for the GIL, a hosted one not);
- throughput: ``redis-benchmark -t set -c C -n N`` against one proxy, for C in 1, 16, 64, and the
  CPU per request of redis-benchmark, redis-server and the proxy (this process for an in-process
  proxy: nothing else here runs meanwhile; the host process for a hosted one), user (mostly Python)
  and system (mostly the kernel's TCP and splice work): on a machine whose cores are busy, the
  ratio to direct cannot beat (client + server) / (client + server + proxy);
- aggregate: P ``redis-benchmark -t set -c 1`` processes at once, each through its own proxy (all P
  proxies in this one process, or in a ProxyPool's host processes, ``--per-host`` to a process),
  for P in 1, 16, 64: total SET/s over the wall time of the batch.

    nice -n 5 .venv/bin/python bench/bench_proxy.py [--n 3000] [--requests 20000] [--agg-requests 40000]
                                                     [--per-host K] [--switch-interval S]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lockchaos.harness.faults.proxy import PROXIES_PER_HOST, FaultProxy, Proxy, ProxyPool
from lockchaos.harness.faults.proxyhost import HostedProxy
from lockchaos.harness.servers.process import RedisServer

PATHS = ("direct", "kernel", "python", "hosted")
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


@dataclasses.dataclass(frozen=True)
class Cpu:
    """CPU seconds (user + system) of the three parties to a batch of requests."""

    client: float  # redis-benchmark
    server: float  # redis-server
    proxy_user: float  # this process (a proxy in it), or the proxy's host process; 0 when direct
    proxy_sys: float

    def per_request_us(self, requests: int) -> tuple[float, float, float, float]:
        return (self.client / requests * 1e6, self.server / requests * 1e6, self.proxy_user / requests * 1e6,
                self.proxy_sys / requests * 1e6)


def _user_sys(pid: int | None) -> tuple[float, float]:
    """User and system CPU seconds so far of ``pid``; of this process when ``pid`` is None."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime, usage.ru_stime
    times = psutil.Process(pid).cpu_times()
    return float(times.user), float(times.system)


def _cpu_of(pid: int) -> float:
    return sum(_user_sys(pid))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # waited-for children: redis-benchmark
    return usage.ru_utime + usage.ru_stime


def set_per_s(port: int, conns: int, requests: int, server_pid: int, proxy_pid: int | None) -> tuple[float, Cpu]:
    """SET/s, and the CPU that redis-benchmark, redis-server and the proxy spent meanwhile."""
    before = (_children_cpu(), _cpu_of(server_pid), *_user_sys(proxy_pid))
    done = subprocess.run(_benchmark_cmd(port, conns, requests), capture_output=True, text=True,
                          timeout=BENCH_TIMEOUT_S, check=True)
    after = (_children_cpu(), _cpu_of(server_pid), *_user_sys(proxy_pid))
    return _rps(done.stdout), Cpu(*(a - b for a, b in zip(after, before, strict=True)))


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
def proxies(server: RedisServer, count: int, path: str, per_host: int = PROXIES_PER_HOST) -> Iterator[list[Proxy]]:
    """``count`` proxies on ``path``: kernel or python (in this process), hosted (a ProxyPool's)."""
    if path == "hosted":
        with ProxyPool(server.host, server.port, per_host=per_host) as pool:
            yield [pool.proxy_for(f"bench{i}") for i in range(count)]
        return
    made: list[Proxy] = []
    try:
        for i in range(count):
            made.append(FaultProxy(server.host, server.port, name=f"bench{i}", splice=path == "kernel").start())
        yield made
    finally:
        for proxy in made:
            proxy.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="PINGs per path for latency")
    parser.add_argument("--requests", type=int, default=20000, help="redis-benchmark -n for one proxy")
    parser.add_argument("--agg-requests", type=int, default=40000, help="total SETs per aggregate batch")
    parser.add_argument("--per-host", type=int, default=PROXIES_PER_HOST,
                        help="proxies per host process in the hosted aggregate")
    parser.add_argument("--switch-interval", type=float, help="sys.setswitchinterval(S) first")
    args = parser.parse_args()
    if args.per_host < 1:
        parser.error("--per-host must be >= 1")
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

    with (RedisServer() as server, proxies(server, 1, "kernel") as (kernel,), proxies(server, 1, "python") as (python,),
          proxies(server, 1, "hosted") as (hosted,)):
        ports = {"direct": server.port, "kernel": kernel.port, "python": python.port, "hosted": hosted.port}
        assert isinstance(hosted, HostedProxy)
        hosted_pid = hosted.host_pid
        clients = {name: redis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
                   for name, port in ports.items()}
        for client in clients.values():
            _ping_sample(client, 100)  # warm-up: connect, and let the kernel path take the connection
        for busy in (False, True):
            latency_table(clients, args.n, busy)
        for client in clients.values():
            client.close()

        print(f"\nSET/s through one proxy: redis-benchmark -t set -c C -n {args.requests}")
        print(f"{'C':>3}" + "".join(f"{name:>9}" for name in PATHS)
              + "".join(f"{name + '/d':>10}" for name in PATHS[1:]))
        cpu: dict[tuple[int, str], Cpu] = {}
        assert server.pid is not None
        proxy_pids = {"direct": None, "kernel": None, "python": None, "hosted": hosted_pid}
        for conns in (1, 16, 64):
            rps = {}
            for name in PATHS:
                rps[name], cpu[conns, name] = set_per_s(ports[name], conns, args.requests, server.pid, proxy_pids[name])
            print(f"{conns:>3}" + "".join(f"{rps[name]:>9.0f}" for name in PATHS)
                  + "".join(f"{rps[name] / rps['direct']:>10.2f}" for name in PATHS[1:]))
        print("\nCPU per request (µs, user+sys) of redis-benchmark / redis-server / the proxy (user+sys), and the"
              "\nratio a CPU-bound machine allows: (client+server) / (client+server+proxy)")
        print(f"{'C':>3}" + "".join(f"{name:>28}" for name in PATHS[1:]))
        for conns in (1, 16, 64):
            cells = []
            for name in PATHS[1:]:
                c, s_, pu, ps = cpu[conns, name].per_request_us(args.requests)
                cells.append(f"{c:.0f}/{s_:.0f}/{pu:.0f}+{ps:.0f} -> {(c + s_) / (c + s_ + pu + ps):.2f}")
            print(f"{conns:>3}" + "".join(f"{cell:>28}" for cell in cells))

        print(f"\naggregate SET/s, P redis-benchmark -c 1 at once, each through its own proxy: kernel, python in"
              f" this process, hosted {args.per_host} to a host process ({args.agg_requests} SETs per batch)")
        print(f"{'P':>3}" + "".join(f"{name:>9}" for name in PATHS) + "".join(f"{name:>9}/d" for name in PATHS[1:]))
        for count in (1, 16, 64):
            agg = {"direct": aggregate_set_per_s([server.port] * count, args.agg_requests)}
            for name in PATHS[1:]:
                with proxies(server, count, name, args.per_host) as made:
                    agg[name] = aggregate_set_per_s([p.port for p in made], args.agg_requests)
            print(f"{count:>3}" + "".join(f"{agg[name]:>9.0f}" for name in PATHS)
                  + "".join(f"{agg[name] / agg['direct']:>11.2f}" for name in PATHS[1:]))
    with open("/proc/loadavg") as f:
        print(f"\nload after: {f.read().strip()}")


if __name__ == "__main__":
    main()
