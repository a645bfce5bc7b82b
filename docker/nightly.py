"""The harness container's entry point: soak each server of the compose topology, one run dir each.

Why a script rather than one ``lockchaos soak``: a nightly soaks several servers (plain Redis, Redis
with AOF, etcd), each needs to be up before its soak starts (compose's ``depends_on`` waits for the
container, not the server), and the container must exit with one status for CI.

Environment:
  LOCKCHAOS_NIGHTLY    whitespace-separated jobs ``NAME=TARGET``; a TARGET ``redis://...`` or
                       ``etcd://...`` soaks that server (external mode), ``backend:NAME`` runs process mode
                       inside this container (needs the binaries: the python-based image has them, e.g.
                       ``process=backend:all``). NAME names the job's run directory. Default: the three
                       compose servers, as redis, redis-aof and etcd.
  LOCKCHAOS_SOAK_ARGS  flags for every soak (default ``--scenario all``)
  LOCKCHAOS_RUNS       where run directories go (default /runs, a mounted volume)
  LOCKCHAOS_WAIT_S     how long a server may take to accept connections (default 120)
  LOCKCHAOS_REDIS_PORT / LOCKCHAOS_REDIS_AOF_PORT / LOCKCHAOS_ETCD_PORT   for the default jobs

Exit status: the worst of the soaks' (0 all hold, 1 a check failed, 2 usage, 3 infrastructure).
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
    redis, aof, etcd = (os.environ.get(k) or d for k, d in (
        ("LOCKCHAOS_REDIS_PORT", "6379"), ("LOCKCHAOS_REDIS_AOF_PORT", "6380"), ("LOCKCHAOS_ETCD_PORT", "2379")))
    return [f"redis=redis://127.0.0.1:{redis}/0", f"redis-aof=redis://127.0.0.1:{aof}/0",
            f"etcd=etcd://127.0.0.1:{etcd}"]


def wait_for(url: str, timeout_s: float) -> bool:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or (6379 if parts.scheme == "redis" else 2379)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            time.sleep(0.5)
    return False


def main() -> int:
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
