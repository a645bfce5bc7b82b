"""Container-mode clusters: the three cluster backends with every member in its own container.

The topologies, roles and timing are process mode's (``harness.servers.clusters``): the cluster
classes here are those classes with container members substituted, so leader resolution, the
Sentinel settling waits, the declared failover times and the verdicts are the same code. Only the
member lifecycle differs, and that is ``harness.servers.containers``'s: each member is a container on
host networking bound to 127.0.0.1 on the ports its cluster picked free, with a labelled data volume
(``lockchaos.run`` and the owner labels, so the reaper, the sweep and CI's leak check see every member,
Sentinels included), faulted through the engine: kill is ``docker kill -s KILL``, pause is the
engine's pause (cgroup freezer), restart starts the same container again.

Peer isolation works as in process mode: members advertise their peer proxies' ports, the proxies
run in the harness on loopback, and with host networking a member's connections belong to its
container's PID 1 on this host, so the proxies tell them apart by process exactly as for a binary.

A member whose command line must change on restart (a Sentinel group brought back after a
whole-cluster kill, each node told whom to replicate) is recreated: a new container on the same
ports and the same data volume, since a container's command is fixed when it is created.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from lockchaos.backends.base import ConfigurationError, FaultUnsupported, InfrastructureError
from lockchaos.harness.servers.clusters import (
    ETCD_WIPE_CONTAINERS,
    SENTINEL_WAIT_REPLICAS,
    EtcdCluster,
    EtcdMember,
    ProcessCluster,
    RedisNode,
    RedlockCluster,
    SentinelCluster,
    SentinelServer,
)
from lockchaos.harness.servers.containers import (
    _DATA,
    ContainerServer,
    _sdk,
)
from lockchaos.harness.servers.flags import PortTaken, etcd_ready, redis_ready
from lockchaos.harness.servers.specs import REDIS

__all__ = [
    "EtcdContainerCluster",
    "EtcdContainerMember",
    "RedisContainerNode",
    "RedlockContainerCluster",
    "SentinelContainer",
    "SentinelContainerCluster",
    "provision_container_cluster",
]

_SENTINEL_CONF = f"{_DATA}/sentinel.conf"


class _ContainerMember(ContainerServer):
    """The container lifecycle of a cluster member: ports from its cluster, recreated when the
    command its cluster wants next differs from the one its container was created with."""

    _created_command: list[str] | None = None

    def _create_and_start(self) -> None:
        self._created_command = self._command()
        super()._create_and_start()

    def restart(self) -> None:
        if self._docker is not None and self._container is not None and self._created_command is not None \
                and self._command() != self._created_command:
            self._recreate()
            return
        super().restart()

    def _recreate(self) -> None:
        """A new container with the new command, same name, ports and data volume."""
        docker = _sdk()
        container, tc, self._tc = self._container, self._tc, None
        try:
            container.remove(force=True)  # not v=True: the named data volume stays
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            raise InfrastructureError(f"cannot recreate {self!r}: {exc}") from None
        with contextlib.suppress(Exception):
            tc.get_docker_client().client.close()
        self._paused = False
        try:
            self._create_and_start()
        except PortTaken:
            raise InfrastructureError(
                f"cannot restart {self!r}: another process took port {self.port} while it was down") from None


class EtcdContainerMember(_ContainerMember, EtcdMember):  # type: ignore[misc]  # _require_running: str here, None there; only ours is called
    """One etcd member in a container, on the client and peer ports its cluster chose."""

    kind = "etcd"

    def __init__(self, name: str, ports: tuple[int, int], initial_cluster: str, token: str, *,
                 fast: bool = True, startup_timeout: float = 30.0, advertise_peer_port: int | None = None) -> None:
        EtcdMember.__init__(self, name, ports, initial_cluster, token, fast=fast, startup_timeout=startup_timeout,
                            advertise_peer_port=advertise_peer_port)
        ContainerServer.__init__(self, self.spec, startup_timeout=startup_timeout)

    @property
    def url(self) -> str:
        return f"etcd://{self.host}:{self.port}"

    def _pick_ports(self) -> tuple[int, ...]:
        return self._assigned

    def _command(self) -> list[str]:
        return ["etcd", *self._args(Path(_DATA))]

    def _ready(self) -> bool:
        return etcd_ready(self.host, self.port)


class RedisContainerNode(_ContainerMember, RedisNode):  # type: ignore[misc]  # _require_running: str here, None there; only ours is called
    """A Sentinel group's data node or a Redlock master in a container, without persistence."""

    kind = "redis"

    def __init__(self, name: str, port: int, primary_port: int | None, *, clock_faults: bool = False,
                 announce_port: int | None = None) -> None:
        if clock_faults:
            raise ConfigurationError("clock faults reach only process-mode Redis (libfaketime); not a container")
        RedisNode.__init__(self, name, port, primary_port, announce_port=announce_port)
        ContainerServer.__init__(self, self.spec, startup_timeout=30.0)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _pick_ports(self) -> tuple[int, ...]:
        return self._assigned

    def _command(self) -> list[str]:
        return ["redis-server", *self._args(Path(_DATA))]

    def _ready(self) -> bool:
        return redis_ready(self.host, self.port)


class SentinelContainer(_ContainerMember, SentinelServer):  # type: ignore[misc]  # _require_running: str here, None there; only ours is called
    """A Redis Sentinel in a container of the Redis image (``redis-server --sentinel``), its
    config written into its data volume before it first starts (Sentinel rewrites it there)."""

    kind = "redis-sentinel"

    def __init__(self, name: str, port: int, primary_port: int, *, quorum: int, myid: str,
                 replicas: list[int], peers: list[tuple[int, str]]) -> None:
        SentinelServer.__init__(self, name, port, primary_port, quorum=quorum, myid=myid, replicas=replicas,
                                peers=peers)
        ContainerServer.__init__(self, REDIS, startup_timeout=30.0)  # the Redis image, in Sentinel mode
        self.kind = "redis-sentinel"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def _pick_ports(self) -> tuple[int, ...]:
        return self._assigned

    def _command(self) -> list[str]:
        return ["redis-server", _SENTINEL_CONF, "--sentinel"]

    def _prepare(self, container: Any) -> None:
        container.with_copy_into_container(self.config_text(_DATA).encode(), _SENTINEL_CONF)

    def _ready(self) -> bool:
        return redis_ready(self.host, self.port)


class EtcdContainerCluster(EtcdCluster):
    """Three etcd members in containers; peers through the harness's proxies as in process mode."""

    member_type = EtcdContainerMember
    wipe_refused: str | None = ETCD_WIPE_CONTAINERS

    def wipe_member(self, name: str, leader: str) -> None:
        raise FaultUnsupported(ETCD_WIPE_CONTAINERS)


class SentinelContainerCluster(SentinelCluster):
    """One primary, two replicas and three Sentinels, each in a container."""

    node_type = RedisContainerNode
    sentinel_type = SentinelContainer

    wipe_refused: str | None = (
        "restarting a Sentinel group's node empty is built for process mode only: a container's "
        "restart is not bounded below Sentinel's down-after (250 ms), so it would fail over instead")

    def wipe_member(self, name: str, leader: str) -> None:
        raise FaultUnsupported(str(self.wipe_refused))


class RedlockContainerCluster(RedlockCluster):
    """Five independent Redis masters, each in a container (no clock faults: no libfaketime there)."""

    node_type = RedisContainerNode


def provision_container_cluster(kind: str) -> ProcessCluster:
    """Start a private cluster of ``kind`` in containers; without an engine, InfrastructureError in one line."""
    if kind == "etcd-cluster":
        return EtcdContainerCluster().start()
    if kind == "redis-sentinel":
        return SentinelContainerCluster().start()
    if kind == "redis-sentinel-wait":
        return SentinelContainerCluster(wait_replicas=SENTINEL_WAIT_REPLICAS).start()
    if kind == "redlock":
        return RedlockContainerCluster().start()
    raise InfrastructureError(f"unknown cluster kind {kind!r}")
