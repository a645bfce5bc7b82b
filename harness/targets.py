"""What a run is pointed at: a backend name or a user's adapter, plus the server it needs.

Contract and soak both say "run against X"; this module turns X into a started server, a URL and a
client factory, and guarantees the server is stopped again.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from backends import open_backend
from backends.base import BackendUnavailable, ConfigurationError, InfrastructureError, LockBackend
from backends.fake import FakeKVLock, drop_fake_server, fake_server

from .adapters import AdapterFactory, checked_backend, load_factory

BACKENDS = ("fake", "redis", "etcd")
SERVERS = ("redis", "etcd", "none")


@dataclass(frozen=True, slots=True)
class Target:
    """A backend to judge: how to open clients, and which server kind they need."""

    label: str
    server_kind: str  # "fake" (in-process), "redis" or "etcd"
    factory: AdapterFactory
    adapter_spec: str | None = None
    persistence: bool = False

    def open(self, url: str) -> LockBackend:
        if self.adapter_spec is None:
            return self.factory(url)
        return checked_backend(self.factory, url, self.adapter_spec)


def backend_target(name: str, *, persistence: bool = False) -> Target:
    if name not in BACKENDS:
        raise ConfigurationError(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return Target(name, name, open_backend, persistence=persistence)


def adapter_target(spec: str, server: str) -> Target:
    if server not in SERVERS:
        raise ConfigurationError(f"unknown --server {server!r}; choose from {', '.join(SERVERS)}")
    factory = load_factory(spec)
    kind = "fake" if server == "none" else server
    return Target(f"{spec}@{server}", kind, factory, adapter_spec=spec)


class FakeServerHandle:
    """An in-process fake server behind the same handle shape as real servers, for the same faults."""

    def __init__(self, server: FakeKVLock, url: str) -> None:
        self.server = server
        self.url = url

    def kill(self) -> None:
        self.server.kill()

    def restart(self) -> None:
        self.server.restart()

    def pause(self) -> None:
        self.server.pause()

    def resume(self) -> None:
        self.server.resume()

    def is_running(self) -> bool:
        return self.server.up

    def stop(self) -> None:
        drop_fake_server(self.server.name)


class Provisioned:
    """A target with its server up: clients, and a restart hook for durability rules."""

    def __init__(self, target: Target, url: str, handle: object) -> None:
        self.target = target
        self.url = url
        self.handle = handle

    def client(self) -> LockBackend:
        return self.target.open(self.url)

    def client_factory(self) -> Callable[[], LockBackend]:
        return self.client

    def restart_server(self) -> None:
        kill = getattr(self.handle, "kill")  # noqa: B009 - every handle shape has kill/restart
        restart = getattr(self.handle, "restart")  # noqa: B009
        kill()
        restart()


def probe_client(env: Provisioned) -> None:
    """Open and close one client before anything runs, so a broken factory or an unreachable
    server is one clear error (usage: exit 2; infrastructure: exit 3), not a wall of failed rules."""
    try:
        client = env.client()
    except (ConfigurationError, InfrastructureError):
        raise
    except BackendUnavailable as exc:
        raise InfrastructureError(f"{env.target.label}: cannot reach {env.url}: {exc}") from None
    except Exception as exc:
        raise ConfigurationError(
            f"{env.target.label}: opening a client of {env.url} raised {type(exc).__name__}: {exc}"
        ) from None
    client.close()


@contextlib.contextmanager
def provisioned(target: Target, *, fake_profile: str = "ideal") -> Iterator[Provisioned]:
    """Start the target's server (process mode), yield it, and always stop it."""
    if target.server_kind == "fake":
        from backends.fake import PROFILES

        name = f"lockchaos-{uuid.uuid4().hex[:12]}"
        server = fake_server(name, capabilities=PROFILES[fake_profile])
        handle = FakeServerHandle(server, f"fake://{name}")
        try:
            yield Provisioned(target, handle.url, handle)
        finally:
            handle.stop()
        return
    from .servers import provision

    real = provision(target.server_kind, persistence=target.persistence)
    try:
        yield Provisioned(target, real.url, real)
    finally:
        real.stop()
