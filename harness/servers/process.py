"""Process-mode lock servers: real ``redis-server`` and ``etcd`` on loopback, and their faults.

A soak that leaks servers or temp dirs poisons the next run, so teardown is layered:
``stop()`` and the context manager for the normal path; a registry drained by ``atexit`` for
exceptions, Ctrl-C and forgotten handles; ``PR_SET_PDEATHSIG`` so that children die with a SIGKILLed
harness; and a sweep, at each start, of temp dirs that such a death left behind. Children run in
their own session, so a Ctrl-C at the terminal reaches the harness only and the harness decides
when its servers go. A SIGTERMed harness skips ``atexit`` unless the CLI turns SIGTERM into an
exception; the death signal and the sweep still clean up after it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self
from urllib.parse import urlsplit

import psutil

from lockchaos.backends.base import ConfigurationError, FaultUnsupported, InfrastructureError
from lockchaos.backends.redaction import redact_url
from lockchaos.harness.servers import watchdog
from lockchaos.harness.servers.faketime import (
    CONTROL_NAME,
    FaketimeClock,
    FaketimeMissing,
    missing_reason,
    remove_recorded_residue,
    remove_residue,
)
from lockchaos.harness.servers.flags import PortTaken
from lockchaos.harness.servers.handle import ServerHandle as ServerHandle  # its old home: imports keep working
from lockchaos.harness.servers.identity import LoopbackPorts
from lockchaos.harness.servers.specs import ETCD, REDIS, SPECS_BY_SCHEME, EtcdSpec, RedisSpec, ServerSpec, server_spec
from lockchaos.harness.servers.specs.etcd import EtcdFacts
from lockchaos.harness.servers.specs.redis import RedisFacts

_PORT_ATTEMPTS = 5
_LOG_NAME = "server.log"
_MARKER_NAME = watchdog.MARKER
_POLL_S = 0.01


# --- spawning children that cannot outlive the harness ----------------------------------------

_PR_SET_PDEATHSIG = 1
_prctl: Callable[..., int] | None = (
    ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
)


def _spawn(argv: list[str], log: Path, env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    parent = os.getpid()

    def arm_death_signal() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the harness died before the signal was armed
            os._exit(1)

    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent,
            env=env, start_new_session=True, preexec_fn=arm_death_signal, pass_fds=pass_fds,
        )


def _kill_spawned(fut: Future[subprocess.Popen[bytes]]) -> None:
    if fut.exception() is None:
        proc = fut.result()
        proc.kill()
        proc.wait()


class _Spawner:
    """Forks every child from one thread that lives as long as the process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the process: a server
    started from a short-lived nemesis thread would be SIGKILLed when that thread ended.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[list[str], Path, dict[str, str], tuple[int, ...], Future[subprocess.Popen[bytes]]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(
        self, argv: list[str], log: Path, env: dict[str, str], pass_fds: tuple[int, ...] = ()
    ) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # also after os.fork()
                self._thread = threading.Thread(target=self._serve, name="lockchaos-spawner", daemon=True)
                self._thread.start()
        fut: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((argv, log, env, pass_fds, fut))
        try:
            return fut.result()
        except BaseException:
            fut.add_done_callback(_kill_spawned)  # interrupted: nobody would own the child
            raise

    def _serve(self) -> None:
        while True:
            argv, log, env, pass_fds, fut = self._jobs.get()
            try:
                fut.set_result(_spawn(argv, log, env, pass_fds))
            except BaseException as exc:
                fut.set_exception(exc)


_SPAWNER = _Spawner()


def spawn_tied(
    argv: list[str], log: Path, env: dict[str, str], pass_fds: tuple[int, ...] = ()
) -> subprocess.Popen[bytes]:
    """Start a helper process (not a server) that the kernel SIGKILLs when the harness dies."""
    return _SPAWNER.popen(argv, log, env, pass_fds)


# --- the registry that atexit drains, and the sweep for harnesses that were SIGKILLed ----------

_LIVE: set[_ProcessServer] = set()
_LIVE_LOCK = threading.Lock()


def stop_all() -> None:
    """Stop every server this process started; for ``atexit`` and for a CLI's signal handlers."""
    with _LIVE_LOCK:
        # A forked child inherits the registry but must not stop its parent's servers.
        handles = [h for h in _LIVE if h._owner_pid == os.getpid()]
    for handle in handles:
        with contextlib.suppress(Exception):
            handle.stop()


atexit.register(stop_all)


def _write_marker(workdir: Path, server_pid: int | None) -> None:
    info = {"owner_pid": os.getpid(), "server_pid": server_pid}
    (workdir / _MARKER_NAME).write_text(json.dumps(info))


def _sweep_orphans() -> None:
    """Remove temp dirs whose harness and server are both dead (a SIGKILLed harness skips atexit)."""
    for marker in Path(tempfile.gettempdir()).glob(f"lockchaos-*/{_MARKER_NAME}"):
        try:
            if marker.stat().st_uid != os.getuid():
                continue
            info = json.loads(marker.read_text())
            pids = [int(info["owner_pid"]), int(info["server_pid"] or 0)]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # half-written or foreign: leave it
        if not any(_alive(pid) for pid in pids if pid > 0):
            if pids[1] > 0 and (marker.parent / CONTROL_NAME).exists():
                remove_residue(pids[1])  # libfaketime's /dev/shm files outlive a killed server
            remove_recorded_residue(marker.parent, _alive)
            shutil.rmtree(marker.parent, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# --- process-mode servers -----------------------------------------------------------------------


class _ProcessServer(LoopbackPorts):
    """A server binary the harness launched, owns and may fault."""

    kind: str
    binary_name: str
    debian_package: str
    env_var: str

    def __init__(self, *, binary: str | None, startup_timeout: float, stop_timeout: float) -> None:
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._binary_arg = binary
        self._binary = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None
        self._ports: tuple[int, ...] = ()
        self._log_offset = 0
        self._paused = False
        self._owner_pid = os.getpid()

    # -- subclass hooks
    @property
    def url(self) -> str:
        raise NotImplementedError

    def _args(self, workdir: Path) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _discard_partial_state(self, workdir: Path) -> None:
        """Forget what a launch that lost its port left behind, before trying another port."""

    # -- identity (host, port, _started_ports and _pick_ports: LoopbackPorts)
    @property
    def pid(self) -> int | None:
        """The latest server process, also once it died, so that post-mortems can name it."""
        return self._proc.pid if self._proc is not None else None

    @property
    def workdir(self) -> Path | None:
        return self._dir

    @property
    def log_path(self) -> Path | None:
        return self._dir / _LOG_NAME if self._dir is not None else None

    @property
    def paused(self) -> bool:
        return self._paused and self.is_running()

    @property
    def durable(self) -> bool:
        """Whether its state survives kill + restart; a server without a spec claims nothing."""
        return False

    def __repr__(self) -> str:
        where = f"{self.host}:{self._ports[0]}" if self._ports else "unstarted"
        return f"<{type(self).__name__} {where} pid={self.pid}>"

    # -- lifecycle
    def start(self) -> Self:
        if self._dir is not None:
            raise InfrastructureError(f"{self!r} is already started; restart() brings it back after a fault")
        self._binary = self._resolve_binary()
        _sweep_orphans()
        watchdog.ensure_started()  # cleans up even if this harness is SIGKILLed
        self._dir = Path(tempfile.mkdtemp(prefix="lockchaos-"))
        _write_marker(self._dir, None)
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            for _ in range(_PORT_ATTEMPTS):
                self._ports = self._pick_ports()
                try:
                    self._launch()
                    return self
                except PortTaken:
                    self._discard_partial_state(self._dir)
            raise InfrastructureError(
                f"{self.binary_name}: every loopback port picked was taken before it could bind "
                f"({_PORT_ATTEMPTS} attempts)"
            )
        except BaseException:
            with contextlib.suppress(Exception):  # the original error is the one worth reporting
                self.stop()
            raise

    def stop(self) -> None:
        """Terminate gracefully, then for certain, and remove every file; safe to call again."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)  # a stopped process would not act on SIGTERM
            proc.terminate()
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._kill_and_reap()
        self._paused = False
        if self._dir is not None:
            self._remove_dir(self._dir)
            if self._dir.exists():
                raise InfrastructureError(f"could not remove {self._dir} of {self!r}")
            self._dir = None
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def _remove_dir(self, workdir: Path) -> None:
        shutil.rmtree(workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self if self._dir is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- faults
    def kill(self) -> None:
        """kill -9: the server gets no chance to flush anything it has not already made durable."""
        self._require_running("kill")
        self._kill_and_reap()

    def restart(self) -> None:
        """Bring the server back on the same port and data dir, as a crashed host reboots."""
        if self._dir is None:
            raise InfrastructureError(f"cannot restart {self!r}: it is not started (or already stopped)")
        if self.is_running():
            self._kill_and_reap()
        try:
            self._launch()
        except PortTaken:
            raise InfrastructureError(
                f"cannot restart {self!r}: another process took port {self.port} while it was down; "
                f"last log lines:\n{self._log_tail()}"
            ) from None

    def pause(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing, like a long GC pause."""
        self._require_running("pause")
        self._signal_and_await(signal.SIGSTOP, stopped=True)
        self._paused = True

    def resume(self) -> None:
        self._require_running("resume")
        self._signal_and_await(signal.SIGCONT, stopped=False)
        self._paused = False

    def jump_clock(self, delta_ms: int) -> None:
        raise FaultUnsupported("a clock jump cannot reach a real server process (run it against the fake)")

    # -- internals
    def _resolve_binary(self) -> str:
        chosen = self._binary_arg or os.environ.get(self.env_var)
        found = shutil.which(chosen or self.binary_name)
        if found is not None:
            return found
        hint = f"install Debian's package {self.debian_package} (apt-get install {self.debian_package})"
        if chosen:
            origin = "binary argument" if self._binary_arg else self.env_var
            raise InfrastructureError(f"{self.binary_name} not found at {chosen!r} (from {origin}): {hint}")
        raise InfrastructureError(f"{self.binary_name} not found on PATH: {hint}")

    def _launch(self) -> None:
        assert self._dir is not None
        log = self._dir / _LOG_NAME
        self._log_offset = log.stat().st_size if log.exists() else 0
        self._paused = False
        argv, env = self._launch_command([self._binary, *self._args(self._dir)], self._env())
        self._proc = _SPAWNER.popen(argv, log, env)
        _write_marker(self._dir, self._proc.pid)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                tail = self._log_tail()
                if "address already in use" in tail.lower():
                    raise PortTaken
                raise InfrastructureError(
                    f"{self.binary_name} exited with status {code} while starting on "
                    f"{self.host}:{self.port}; last log lines:\n{tail}"
                )
            if self._ready():
                return
            if time.monotonic() > deadline:
                self._kill_and_reap()
                raise InfrastructureError(
                    f"{self.binary_name} on {self.host}:{self.port} was not ready within "
                    f"{self.startup_timeout:g} s; last log lines:\n{self._log_tail()}"
                )
            time.sleep(_POLL_S)

    def _launch_command(self, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The command line and environment the server is launched with (a subclass may wrap them)."""
        return argv, env

    def _log_tail(self, lines: int = 10) -> str:
        """The end of what the *latest* launch wrote: earlier launches' lines would mislead."""
        if self._dir is None:
            return "(no log)"
        try:
            with (self._dir / _LOG_NAME).open("rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return "\n".join(text.splitlines()[-lines:]) or "(log empty)"

    def _kill_and_reap(self) -> None:
        assert self._proc is not None
        self._proc.kill()
        try:
            self._proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            raise InfrastructureError(
                f"{self!r} survived SIGKILL for {self.stop_timeout:g} s (stuck in the kernel?)"
            ) from None
        self._paused = False

    def _require_running(self, fault: str) -> None:
        if not self.is_running():
            state = "never started" if self._proc is None else f"exited with status {self._proc.returncode}"
            raise InfrastructureError(f"cannot {fault} {self!r}: it is not running ({state})")

    def _signal_and_await(self, sig: signal.Signals, *, stopped: bool) -> None:
        """Return only once the kernel applied the signal, so that fault windows are recorded truly."""
        assert self._proc is not None
        self._proc.send_signal(sig)
        deadline = time.monotonic() + self.stop_timeout
        try:
            proc = psutil.Process(self._proc.pid)
            while (proc.status() == psutil.STATUS_STOPPED) != stopped:
                if time.monotonic() > deadline:
                    raise InfrastructureError(f"{self!r} did not take {sig.name} in {self.stop_timeout:g} s")
                time.sleep(0.001)
        except psutil.NoSuchProcess:
            raise InfrastructureError(f"{self!r} died while taking {sig.name}") from None


class ProcessServer(_ProcessServer):
    """A single server of any kind its ``ServerSpec`` describes: the spec gives the binary, the ports,
    the command line, the readiness check and the URL; this class owns the process.

    ``clock_faults`` launches it under libfaketime (``harness/servers/faketime.py``), for a spec that
    libfaketime reaches (``takes_faketime``), so that ``jump_clock`` can step its wall clock mid-run.
    Only on request: every clock read then goes through libfaketime and re-reads its control file (a
    Redis SET round trip took 87 µs instead of 60 µs, bench/probe_clock_faults.py), and Redis
    allocates through glibc instead of jemalloc.
    """

    _typed: ClassVar[dict[str, type[ProcessServer]]] = {}
    serves: ClassVar[str | None] = None
    """Set by a subclass that is the typed handle of one kind (``RedisServer``): ``provision`` builds it."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("serves"):
            ProcessServer._typed[str(cls.__dict__["serves"])] = cls

    def __init__(
        self, spec: ServerSpec, *, clock_faults: bool = False, binary: str | None = None,
        startup_timeout: float = 10.0, stop_timeout: float = 5.0,
    ) -> None:
        super().__init__(binary=binary, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        if clock_faults and not spec.takes_faketime:
            raise ConfigurationError(f"no clock fault reaches {spec.name}: libfaketime misses its clock reads")
        self.spec = spec
        self.kind = spec.kind
        self.binary_name = spec.binary_name
        self.debian_package = spec.debian_package
        self.env_var = spec.binary_env
        self._port_count = spec.port_count
        self.clock_faults = clock_faults
        self._clock: FaketimeClock | None = None

    @staticmethod
    def of(spec: ServerSpec, *, clock_faults: bool = False) -> ProcessServer:
        """An unstarted server of ``spec``, as its kind's typed handle when there is one (so that a
        ``redis`` server is a ``RedisServer``); a kind without one is a plain ``ProcessServer``."""
        typed = ProcessServer._typed.get(spec.kind, ProcessServer)
        server = object.__new__(typed)
        ProcessServer.__init__(server, spec, clock_faults=clock_faults)
        return server

    @property
    def durable(self) -> bool:
        return self.spec.durable

    @property
    def url(self) -> str:
        return self.spec.url(self.host, self._started_ports())

    def _data_dir(self, workdir: Path) -> Path:
        return workdir / "data" if self.spec.state_in_subdir else workdir

    def _args(self, workdir: Path) -> list[str]:
        return self.spec.flags(self.host, self._started_ports(), str(self._data_dir(workdir)))

    def _ready(self) -> bool:
        return self.spec.ready(self.host, self.port)

    def _env(self) -> dict[str, str]:
        return self.spec.env()

    def _launch_command(self, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        if not self.clock_faults:
            return argv, env
        assert self._dir is not None
        if self._clock is None:  # once: the offset survives a restart, as a host's clock would
            self._clock = FaketimeClock(self._dir)
        try:
            return self._clock.command(argv, env)
        except FaketimeMissing as exc:
            raise InfrastructureError(f"cannot launch {self!r} for clock faults: {exc}") from None

    def _discard_partial_state(self, workdir: Path) -> None:
        if self.spec.state_in_subdir:
            shutil.rmtree(self._data_dir(workdir), ignore_errors=True)

    @property
    def clock_offset_ms(self) -> int:
        """How far ``jump_clock`` has moved this server's wall clock from the real one."""
        return self._clock.offset_ms if self._clock is not None else 0

    def jump_clock(self, delta_ms: int) -> None:
        """Step the server's wall clock by ``delta_ms`` (cumulative); in force from its next clock read."""
        if self._clock is None:
            raise FaultUnsupported(f"cannot jump the clock of {self!r}: it was not launched with clock_faults")
        self._require_running("jump the clock of")
        self._clock.jump(delta_ms)

    def _kill_and_reap(self) -> None:
        pid = self.pid
        try:
            super()._kill_and_reap()
        finally:
            if self.clock_faults and pid is not None:
                remove_residue(pid)

    def _remove_dir(self, workdir: Path) -> None:
        if self.clock_faults:  # every pid that ran under libfaketime here, before its record goes
            remove_recorded_residue(workdir, _alive)
        super()._remove_dir(workdir)

    def stop(self) -> None:
        pid = self.pid
        try:
            super().stop()
        finally:
            if self.clock_faults and pid is not None and not self.is_running():
                remove_residue(pid)
            self._clock = None


class RedisServer(ProcessServer, RedisFacts):
    """A private ``redis-server``; without persistence a restart loses every lock, by design;
    ``clock_faults`` as in ``ProcessServer``."""

    serves = "redis"
    spec: RedisSpec

    def __init__(
        self, *, persistence: bool = False, clock_faults: bool = False, binary: str | None = None,
        startup_timeout: float = 10.0, stop_timeout: float = 5.0,
    ) -> None:
        super().__init__(REDIS.with_durability(persistence), clock_faults=clock_faults, binary=binary,
                         startup_timeout=startup_timeout, stop_timeout=stop_timeout)


class EtcdServer(ProcessServer, EtcdFacts):
    """A private single-member etcd; always durable, since its data dir survives a restart.

    ``fast`` shortens heartbeat and election timeouts (10 ms / 100 ms) so that startup takes ~0.1 s
    instead of ~1 s. It also lowers etcd's minimum lease TTL (1.5 election timeouts, rounded up to
    whole seconds) from 2 s to 1 s, which adapters must declare as their minimum TTL.
    """

    serves = "etcd"
    spec: EtcdSpec

    def __init__(
        self, *, fast: bool = True, binary: str | None = None,
        startup_timeout: float = 10.0, stop_timeout: float = 5.0,
    ) -> None:
        super().__init__(dataclasses.replace(ETCD, fast=fast), binary=binary, startup_timeout=startup_timeout,
                         stop_timeout=stop_timeout)


# --- servers the harness did not start ---------------------------------------------------------

SENTINEL_PORT = 26379
"""A ``redis+sentinel://`` URL (a user's Sentinel group) names Sentinels, whose port no server spec holds."""


class ExternalServer:
    """A server the user runs; the harness never signals, flushes or stops it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in SPECS_BY_SCHEME and parts.scheme != "redis+sentinel":
            raise ConfigurationError(f"unsupported server URL {redact_url(url)!r}: expected redis://... or etcd://...")
        first = parts.netloc.rpartition("@")[2].split(",")[0]
        try:
            endpoint = urlsplit(f"//{first}")
            host, port = endpoint.hostname, endpoint.port
        except ValueError as exc:
            raise ConfigurationError(f"bad server URL {redact_url(url)!r}: {exc}") from None
        if not host:
            raise ConfigurationError(f"server URL {redact_url(url)!r} names no host")
        self._url = url
        self._kind = parts.scheme
        self._host = host
        self._port = port or (SPECS_BY_SCHEME[parts.scheme].default_port if parts.scheme in SPECS_BY_SCHEME
                              else SENTINEL_PORT)

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def url(self) -> str:
        return self._url

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        return None

    def __repr__(self) -> str:
        return f"<ExternalServer {self._kind} {self._host}:{self._port}>"

    def start(self) -> Self:
        return self

    def stop(self) -> None:
        """Nothing to do: the user's server outlives the run (per-run keys are the adapters' job)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def is_running(self) -> bool:
        """Whether it accepts connections: the only sign of life a server without a PID gives."""
        try:
            with socket.create_connection((self._host, self._port), timeout=0.5):
                return True
        except OSError:
            return False

    def kill(self) -> None:
        raise self._refusal("kill")

    def restart(self) -> None:
        raise self._refusal("restart")

    def pause(self) -> None:
        raise self._refusal("pause")

    def resume(self) -> None:
        raise self._refusal("resume")

    def jump_clock(self, delta_ms: int) -> None:
        raise self._refusal("jump_clock")

    @property
    def durable(self) -> bool:
        """Unknown, so never promised: the adapter's own capabilities say what the user's server keeps."""
        return False

    def _refusal(self, fault: str) -> FaultUnsupported:
        return FaultUnsupported(f"{fault} refused on {self!r}: destructive faults are refused on a server "
                                "the harness did not start (it has no PID for it, and the server is not its own)")


def provision(kind: str, *, persistence: bool = False, clock_faults: bool = False) -> ServerHandle:
    """Start a private server registered as ``kind`` (``specs.SERVER_SPECS``); ``persistence`` is its
    durability switch (Redis's AOF; etcd is always durable); ``clock_faults`` launches it under
    libfaketime for ``jump_clock`` where libfaketime reaches it (Redis; etcd takes none); without
    libfaketime installed it launches a plain server, and the scenario skips clock-jump saying why."""
    spec = server_spec(kind).with_durability(persistence)
    clock_faults = clock_faults and spec.takes_faketime and missing_reason() is None
    return ProcessServer.of(spec, clock_faults=clock_faults).start()
