"""Workers as real OS processes: a holder crash is a kill -9, a holder pause a SIGSTOP.

Each worker (its lock client, the library under test and that library's own threads) runs the same
``Worker`` loop in a process of its own: a fresh interpreter (fork + exec, as multiprocessing's
``spawn``: gRPC does not survive a bare fork), which imports only the worker and its client, not the
driver's ``__main__`` (the CLI and its dependencies: about twice the start-up time). So a crash
is the kernel closing the client's sockets, a GC-style pause freezes every thread of the process
(a library's renewal thread included), and per-process client state lives as in production.

The driver stays the single writer of the history and the owner of the fenced register and of the
fault links: a child sends its records and asks for register writes, link faults and its pause over
a pipe, in order, so the history sees them in the order the child made them. Times are taken in the
child with ``time.monotonic_ns()``: CLOCK_MONOTONIC is one clock for every process of the machine, so
they compare with the driver's. On the in-process fake (nothing to connect to from another process)
the client itself stays in the driver and the child calls it through the pipe; everything else about
the worker is still a process.

Two pipes per child: ``rpc`` carries the child's records and requests (with the driver's replies)
and ``ctl`` the driver's commands (go, stop, faults armed by the nemesis).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar, overload

from lockchaos.backends.base import (
    BackendUnavailable,
    Capabilities,
    ConfigurationError,
    InfrastructureError,
    Lease,
    LockBackend,
)
from lockchaos.harness.faults.holder import HOLDER_PAUSE
from lockchaos.harness.run.adapters import AdapterFactory, checked_backend, load_factory
from lockchaos.harness.run.armedfaults import ARMABLE, ArmedFaults
from lockchaos.harness.run.history import FaultRecord, OpName, OpRecord, Record
from lockchaos.harness.run.register import FencedRegister
from lockchaos.harness.run.runtime import RealRuntime, RunStopped, Runtime
from lockchaos.harness.run.worker import LinkFaults, Timing, Worker
from lockchaos.harness.scenarios import WorkerPlan

if TYPE_CHECKING:
    from lockchaos.harness.run.environments import Environment
    from lockchaos.harness.run.targets import Target

_STARTER = ThreadPoolExecutor(1, thread_name_prefix="lockchaos-procstart")
"""Every child is forked from this one long-lived thread: the parent-death signal fires when the
*thread* that forked a child ends, and nemesis or serving threads end with each run."""

READY_TIMEOUT_S = 60.0
"""How long a child may take to import, open its client and say so (a loaded CI machine is slow)."""
DRAIN_TIMEOUT_S = 10.0
"""How long a stopped child may take to unwind and hand over its last records before kill -9."""
_POLL_S = 0.05
WORKER_ENV = "LOCKCHAOS_WORKER"
"""Set in each worker process to its name (``w0#2``: worker 0, second incarnation), for adapters' logs."""
_RUN_FOREVER_S = 7 * 24 * 3600.0  # a child runs until told to stop; still a bound

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class ClientOpener:
    """How a child opens its own client from a URL: a user's adapter is imported again by its spec."""

    label: str
    adapter_spec: str | None
    factory: AdapterFactory | None

    def open(self, url: str) -> LockBackend:
        if self.adapter_spec is not None:
            return checked_backend(load_factory(self.adapter_spec), url, self.adapter_spec)
        assert self.factory is not None
        return self.factory(url)


@dataclass(frozen=True, slots=True)
class ChildSpec:
    """Everything a child needs to run one incarnation of one worker (pickled to it)."""

    wid: str
    incarnation: int
    key: str
    plan: WorkerPlan
    timing: Timing
    seed: int
    owner_id: str | None
    opener: ClientOpener
    parent_pid: int
    keys: tuple[str, ...] = ()


# --- the child's side -----------------------------------------------------------------------------


class _Port:
    """The child's end of the rpc pipe: one request or record at a time, from any of its threads."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._lock = threading.Lock()

    def send(self, *msg: object) -> None:
        with self._lock:
            self.conn.send(msg)

    def ask(self, *msg: object) -> Any:
        with self._lock:
            self.conn.send(msg)
            return self.conn.recv()


class _RemoteRegister(FencedRegister):
    """The fenced register lives in the driver: a write is a round trip, its verdict the driver's."""

    def __init__(self, port: _Port) -> None:  # no state of its own: the driver's register has it
        self._port = port

    def write(self, client: str, token: int | None, key: str | None = None) -> bool:
        return bool(self._port.ask("write", client, token, key))


WORKERS_LOG = "workers.log"
"""In a run directory: what worker processes printed (a library's own tracebacks and log lines)."""


class _RemoteLink:
    """The worker's network link, faulted by the driver (whose proxy or fake client it is)."""

    def __init__(self, port: _Port) -> None:
        self._port = port

    def _do(self, method: str, *args: object) -> None:
        self._port.ask("link", method, args)

    def partition(self) -> None:
        self._do("partition")

    def heal(self) -> None:
        self._do("heal")

    def set_latency(self, one_way_ms: int) -> None:
        self._do("set_latency", one_way_ms)

    def delay_replies(self, ms: int) -> None:
        self._do("delay_replies", ms)

    def reset(self) -> None:
        self._do("reset")

    def drop_replies(self, on: bool) -> None:
        self._do("drop_replies", on)

    def lose_next_reply(self) -> None:
        self._do("lose_next_reply")


class _RemoteClient:
    """A client that lives in the driver (the in-process fake), called through the pipe."""

    def __init__(self, port: _Port, name: str, capabilities: Capabilities, timeout_ms: int | None) -> None:
        self._port = port
        self.name = name
        self.capabilities = capabilities
        self.timeout_ms = timeout_ms  # the real client's own call timeout, for the slow-call checker

    def _call(self, method: str, *args: object) -> Any:
        kind, value = self._port.ask("call", method, args)
        if kind == "err":
            raise value
        return value

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        result: Lease | None = self._call("acquire", key, owner, ttl_ms)
        return result

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        result: Lease | None = self._call("renew", key, owner, ttl_ms)
        return result

    def release(self, key: str, owner: str) -> bool:
        return bool(self._call("release", key, owner))

    def holder(self, key: str) -> Lease | None:
        result: Lease | None = self._call("holder", key)
        return result

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._port.send("close")


class _ChildWorker(Worker):
    """The same loop; what it believes is reported to the driver, and its pause is a real SIGSTOP."""

    _port: _Port

    @property
    def believed(self) -> Lease | None:
        return self.__dict__.get("_believed")

    @believed.setter
    def believed(self, lease: Lease | None) -> None:
        if self.__dict__.get("_believed") != lease or "_believed" not in self.__dict__:
            self.__dict__["_believed"] = lease
            port = self.__dict__.get("_port")
            if port is not None:
                port.send("believed", lease)

    def _call(self, op: OpName, *rest: Any, **kw: Any) -> Any:
        """Say a call is in flight before making it: if this process is killed before the call's
        record leaves it, the driver records the call as indeterminate (it may have taken effect)."""
        args = rest[0] if rest and isinstance(rest[0], dict) else {}
        self._port.send("invoking", self.name, op, self.key, args, time.monotonic_ns())
        return super()._call(op, *rest, **kw)

    def _pause_point(self) -> None:
        """Where a GC pause hurts most: the driver SIGSTOPs this whole process, threads and all."""
        if self.pause_for_s > 0:
            self._port.ask("pause", self.take_pause())


def _arm_death_signal(parent_pid: int) -> None:
    """Die with the harness, however it dies (a paused child too: SIGKILL ends a stopped process)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


_CHILD_CODE = "import sys; from lockchaos.harness.run.procworker import child_entry; child_entry(sys.argv[1:])"
"""A fresh interpreter that imports only what a worker needs (not the driver's ``__main__``)."""


def child_entry(argv: list[str]) -> None:
    """``python -c _CHILD_CODE RPC_FD CTL_FD PARENT_PID``: the driver sends its import path, then the spec."""
    rpc_fd, ctl_fd, parent = (int(a) for a in argv)
    _arm_death_signal(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's: it stops us in order
    rpc, ctl = Connection(rpc_fd), Connection(ctl_fd, writable=False)
    try:
        sys.path[:] = rpc.recv()
        spec = rpc.recv()
    except (EOFError, OSError):
        return
    child_main(spec, rpc, ctl)


def child_main(spec: ChildSpec, rpc: Connection, ctl: Connection) -> None:
    """A worker process: open the client, say ready, run on ``go`` until ``stop`` (or the driver dies)."""
    port = _Port(rpc)
    runtime = RealRuntime(join_timeout_s=DRAIN_TIMEOUT_S / 2, stuck_is_error=False)

    def open_client() -> LockBackend:
        reply = port.ask("open")
        if reply[0] == "remote":
            return _RemoteClient(port, reply[1], reply[2], reply[3])
        return spec.opener.open(reply[1])

    def link_of() -> LinkFaults | None:
        has_link: bool = port.ask("has-link")
        return _RemoteLink(port) if has_link else None

    worker = _ChildWorker(spec.wid, open_client, spec.key, spec.plan, spec.timing, runtime,
                          lambda rec: port.send("rec", rec), _RemoteRegister(port),
                          random.Random(spec.seed), link_of, owner_id=spec.owner_id, keys=spec.keys)
    worker.incarnation = spec.incarnation
    worker._port = port
    if spec.incarnation == 1:  # before the run, as the driver opens a thread worker's client
        try:
            worker.connect()
        except BackendUnavailable:
            pass  # a server down at start: the loop retries, as a thread worker's does
        except BaseException as exc:  # a broken adapter: the driver raises it as a thread worker's would
            port.send("failed", _portable(exc))
            return
    # A revived worker reopens its client in its loop, as a thread worker does after a crash: a
    # factory failing there is an error-handling finding and a retry, not the end of the run.
    port.send("ready")
    if ctl.recv() != ("go",):
        return

    def listen() -> None:
        """Commands from the driver; its death (EOF) stops the run, as ``stop`` does."""
        try:
            while True:
                msg = ctl.recv()
                if msg[0] == "stop":
                    break
                if msg[0] == "set":
                    setattr(worker, msg[1], msg[2])
        except (EOFError, OSError):
            pass
        runtime.stop()

    threading.Thread(target=listen, name="lockchaos-ctl", daemon=True).start()
    runtime.spawn(spec.wid, worker.run)
    errors = runtime.run(_RUN_FOREVER_S)
    # A task still running is blocked inside a backend call: the driver records that call as
    # indeterminate and kills this process, as it would a process that died during the call.
    port.send("done", [_portable(e) for e in errors], bool(runtime.stuck))


def _portable(exc: BaseException) -> BaseException:
    """An exception the driver can unpickle: itself if it pickles, else its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


# --- the driver's side ----------------------------------------------------------------------------


class ClientPlace:
    """What the driver's environment offers a child: a URL to open, or a client it keeps itself."""

    def __init__(self, client_url: Callable[[int], str | None], open_client: Callable[[int], LockBackend],
                 link: Callable[[int], LinkFaults | None]) -> None:
        self.client_url = client_url
        self.open_client = open_client
        self.link = link


T = TypeVar("T")


class _Relayed(Generic[T]):
    """A flag of ``ArmedFaults`` on the driver's handle: kept there (the nemesis reads it back) and
    sent to the child, whose loop applies it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> Self: ...
    @overload
    def __get__(self, obj: ProcessWorker, objtype: type | None = None) -> T: ...
    def __get__(self, obj: ProcessWorker | None, objtype: type | None = None) -> T | Self:
        if obj is None:
            return self
        value: T = getattr(obj._armed, self.name)
        return value

    def __set__(self, obj: ProcessWorker, value: T) -> None:
        setattr(obj._armed, self.name, value)
        obj._command("set", self.name, value)


class ProcessWorker:
    """The driver's handle on one worker process: the nemesis faults it like a thread ``Worker``.

    It is also the runtime task that serves the child's pipe: records into the history, register
    writes, link faults, the SIGSTOP of a pause, and a new process for each revival after a crash.
    """

    def __init__(self, index: int, spec: ChildSpec, place: ClientPlace, runtime: Runtime,
                 record: Callable[[Record], None], register: FencedRegister, rng: random.Random,
                 log_path: Path | None = None) -> None:
        self.index = index
        self._log_path = log_path
        self.wid = spec.wid
        self._spec = spec
        self._place = place
        self.rt = runtime
        self._record = record
        self.register = register
        self._rng = rng
        self.incarnation = spec.incarnation
        self.crashed = False
        self.believed: Lease | None = None
        self.link: LinkFaults | None = None
        self._armed = ArmedFaults()
        self._client: LockBackend | None = None  # the driver-side client of a child on the fake
        self._ctl_lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._rpc: Connection | None = None
        self._ctl: Connection | None = None
        self._ready = False
        self._in_flight: tuple[Any, ...] | None = None  # the child's call not yet recorded
        self.errors: list[BaseException] = []
        self._start_child()

    # --- what the nemesis sees -----------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"{self.wid}#{self.incarnation}"

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    pause_for_s = _Relayed[float]()
    renewer_dead = _Relayed[bool]()
    lose_release_reply = _Relayed[bool]()
    late_release_ms = _Relayed[int]()
    lose_acquire_reply = _Relayed[bool]()
    lose_release_request = _Relayed[bool]()
    lose_renew_requests_s = _Relayed[float]()

    def crash(self) -> None:
        """kill -9: no release, no flush; the kernel closes its sockets."""
        self.crashed = True
        self.believed = None
        proc = self._proc
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)

    def revive(self) -> None:
        """A supervisor starts a new process in the slot: new owner identity, renewer alive again."""
        self.incarnation += 1
        self._armed.disarm()  # its new child starts with none armed (the dead one's died with it)
        self.crashed = False

    # --- process lifecycle ---------------------------------------------------------------------

    def _start_child(self) -> None:
        rpc_parent, rpc_child = Pipe(duplex=True)
        ctl_child, ctl_parent = Pipe(duplex=False)
        spec = ChildSpec(self.wid, self.incarnation, self._spec.key, self._spec.plan, self._spec.timing,
                         self._rng.randrange(2**32), self._spec.owner_id, self._spec.opener, os.getpid(),
                         self._spec.keys)
        fds = (rpc_child.fileno(), ctl_child.fileno())
        argv = [sys.executable, "-c", _CHILD_CODE, *map(str, fds), str(os.getpid())]
        # What a library prints (its renewal thread's tracebacks, its log lines) goes to the run
        # directory's workers.log, not over the harness's progress display.
        log = None if self._log_path is None else self._log_path.open("ab")
        try:
            # Its own session: Ctrl-C at a terminal is the driver's, which stops its workers in order.
            proc = _STARTER.submit(subprocess.Popen, argv, stdin=subprocess.DEVNULL, pass_fds=fds,
                                   start_new_session=True, stdout=log, stderr=log,
                                   env={**os.environ, WORKER_ENV: self.name}).result()
        finally:
            rpc_child.close()
            ctl_child.close()
            if log is not None:
                log.close()
        self._proc, self._rpc, self._ctl, self._ready = proc, rpc_parent, ctl_parent, False
        with contextlib.suppress(OSError):  # a child that died at once says so on connect
            rpc_parent.send(sys.path)  # the driver's import path: a user's adapter module, our tests
            rpc_parent.send(spec)

    def _command(self, *msg: object) -> None:
        with self._ctl_lock:
            if self._ctl is not None:
                with contextlib.suppress(OSError):  # a dead child hears nothing: it is being replaced
                    self._ctl.send(msg)

    def connect(self) -> None:
        """Wait until the child has opened its client (so faults find its link), as ``Worker.connect``."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        rpc = self._rpc
        assert rpc is not None
        while not self._ready:
            self.rt.sleep(0)  # a revival still starting when the run ends: RunStopped
            if time.monotonic() > deadline:
                self.terminate()
                raise InfrastructureError(f"worker process {self.name} not ready after {READY_TIMEOUT_S:g} s")
            try:
                if rpc.poll(_POLL_S):
                    self._handle(rpc.recv())
            except (EOFError, OSError):
                code = None if self._proc is None else self._proc.poll()
                self.terminate()
                if self.crashed:
                    return  # the nemesis killed it while it was starting: revived later, like any crash
                raise InfrastructureError(f"worker process {self.name} died while starting "
                                          f"(exit code {code})") from None

    def terminate(self) -> None:
        """kill -9 and reap, whatever state the child is in; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGCONT)
                    os.kill(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        for conn in (self._rpc, self._ctl):
            if conn is not None:
                conn.close()
        self._rpc = self._ctl = None
        self._close_client()

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    # --- the runtime task ----------------------------------------------------------------------

    def run(self) -> None:
        try:
            while True:
                if self._proc is None:
                    if self.crashed:
                        self.rt.sleep(_POLL_S)
                        continue
                    self._start_child()
                    self.connect()
                    if self._proc is None:
                        continue  # killed while starting
                self._command("go")
                for attr in ARMABLE:  # armed before this incarnation started
                    if value := getattr(self._armed, attr):
                        self._command("set", attr, value)
                self._serve()
        except RunStopped:
            self._stop_child()
            if self.errors:  # the child's loop failed: the run fails as with a thread worker
                raise self.errors[0] from None
            raise

    def _serve(self) -> None:
        """Until the child dies (crash): its records and requests, in the order it sent them."""
        assert self._rpc is not None
        rpc = self._rpc
        while True:
            self.rt.sleep(0)  # RunStopped when the run ends, however busy the child keeps the pipe
            try:
                if not rpc.poll(_POLL_S):
                    continue
                msg = rpc.recv()
            except (EOFError, OSError):
                self._lost_in_flight()
                self.terminate()
                self.believed = None
                return
            self._handle(msg)

    def _stop_child(self) -> None:
        """Orderly end: the child unwinds its loop, closes its client, hands over its last records.

        The run ends when the child says ``done``, as a thread worker's ends when its loop unwinds;
        the process then exits on its own and is reaped by ``terminate`` after the quiesce (waiting
        for interpreters to exit first would delay the quiesce's look at what the lock left behind).
        """
        self._command("stop")
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        rpc = self._rpc
        while rpc is not None and time.monotonic() < deadline:
            try:
                if rpc.poll(_POLL_S):
                    msg = rpc.recv()
                    self._handle(msg)
                    if msg[0] == "done":
                        if len(msg) > 2 and msg[2]:  # its worker is blocked in a call past the run's end
                            self._lost_in_flight("the call was still blocked when the run ended; the "
                                                 "worker process was killed: its outcome is unknown")
                            self.terminate()
                        return
            except (EOFError, OSError):
                break
        self._lost_in_flight()
        self.terminate()

    def _lost_in_flight(self, error: str = "worker process died during the call: its outcome is unknown") -> None:
        """The child died (or would not stop) between sending a call and recording it."""
        if self._in_flight is None:
            return
        client, op, key, args, invoke_ns = self._in_flight
        self._in_flight = None
        self._record(OpRecord(client=client, op=op, key=key, args=args, invoke_ns=invoke_ns,
                              complete_ns=self.rt.now_ns(), outcome="indeterminate",
                              error=error))

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "rec":
            if isinstance(msg[1], OpRecord):
                self._in_flight = None
            self._record(msg[1])
        elif kind == "invoking":
            self._in_flight = msg[1:]
        elif kind == "write":
            self._reply(self.register.write(msg[1], msg[2], msg[3]))
        elif kind == "believed":
            self.believed = None if self.crashed else msg[1]
        elif kind == "call":
            self._reply(self._client_call(msg[1], msg[2]))
        elif kind == "link":
            link = self._place.link(self.index)
            if link is not None:
                getattr(link, msg[1])(*msg[2])
            self._reply(None)
        elif kind == "pause":
            try:
                self._pause(float(msg[1]))
            finally:  # a stop during the pause too: the child waits for this before it can stop
                self._reply(None)
        elif kind == "open":
            self._reply(self._open())
        elif kind == "has-link":
            self.link = self._place.link(self.index)
            self._reply(self.link is not None)
        elif kind == "close":
            self._close_client()
        elif kind == "ready":
            self._ready = True
        elif kind == "failed":
            self.terminate()
            raise msg[1]
        elif kind == "done":
            self.errors.extend(msg[1])

    def _reply(self, value: object) -> None:
        if self._rpc is not None:
            with contextlib.suppress(OSError):
                self._rpc.send(value)

    def _open(self) -> tuple[object, ...]:
        url = self._place.client_url(self.index)
        if url is not None:
            return ("url", url)
        self._close_client()
        self._client = self._place.open_client(self.index)
        timeout = getattr(self._client, "timeout_ms", None)
        return ("remote", self._client.name, self._client.capabilities,
                timeout if isinstance(timeout, int) else None)

    def _client_call(self, method: str, args: tuple[Any, ...]) -> tuple[str, object]:
        if self._client is None:
            return "err", BackendUnavailable("client closed")
        try:
            return "ok", getattr(self._client, method)(*args)
        except RunStopped:
            return "err", BackendUnavailable("the run is over")
        except BaseException as exc:
            return "err", _portable(exc)

    def _pause(self, seconds: float) -> None:
        """SIGSTOP the whole process for ``seconds``; SIGCONT whatever happens."""
        pid = self.pid
        if pid is None:
            return
        self._record(FaultRecord(fault=HOLDER_PAUSE.name, phase="start", target=self.name,
                                 time_ns=self.rt.now_ns(), detail={"seconds": seconds, "signal": "SIGSTOP"}))
        os.kill(pid, signal.SIGSTOP)
        try:
            self.rt.sleep(seconds)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
            self._record(FaultRecord(fault=HOLDER_PAUSE.name, phase="end", target=self.name,
                                     time_ns=self.rt.now_ns()))


def uses_processes(target: Target, mode: str, virtual_time: bool) -> bool:
    """Whether a run's workers are processes: never on virtual time; ``auto`` against a real server
    when the target's client factory can be named to a child; ``process`` insists (or says why not)."""
    if virtual_time or mode == "thread":
        return False
    if mode == "auto" and target.server_kind == "fake":
        return False
    why = _not_sendable(target)
    if why is None:
        return True
    if mode == "process":
        raise ConfigurationError(f"--workers-mode process: {why}; use --workers-mode thread")
    return False


def _not_sendable(target: Target) -> str | None:
    """A child imports a user's adapter by its spec; our own factories must pickle by reference."""
    if target.adapter_spec is not None:
        return None
    try:
        pickle.dumps(target.factory)
    except Exception as exc:
        return f"the client factory of {target.label} cannot be named to a worker process ({exc})"
    return None


def process_worker(index: int, wid: str, *, target: Target, env: Environment, key: str, plan: WorkerPlan,
                   timing: Timing, runtime: Runtime, record: Callable[[Record], None],
                   register: FencedRegister, rng: random.Random, owner_id: str | None,
                   log_path: Path | None = None, keys: tuple[str, ...] = ()) -> ProcessWorker:
    """A worker process for the driver: started at once (children start in parallel), ready on ``connect``."""
    # A user's adapter is imported again in the child by its spec; ours is pickled by reference.
    opener = ClientOpener(target.label, target.adapter_spec,
                          None if target.adapter_spec is not None else target.factory)
    spec = ChildSpec(wid, 1, key, plan, timing, 0, owner_id, opener, os.getpid(), keys)
    return ProcessWorker(index, spec, ClientPlace(env.client_url, env.open_client, env.link), runtime, record,
                         register, rng, log_path)
