"""Can a clock fault reach a real redis-server or etcd? The experiment behind clock-jump on real servers.

    .venv/bin/python bench/probe_clock_faults.py [--libfaketime PATH] [--rounds N]

Redis (Debian's 7.0.15, jemalloc):

- under libfaketime alone (``LD_PRELOAD``, a ``FAKETIME_TIMESTAMP_FILE`` at +1 h) it hangs at start:
  jemalloc calls ``clock_gettime`` while holding its init mutex, libfaketime initialises there and
  allocates, and jemalloc waits on itself (wolfcw/libfaketime#130);
- launched as the harness launches it for clock faults (``RedisServer(clock_faults=True)``:
  ``libfaketime.so.1:libc.so.6``, see harness/servers/faketime.py) it starts; the probe measures a
  10 s key after a +10.5 s ``jump_clock`` and the SET round trip with and without libfaketime.

etcd (Go, clock read through the vDSO):

- under libfaketime its first log line's timestamp is compared with the real clock;
- in a time namespace (``unshare --time``: offsets MONOTONIC/BOOTTIME, the clock Go's leases
  expire on), the probe tries to change the offset of the running etcd.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lockchaos.harness.servers.faketime import remove_residue
from lockchaos.harness.servers.flags import LOOPBACK, etcd_flags, free_ports
from lockchaos.harness.servers.process import RedisServer

LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
OFFSET_S = 3600


def _env(lib: str, rc: Path) -> dict[str, str]:
    rc.write_text(f"+{OFFSET_S}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    env.update(LD_PRELOAD=lib, FAKETIME_TIMESTAMP_FILE=str(rc), FAKETIME_NO_CACHE="1")
    return env


def probe_redis_bare(lib: str, work: Path) -> str:
    (port,) = free_ports(1)
    log = work / "redis.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", LOOPBACK, "--save", "",
                                 "--appendonly", "no", "--dir", str(work)],
                                stdout=out, stderr=subprocess.STDOUT, env=_env(lib, work / "redis.rc"))
    try:
        client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=0.5, socket_connect_timeout=0.5,
                             retry=Retry(NoBackoff(), 0))
        for _ in range(30):
            try:
                server_s = int(client.time()[0])
                return f"redis-server clock is {server_s - time.time():+.0f} s off the real clock"
            except redis.RedisError:
                time.sleep(0.1)
        tail = log.read_text(errors="replace").strip().splitlines()[-1:]
        return f"redis-server under libfaketime alone did not answer within 3 s (exit {proc.poll()}): {tail}"
    finally:
        proc.kill()
        proc.wait()
        remove_residue(proc.pid)  # libfaketime's /dev/shm files outlive a SIGKILLed process


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis(host=server.host, port=server.port, socket_timeout=2, socket_connect_timeout=2)


def probe_redis_jump() -> str:
    """A 10 s key, then a +10.5 s jump of the server's wall clock: is the key gone at the next call?"""
    with RedisServer(clock_faults=True) as server:
        c = _client(server)
        sec, usec = c.time()
        before = sec + usec / 1e6 - time.time()
        c.set("lease", "holder", px=10_000)
        alive = c.exists("lease")
        t0 = time.monotonic()
        server.jump_clock(10_500)
        gone = c.exists("lease") == 0
        took_ms = (time.monotonic() - t0) * 1000
        sec, usec = c.time()
        after = sec + usec / 1e6 - time.time()
    return (f"redis-server under the harness's libfaketime launch: clock {before:+.3f} s off real time; a key "
            f"with a 10 s TTL (exists={alive}) after a +10.5 s jump_clock: "
            f"{'gone' if gone else 'STILL THERE'} {took_ms:.1f} ms later; server clock then {after:+.3f} s")


def _set_rtt_us(server: RedisServer, n: int) -> float:
    c = _client(server)
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        c.set("k", "v", px=10_000)
        samples.append((time.perf_counter() - t) * 1e6)
    return statistics.median(samples)


def probe_redis_overhead(rounds: int, n: int = 2000) -> str:
    """Median SET round trip with and without libfaketime, servers interleaved to share the machine's load."""
    with RedisServer() as plain, RedisServer(clock_faults=True) as faked:
        p = [_set_rtt_us(plain, n) for _ in range(rounds)]
        f = [_set_rtt_us(faked, n) for _ in range(rounds)]
    return (f"SET round trip, median of {n} x {rounds} rounds: plain {statistics.median(p):.0f} us, "
            f"under libfaketime {statistics.median(f):.0f} us")


def probe_etcd(lib: str, work: Path) -> str:
    port, peer = free_ports(2)
    log = work / "etcd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["etcd", *etcd_flags(LOOPBACK, port, peer, str(work / "etcd"), True)],
                                stdout=out, stderr=subprocess.STDOUT, env=_env(lib, work / "etcd.rc"))
    try:
        time.sleep(1.5)
    finally:
        proc.kill()
        proc.wait()
        remove_residue(proc.pid)  # libfaketime's /dev/shm files outlive a SIGKILLed process
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", line)
        if m:
            logged = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            utc_offset = datetime.now().astimezone().utcoffset()
            skew = logged - time.time() + (utc_offset.total_seconds() if utc_offset else 0)
            return f"etcd's log clock is {skew:+.0f} s off the real clock (libfaketime asked for +{OFFSET_S} s)"
    return "etcd wrote no timestamped log line"


def probe_etcd_timens(work: Path) -> str:
    """Start etcd in a fresh time namespace, then try to move its monotonic clock while it runs."""
    port, peer = free_ports(2)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    with (work / "etcd-ns.log").open("wb") as out:
        proc = subprocess.Popen(["unshare", "--fork", "--time", "--monotonic", "0", "etcd",
                                 *etcd_flags(LOOPBACK, port, peer, str(work / "etcd-ns"), True)],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 5
        child = None
        while child is None and time.monotonic() < deadline and proc.poll() is None:
            kids = psutil.Process(proc.pid).children()
            child = kids[0].pid if kids else None
            time.sleep(0.05)
        if child is None:
            return f"etcd did not start in a time namespace (unshare exit {proc.poll()})"
        offsets = Path(f"/proc/{child}/timens_offsets")
        try:
            offsets.write_text("monotonic 3600 0\n")
        except OSError as exc:
            return (f"etcd in a time namespace: moving its monotonic offset while it runs fails "
                    f"({type(exc).__name__}: {exc.strerror}); offsets now {offsets.read_text().split()[:3]}")
        return f"etcd in a time namespace: the monotonic offset changed mid-run ({offsets.read_text().split()[:3]})"
    finally:
        for kid in psutil.Process(proc.pid).children() if proc.poll() is None else []:
            kid.kill()  # unshare --fork does not pass a SIGKILL on to etcd
            kid.wait(5)
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libfaketime", default=LIB)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lockchaos-probe-") as tmp:
        print(probe_redis_bare(args.libfaketime, Path(tmp)))
        print(probe_redis_jump())
        print(probe_redis_overhead(args.rounds))
        print(probe_etcd(args.libfaketime, Path(tmp)))
        print(probe_etcd_timens(Path(tmp)))


if __name__ == "__main__":
    main()
