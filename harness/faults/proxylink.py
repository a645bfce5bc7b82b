"""A proxied connection's state, and the kernel relay that moves its bytes while no fault needs them.

The fault proxy (``proxy.py``) owns every connection and runs its faults on the Python path, where
each chunk is queued with its arrival time. While the proxy is healthy it hands its connections to a
``KernelRelay``: one thread per proxy that waits in ``epoll(7)`` and moves bytes with ``splice(2)``
through a pipe per direction, so that a chunk costs a few microseconds of GIL and never becomes a
Python object, and one wake-up serves every connection that is ready. ``KernelRelay.remove`` hands
connections back, bytes still in their pipes included, within one wake-up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import select
import socket
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Self

from lockchaos.backends.base import InfrastructureError

CHUNK = 65536
SPLICE_AVAILABLE = hasattr(os, "splice") and hasattr(os, "eventfd") and hasattr(select, "epoll")
_SPLICE_FLAGS = (os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK) if SPLICE_AVAILABLE else 0
_RELAY_POLL_S = 1.0  # the relay thread's longest sleep; requests wake it at once through an eventfd
_RELAY_ANSWER_S = 5.0  # it only ever waits in epoll_wait(), which a request ends: a safety bound


@dataclasses.dataclass(slots=True, eq=False)
class Pipe:
    """One direction of one connection: a FIFO of (arrival time, bytes). Latency is applied when
    sending (due = arrival + current latency), so a change of latency retimes queued bytes and the
    FIFO keeps them in order; each direction waits on its own queue, never on the other's."""

    src: socket.socket
    dst: socket.socket
    upward: bool  # client -> server
    chunks: deque[tuple[float, bytes]] = dataclasses.field(default_factory=deque)
    queued: int = 0
    eof: bool = False  # src sent FIN: shut dst for writing once the queue is drained
    shut: bool = False
    blocked: bool = False  # dst's send buffer is full: wait for EVENT_WRITE
    # the kernel path: a pipe (read end, write end), the bytes spliced into it and not yet out of
    # it, and the bytes delivered by the relay thread (its own counter, folded into the proxy's
    # totals once the relay has let go of the connection)
    kernel: tuple[int, int] | None = None
    in_pipe: int = 0
    delivered: int = 0


class Conn:
    """One client connection and its upstream connection: owned by the proxy's loop thread, or by
    its KernelRelay while ``spliced``."""

    __slots__ = ("client", "closed", "connecting", "down", "events", "failed", "spliced", "up", "upstream")

    def __init__(self, client: socket.socket, upstream: socket.socket, connecting: bool) -> None:
        self.client, self.upstream, self.connecting, self.closed = client, upstream, connecting, False
        self.up, self.down = Pipe(client, upstream, True), Pipe(upstream, client, False)
        self.events = {client: 0, upstream: 0}  # as registered with the selector
        self.spliced = False  # handed to the relay: the selector does not watch its sockets
        self.failed = False  # the relay hit a socket error: the loop aborts the connection


class KernelRelay:
    """The kernel path of one proxy: a thread that waits in epoll on the sockets of every healthy
    connection and moves their bytes with splice(2), never into Python objects.

    It owns a connection's sockets and pipes from ``add`` until ``remove`` returns (or until it
    reports the connection done or failed through ``on_done``, run on the relay thread). It waits
    only in epoll_wait, which a request ends through an eventfd, so ``remove`` takes one wake-up.
    """

    def __init__(self, name: str, on_done: Callable[[Conn], None]) -> None:
        self._name, self._on_done = name, on_done
        self._requests: queue.SimpleQueue[tuple[Callable[[], object], Future[None]]] = queue.SimpleQueue()
        self._ep = select.epoll()
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._ep.register(self._wake, select.EPOLLIN)
        # fd -> (connection, the pipe that reads from fd, the pipe that writes to fd), and the
        # events each fd is registered for; touched by the relay thread only
        self._fds: dict[int, tuple[Conn, Pipe, Pipe]] = {}
        self._masks: dict[int, int] = {}
        self._running = True
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def add(self, conn: Conn) -> None:
        self._request(lambda: self._do_add(conn), wait=False)

    def remove(self, conns: tuple[Conn, ...]) -> None:
        """Let go of these connections; when this returns, the caller owns them again."""
        self._request(lambda: self._do_remove(conns), wait=True)

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(InfrastructureError):
                self._request(lambda: setattr(self, "_running", False), wait=True)
            self._thread.join(_RELAY_ANSWER_S)
        if not self._thread.is_alive():
            self._ep.close()
            with contextlib.suppress(OSError):
                os.close(self._wake)

    def _request(self, fn: Callable[[], object], *, wait: bool) -> None:
        if not self._thread.is_alive():
            raise InfrastructureError(f"{self._name} is not running")
        fut: Future[None] = Future()
        self._requests.put((fn, fut))
        os.eventfd_write(self._wake, 1)
        if wait:
            try:
                fut.result(_RELAY_ANSWER_S)
            except TimeoutError:
                raise InfrastructureError(f"{self._name} did not answer within {_RELAY_ANSWER_S:g} s") from None

    def _run(self) -> None:
        try:
            while self._running:
                for fd, events in self._ep.poll(_RELAY_POLL_S):
                    if fd == self._wake:
                        with contextlib.suppress(BlockingIOError):
                            os.eventfd_read(self._wake)
                        continue
                    entry = self._fds.get(fd)
                    if entry is None:  # let go of earlier in this batch
                        continue
                    conn, reading, writing = entry
                    try:
                        if events & select.EPOLLERR:  # a reset: the loop aborts both sides
                            raise ConnectionResetError
                        if events & (select.EPOLLIN | select.EPOLLHUP):
                            self._pump(conn, reading)
                        if events & (select.EPOLLOUT | select.EPOLLHUP) and fd in self._fds:
                            self._pump(conn, writing)
                    except OSError:  # a reset on one side becomes a reset on the other
                        self._fail(conn)
                while not self._requests.empty():
                    fn, fut = self._requests.get_nowait()
                    try:
                        fn()
                        fut.set_result(None)
                    except Exception as exc:
                        fut.set_exception(exc)
        finally:
            self._running = False
            while not self._requests.empty():
                self._requests.get_nowait()[1].set_exception(InfrastructureError(f"{self._name} stopped"))

    def _do_add(self, conn: Conn) -> None:
        for sock, reading, writing in ((conn.client, conn.up, conn.down), (conn.upstream, conn.down, conn.up)):
            fd = sock.fileno()
            self._fds[fd] = (conn, reading, writing)
            self._masks[fd] = mask = self._mask(reading, writing)
            self._ep.register(fd, mask)

    def _do_remove(self, conns: tuple[Conn, ...]) -> None:
        for conn in conns:
            self._forget(conn)

    def _forget(self, conn: Conn) -> None:
        for sock in (conn.client, conn.upstream):
            fd = sock.fileno()
            if self._fds.pop(fd, None) is not None:
                del self._masks[fd]
                with contextlib.suppress(OSError):
                    self._ep.unregister(fd)

    def _fail(self, conn: Conn) -> None:
        conn.failed = True
        self._forget(conn)
        self._on_done(conn)

    @staticmethod
    def _mask(reading: Pipe, writing: Pipe) -> int:
        """Read while the pipe out of this socket is empty; wait to write while the pipe into it is not."""
        return (select.EPOLLIN * (not reading.eof and not reading.in_pipe)) | (select.EPOLLOUT * bool(writing.in_pipe))

    def _pump(self, conn: Conn, pipe: Pipe) -> None:
        """Move what one direction can move now: drain its pipe, read one chunk, push it on.
        An OSError (a reset) propagates: the caller fails the connection."""
        if pipe.eof or pipe.kernel is None:
            return
        pipe_r, pipe_w = pipe.kernel
        was_empty = not pipe.in_pipe
        read = False
        while True:  # at most: drain, read once, push that
            if pipe.in_pipe:
                try:
                    sent = os.splice(pipe_r, pipe.dst.fileno(), pipe.in_pipe, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    break
                pipe.in_pipe -= sent
                pipe.delivered += sent
                if pipe.in_pipe:
                    break
            if read:
                break
            read = True
            try:
                got = os.splice(pipe.src.fileno(), pipe_w, CHUNK, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                break
            if not got:  # FIN from src: pass it on, as the Python path does
                with contextlib.suppress(OSError):
                    pipe.dst.shutdown(socket.SHUT_WR)
                pipe.eof = pipe.shut = True
                break
            pipe.in_pipe = got
        if pipe.eof and conn.up.shut and conn.down.shut:
            self._forget(conn)
            self._on_done(conn)
            return
        if was_empty and not pipe.in_pipe and not pipe.eof:
            return  # the usual case: a chunk went straight through, the interest is unchanged
        for sock, reading, writing in ((conn.client, conn.up, conn.down), (conn.upstream, conn.down, conn.up)):
            fd, mask = sock.fileno(), self._mask(reading, writing)
            if self._masks[fd] != mask:
                self._masks[fd] = mask
                self._ep.modify(fd, mask)
