"""Process-mode clusters: a three-member etcd and a Redis primary with replicas and Sentinels.

Every member is an ordinary process-mode server of ``servers.py`` (its own temp dir and marker,
registered for ``atexit``, armed with the parent-death signal, swept by the watchdog), so a cluster
inherits the single-node teardown guarantees member by member. A cluster adds what a single node
lacks: roles. Cluster faults name a role ("the current leader"), resolved when the fault fires,
because after the first failover the member that leads is a different process.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from lockchaos.backends.base import FaultUnsupported, InfrastructureError

from .serverflags import LOOPBACK, etcd_election_timeout_ms, etcd_min_lease_ttl_ms, etcd_ready, free_ports
from .servers import EtcdServer, _ProcessServer

ETCD_MEMBERS = 3
LEADER_WAIT_S = 10.0
"""How long ``leader()`` looks for a leader that a majority of the running members agree on."""
_STATUS_TIMEOUT_S = 0.5
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _parallel(members: Sequence[_ProcessServer], action: Callable[[_ProcessServer], object]) -> None:
    """Run ``action`` on every member at once: a member waits for quorum, which needs the others."""
    with ThreadPoolExecutor(max_workers=len(members), thread_name_prefix="lockchaos-member") as pool:
        futures = [pool.submit(action, m) for m in members]
        errors = [f.exception() for f in futures]
    for exc in errors:
        if exc is not None:
            raise exc


class ProcessCluster:
    """What every process-mode cluster shares: members started and stopped together, roles by name."""

    kind: str
    failover_ms: int
    """The failover time this cluster declares, as a client of our adapter (default timeouts) sees
    it: detection and election or promotion, plus a client call stuck on a frozen leader timing out.
    Liveness judges failovers against it."""

    def __init__(self) -> None:
        self._members: list[_ProcessServer] = []
        self._started = False

    @property
    def members(self) -> tuple[_ProcessServer, ...]:
        return tuple(self._members)

    def member(self, name: str) -> _ProcessServer:
        for m in self._members:
            if getattr(m, "name", None) == name:
                return m
        raise InfrastructureError(f"{self!r} has no member {name!r}")

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return self._members[0].port

    @property
    def pid(self) -> int | None:
        return None  # a cluster is several processes; faults name members

    @property
    def url(self) -> str:
        raise NotImplementedError

    def _build(self) -> list[_ProcessServer]:
        raise NotImplementedError

    def start(self) -> Self:
        if self._started:
            raise InfrastructureError(f"{self!r} is already started")
        self._members = self._build()
        self._started = True
        try:
            _parallel(self._members, lambda m: m.start())
            self._after_start()
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise
        return self

    def _after_start(self) -> None:
        """Wait for the roles to settle; nothing by default."""

    def stop(self) -> None:
        """Stop every member (each removes its own temp dir); safe to call again."""
        errors: list[BaseException] = []
        for m in self._members:
            try:
                m.stop()
            except Exception as exc:
                errors.append(exc)
        self._started = False
        if errors:
            raise errors[0]

    def __enter__(self) -> Self:
        return self if self._started else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def is_running(self) -> bool:
        return self._started and all(m.is_running() for m in self._members)

    # -- whole-cluster faults: the server faults of single-node scenarios hit every member at once
    def kill(self) -> None:
        for m in self._members:
            m.kill()

    def restart(self) -> None:
        _parallel(self._members, lambda m: m.restart())
        self._after_start()

    def pause(self) -> None:
        for m in self._members:
            m.pause()

    def resume(self) -> None:
        for m in self._members:
            m.resume()

    # -- role faults
    def leader(self) -> str:
        raise NotImplementedError

    def kill_member(self, name: str) -> None:
        self.member(name).kill()

    def pause_member(self, name: str) -> None:
        self.member(name).pause()

    def restart_member(self, name: str) -> None:
        """Bring a killed member back on its ports, with its data."""
        self.member(name).restart()

    def resume_member(self, name: str) -> None:
        self.member(name).resume()

    def __repr__(self) -> str:
        ports = ",".join(str(m._ports[0]) for m in self._members if m._ports)
        return f"<{type(self).__name__} {LOOPBACK}:{ports or 'unstarted'}>"


# --- etcd ----------------------------------------------------------------------------------------


class EtcdMember(EtcdServer):
    """One member of a private etcd cluster: its ports and its peers are chosen by the cluster."""

    def __init__(self, name: str, ports: tuple[int, int], initial_cluster: str, token: str, *,
                 fast: bool = True, startup_timeout: float = 20.0) -> None:
        super().__init__(fast=fast, startup_timeout=startup_timeout)
        self.name = name
        self._assigned = ports
        self._initial_cluster = initial_cluster
        self._token = token

    def _pick_ports(self) -> tuple[int, ...]:
        return self._assigned

    def _args(self, workdir: Path) -> list[str]:
        client = f"http://{self.host}:{self.port}"
        peer = f"http://{self.host}:{self.peer_port}"
        args = [
            "--name", self.name, "--data-dir", str(workdir / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", self._initial_cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", self._token,
        ]
        if self.fast:
            return [*args, "--heartbeat-interval", "10", "--election-timeout", "100"]
        return args

    def _discard_partial_state(self, workdir: Path) -> None:
        shutil.rmtree(workdir / "data", ignore_errors=True)

    def status(self) -> dict[str, Any] | None:
        """This member's Maintenance.Status (through etcd's JSON gateway), or None if it does not answer."""
        req = urllib.request.Request(f"http://{self.host}:{self.port}/v3/maintenance/status", data=b"{}",
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with _HTTP.open(req, timeout=_STATUS_TIMEOUT_S) as resp:
                data: dict[str, Any] = json.loads(resp.read())
                return data
        except (OSError, ValueError):
            return None


class EtcdCluster(ProcessCluster):
    """Three etcd 3.4 members on loopback with the single node's fast timing (10 ms / 100 ms)."""

    kind = "etcd"

    def __init__(self, *, members: int = ETCD_MEMBERS, fast: bool = True) -> None:
        super().__init__()
        self.size = members
        self.fast = fast
        self.election_timeout_ms = etcd_election_timeout_ms(fast)
        # Randomised election timeouts (up to 2x), a pre-vote round, and a call stuck on the frozen
        # leader until the adapter's 2 s timeout before it tries the next endpoint.
        from lockchaos.backends.etcd import DEFAULT_TIMEOUT_MS

        self.failover_ms = 4 * self.election_timeout_ms + DEFAULT_TIMEOUT_MS

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(f"{m.host}:{m.port}" for m in self._members)

    @property
    def min_lease_ttl_ms(self) -> int:
        return etcd_min_lease_ttl_ms(self.election_timeout_ms)

    def _build(self) -> list[_ProcessServer]:
        ports = free_ports(2 * self.size)
        names = [f"m{i}" for i in range(self.size)]
        pairs = [(ports[2 * i], ports[2 * i + 1]) for i in range(self.size)]
        initial = ",".join(f"{n}=http://{LOOPBACK}:{p[1]}" for n, p in zip(names, pairs, strict=True))
        token = f"lockchaos-{uuid.uuid4().hex[:12]}"
        return [EtcdMember(n, p, initial, token, fast=self.fast) for n, p in zip(names, pairs, strict=True)]

    def _after_start(self) -> None:
        self.leader()

    def leader(self) -> str:
        """The member a majority of the answering members name as leader, itself answering."""
        deadline = time.monotonic() + LEADER_WAIT_S
        while True:
            views: dict[str, str] = {}  # member id -> leader id, as each answering member says
            names: dict[str, str] = {}  # member id -> name
            for m in self._members:
                assert isinstance(m, EtcdMember)
                if not m.is_running() or m.paused:
                    continue
                st = m.status()
                if st is None:
                    continue
                me = str(st.get("header", {}).get("member_id", ""))
                names[me] = m.name
                views[me] = str(st.get("leader", ""))
            votes = list(views.values())
            for lead in set(votes):
                if lead in names and votes.count(lead) > self.size // 2:  # a majority of the cluster
                    return names[lead]
            if time.monotonic() > deadline:
                raise InfrastructureError(
                    f"{self!r}: no leader agreed by the running members within {LEADER_WAIT_S:g} s "
                    f"(views: {views})")
            time.sleep(0.02)

    def member_ready(self, name: str) -> bool:
        m = self.member(name)
        return m.is_running() and etcd_ready(m.host, m.port)


class ClusterServerFaults:
    """The nemesis's view of a cluster: whole-cluster server faults and role faults."""

    def __init__(self, cluster: ProcessCluster) -> None:
        self.cluster = cluster

    def kill(self) -> None:
        self.cluster.kill()

    def restart(self) -> None:
        self.cluster.restart()

    def pause(self) -> None:
        self.cluster.pause()

    def resume(self) -> None:
        self.cluster.resume()

    def jump_clock(self, delta_ms: int) -> None:
        raise FaultUnsupported("a clock jump cannot reach a real cluster's processes")

    def leader(self) -> str:
        return self.cluster.leader()

    def kill_member(self, name: str) -> None:
        self.cluster.kill_member(name)

    def restart_member(self, name: str) -> None:
        self.cluster.restart_member(name)

    def pause_member(self, name: str) -> None:
        self.cluster.pause_member(name)

    def resume_member(self, name: str) -> None:
        self.cluster.resume_member(name)


# --- what the CLI provisions -------------------------------------------------------------------------

CLUSTERS = ("etcd-cluster",)


def provision_cluster(kind: str) -> ProcessCluster:
    """Start a private cluster of ``kind`` (process mode)."""
    if kind == "etcd-cluster":
        return EtcdCluster().start()
    raise InfrastructureError(f"unknown cluster kind {kind!r}")
