"""Can a clock fault reach a real redis-server or etcd? The experiment behind clock-jump's skip reasons.

    .venv/bin/python bench/probe_clock_faults.py [--libfaketime PATH]

Starts each server under Debian's libfaketime (package ``faketime``: ``LD_PRELOAD`` plus a
``FAKETIME_TIMESTAMP_FILE`` control file holding an offset of +1 hour, ``FAKETIME_NO_CACHE=1``) and
reports what the server's clock says:

- redis-server: asks ``TIME`` and compares with the real clock; if the server does not come up, shows
  its log (Debian's redis-server links jemalloc, whose clock_gettime calls during libfaketime's own
  initialisation make libfaketime give up: wolfcw/libfaketime#130, open).
- etcd: compares the timestamp of its first log line with the real clock (a Go binary reads the
  clock through the vDSO, which LD_PRELOAD does not interpose).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from datetime import datetime
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lockchaos.harness.servers.flags import LOOPBACK, etcd_flags, free_ports

LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
OFFSET_S = 3600


def _env(lib: str, rc: Path) -> dict[str, str]:
    rc.write_text(f"+{OFFSET_S}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD_")}
    env.update(LD_PRELOAD=lib, FAKETIME_TIMESTAMP_FILE=str(rc), FAKETIME_NO_CACHE="1")
    return env


def probe_redis(lib: str, work: Path) -> str:
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
        return f"redis-server did not come up under libfaketime (exit {proc.poll()}): {tail}"
    finally:
        proc.kill()
        proc.wait()


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
    for line in log.read_text(errors="replace").splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)", line)
        if m:
            logged = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            utc_offset = datetime.now().astimezone().utcoffset()
            skew = logged - time.time() + (utc_offset.total_seconds() if utc_offset else 0)
            return f"etcd's log clock is {skew:+.0f} s off the real clock (libfaketime asked for +{OFFSET_S} s)"
    return "etcd wrote no timestamped log line"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libfaketime", default=LIB)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lockchaos-probe-") as tmp:
        print(probe_redis(args.libfaketime, Path(tmp)))
        print(probe_etcd(args.libfaketime, Path(tmp)))


if __name__ == "__main__":
    main()
