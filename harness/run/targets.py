"""What a run is pointed at: a backend name or a user's adapter, plus the server it needs.

Contract and soak both say "run against X"; this module turns X into a started server, a URL and a
client factory, and guarantees the server is stopped again.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from lockchaos.backends import open_backend
from lockchaos.backends.base import (
    BackendUnavailable,
    ConfigurationError,
    FaultUnsupported,
    InfrastructureError,
    LockBackend,
)
from lockchaos.backends.fake import FakeKVLock, drop_fake_server, fake_server
from lockchaos.backends.libs import LIBRARIES
from lockchaos.backends.redaction import redact_text, redact_url
from lockchaos.backends.urlopts import check_server_url
from lockchaos.harness.contract.context import ClusterControl
from lockchaos.harness.contract.process_client import ClientSpec
from lockchaos.harness.run.adapters import AdapterFactory, checked_backend, load_factory
from lockchaos.harness.servers.handle import ServerHandle
from lockchaos.harness.servers.specs import SERVER_SPECS, SPECS_BY_SCHEME

BACKENDS = ("fake", *SPECS_BY_SCHEME)
"""What ``--backend all`` runs: lockchaos's own backends."""
# Clusters (harness/servers/clusters.py, container_clusters.py): named explicitly, never part of "all".
CLUSTER_BACKENDS = ("etcd-cluster", "redis-sentinel", "redis-sentinel-wait", "redlock")
LIBRARY_BACKENDS = tuple(LIBRARIES)
"""The Python lock libraries shipped as backends (``lockchaos[libs]``); ``--backend libs`` runs them all."""
BACKEND_CHOICES = (*BACKENDS, *LIBRARY_BACKENDS, *CLUSTER_BACKENDS, "all", "libs")
SERVERS = (*SERVER_SPECS, "none")
"""What ``--server`` may provide to ``--adapter``: ``redis-aof`` is a durable Redis (AOF, fsync always),
for an adapter whose users run Redis that way; ``none`` is the in-process fake."""


@dataclass(frozen=True, slots=True)
class Target:
    """A backend to judge: how to open clients, and which server kind they need."""

    label: str
    server_kind: str  # "fake" (in-process), "redis" or "etcd"
    factory: AdapterFactory
    adapter_spec: str | None = None
    persistence: bool = False
    external_url: str | None = None
    """A server the user runs: never started, stopped or faulted; keys under a per-run prefix."""
    provision: str = "process"
    """How the harness runs the servers it starts: ``process`` (binaries) or ``container`` (an engine)."""

    def open(self, url: str) -> LockBackend:
        if self.adapter_spec is None:
            return self.factory(url)
        return checked_backend(self.factory, url, self.adapter_spec)


def backend_names(choice: str | None) -> tuple[str, ...]:
    """The backends a ``--backend`` choice stands for (none given: ``all``); several comma-separated."""
    groups = {"all": BACKENDS, "libs": LIBRARY_BACKENDS}
    names: list[str] = []
    for part in (choice or "all").split(","):
        names.extend(n for n in groups.get(part, (part,)) if n not in names)
    return tuple(names)


def backend_target(name: str, *, persistence: bool = False, provision: str = "process") -> Target:
    if name in LIBRARIES:
        spec = LIBRARIES[name]
        return Target(name, spec.server_kind, LibraryFactory(name), persistence=persistence, provision=provision)
    if name in CLUSTER_BACKENDS:
        return Target(name, name, open_backend, persistence=persistence, provision=provision)
    if name not in BACKENDS:
        raise ConfigurationError(
            f"unknown backend {name!r}; choose from {', '.join((*BACKENDS, *LIBRARY_BACKENDS, *CLUSTER_BACKENDS))}")
    return Target(name, name, open_backend, persistence=persistence, provision=provision)


@dataclass(frozen=True, slots=True)
class LibraryFactory:
    """Opens a library backend's client, importing the library only then: a missing one is a usage error.
    A plain value, so that process workers can receive it (pickle) and open their own clients."""

    name: str

    def __call__(self, url: str) -> LockBackend:
        try:
            opener = load_factory(LIBRARIES[self.name].opener)
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"--backend {self.name} needs its library: pip install 'lockchaos[libs]' ({exc})") from None
        return opener(url)


def adapter_target(spec: str, server: str, *, persistence: bool = False, provision: str = "process") -> Target:
    if server not in SERVERS:
        raise ConfigurationError(f"unknown --server {server!r}; choose from {', '.join(SERVERS)}")
    factory = load_factory(spec)
    kind, durable = server_of(server)
    persistence = persistence or durable
    return Target(f"{spec}@{server}", kind, factory, adapter_spec=spec, persistence=persistence,
                  provision=provision)


def server_of(server: str) -> tuple[str, bool]:
    """A ``--server`` choice as (server kind, durable server asked for)."""
    if server == "none":
        return "fake", False
    spec = SERVER_SPECS[server]
    return spec.kind, spec.durable and not SPECS_BY_SCHEME[spec.kind].durable  # durability switched on


def start_server(target: Target, persistence: bool, *, clock_faults: bool = False) -> ServerHandle:
    """A started server of the target's kind, as a process or in a container; ``clock_faults`` asks
    for a process-mode Redis whose clock ``jump_clock`` can step (ignored where none can)."""
    if target.server_kind in CLUSTER_BACKENDS and target.provision == "container":
        from lockchaos.harness.servers.container_clusters import provision_container_cluster

        return provision_container_cluster(target.server_kind)
    if target.server_kind in CLUSTER_BACKENDS:
        from lockchaos.harness.servers.clusters import provision_cluster

        return provision_cluster(target.server_kind, clock_faults=clock_faults)
    if target.provision == "container":
        from lockchaos.harness.servers.containers import provision_container

        return provision_container(target.server_kind, persistence=persistence)
    from lockchaos.harness.servers.process import provision

    return provision(target.server_kind, persistence=persistence, clock_faults=clock_faults)


def external_target(url: str, *, backend: str | None = None, adapter: str | None = None) -> Target:
    """A Redis or etcd the user runs, through our adapter or theirs."""
    from lockchaos.harness.servers.external import is_cluster_url, scheme_of

    scheme = scheme_of(url)
    kind = EXTERNAL_KINDS[scheme]
    if backend in LIBRARIES or backend == "redlock":
        raise ConfigurationError(f"--backend {backend} runs only against a server the harness starts: the library "
                                 "names its own keys, outside lockchaos's per-run prefix (drop --url)")
    if backend is not None and backend not in EXTERNAL_BACKENDS[scheme]:
        raise ConfigurationError(f"--backend {backend} does not match --url {redact_url(url)}")
    # At argument time, so a bad URL is exit 2 before any run directory or server exists: our
    # backend's own parser, or (a user's adapter reads its own options) the endpoints alone.
    check_server_url(url, options=adapter is None)
    if adapter is not None:
        return Target(f"{adapter}@external-{kind}", kind, load_factory(adapter), adapter_spec=adapter,
                      external_url=url)
    label = "etcd-cluster" if scheme == "etcd" and is_cluster_url(url) else kind
    return Target(f"{label}@external", kind, open_backend, external_url=url)


EXTERNAL_KINDS = {"redis": "redis", "etcd": "etcd", "redis+sentinel": "redis-sentinel"}
"""A ``--url`` scheme -> the server kind it stands for (a Sentinel URL is a Redis group)."""
EXTERNAL_BACKENDS = {"redis": ("redis",), "etcd": ("etcd", "etcd-cluster"), "redis+sentinel": ("redis-sentinel",)}
"""Which ``--backend`` may go with a ``--url`` of each scheme: the cluster backends name the cluster
the harness would otherwise start, so ``--backend redis-sentinel --url redis+sentinel://...`` reads
as "that cluster, but theirs"."""


Handle = ServerHandle
"""What contract and soak need of any server: fake, launched, or the user's (``servers/handle.py``)."""


class FakeServerHandle:
    """An in-process fake server behind the same handle as real servers, for the same faults."""

    kind = "fake"
    host = "in-process"
    port = 0
    pid = None

    def __init__(self, server: FakeKVLock, url: str) -> None:
        self.server = server
        self.url = url

    @property
    def durable(self) -> bool:
        return self.server.capabilities.durable

    def start(self) -> Self:
        return self  # it serves from the moment it is created

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def kill(self) -> None:
        self.server.kill()

    def restart(self) -> None:
        self.server.restart()

    def pause(self) -> None:
        self.server.pause()

    def resume(self) -> None:
        self.server.resume()

    def jump_clock(self, delta_ms: int) -> None:
        self.server.jump_clock(delta_ms)

    def is_running(self) -> bool:
        return self.server.up

    def stop(self) -> None:
        drop_fake_server(self.server.name)


class Provisioned:
    """A target with its server up: clients, and a restart hook for durability rules."""

    def __init__(self, target: Target, url: str, handle: Handle) -> None:
        self.target = target
        self.url = url
        self.handle = handle

    def client(self) -> LockBackend:
        return self.target.open(self.url)

    def client_factory(self) -> Callable[[], LockBackend]:
        return self.client

    def restart_server(self) -> None:
        self.handle.kill()
        self.handle.restart()

    def pause_server(self) -> None:
        """Freeze the server with its sockets open (outage rules): calls must time out. Not for an
        adapter given the in-process fake (``--server none``): it may keep its locks anywhere."""
        if self.target.server_kind == "fake" and self.target.adapter_spec is not None:
            raise FaultUnsupported("the adapter runs in-process (--server none): the harness cannot tell "
                                   "whether it talks to the fake server it would freeze")
        self.handle.pause()

    def resume_server(self) -> None:
        self.handle.resume()

    def client_spec(self) -> ClientSpec | None:
        """How a second OS process opens a client of this target: none for the in-process fake, or
        for a factory that is not importable by name (a pytest fixture)."""
        if self.target.server_kind == "fake":
            return None
        spec = self.target.adapter_spec
        if spec is None:
            spec = "lockchaos.backends:open_backend" if self.target.factory is open_backend else None
        if spec is None or ":" not in spec:
            return None
        return ClientSpec(spec, self.url)

    def cluster_control(self) -> ClusterControl | None:
        """Whom failover rules may fault member by member: a cluster the harness started, else nobody."""
        if self.target.external_url is not None or not isinstance(self.handle, ClusterControl):
            return None
        return self.handle

    def server_control(self) -> Provisioned | None:
        """Whom durability rules may restart: nobody, on a server the harness did not start."""
        return None if self.target.external_url is not None else self


FACTORY_TIMEOUT_S = 15.0
"""How long opening the first client may take: an adapter factory that hangs is a usage error."""


def guarded_open(target: Target, url: str, timeout_s: float | None = None) -> LockBackend:
    """Open the first client of a run, so that a broken factory or an unreachable server is one clear
    error before anything runs (usage: exit 2; infrastructure: exit 3), never a hang or a wall of
    failed rules."""
    timeout_s = FACTORY_TIMEOUT_S if timeout_s is None else timeout_s
    box: list[LockBackend | BaseException] = []
    opener = threading.Thread(target=lambda: box.append(_try_open(target, url)), name="lockchaos-open",
                              daemon=True)  # a hung factory is abandoned, never waited for at exit
    opener.start()
    opener.join(timeout_s)
    shown = redact_url(url)
    if not box:
        raise ConfigurationError(f"{target.label}: opening a client of {shown} did not return within "
                                 f"{timeout_s:g} s (a hanging adapter factory?)")
    outcome = box[0]
    if isinstance(outcome, (ConfigurationError, InfrastructureError)):
        raise type(outcome)(redact_text(str(outcome)))  # a user's adapter may quote the URL it got
    if isinstance(outcome, BackendUnavailable):
        why = redact_text(str(outcome))  # our backends already say "cannot reach <url>": once is enough
        raise InfrastructureError(f"{target.label}: {why}" if why.startswith("cannot reach ") else
                                  f"{target.label}: cannot reach {shown}: {why}")
    if isinstance(outcome, BaseException):
        raise ConfigurationError(f"{target.label}: opening a client of {shown} raised "
                                 f"{type(outcome).__name__}: {redact_text(str(outcome))}")
    return outcome


def _try_open(target: Target, url: str) -> LockBackend | BaseException:
    try:
        return target.open(url)
    except BaseException as exc:
        return exc


def probe_client(env: Provisioned) -> None:
    """Open one client and close it again, both bounded: a user's ``close`` that raises or hangs is
    found here, as bad input (exit 2), not at the end of every scenario."""
    client = guarded_open(env.target, env.url)
    box: list[BaseException | None] = []

    def close() -> None:
        try:
            client.close()
            box.append(None)
        except BaseException as exc:
            box.append(exc)

    closer = threading.Thread(target=close, name="lockchaos-close", daemon=True)  # a hung close is abandoned
    closer.start()
    closer.join(FACTORY_TIMEOUT_S)
    if not box:
        raise ConfigurationError(f"{env.target.label}: closing a client did not return within "
                                 f"{FACTORY_TIMEOUT_S:g} s (a hanging close()?)")
    failure = box[0]
    if isinstance(failure, (ConfigurationError, InfrastructureError)):
        raise type(failure)(redact_text(str(failure)))
    if isinstance(failure, BackendUnavailable):
        raise InfrastructureError(f"{env.target.label}: closing a client: {redact_text(str(failure))}")
    if failure is not None:
        raise ConfigurationError(f"{env.target.label}: closing a client raised {type(failure).__name__}: "
                                 f"{redact_text(str(failure))}")


@contextlib.contextmanager
def provisioned(target: Target, *, fake_profile: str = "ideal") -> Iterator[Provisioned]:
    """Start the target's server (process mode), yield it, and always stop it."""
    if target.server_kind == "fake":
        from lockchaos.backends.fake import PROFILES

        name = f"lockchaos-{uuid.uuid4().hex[:12]}"
        server = fake_server(name, capabilities=PROFILES[fake_profile])
        handle = FakeServerHandle(server, f"fake://{name}")
        try:
            yield Provisioned(target, handle.url, handle)
        finally:
            handle.stop()
        return
    if target.external_url is not None:
        from lockchaos.harness.servers.external import purge_prefix, with_run_prefix
        from lockchaos.harness.servers.process import ExternalServer

        url, prefix = with_run_prefix(target.external_url)
        try:
            yield Provisioned(target, url, ExternalServer(url))
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one worth reporting
                purge_prefix(url, prefix)
            raise
        purge_prefix(url, prefix, settle=True)
        return
    real = start_server(target, target.persistence)
    try:
        yield Provisioned(target, real.url, real)
    finally:
        real.stop()
