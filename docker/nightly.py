"""The harness container's entry point: soak each server of the compose topology, one run dir each.

Why a script rather than one ``lockchaos soak``: a nightly soaks several servers (plain Redis, Redis
with AOF, etcd), each needs to be up before its soak starts (compose's ``depends_on`` waits for the
container, not the server), and the container must exit with one status for CI.

Environment:
  LOCKCHAOS_NIGHTLY    whitespace-separated jobs ``NAME=TARGET``; a TARGET ``redis://...`` or
                       ``etcd://...`` soaks that server (external mode), ``backend:NAME`` runs process mode
                       inside this container (needs the binaries: the python-based image has them, e.g.
                       ``process=backend:all``). NAME names the job's run directory. Default: the three
                       compose servers, as redis, redis-aof and etcd (with LOCKCHAOS_TOPOLOGY=clusters:
                       docker-compose.clusters.yml's etcd cluster, LOCKCHAOS_ETCD{0,1,2}_PORT).
  LOCKCHAOS_SOAK_ARGS  flags for every soak (default ``--scenario all``)
  LOCKCHAOS_RUNS       where run directories go (default /runs, a mounted volume)
  LOCKCHAOS_WAIT_S     how long a server may take to accept connections (default 120)
  LOCKCHAOS_REDIS_PORT / LOCKCHAOS_REDIS_AOF_PORT / LOCKCHAOS_ETCD_PORT   for the default jobs

Exit status: the worst of the soaks' (0 all hold, 1 a check failed, 2 usage, 3 infrastructure).

``nightly.py sentinel-config DIR...`` instead writes the Sentinels' first configs (docker-compose.clusters.yml).
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit


def default_jobs() -> list[str]:
    if os.environ.get("LOCKCHAOS_TOPOLOGY") == "clusters":  # docker-compose.clusters.yml's etcd members
        ports = [os.environ.get(f"LOCKCHAOS_ETCD{i}_PORT") or str(2379 + 10000 * i) for i in range(3)]
        return ["etcd-cluster=etcd://" + ",".join(f"127.0.0.1:{p}" for p in ports)]
    redis, aof, etcd = (os.environ.get(k) or d for k, d in (
        ("LOCKCHAOS_REDIS_PORT", "6379"), ("LOCKCHAOS_REDIS_AOF_PORT", "6380"), ("LOCKCHAOS_ETCD_PORT", "2379")))
    return [f"redis=redis://127.0.0.1:{redis}/0", f"redis-aof=redis://127.0.0.1:{aof}/0",
            f"etcd=etcd://127.0.0.1:{etcd}"]


def endpoints(url: str) -> list[tuple[str, int]]:
    """Every host:port of a URL; a cluster's (``etcd://h1:p1,h2:p2,h3:p3``) names several."""
    scheme, _, rest = url.partition("://")
    netloc = rest.split("/", 1)[0].rpartition("@")[2]
    default = 6379 if scheme == "redis" else 2379
    out = []
    for part in netloc.split(","):
        one = urlsplit(f"//{part}")
        out.append((one.hostname or "127.0.0.1", one.port or default))
    return out


def wait_for(url: str, timeout_s: float) -> bool:
    """Until every endpoint of ``url`` accepts connections (a cluster needs all its members up)."""
    deadline = time.monotonic() + timeout_s
    for host, port in endpoints(url):
        while True:
            try:
                with socket.create_connection((host, port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.5)
    return True


def sentinel_config(dirs: list[str]) -> int:
    """Write one sentinel.conf into each of ``dirs`` (the Sentinels' data volumes), from the ports in
    the environment: docker-compose.clusters.yml's ``sentinel-config`` service, run once before the
    Sentinels start. Sentinel rewrites its file with what it learns, so it must be a writable file in a
    writable directory: a mounted template would not do, and the Redis image has no shell to make one."""
    env = os.environ
    primary = env.get("LOCKCHAOS_SENTINEL_REDIS0_PORT") or "6390"
    replicas = [env.get(f"LOCKCHAOS_SENTINEL_REDIS{i}_PORT") or str(6390 + i) for i in (1, 2)]
    ports = [env.get(f"LOCKCHAOS_SENTINEL{i}_PORT") or str(26379 + i) for i in range(len(dirs))]
    for where, port in zip(dirs, ports, strict=True):
        lines = [f"port {port}", "bind 127.0.0.1", "daemonize no", f"dir {where}",
                 f"sentinel monitor mymaster 127.0.0.1 {primary} {len(dirs) // 2 + 1}",
                 "sentinel down-after-milliseconds mymaster 1000", "sentinel failover-timeout mymaster 3000",
                 *(f"sentinel known-replica mymaster 127.0.0.1 {p}" for p in replicas)]
        path = Path(where) / "sentinel.conf"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o666)  # the official image runs Sentinel as its redis user
        Path(where).chmod(0o777)
        print(f"nightly: wrote {path} (Sentinel on 127.0.0.1:{port})", flush=True)
    return 0


def main() -> int:
    if sys.argv[1:2] == ["sentinel-config"]:
        return sentinel_config(sys.argv[2:])
    jobs = (os.environ.get("LOCKCHAOS_NIGHTLY") or "").split() or default_jobs()
    soak_args = shlex.split(os.environ.get("LOCKCHAOS_SOAK_ARGS") or "--scenario all")
    wait_s = float(os.environ.get("LOCKCHAOS_WAIT_S") or 120)
    root = Path(os.environ.get("LOCKCHAOS_RUNS") or "/runs") / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    worst = 0
    for job in jobs:
        name, sep, spec = job.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9._-]+", name):
            print(f"nightly: bad job {job!r}: expected NAME=URL or NAME=backend:NAME", file=sys.stderr)
            return 2
        if spec.startswith("backend:"):
            target = ["--backend", spec.removeprefix("backend:")]
        else:
            target = ["--url", spec]
            if not wait_for(spec, wait_s):
                print(f"nightly: {name}: {spec} did not accept connections within {wait_s:g} s",
                      file=sys.stderr, flush=True)
                worst = max(worst, 3)
                continue
        out = root / name
        argv = [sys.executable, "-m", "lockchaos", "soak", *target, *soak_args, "--out", str(out)]
        print(f"nightly: {shlex.join(argv[1:])}", flush=True)
        status = subprocess.call(argv)
        print(f"nightly: {name}: exit status {status}", flush=True)
        worst = max(worst, status)
    print(f"nightly: run directories under {root}; exit status {worst}", flush=True)
    return worst


if __name__ == "__main__":
    sys.exit(main())
