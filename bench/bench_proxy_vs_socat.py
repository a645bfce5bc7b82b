"""Is the fault proxy's throughput ceiling its own, or any relay's? The same redis-benchmark through
``socat`` (a relay in C: a process per connection, select(2) and read/write) and through a hosted
FaultProxy, beside direct, in one run; with the CPU per request of redis-benchmark / redis-server /
the relay, and the ratio to direct that busy cores allow: (client + server) / (client + server + relay).

socat is not a dependency of the project (Debian: apt-get install socat); it runs only here, on loopback.

    nice -n 5 .venv/bin/python bench/bench_proxy_vs_socat.py [--requests 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_proxy import set_per_s

from lockchaos.harness.faults.proxy import ProxyPool
from lockchaos.harness.faults.proxyhost import HostedProxy
from lockchaos.harness.servers.process import RedisServer

REAP_S = 0.3  # socat reaps its per-connection children after the batch; their CPU counts then


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tree_cpu(pid: int) -> float:
    """CPU seconds of socat and of the per-connection children it has reaped."""
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000, help="redis-benchmark -n")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.requests < 100 or args.repeats < 1:
        parser.error("--requests must be >= 100 and --repeats >= 1")
    for tool in ("socat", "redis-benchmark"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not on PATH")
    with open("/proc/loadavg") as f:
        print(f"load before: {f.read().strip()}")
    n = args.requests
    with RedisServer() as server, ProxyPool(server.host, server.port) as pool:
        hosted = pool.proxy_for("hosted")
        assert isinstance(hosted, HostedProxy) and server.pid is not None
        port = _free_port()
        socat = subprocess.Popen(["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,nodelay",
                                  f"TCP:127.0.0.1:{server.port},nodelay"], stdin=subprocess.DEVNULL)
        try:
            time.sleep(0.5)  # socat is listening
            print("SET/s (ratio to direct), CPU µs per request client/server/relay, ceiling")
            for _ in range(args.repeats):
                for conns in (1, 16, 64):
                    cells, direct = [], 0.0
                    for name, target in (("direct", server.port), ("socat", port), ("hosted", hosted.port)):
                        before = _tree_cpu(socat.pid)
                        proxy_pid = hosted.host_pid if name == "hosted" else None
                        rps, cpu = set_per_s(target, conns, n, server.pid, proxy_pid)
                        time.sleep(REAP_S)
                        client, srv, user, system = cpu.per_request_us(n)
                        socat_us = (_tree_cpu(socat.pid) - before) / n * 1e6
                        relay = {"direct": 0.0, "hosted": user + system, "socat": socat_us}[name]
                        direct = direct or rps
                        cells.append(f"{name} {rps:.0f} ({rps / direct:.2f}x) {client:.0f}/{srv:.0f}/{relay:.0f} "
                                     f"-> {(client + srv) / (client + srv + relay):.2f}")
                    print(f"-c {conns:<3}" + " | ".join(cells), flush=True)
        finally:
            socat.kill()
            socat.wait()
    with open("/proc/loadavg") as f:
        print(f"load after: {f.read().strip()}")


if __name__ == "__main__":
    main()
