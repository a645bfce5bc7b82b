"""Fault proxies in processes of their own, so that the harness's GIL never sits on their data path.

A FaultProxy moves healthy traffic with splice(2), but its threads still wake in Python for every
chunk: in the harness's process they wait for the GIL that the workers, the nemesis and the recorder
hold, and 16 or 64 proxies in one process share that one GIL, so the more proxies, the less each
gets. A ``ProxyHost`` is a child interpreter that runs a few FaultProxy objects (the very same class,
so every fault behaves exactly as it does in process); the harness drives each through a
``HostedProxy``, which has FaultProxy's public API, forwards each call over a socketpair and waits
for the answer, so that a fault is in effect when the call returns, as before.

A host cannot outlive the harness: it is started with ``PR_SET_PDEATHSIG`` (``servers/process.py``)
and it exits as soon as its end of the socketpair reads EOF, which the harness's death, however it
dies, causes. It listens on 127.0.0.1 only, through FaultProxy.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import subprocess
import sys
import threading
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Self

import lockchaos
from lockchaos.backends.base import ConfigurationError, InfrastructureError
from lockchaos.harness.faults.proxy import FaultProxy, ProxyStats, proxied_url
from lockchaos.harness.servers.flags import LOOPBACK
from lockchaos.harness.servers.process import spawn_tied

_START_S = 60.0  # the first answer waits for a fresh interpreter to import us, on a loaded machine
_CALL_S = 20.0  # a FaultProxy call answers within 5 s, stop() within about 10: a safety bound
_EXIT_S = 15.0
_ROOT = str(Path(lockchaos.__file__).parent.parent)  # where ``import lockchaos`` found us
_ERRORS: dict[str, type[Exception]] = {"ConfigurationError": ConfigurationError,
                                       "InfrastructureError": InfrastructureError}
# what a HostedProxy may ask of the FaultProxy it stands for
_METHODS = frozenset({"blackhole", "blackhole_replies", "delay_replies", "heal", "refuse", "reset",
                      "set_latency", "stats", "stop"})


class ProxyHost:
    """One child process running FaultProxy objects on the harness's behalf."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._conn: Connection | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()  # guards sending, _pending and _alive
        self._pending: dict[int, Future[object]] = {}
        self._ids = itertools.count(1)
        self._alive = False
        self.proxies = 0  # opened here so far: the pool fills a host up to its share, then starts another

    def __repr__(self) -> str:
        pid = self._proc.pid if self._proc is not None else "unstarted"
        return f"<ProxyHost {self.name or '-'} pid {pid}>"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._alive

    def start(self) -> Self:
        if self._proc is not None:
            raise InfrastructureError(f"{self!r} was already started")
        ours, theirs = socket.socketpair()
        try:
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)}
            self._proc = spawn_tied(
                [sys.executable, "-m", "lockchaos.harness.faults.proxyhost", str(theirs.fileno())],
                Path(os.devnull), env, pass_fds=(theirs.fileno(),),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            ours.close()
            raise InfrastructureError(f"cannot start a proxy host: {exc}") from exc
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._alive = True
        self._reader = threading.Thread(target=self._read, name=f"proxy-host-{self.name}", daemon=True)
        self._reader.start()
        return self

    def open(self, upstream_host: str, upstream_port: int, *, name: str, allow_non_loopback: bool,
             splice: bool = True) -> HostedProxy:
        """A FaultProxy started in this host, and the handle that drives it."""
        answer = self.call(0, "open", (upstream_host, upstream_port, name, allow_non_loopback, splice), _START_S)
        assert isinstance(answer, tuple)
        proxy_id, port = answer
        self.proxies += 1
        return HostedProxy(self, proxy_id, port, upstream_host, upstream_port, name)

    def call(self, proxy_id: int, method: str, args: tuple[object, ...] = (), timeout: float = _CALL_S) -> object:
        """Run ``method`` of one hosted proxy in the host and return its result (or raise its error)."""
        fut: Future[object] = Future()
        with self._lock:
            if not self._alive or self._conn is None:
                raise InfrastructureError(f"{self!r} is not running")
            rid = next(self._ids)
            self._pending[rid] = fut
            try:
                self._conn.send((rid, proxy_id, method, args))
            except OSError as exc:
                del self._pending[rid]
                raise InfrastructureError(f"{self!r} is not running: {exc}") from None
        try:
            return fut.result(timeout)
        except TimeoutError:
            raise InfrastructureError(f"{self!r} did not answer {method} within {timeout:g} s") from None

    def stop(self) -> None:
        """Stop every proxy in the host and the host itself; safe to call again."""
        proc, conn = self._proc, self._conn
        if proc is None or conn is None:
            return
        with self._lock, contextlib.suppress(OSError):
            conn.send(None)  # "exit": the host stops its proxies and returns
        try:
            proc.wait(_EXIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._reader is not None:
            self._reader.join(_EXIT_S)
        conn.close()
        self._conn = None

    def __enter__(self) -> Self:
        return self if self._proc is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _read(self) -> None:
        assert self._conn is not None
        try:
            while True:
                rid, ok, value = self._conn.recv()
                fut = self._pending.pop(rid, None)
                if fut is None:
                    continue  # its caller gave up waiting
                if ok:
                    fut.set_result(value)
                else:
                    kind, message = value
                    fut.set_exception(_ERRORS.get(kind, InfrastructureError)(message))
        except (EOFError, OSError):
            pass
        finally:
            with self._lock:
                self._alive = False
                pending, self._pending = self._pending, {}
            status = "?"
            if pending and self._proc is not None:  # say how it ended: its output goes nowhere
                with contextlib.suppress(subprocess.TimeoutExpired):
                    status = str(self._proc.wait(1.0))
            for fut in pending.values():
                fut.set_exception(InfrastructureError(f"{self!r} exited (status {status})"))


class HostedProxy:
    """Stands for one FaultProxy that runs in a ProxyHost: the same public API, each call forwarded."""

    def __init__(self, host: ProxyHost, proxy_id: int, port: int, upstream_host: str, upstream_port: int,
                 name: str) -> None:
        self._host, self._id, self._port = host, proxy_id, port
        self.upstream_host, self.upstream_port, self.name = upstream_host, upstream_port, name

    def __repr__(self) -> str:
        return (f"<FaultProxy {self.name or '-'} {LOOPBACK}:{self._port} -> {self.upstream_host}:"
                f"{self.upstream_port} in {self._host!r}>")

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return LOOPBACK, self._port

    @property
    def host_pid(self) -> int | None:
        """The process that moves this proxy's bytes (to measure its CPU)."""
        return self._host.pid

    def url_for(self, url: str) -> str:
        return proxied_url(url, self.upstream_host, self.upstream_port, self._port, repr(self))

    def stats(self) -> ProxyStats:
        stats = self._host.call(self._id, "stats")
        assert isinstance(stats, ProxyStats)
        return stats

    def blackhole(self) -> None:
        self._host.call(self._id, "blackhole")

    def blackhole_replies(self) -> None:
        self._host.call(self._id, "blackhole_replies")

    def reset(self) -> None:
        self._host.call(self._id, "reset")

    def refuse(self, on: bool = True) -> None:
        self._host.call(self._id, "refuse", (on,))

    def set_latency(self, ms: float) -> None:
        self._host.call(self._id, "set_latency", (ms,))

    def delay_replies(self, ms: float) -> None:
        self._host.call(self._id, "delay_replies", (ms,))

    def heal(self) -> None:
        self._host.call(self._id, "heal")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the proxy in its host; a host already gone has stopped it. Safe to call again."""
        if self._host.running:
            self._host.call(self._id, "stop", (timeout,), _CALL_S + timeout)


def serve(fd: int) -> None:
    """The host's main loop: one request at a time, each answered when done; EOF or None ends it."""
    conn = Connection(fd)
    proxies: dict[int, FaultProxy] = {}
    ids = itertools.count(1)
    try:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):  # the harness is gone
                return
            if request is None:
                return
            rid, proxy_id, method, args = request
            try:
                if method == "open":
                    host, port, name, allow, splice = args
                    proxy = FaultProxy(host, port, name=name, allow_non_loopback=allow, splice=splice).start()
                    proxy_id = next(ids)
                    proxies[proxy_id] = proxy
                    answer: tuple[int, object, object] = (rid, True, (proxy_id, proxy.port))
                elif method in _METHODS and proxy_id in proxies:
                    result = getattr(proxies[proxy_id], method)(*args)
                    if method == "stop":
                        del proxies[proxy_id]
                    answer = (rid, True, result)
                elif method == "stop":
                    answer = (rid, True, None)  # stopped already: stop() is idempotent
                else:
                    raise InfrastructureError(f"proxy host: no proxy {proxy_id} or no method {method!r}")
            except Exception as exc:
                answer = (rid, False, (type(exc).__name__, str(exc)))
            try:
                conn.send(answer)
            except OSError:
                return
    finally:
        for proxy in proxies.values():
            with contextlib.suppress(Exception):
                proxy.stop()
        conn.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
