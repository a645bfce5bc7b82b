"""Container-mode lock servers: Redis and etcd in Docker containers, faulted through the engine.

Nightly soaks often run where Redis and etcd come as images rather than binaries, so ``container``
mode gives the soak driver and the contract suite the same ``ServerHandle`` as process mode
(``harness.servers.process``): ``start``/``stop``/``is_running``/``kill``/``restart``/``pause``/``resume``,
``url``/``host``/``port``/``pid``, a context manager. Scenarios cannot tell the two apart, so the
verdicts must be the same.

Networking is **host networking only**, each server bound to 127.0.0.1 on ports the harness picks free,
exactly as in process mode: clients and fault proxies reach it the same way, nothing is published
beyond loopback, and no bridge network or private-range address is ever created. It follows that the
engine must run on the harness's own Linux host (not Docker Desktop's VM, not a remote DOCKER_HOST). Port mapping is not
used, so testcontainers' port-based waits do not apply: readiness is our own bounded check (Redis
PING, etcd ``/health``).

Durability across a fault is the container's own: ``kill()`` SIGKILLs the container (its PID 1 is the
server), ``restart()`` starts *the same container* again, i.e. the same command line, port and data
volume, as a crashed host reboots. ``pause()`` freezes it with the engine's pause (cgroup freezer):
the server keeps its sockets and answers nothing, like process mode's SIGSTOP.

Image names are configuration: ``LOCKCHAOS_REDIS_IMAGE`` / ``LOCKCHAOS_ETCD_IMAGE``, by default the
official ``redis:7`` and ``quay.io/coreos/etcd:v3.5.17``; ``scripts/container-host.sh`` builds local
ones from Debian's binaries for machines without a registry (our CI). Every image gets the same
command line, with the binary named first, so an image only needs it on its PATH.

A soak that leaks containers poisons the next run (ports, disk), so teardown is layered, as in
process mode: ``stop()`` and the context manager; ``stop()`` when ``start()`` fails; a registry that
``atexit`` drains (exceptions, Ctrl-C, SIGTERM through the CLI, forgotten handles); a small reaper
process per harness that removes its containers once it dies however it dies (SIGKILL, OOM killer);
and a sweep, at every start, of containers and volumes labelled by a harness on this host that is
dead. Every container and volume carries ``lockchaos.run``, ``lockchaos.owner-pid``,
``lockchaos.owner-started`` (the owner's start time, against pid reuse) and ``lockchaos.owner-host``
and its pid namespace (an engine may be shared by machines and containers: a pid means nothing
elsewhere). testcontainers' own
reaper (Ryuk) is disabled unless the user sets ``TESTCONTAINERS_RYUK_DISABLED`` explicitly: its
image must be pulled, which fails where no registry is reachable, and the layers above do its job.

    python -m lockchaos.harness.servers.containers reap OWNER_PID OWNER_STARTED    # the reaper (started by the harness)
    python -m lockchaos.harness.servers.containers sweep                           # remove leftovers of dead harnesses
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import importlib
import itertools
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from types import TracebackType
from typing import Any, ClassVar, Self

import psutil

from lockchaos.backends.base import FaultUnsupported, InfrastructureError
from lockchaos.harness.servers.flags import PortTaken
from lockchaos.harness.servers.handle import ServerHandle
from lockchaos.harness.servers.identity import LoopbackPorts
from lockchaos.harness.servers.specs import ETCD, REDIS, EtcdSpec, RedisSpec, ServerSpec, server_spec
from lockchaos.harness.servers.specs.etcd import EtcdFacts
from lockchaos.harness.servers.specs.redis import RedisFacts

__all__ = [
    "DEFAULT_ETCD_IMAGE",
    "DEFAULT_REDIS_IMAGE",
    "ETCD_IMAGE_ENV",
    "LABEL_OWNER_HOST",
    "LABEL_OWNER_PID",
    "LABEL_OWNER_STARTED",
    "LABEL_RUN",
    "OWNER_HOST",
    "REDIS_IMAGE_ENV",
    "ContainerServer",
    "EtcdContainer",
    "RedisContainer",
    "container_engine_available",
    "provision_container",
    "run_id",
    "stop_all",
    "sweep_orphans",
]

REDIS_IMAGE_ENV = REDIS.image_env
ETCD_IMAGE_ENV = ETCD.image_env
DEFAULT_REDIS_IMAGE = REDIS.default_image
DEFAULT_ETCD_IMAGE = ETCD.default_image

LABEL_RUN = "lockchaos.run"
LABEL_OWNER_PID = "lockchaos.owner-pid"
LABEL_OWNER_STARTED = "lockchaos.owner-started"
LABEL_OWNER_HOST = "lockchaos.owner-host"
LABEL_KIND = "lockchaos.kind"

HINT = "run scripts/container-host.sh (as root; it starts an engine and prints the DOCKER_HOST to export) " \
       "or set DOCKER_HOST to an engine you have"

_DATA = "/data"  # the server's data dir inside the container: a labelled named volume
_PORT_ATTEMPTS = 5
_POLL_S = 0.02
_API_TIMEOUT_S = 60.0  # one engine call; a pull streams under the same read timeout per chunk
_PING_TIMEOUT_S = 5.0
_REAPER_POLL_S = 0.5
_REAPER_MAX_S = 7 * 24 * 3600.0  # a week: beyond any soak, still a bound


# --- the engine ---------------------------------------------------------------------------------


def _sdk() -> Any:
    """The docker SDK module, imported late: without the ``container`` extra the rest still works."""
    try:
        # Through importlib: the repository's own docker/ dir (image build files) would otherwise pass
        # for a namespace package to mypy run from the repository root.
        docker = importlib.import_module("docker")
        importlib.import_module("docker.types")
        from testcontainers.core.config import testcontainers_config
    except ImportError as exc:
        raise InfrastructureError(
            f"container mode needs testcontainers and the docker SDK ({exc}): pip install 'lockchaos[container]'"
        ) from None
    if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
        # Ryuk's image cannot be pulled where no registry answers, and our own layers replace it.
        testcontainers_config.ryuk_disabled = True
    return docker


def _where() -> str:
    return os.environ.get("DOCKER_HOST") or "the default socket unix:///var/run/docker.sock"


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _client(timeout: float = _API_TIMEOUT_S) -> Any:
    """A docker SDK client, or InfrastructureError in one line saying how to get an engine."""
    docker = _sdk()
    client = None
    try:
        client = docker.from_env(timeout=timeout)  # asks the engine for its API version: a round trip
        client.ping()
        return client
    except Exception as exc:  # DockerException, requests' errors, a bad DOCKER_HOST (ValueError)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        raise InfrastructureError(
            f"container mode needs a Docker engine, and none answers at {_where()} ({_one_line(exc)}): {HINT}"
        ) from None


def container_engine_available() -> str | None:
    """None when a Docker engine answers, else the reason, so callers can say why in one line."""
    try:
        _client(_PING_TIMEOUT_S).close()
    except InfrastructureError as exc:
        return str(exc)
    return None


# --- who owns a container: labels, the run id, the registry that atexit drains -----------------



def _host_identity() -> str:
    """Where an owner pid means something: this host *and* this pid namespace (a harness in a container
    with host networking shares the hostname but not the pids)."""
    try:
        return f"{socket.gethostname()}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return socket.gethostname()


OWNER_HOST = _host_identity()
_RUN: tuple[int, str] | None = None
_RUN_LOCK = threading.Lock()


def run_id() -> str:
    """This harness's run id (a forked child is a new harness and gets its own)."""
    global _RUN
    with _RUN_LOCK:
        if _RUN is None or _RUN[0] != os.getpid():
            _RUN = (os.getpid(), uuid.uuid4().hex[:12])
        return _RUN[1]


def _started(pid: int) -> str | None:
    try:
        return repr(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _owner_labels(kind: str) -> dict[str, str]:
    return {
        LABEL_RUN: run_id(),
        LABEL_OWNER_PID: str(os.getpid()),
        LABEL_OWNER_STARTED: _started(os.getpid()) or "",
        LABEL_OWNER_HOST: OWNER_HOST,
        LABEL_KIND: kind,
    }


def _owner_alive(labels: dict[str, str]) -> bool:
    """Whether the harness that labelled this is alive; True when unsure (never remove a live run's)."""
    if labels.get(LABEL_OWNER_HOST) != OWNER_HOST:
        return True  # another machine's harness: its pid means nothing here
    try:
        pid = int(labels[LABEL_OWNER_PID])
    except (KeyError, ValueError):
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        started = labels.get(LABEL_OWNER_STARTED)
        return not started or repr(proc.create_time()) == started
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


_LIVE: set[ContainerServer] = set()
_LIVE_LOCK = threading.Lock()


def stop_all() -> None:
    """Stop every container this process started; for ``atexit`` and for a CLI's signal handlers."""
    with _LIVE_LOCK:
        handles = [h for h in _LIVE if h._owner_pid == os.getpid()]  # a forked child owns none of them
    for handle in handles:
        with contextlib.suppress(Exception):
            handle.stop()


atexit.register(stop_all)


def _remove_labelled(client: Any, filters: dict[str, Any], keep: Any = None) -> list[str]:
    """Remove containers (with their anonymous volumes), then volumes, matching ``filters``."""
    removed: list[str] = []
    docker = _sdk()
    # Sparse: a full listing inspects each container and fails outright when another harness removes
    # one meanwhile (several harnesses, or test workers, share an engine).
    for container in client.containers.list(all=True, filters=filters, sparse=True):
        labels = container.attrs.get("Labels") or {}
        if keep is not None and keep(labels):
            continue
        name = (container.attrs.get("Names") or [container.id])[0].lstrip("/")
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True, v=True)
            removed.append(f"container {name}")
    for volume in client.volumes.list(filters=filters):
        if keep is not None and keep(volume.attrs.get("Labels") or {}):
            continue
        with contextlib.suppress(docker.errors.NotFound):
            volume.remove(force=True)
            removed.append(f"volume {volume.name}")
    return removed


def sweep_orphans(client: Any = None) -> list[str]:
    """Remove labelled containers and volumes whose harness on this host is dead; returns what went.

    A harness that was SIGKILLed skips ``atexit``; its reaper normally cleans up, and this sweep
    catches whatever a dead reaper (or an engine that was down) left behind.
    """
    own = client is None
    client = _client() if client is None else client
    try:
        return _remove_labelled(client, {"label": [f"{LABEL_OWNER_HOST}={OWNER_HOST}"]}, keep=_owner_alive)
    finally:
        if own:
            client.close()


# --- the reaper: removes a SIGKILLed harness's containers at once ------------------------------

_reaper_for: int | None = None
_reaper_lock = threading.Lock()


def _ensure_reaper() -> None:
    """Start the reaper for this process once; it inherits DOCKER_HOST and waits for us to die."""
    global _reaper_for
    with _reaper_lock:
        if _reaper_for == os.getpid():
            return
        started = _started(os.getpid()) or ""
        subprocess.Popen(
            [sys.executable, "-m", "lockchaos.harness.servers.containers", "reap", str(os.getpid()), started],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,  # a Ctrl-C at the terminal must not reach it
        )
        _reaper_for = os.getpid()


def _reap(owner: int, started: str) -> int:
    labels = {LABEL_OWNER_PID: str(owner), LABEL_OWNER_STARTED: started, LABEL_OWNER_HOST: OWNER_HOST}
    deadline = time.monotonic() + _REAPER_MAX_S
    while _owner_alive(labels) and time.monotonic() < deadline:
        time.sleep(_REAPER_POLL_S)
    if _owner_alive(labels):
        return 0
    try:
        client = _client()
    except InfrastructureError:
        return 0  # the engine is gone, and its containers with it (a later sweep catches the rest)
    try:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        return len(_remove_labelled(client, filters))
    finally:
        client.close()


# --- container-mode servers ---------------------------------------------------------------------

_SEQ = itertools.count(1)


class ContainerServer(LoopbackPorts):
    """A server in a container the harness created, owns and may fault through the engine; its
    ``ServerSpec`` gives the image, the ports, the command line, the readiness check and the URL."""

    _typed: ClassVar[dict[str, type[ContainerServer]]] = {}
    serves: ClassVar[str | None] = None
    """Set by a subclass that is the typed handle of one kind (``RedisContainer``)."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("serves"):
            ContainerServer._typed[str(cls.__dict__["serves"])] = cls

    def __init__(
        self, spec: ServerSpec, *, image: str | None = None, startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.spec = spec
        self.kind = spec.kind
        self.image_env = spec.image_env
        self.default_image = spec.default_image
        self._port_count = spec.port_count
        self.image = image or os.environ.get(self.image_env) or self.default_image
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._docker: Any = None  # the SDK client for faults, sweeps and removal
        self._tc: Any = None  # testcontainers' DockerContainer
        self._volume: Any = None
        self._ports: tuple[int, ...] = ()
        self._last_pid: int | None = None
        self._launched_at = 0.0
        self._paused = False
        self._owner_pid = os.getpid()
        self._name = ""

    @staticmethod
    def of(spec: ServerSpec) -> ContainerServer:
        """An unstarted container of ``spec``, as its kind's typed handle when there is one."""
        typed = ContainerServer._typed.get(spec.kind, ContainerServer)
        server = object.__new__(typed)
        ContainerServer.__init__(server, spec)
        return server

    # -- what the spec decides
    @property
    def url(self) -> str:
        return self.spec.url(self.host, self._started_ports())

    @property
    def durable(self) -> bool:
        """Whether its state survives kill + restart (the data volume outlives both)."""
        return self.spec.durable

    def _command(self) -> list[str]:
        # The state subdirectory is named for the kind, as the images' own command lines name it.
        data_dir = f"{_DATA}/{self.spec.kind}" if self.spec.state_in_subdir else _DATA
        return [self.spec.binary_name, *self.spec.flags(self.host, self._started_ports(), data_dir)]

    def _ready(self) -> bool:
        return self.spec.ready(self.host, self.port)

    def _prepare(self, container: Any) -> None:
        """Add to the testcontainers ``DockerContainer`` before it is created (files to copy in)."""

    # -- identity (host, port, _started_ports and _pick_ports: LoopbackPorts)
    @property
    def pid(self) -> int | None:
        """The server's host pid (the container's PID 1), also once it died, for post-mortems."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.reload()
                pid = int(self._container.attrs["State"]["Pid"])
                if pid > 0:
                    self._last_pid = pid
        return self._last_pid

    @property
    def container_id(self) -> str | None:
        return str(self._container.id) if self._container is not None else None

    @property
    def container_name(self) -> str:
        return self._name

    @property
    def volume_name(self) -> str | None:
        return str(self._volume.name) if self._volume is not None else None

    @property
    def paused(self) -> bool:
        return self._paused and self.is_running()

    @property
    def _container(self) -> Any:
        """The SDK's Container, also when testcontainers' start() failed after creating it."""
        if self._tc is None:
            return None
        try:
            return self._tc.get_wrapped_container()
        except Exception:  # ContainerStartException: nothing was created
            return None

    def __repr__(self) -> str:
        where = f"{self.host}:{self._ports[0]}" if self._ports else "unstarted"
        return f"<{type(self).__name__} {self.image} {where} container={self._name or '-'}>"

    # -- lifecycle
    def start(self) -> Self:
        if self._docker is not None:
            raise InfrastructureError(f"{self!r} is already started; restart() brings it back after a fault")
        self._docker = _client()
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            sweep_orphans(self._docker)
            _ensure_reaper()  # cleans up even if this harness is SIGKILLed
            self._ensure_image()
            self._name = f"lockchaos-{run_id()}-{self.kind}-{next(_SEQ)}"
            for _ in range(_PORT_ATTEMPTS):
                self._ports = self._pick_ports()
                self._volume = self._docker.volumes.create(name=self._name, labels=_owner_labels(self.kind))
                try:
                    self._create_and_start()
                    return self
                except PortTaken:
                    self._remove_container_and_volume()  # the next port gets a fresh data dir
            raise InfrastructureError(
                f"{self.kind} container: every loopback port picked was taken before it could bind "
                f"({_PORT_ATTEMPTS} attempts)"
            )
        except BaseException:
            with contextlib.suppress(Exception):  # the original error is the one worth reporting
                self.stop()
            raise

    def stop(self) -> None:
        """Remove the container and its data volume (a paused one too); safe to call again."""
        try:
            if self._docker is not None:
                self._remove_container_and_volume()
        finally:
            self._paused = False
            if self._docker is not None:
                with contextlib.suppress(Exception):
                    self._docker.close()
                self._docker = None
            with _LIVE_LOCK:
                _LIVE.discard(self)

    def __enter__(self) -> Self:
        return self if self._docker is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def is_running(self) -> bool:
        """Running or paused, as a SIGSTOPped process is still running in process mode."""
        return self._status() in ("running", "paused")

    # -- faults
    def kill(self) -> None:
        """SIGKILL the container: the server gets no chance to flush what it has not made durable."""
        self._require_running("kill")
        self._kill_and_wait()

    def restart(self) -> None:
        """Start the same container again: same port, same command line, same data volume."""
        if self._docker is None or self._container is None:
            raise InfrastructureError(f"cannot restart {self!r}: it is not started (or already stopped)")
        if self.is_running():
            self._kill_and_wait()
        try:
            self._launch()
        except PortTaken:
            raise InfrastructureError(
                f"cannot restart {self!r}: another process took port {self.port} while it was down; "
                f"last log lines:\n{self._log_tail()}"
            ) from None

    def pause(self) -> None:
        """The engine's pause (cgroup freezer): sockets stay open and nothing answers, like SIGSTOP."""
        if self._require_running("pause") != "paused":  # pausing twice is no error, as SIGSTOP twice
            self._engine_call("pause", self._container.pause)
            self._await_status("paused")
        self._paused = True

    def resume(self) -> None:
        if self._require_running("resume") != "running":
            self._engine_call("resume", self._container.unpause)
            self._await_status("running")
        self._paused = False

    def jump_clock(self, delta_ms: int) -> None:
        raise FaultUnsupported("a clock jump cannot reach a server in a container (run it against the fake)")

    # -- internals
    def _ensure_image(self) -> None:
        docker = _sdk()
        try:
            self._docker.images.get(self.image)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.DockerException as exc:
            raise InfrastructureError(f"cannot inspect image {self.image}: {_one_line(exc)}") from None
        try:
            self._docker.images.pull(self.image)
        except docker.errors.DockerException as exc:
            raise InfrastructureError(
                f"image {self.image} is not in the engine at {_where()} and could not be pulled "
                f"({_one_line(exc)}); set {self.image_env} to an image you have "
                f"(scripts/container-host.sh builds lockchaos/{self.kind}:debian from Debian's binaries)"
            ) from None

    def _create_and_start(self) -> None:
        from testcontainers.core.container import DockerContainer

        mount = _sdk().types.Mount(_DATA, self._volume.name, type="volume")
        # network="host" rather than network_mode: testcontainers then skips its own network guessing
        # (which could attach a bridge network); no ports are mapped or published.
        self._tc = (
            DockerContainer(self.image, name=self._name)
            .with_command(self._command())
            .with_kwargs(network="host", labels=_owner_labels(self.kind), mounts=[mount], init=False)
        )
        self._prepare(self._tc)
        self._launched_at = time.time()
        try:
            self._tc.start()
        except Exception as exc:
            raise InfrastructureError(f"cannot start a container of {self.image}: {_one_line(exc)}") from None
        self._await_ready()

    def _launch(self) -> None:
        self._launched_at = time.time()
        self._paused = False
        self._engine_call("start", self._container.start)
        self._await_ready()

    def _await_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            status = self._status()
            if status in ("exited", "dead"):
                tail = self._log_tail()
                if "address already in use" in tail.lower():
                    raise PortTaken
                code = self._container.attrs["State"].get("ExitCode")
                raise InfrastructureError(
                    f"{self.kind} container {self._name} exited with status {code} while starting on "
                    f"{self.host}:{self.port}; last log lines:\n{tail}"
                )
            if status == "running" and self._ready():
                _ = self.pid  # remember it for post-mortems
                return
            if time.monotonic() > deadline:
                raise InfrastructureError(
                    f"{self.kind} container {self._name} on {self.host}:{self.port} was not ready within "
                    f"{self.startup_timeout:g} s (status {status}; host networking needs an engine on this "
                    f"machine, not a VM or a remote host); last log lines:\n{self._log_tail()}"
                )
            time.sleep(_POLL_S)

    def _status(self) -> str:
        docker = _sdk()
        container = self._container
        if container is None:
            return "absent"
        try:
            container.reload()
        except docker.errors.NotFound:
            return "absent"
        except docker.errors.DockerException as exc:
            raise InfrastructureError(f"the engine did not answer about {self!r}: {_one_line(exc)}") from None
        return str(container.status)

    def _await_status(self, wanted: str) -> None:
        """Return once the engine reports the state, so that fault windows are recorded truly."""
        deadline = time.monotonic() + self.stop_timeout
        while (status := self._status()) != wanted:
            if time.monotonic() > deadline:
                raise InfrastructureError(f"{self!r} is {status}, not {wanted}, after {self.stop_timeout:g} s")
            time.sleep(0.005)

    def _kill_and_wait(self) -> None:
        docker = _sdk()
        try:
            self._container.kill()
        except docker.errors.APIError as exc:
            if "paused" not in str(exc).lower():
                raise InfrastructureError(f"cannot kill {self!r}: {_one_line(exc)}") from None
            # Engines that refuse to kill a paused container: thaw and kill in one breath.
            self._engine_call("resume", self._container.unpause)
            self._engine_call("kill", self._container.kill)
        self._await_status("exited")  # the port is free and the volume unused from here on
        self._paused = False

    def _engine_call(self, what: str, call: Any) -> None:
        docker = _sdk()
        try:
            call()
        except docker.errors.DockerException as exc:
            raise InfrastructureError(f"cannot {what} {self!r}: {_one_line(exc)}") from None

    def _remove_container_and_volume(self) -> None:
        docker = _sdk()
        errors: list[str] = []
        container, tc, self._tc = self._container, self._tc, None
        if tc is not None:
            with contextlib.suppress(Exception):
                tc.get_docker_client().client.close()
        if container is not None:
            try:
                container.remove(force=True, v=True)  # a paused or running container too
            except docker.errors.NotFound:
                pass
            except docker.errors.DockerException as exc:
                errors.append(f"container {self._name}: {_one_line(exc)}")
        volume, self._volume = self._volume, None
        if volume is not None:
            try:
                volume.remove(force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.DockerException as exc:
                errors.append(f"volume {volume.name}: {_one_line(exc)}")
        if errors:
            raise InfrastructureError(f"could not remove {'; '.join(errors)} (a later run's sweep retries)")

    def _log_tail(self, lines: int = 10) -> str:
        """The end of what the *latest* launch wrote: earlier launches' lines would mislead."""
        if self._container is None:
            return "(no container)"
        try:
            raw = self._container.logs(since=self._launched_at, tail=lines)
        except Exception as exc:
            return f"(logs unreadable: {_one_line(exc)})"
        return str(raw.decode(errors="replace")).rstrip() or "(log empty)"

    def _require_running(self, fault: str) -> str:
        status = self._status()
        if status not in ("running", "paused"):
            raise InfrastructureError(f"cannot {fault} {self!r}: it is not running ({status})")
        return status


class RedisContainer(ContainerServer, RedisFacts):
    """Redis in a container; without persistence a restart loses every lock, by design."""

    serves = "redis"
    spec: RedisSpec

    def __init__(
        self, *, persistence: bool = False, image: str | None = None,
        startup_timeout: float = 30.0, stop_timeout: float = 10.0,
    ) -> None:
        super().__init__(REDIS.with_durability(persistence), image=image, startup_timeout=startup_timeout,
                         stop_timeout=stop_timeout)


class EtcdContainer(ContainerServer, EtcdFacts):
    """A single-member etcd in a container; always durable, since its data volume survives a restart.

    ``fast`` shortens heartbeat and election timeouts (10 ms / 100 ms) as process mode does, which
    also lowers etcd's minimum lease TTL from 2 s to 1 s (the adapter reads it at connect time).
    """

    serves = "etcd"
    spec: EtcdSpec

    def __init__(
        self, *, fast: bool = True, image: str | None = None,
        startup_timeout: float = 30.0, stop_timeout: float = 10.0,
    ) -> None:
        super().__init__(dataclasses.replace(ETCD, fast=fast), image=image, startup_timeout=startup_timeout,
                         stop_timeout=stop_timeout)


def provision_container(kind: str, *, persistence: bool = False) -> ServerHandle:
    """Start a private server registered as ``kind`` in a container; ``persistence`` is its durability
    switch (Redis's AOF; etcd is durable).

    Mirrors ``servers.provision``; without an engine it raises InfrastructureError in one line.
    """
    return ContainerServer.of(server_spec(kind).with_durability(persistence)).start()


def _main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "reap":
        _reap(int(argv[1]), argv[2])
        return 0
    if argv == ["sweep"]:
        try:
            for what in sweep_orphans():
                print(f"removed {what}")
        except InfrastructureError as exc:
            print(f"lockchaos: infrastructure: {exc}", file=sys.stderr)
            return 3
        return 0
    print("usage: python -m lockchaos.harness.servers.containers reap OWNER_PID OWNER_STARTED | sweep", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
