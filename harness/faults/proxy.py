"""A fault-injecting TCP proxy between one client and its lock server, on loopback.

Faults are injected on real sockets so that a partition, a reset or added latency reaches redis-py
and the gRPC stack of the etcd client as a network would deliver it: as timeouts, ``ECONNRESET`` and
``ECONNREFUSED``, not through mocks. One selector thread per proxy owns every socket; fault commands
run *on* that thread and return once in effect, so that the fault window a history records is the
window the clients saw.

While no fault needs to see the bytes (no blackhole, no latency: ``refuse`` only touches the
listener), each connection is relayed by the kernel (``proxylink.KernelRelay``: a second thread per
proxy waits in ``epoll(7)`` and moves bytes with ``splice(2)``), so that a chunk costs a few
microseconds of GIL instead of the whole per-chunk Python path (allocation, queue, timers, selector
bookkeeping), and one wake-up serves every connection that is ready. A fault command first has
that thread let go of every connection (it waits for nothing else, so this takes one wake-up),
takes the bytes still in the pipes into the Python queues, and only then applies: it is in effect
when the call returns, exactly as on the Python path. When the proxy is healthy again, connections
whose queues have drained go back to the kernel path. Without ``os.splice`` and ``epoll`` (not
Linux) every byte takes the Python path.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import ipaddress
import math
import os
import queue
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self
from urllib.parse import urlsplit, urlunsplit

from lockchaos.backends.base import ConfigurationError, InfrastructureError
from lockchaos.backends.redaction import redact_url
from lockchaos.harness.faults.proxylink import CHUNK, SPLICE_AVAILABLE, Conn, KernelRelay, Pipe
from lockchaos.harness.servers.flags import LOOPBACK
from lockchaos.harness.servers.specs import default_ports

if TYPE_CHECKING:
    from lockchaos.harness.faults.proxyhost import ProxyHost

_DEFAULT_PORTS = default_ports()  # each server spec's client port (harness/servers/specs)
_MAX_QUEUED = 1 << 20  # per direction; beyond it the proxy stops reading, as a full TCP window would
_MAX_CONNECTIONS = 256  # bounds the fds that a client reconnecting in a loop can make us hold
_ACCEPTS_PER_TICK = 64
_MAX_TICK_S = 0.5
_PORT_ATTEMPTS = 5
_RST_LINGER = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE


@dataclasses.dataclass(frozen=True, slots=True)
class ProxyStats:
    """Counters since start. A snapshot never counts a byte twice; bytes the relay thread has just
    passed on may show a moment later (it counts after each chunk, without a lock)."""

    accepted: int = 0  # connections accepted from clients
    rejected: int = 0  # accepted, then reset at once (refuse() off Linux, or over the connection cap)
    reset: int = 0  # connections aborted with RST: reset(), a reset or refusal upstream, stop()
    open: int = 0
    bytes_up: int = 0  # client -> server, delivered
    bytes_down: int = 0  # server -> client, delivered
    bytes_dropped: int = 0  # read by the proxy and never delivered (blackhole, reset, stop)
    spliced: int = 0  # open connections currently relayed by the kernel (no fault needs their bytes)


def _resolve(host: str, port: int, allow_non_loopback: bool) -> tuple[int, tuple[str, int]]:
    """Resolve once, up front: the loop thread must never block on DNS."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigurationError(f"bad upstream port {port!r}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise ConfigurationError(f"cannot resolve upstream {host!r}: {exc}") from None
    if not allow_non_loopback and not all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos):
        raise ConfigurationError(
            f"upstream {host}:{port} is not loopback; aiming a chaos proxy at a real network host "
            "needs allow_non_loopback=True"
        )
    return infos[0][0], (str(infos[0][4][0]), int(infos[0][4][1]))


def _is_loopback_name(host: str) -> bool:
    with contextlib.suppress(ValueError):
        return host.lower() == "localhost" or ipaddress.ip_address(host).is_loopback
    return False


def proxied_url(url: str, upstream_host: str, upstream_port: int, port: int, proxy: str) -> str:
    """``url`` with its host:port replaced by the proxy's loopback port, if it names the upstream."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if parts.scheme not in _DEFAULT_PORTS or "," in hosts:
        raise ConfigurationError(f"cannot proxy {redact_url(url)!r}: expected redis://... or etcd:// with one host")
    try:
        endpoint = urlsplit(f"//{hosts}")
        host, url_port = endpoint.hostname or "", endpoint.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ConfigurationError(f"bad URL {redact_url(url)!r}: {exc}") from None
    loopbacks = _is_loopback_name(host) and _is_loopback_name(upstream_host)
    if url_port != upstream_port or not (loopbacks or host.lower() == upstream_host.lower()):
        raise ConfigurationError(f"{redact_url(url)!r} does not name the upstream of {proxy}")
    return urlunsplit(parts._replace(netloc=f"{userinfo}{at}{LOOPBACK}:{port}"))


def _listen() -> socket.socket:
    """Listen on an *explicitly* bound port: Linux frees a port bound as 0 when listening stops,
    and refuse()/heal() must stop and resume listening on the same port. SO_REUSEADDR lets the
    re-listen succeed while accepted connections use the port; it never lets two sockets listen."""
    for _ in range(_PORT_ATTEMPTS):
        with socket.socket() as probe:
            probe.bind((LOOPBACK, 0))
            port = int(probe.getsockname()[1])
        sock = socket.socket()
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LOOPBACK, port))  # another process may take the port between probe and bind
            sock.listen(128)
            sock.setblocking(False)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise
    raise InfrastructureError(f"fault proxy: every loopback port picked was taken ({_PORT_ATTEMPTS} tries)")


def _abort(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RST_LINGER)
    sock.close()


class FaultProxy:
    """Forwards 127.0.0.1:<port> to one upstream and injects network faults on command.

    Faults are thread-safe, apply at once to existing and new connections, and are in effect when
    the call returns. A proxy is started once; make a new one to start again.
    """

    def __init__(
        self, upstream_host: str, upstream_port: int, *, name: str = "", allow_non_loopback: bool = False,
        splice: bool = True,
    ) -> None:
        """``splice=False`` keeps every byte on the Python path (to measure or test that path)."""
        self.upstream_host, self.upstream_port, self.name = upstream_host, upstream_port, name
        self._splice = splice and SPLICE_AVAILABLE
        self._family, self._upstream = _resolve(upstream_host, upstream_port, allow_non_loopback)
        self._port = 0
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._sel: selectors.BaseSelector | None = None
        self._thread: threading.Thread | None = None
        self._commands: queue.SimpleQueue[tuple[Callable[[], object], Future[None]]] = queue.SimpleQueue()
        self._conns: set[Conn] = set()
        # Counters, written by the loop thread only; multi-field changes and the hand-over of a relay
        # thread's byte count take _stats_lock, so that stats() never counts a byte twice.
        self._stats_lock = threading.Lock()
        self._accepted = self._rejected = self._resets = self._open = 0
        self._up = self._down = self._dropped = 0
        self._relaying: set[Pipe] = set()  # pipes of connections handed to the relay
        self._spliced = 0
        self._relay: KernelRelay | None = None
        # once started, written by the loop thread only
        self._running = self._refusing = False
        # Each fault has a direction: "up" is client -> server (requests), "down" the replies.
        self._dropping = {"up": False, "down": False}
        self._delay_s = {"up": 0.0, "down": 0.0}
        # cut_clients(): connections whose client's source port matches are blackholed both ways
        self._cut_match: Callable[[int], bool] | None = None
        self._cut: set[Conn] = set()

    def __repr__(self) -> str:
        where = f"{LOOPBACK}:{self._port}" if self._port else "unstarted"
        return f"<FaultProxy {self.name or '-'} {where} -> {self.upstream_host}:{self.upstream_port}>"

    @property
    def port(self) -> int:
        if not self._port:
            raise InfrastructureError(f"{self!r} has no port: it was never started")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        return LOOPBACK, self.port

    def stats(self) -> ProxyStats:
        """A snapshot of the counters; relay threads' bytes are read as far as they have got."""
        with self._stats_lock:
            up, down = self._up, self._down
            for pipe in self._relaying:
                if pipe.upward:
                    up += pipe.delivered
                else:
                    down += pipe.delivered
            return ProxyStats(
                accepted=self._accepted, rejected=self._rejected, reset=self._resets, open=self._open,
                bytes_up=up, bytes_down=down, bytes_dropped=self._dropped, spliced=self._spliced,
            )

    def url_for(self, url: str) -> str:
        """``url`` aimed at this proxy. A URL naming another server is refused: proxying it to this
        upstream would silently fault the wrong link."""
        return proxied_url(url, self.upstream_host, self.upstream_port, self.port, repr(self))

    # -- lifecycle
    def start(self) -> Self:
        if self._thread is not None:
            raise InfrastructureError(f"{self!r} was already started; make a new proxy instead")
        try:
            self._listener = _listen()
            self._port = int(self._listener.getsockname()[1])
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._sel = selectors.DefaultSelector()
            self._sel.register(self._listener, _READ, "accept")
            self._sel.register(self._wake_r, _READ, "wake")
            if self._splice:
                self._relay = KernelRelay(f"fault-proxy-{self.name}-relay", self._post).start()
            self._running = True
            self._thread = threading.Thread(target=self._run, name=f"fault-proxy-{self.name}", daemon=True)
            self._thread.start()
        except (OSError, RuntimeError) as exc:
            self._running = False
            if self._relay is not None:
                self._relay.stop()
                self._relay = None
            self._close_own_sockets()
            raise InfrastructureError(f"cannot start {self!r}: {exc}") from exc
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Abort every connection, close every socket and join the thread; safe to call again."""
        thread = self._thread
        if thread is not None and thread.is_alive():
            with contextlib.suppress(InfrastructureError):
                self._call(lambda: setattr(self, "_running", False), timeout)
            thread.join(timeout)
            if thread.is_alive():
                raise InfrastructureError(f"{self!r}: its thread did not stop within {timeout:g} s")
        self._close_own_sockets()

    def __enter__(self) -> Self:
        return self if self._thread is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- faults
    def blackhole(self) -> None:
        """Partition: connections stay open and new ones are accepted, but every byte either way is
        discarded, those in flight in the proxy included, so clients see timeouts, never resets.
        An endpoint's close still closes the other side, lest dead connections pile up."""
        self._call(self._do_blackhole)

    def reset(self) -> None:
        """Abort every current connection with a TCP RST on both sides."""
        self._call(self._do_reset)

    def refuse(self, on: bool = True) -> None:
        """New connections get ECONNREFUSED (the proxy stops listening); existing ones keep working."""
        self._call(lambda: self._do_refuse(on))

    def set_latency(self, ms: float) -> None:
        """Forward every chunk ``ms`` later in each direction, in order, the queued ones included."""
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms) or ms < 0:
            raise ConfigurationError(f"latency must be a finite number of ms >= 0, got {ms!r}")
        self._call(lambda: self._do_delay(up=ms / 1000, down=ms / 1000))

    def delay_replies(self, ms: float) -> None:
        """Forward server -> client bytes ``ms`` later, requests at once: a reply that arrives late."""
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not math.isfinite(ms) or ms < 0:
            raise ConfigurationError(f"reply delay must be a finite number of ms >= 0, got {ms!r}")
        self._call(lambda: self._do_delay(down=ms / 1000))

    def blackhole_replies(self) -> None:
        """Requests still reach the server, but its replies vanish: the call took effect, the client
        cannot know (the "release lost to a connection reset" case, before the reset)."""
        self._call(lambda: self._do_blackhole(up=False))

    def cut_clients(self, match: Callable[[int], bool]) -> None:
        """Blackhole, both ways, only the connections whose client's source port ``match`` picks:
        those open now and those accepted until ``heal()``. The others keep flowing. This is how a
        cluster member is cut off from its peers while chosen clients still reach it: the caller
        tells a peer's connection by the process that owns its port. ``match`` runs on the proxy's
        thread, once per connection."""
        self._call(lambda: self._do_cut(match))

    def heal(self) -> None:
        """Back to normal; bytes discarded during a blackhole stay lost."""
        self._call(self._do_heal)

    def _call(self, fn: Callable[[], object], timeout: float = 5.0) -> None:
        """Run ``fn`` on the loop thread, which owns every socket, and wait until it has run."""
        thread, wake = self._thread, self._wake_w
        if thread is None or not thread.is_alive() or not self._running or wake is None:
            raise InfrastructureError(f"{self!r} is not running")
        fut: Future[None] = Future()
        self._commands.put((fn, fut))
        try:
            wake.send(b"\0")
        except BlockingIOError:
            pass  # a full wake pipe wakes the loop all the same
        except OSError as exc:  # stop() closed it under us
            raise InfrastructureError(f"{self!r} is not running: {exc}") from None
        try:
            fut.result(timeout)
        except TimeoutError:
            raise InfrastructureError(f"{self!r}: its thread did not answer within {timeout:g} s") from None

    def _do_blackhole(self, up: bool = True, down: bool = True) -> None:
        self._unsplice_all()
        self._dropping["up"] |= up
        self._dropping["down"] |= down
        for conn in self._conns:
            for pipe in (conn.up,) * up + (conn.down,) * down:
                self._dropped += pipe.queued
                pipe.chunks.clear()
                pipe.queued = 0

    def _do_cut(self, match: Callable[[int], bool]) -> None:
        self._cut_match = match
        picked = [conn for conn in self._conns if self._matches(conn)]
        self._unsplice(*picked)
        for conn in picked:
            self._cut.add(conn)
            for pipe in (conn.up, conn.down):
                self._dropped += pipe.queued
                pipe.chunks.clear()
                pipe.queued = 0

    def _matches(self, conn: Conn) -> bool:
        if self._cut_match is None:
            return False
        try:
            port = int(conn.client.getpeername()[1])
        except OSError:  # already reset by the client: nothing left to cut
            return False
        return self._cut_match(port)

    def _do_delay(self, **delay_s: float) -> None:
        if any(delay_s.values()):
            self._unsplice_all()
        self._delay_s.update(delay_s)

    def _do_reset(self) -> None:
        self._unsplice_all()
        for conn in list(self._conns):
            self._drop(conn, abort=True)

    def _do_refuse(self, on: bool) -> None:
        assert self._listener is not None and self._sel is not None
        if on and not self._refusing:
            self._sel.unregister(self._listener)
            try:
                self._listener.shutdown(socket.SHUT_RD)  # Linux: stops listening, keeps the port
            except OSError:  # elsewhere: keep listening, and _accept resets each new connection
                self._sel.register(self._listener, _READ, "accept")
        elif not on and self._refusing:
            try:
                self._listener.listen(128)
            except OSError as exc:  # another process bound the port meanwhile
                raise InfrastructureError(f"{self!r} cannot listen again on its port: {exc}") from None
            with contextlib.suppress(KeyError):  # KeyError: it never stopped listening
                self._sel.register(self._listener, _READ, "accept")
        self._refusing = on

    def _do_heal(self) -> None:
        self._do_refuse(False)
        self._dropping.update(up=False, down=False)
        self._delay_s.update(up=0.0, down=0.0)
        self._cut_match = None
        self._cut.clear()

    # -- the loop
    def _run(self) -> None:
        try:
            while self._running:
                self._tick()
        finally:
            self._running = False
            with contextlib.suppress(InfrastructureError):
                self._unsplice_all()
            for conn in list(self._conns):
                with contextlib.suppress(InfrastructureError):
                    self._drop(conn, abort=True)
            if self._relay is not None:
                self._relay.stop()
            while not self._commands.empty():  # nobody will run these: fail them, don't hang callers
                self._commands.get_nowait()[1].set_exception(InfrastructureError(f"{self!r} stopped"))

    def _tick(self) -> None:
        assert self._sel is not None and self._wake_r is not None
        for key, mask in self._sel.select(self._timeout(time.monotonic())):
            if key.data == "accept":
                self._accept()
            elif key.data == "wake":
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
            elif not key.data.closed:
                self._on_event(key.data, key.fileobj, mask)
        while not self._commands.empty():
            fn, fut = self._commands.get_nowait()
            try:
                fn()
                fut.set_result(None)
            except Exception as exc:
                fut.set_exception(exc)
        now = time.monotonic()
        healthy = self._healthy()
        for conn in list(self._conns):
            if conn.spliced:
                continue
            self._flush(conn, conn.up, now)
            self._flush(conn, conn.down, now)
            if conn.closed:
                continue
            if not (healthy and conn not in self._cut and self._may_splice(conn) and self._start_splicing(conn)):
                self._update_interest(conn)

    def _timeout(self, now: float) -> float:
        due = now + _MAX_TICK_S
        for conn in self._conns:
            for pipe in (conn.up, conn.down):
                if pipe.chunks and not pipe.blocked and not (pipe is conn.up and conn.connecting):
                    due = min(due, pipe.chunks[0][0] + self._delay(conn, pipe))
        return max(0.0, due - now)

    def _accept(self) -> None:
        assert self._listener is not None
        for _ in range(_ACCEPTS_PER_TICK):
            try:
                client, _ = self._listener.accept()
            except OSError:  # backlog empty, or out of fds: the rest waits for the next tick
                return
            self._accepted += 1
            if self._refusing or len(self._conns) >= _MAX_CONNECTIONS:
                _abort(client)
                self._rejected += 1
                continue
            upstream = socket.socket(self._family, socket.SOCK_STREAM)
            for sock in (client, upstream):
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # Nagle would add latency
            err = upstream.connect_ex(self._upstream)
            conn = Conn(client, upstream, connecting=err == errno.EINPROGRESS)
            self._conns.add(conn)
            self._open += 1
            if self._matches(conn):
                self._cut.add(conn)
            if err not in (0, errno.EINPROGRESS):
                self._drop(conn, abort=True)  # upstream refused: the client sees a reset

    def _on_event(self, conn: Conn, sock: object, mask: int) -> None:
        if mask & _WRITE and conn.connecting and sock is conn.upstream:
            if conn.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self._drop(conn, abort=True)  # upstream refused: the client sees a reset
                return
            conn.connecting = False
        elif mask & _WRITE:
            (conn.down if sock is conn.client else conn.up).blocked = False
        if not mask & _READ:
            return
        pipe = conn.up if sock is conn.client else conn.down
        try:
            data = pipe.src.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # a reset on one side becomes a reset on the other
            self._drop(conn, abort=True)
            return
        cut = conn in self._cut
        dropping = cut or self._dropping["up" if pipe is conn.up else "down"]
        if not data and (cut or self._dropping["up"] or self._dropping["down"]):
            self._drop(conn, abort=False)
        elif not data:
            pipe.eof = True
        elif dropping:
            self._dropped += len(data)
        else:
            pipe.chunks.append((time.monotonic(), data))
            pipe.queued += len(data)

    def _flush(self, conn: Conn, pipe: Pipe, now: float) -> None:
        """Send what is due, in order, until the queue is empty or the socket's buffer is full."""
        if conn.closed or (pipe is conn.up and conn.connecting):
            return
        delay = self._delay(conn, pipe)
        while pipe.chunks and not pipe.blocked and pipe.chunks[0][0] + delay <= now:
            arrival, data = pipe.chunks[0]
            try:
                sent = pipe.dst.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._drop(conn, abort=True)
                return
            pipe.queued -= sent
            if pipe.upward:
                self._up += sent
            else:
                self._down += sent
            if sent < len(data):
                pipe.chunks[0], pipe.blocked = (arrival, data[sent:]), True
                return
            pipe.chunks.popleft()
        if pipe.eof and not pipe.chunks and not pipe.shut:
            with contextlib.suppress(OSError):
                pipe.dst.shutdown(socket.SHUT_WR)
            pipe.shut = True
            if conn.up.shut and conn.down.shut:
                self._drop(conn, abort=False)

    def _delay(self, conn: Conn, pipe: Pipe) -> float:
        return self._delay_s["up" if pipe is conn.up else "down"]

    def _update_interest(self, conn: Conn) -> None:
        """Read only what there is room to queue (back-pressure); wait for writability only when
        a send could not complete, or the upstream connect is under way."""
        assert self._sel is not None
        up, down = conn.up, conn.down
        for sock, events in (
            (conn.client, (_READ * (not up.eof and up.queued < _MAX_QUEUED)) | (_WRITE * down.blocked)),
            (conn.upstream, (_READ * (not conn.connecting and not down.eof and down.queued < _MAX_QUEUED))
             | (_WRITE * (conn.connecting or up.blocked))),
        ):
            had, conn.events[sock] = conn.events[sock], events
            if events == had:
                continue
            if not had:
                self._sel.register(sock, events, conn)
            elif not events:
                self._sel.unregister(sock)
            else:
                self._sel.modify(sock, events, conn)

    def _drop(self, conn: Conn, *, abort: bool) -> None:
        if conn.closed:
            return
        try:
            self._unsplice(conn)
        finally:
            conn.closed = True
            self._conns.discard(conn)
            self._cut.discard(conn)
            for sock in (conn.client, conn.upstream):
                if conn.events[sock] and self._sel is not None:
                    self._sel.unregister(sock)
                _abort(sock) if abort else sock.close()
            for fd in (*(conn.up.kernel or ()), *(conn.down.kernel or ())):
                os.close(fd)
            conn.up.kernel = conn.down.kernel = None
            with self._stats_lock:
                self._open -= 1
                self._resets += abort
                self._dropped += conn.up.queued + conn.down.queued

    # -- the kernel path
    def _healthy(self) -> bool:
        """No fault needs to see the bytes (refusing new connections does not)."""
        return self._splice and not (self._dropping["up"] or self._dropping["down"]
                                     or self._delay_s["up"] or self._delay_s["down"])

    @staticmethod
    def _may_splice(conn: Conn) -> bool:
        return not conn.connecting and not any(p.chunks or p.blocked for p in (conn.up, conn.down))

    def _start_splicing(self, conn: Conn) -> bool:
        """Hand the connection to the relay thread (its queues are empty). False if the kernel path
        cannot be set up (out of fds): the connection stays on the Python path."""
        assert self._sel is not None
        if self._relay is None:
            return False
        if conn.up.kernel is None or conn.down.kernel is None:
            try:
                for pipe in (conn.up, conn.down):
                    pipe.kernel = pipe.kernel or os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                return False  # _drop closes whichever pipe was made
        for sock in (conn.client, conn.upstream):
            if conn.events[sock]:
                self._sel.unregister(sock)
                conn.events[sock] = 0
        conn.spliced = True
        with self._stats_lock:
            self._spliced += 1
            self._relaying.update((conn.up, conn.down))
        self._relay.add(conn)
        return True

    def _unsplice_all(self) -> None:
        self._unsplice(*[conn for conn in self._conns if conn.spliced])

    def _unsplice(self, *conns: Conn) -> None:
        """Take the connections back from the relay and queue what is still in their pipes (it
        arrived just now), so that a fault applied next sees every byte not yet delivered."""
        conns = tuple(conn for conn in conns if conn.spliced)
        if not conns:
            return
        assert self._relay is not None
        self._relay.remove(conns)
        now = time.monotonic()
        with self._stats_lock:
            for conn in conns:
                conn.spliced = False
                self._spliced -= 1
                for pipe in (conn.up, conn.down):
                    self._relaying.discard(pipe)
                    if pipe.upward:
                        self._up += pipe.delivered
                    else:
                        self._down += pipe.delivered
                    pipe.delivered = 0
        for conn in conns:
            for pipe in (conn.up, conn.down):
                while pipe.in_pipe and pipe.kernel is not None:  # bounded: the pipe holds in_pipe bytes
                    data = os.read(pipe.kernel[0], pipe.in_pipe)
                    pipe.chunks.append((now, data))
                    pipe.queued += len(data)
                    pipe.in_pipe -= len(data)

    def _post(self, conn: Conn) -> None:
        """From the relay thread: ask the loop to close a connection that is done or failed."""
        self._commands.put((lambda: self._settle(conn), Future()))
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")

    def _settle(self, conn: Conn) -> None:
        if conn.failed:
            self._drop(conn, abort=True)
        elif conn.up.shut and conn.down.shut:
            self._drop(conn, abort=False)

    def _close_own_sockets(self) -> None:
        if self._sel is not None:
            self._sel.close()
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._sel = self._listener = self._wake_r = self._wake_w = None


class Proxy(Protocol):
    """What a fault needs of a proxy: a FaultProxy here, or a HostedProxy that drives one in a
    process of its own (``proxyhost.py``)."""

    name: str
    upstream_host: str
    upstream_port: int

    @property
    def port(self) -> int: ...
    @property
    def address(self) -> tuple[str, int]: ...
    def url_for(self, url: str) -> str: ...
    def stats(self) -> ProxyStats: ...
    def blackhole(self) -> None: ...
    def blackhole_replies(self) -> None: ...
    def reset(self) -> None: ...
    def refuse(self, on: bool = True) -> None: ...
    def set_latency(self, ms: float) -> None: ...
    def delay_replies(self, ms: float) -> None: ...
    def heal(self) -> None: ...
    def stop(self, timeout: float = 5.0) -> None: ...


PROXIES_PER_HOST = 4
"""How many proxies a pool puts in one host process: few enough that their threads rarely wait for
one another's GIL, enough that a 64-worker soak starts 16 interpreters, not 64."""


class ProxyPool:
    """One proxy per client id for one upstream, so that each soak worker can be faulted alone.

    The proxies run in host processes of their own (``proxyhost.py``), ``per_host`` to a process,
    so that neither the harness's threads nor each other's hold the GIL they need to pass a byte;
    ``per_host=0`` keeps them in this process."""

    def __init__(self, upstream_host: str, upstream_port: int, *, allow_non_loopback: bool = False,
                 per_host: int = PROXIES_PER_HOST) -> None:
        _resolve(upstream_host, upstream_port, allow_non_loopback)  # fail before any proxy starts
        if isinstance(per_host, bool) or not isinstance(per_host, int) or per_host < 0:
            raise ConfigurationError(f"per_host must be an int >= 0, got {per_host!r}")
        self.upstream_host, self.upstream_port = upstream_host, upstream_port
        self._allow, self._per_host = allow_non_loopback, per_host
        self._proxies: dict[str, Proxy] = {}
        self._hosts: list[ProxyHost] = []
        self._lock = threading.Lock()

    def proxy_for(self, client_id: str) -> Proxy:
        """The client's proxy, started on first use."""
        with self._lock:
            if client_id not in self._proxies:
                self._proxies[client_id] = self._make(client_id)
            return self._proxies[client_id]

    def _make(self, client_id: str) -> Proxy:
        if not self._per_host:
            return FaultProxy(
                self.upstream_host, self.upstream_port, name=client_id, allow_non_loopback=self._allow
            ).start()
        from lockchaos.harness.faults.proxyhost import ProxyHost  # it builds on this module

        if not self._hosts or self._hosts[-1].proxies >= self._per_host:
            self._hosts.append(ProxyHost(f"{len(self._hosts)}").start())
        return self._hosts[-1].open(self.upstream_host, self.upstream_port, name=client_id,
                                    allow_non_loopback=self._allow)

    def url_for(self, client_id: str, url: str) -> str:
        return self.proxy_for(client_id).url_for(url)

    def proxies(self) -> dict[str, Proxy]:
        with self._lock:
            return dict(self._proxies)

    def stop(self) -> None:
        """Stop every proxy, even when one fails to; then raise the first failure."""
        with self._lock:
            proxies, self._proxies = list(self._proxies.values()), {}
            hosts, self._hosts = self._hosts, []
        errors: list[InfrastructureError] = []
        for proxy in proxies:
            try:
                proxy.stop()
            except InfrastructureError as exc:
                errors.append(exc)
        for host in hosts:
            host.stop()
        if errors:
            raise errors[0]

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
