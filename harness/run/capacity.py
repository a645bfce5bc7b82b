"""What the server can take: a short burst of raw client calls, to set a stress run's ops/s against.

"Drives the lock hard" means nothing without a yardstick. Before a stress run, as many threads as it
has workers (bounded) send the cheapest honest write-and-delete to the server directly, with its raw
client (redis-py SET PX / DEL, python3-etcd3 put / delete, the fake's own acquire / release), for a
second or two on the same machine: the same client side (one Python process, its GIL, these cores)
and none of the harness's work (no lease checks, no history, no proxy). The ratio of the run's lock
calls per second to that figure says how much of the client side's reach the stress run used.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from lockchaos.backends.fake import FakeClient, FakeKVLock

PROBE_S = 1.5
"""Long enough for a few thousand round trips per thread, short enough to be a footnote to the run."""
MAX_THREADS = 32
"""More threads than this only queue on the GIL: the probe would measure the scheduler."""
CALL_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Capacity:
    """Raw server calls per second from ``threads`` threads over ``seconds``; or why none was measured."""

    ops_per_s: float | None
    threads: int
    seconds: float
    method: str


Op = Callable[[int, int], None]
"""One raw call: (thread index, call number) -> None; raises on failure."""


def _burst(ops: list[Op], seconds: float) -> tuple[int, float]:
    """Run each thread's op in a loop until ``seconds`` have passed: (calls done, wall seconds)."""
    counts = [0] * len(ops)
    errors: list[BaseException] = []
    start = threading.Event()
    deadline = [0.0]

    def loop(i: int) -> None:
        start.wait()
        n = 0
        try:
            while time.monotonic() < deadline[0]:
                ops[i](i, n)
                n += 1
        except Exception as exc:
            errors.append(exc)
        counts[i] = n

    threads = [threading.Thread(target=loop, args=(i,), name=f"lockchaos-capacity-{i}", daemon=True)
               for i in range(len(ops))]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    deadline[0] = t0 + seconds
    start.set()
    for t in threads:
        t.join(seconds + 2 * CALL_TIMEOUT_S + 5)
    wall = time.monotonic() - t0
    if errors and not sum(counts):
        raise errors[0]
    return sum(counts), wall


def _redis_ops(url: str, threads: int, prefix: str) -> tuple[list[Op], Callable[[], None]]:
    import redis

    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0)
    clients = [redis.Redis(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=db,
                           username=parts.username or None, password=parts.password,
                           ssl=parts.scheme == "rediss", socket_timeout=CALL_TIMEOUT_S,
                           socket_connect_timeout=CALL_TIMEOUT_S) for _ in range(threads)]

    def op(i: int, n: int) -> None:
        key = f"{prefix}{i}"
        if n % 2 == 0:
            clients[i].set(key, "x", px=60_000)
        else:
            clients[i].delete(key)

    def close() -> None:
        for c in clients:
            with contextlib.suppress(Exception):
                c.delete(*(f"{prefix}{i}" for i in range(threads)))
                break
        for c in clients:
            c.close()

    return [op] * threads, close


def _etcd_ops(url: str, threads: int, prefix: str) -> tuple[list[Op], Callable[[], None]]:
    import etcd3

    parts = urlsplit(url)
    clients = [etcd3.client(host=parts.hostname or "127.0.0.1", port=parts.port or 2379,
                            timeout=CALL_TIMEOUT_S) for _ in range(threads)]

    def op(i: int, n: int) -> None:
        key = f"{prefix}{i}"
        if n % 2 == 0:
            clients[i].put(key, "x")
        else:
            clients[i].delete(key)

    def close() -> None:
        with contextlib.suppress(Exception):
            clients[0].delete_prefix(prefix)
        for c in clients:
            with contextlib.suppress(Exception):
                c.close()

    return [op] * threads, close


def _fake_ops(fake: FakeKVLock, threads: int, prefix: str) -> tuple[list[Op], Callable[[], None]]:
    clients = [FakeClient(fake) for _ in range(threads)]

    def op(i: int, n: int) -> None:
        key = f"{prefix}{i}"
        if n % 2 == 0:
            clients[i].acquire(key, f"capacity-{i}", 60_000)
        else:
            clients[i].release(key, f"capacity-{i}")

    def close() -> None:
        for c in clients:
            c.close()

    return [op] * threads, close


def measure(*, url: str | None, fake: FakeKVLock | None, workers: int, prefix: str,
            seconds: float = PROBE_S) -> Capacity:
    """Raw calls per second against the server behind ``url`` (redis:// or etcd://) or the in-process
    ``fake``; keys under ``prefix``, deleted afterwards. A kind it cannot probe gives ``ops_per_s=None``."""
    threads = max(1, min(workers, MAX_THREADS))
    if url is not None:  # a server of the user's: only under the run's own prefix, as every key of the run
        theirs = parse_qs(urlsplit(url).query).get("prefix")
        prefix = theirs[-1] + prefix if theirs else prefix
    if fake is not None:
        ops, close = _fake_ops(fake, threads, prefix)
        method = "fake acquire/release"
    elif url is not None and urlsplit(url).scheme in ("redis", "rediss"):
        ops, close = _redis_ops(url, threads, prefix)
        method = "redis-py SET PX/DEL"
    elif url is not None and urlsplit(url).scheme in ("etcd", "http"):
        ops, close = _etcd_ops(url, threads, prefix)
        method = "python3-etcd3 put/delete"
    else:
        return Capacity(None, threads, 0.0, "no raw client for this server")
    try:
        calls, wall = _burst(ops, seconds)
    finally:
        close()
    return Capacity(calls / wall if wall > 0 else None, threads, round(wall, 3), method)
