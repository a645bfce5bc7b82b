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
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lockchaos.backends.base import FaultUnsupported, InfrastructureError
from lockchaos.harness.servers.faketime import missing_reason
from lockchaos.harness.servers.flags import (
    LOOPBACK,
    etcd_election_timeout_ms,
    etcd_min_lease_ttl_ms,
    free_ports,
    redis_ready,
)
from lockchaos.harness.servers.peerproxies import PeerProxies
from lockchaos.harness.servers.process import EtcdServer, RedisServer, _ProcessServer

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
    wipe_refused: str | None = "this cluster cannot restart a member without its data"
    """Why ``wipe_member`` is refused here, known before a run (the fault is skipped with it), or None."""

    def __init__(self) -> None:
        self._members: list[_ProcessServer] = []
        self._started = False
        self.route_peers = False
        """Whether the members' traffic to each other crosses ``peers`` (set by clusters that have it)."""
        self.clients_cross_peers = False
        """Whether clients reach a member through its peer proxy too (Sentinel names the proxy), so
        that isolating it must spare the holder's connections by their process."""
        self.peers = PeerProxies()

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
        self._started = True
        try:
            self._members = self._build()
            self._start_members()
            self._after_start()
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise
        return self

    def _start_members(self) -> None:
        """All members at once, by default."""
        _parallel(self._members, lambda m: m.start())

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
        try:
            self.peers.stop()
        except InfrastructureError as exc:
            errors.append(exc)
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

    def jump_clock(self, delta_ms: int) -> None:
        raise FaultUnsupported("a clock jump cannot reach a real cluster's processes")

    @property
    def durable(self) -> bool:
        """Whether every member keeps its state across kill + restart (etcd's do; Redis's here do not)."""
        return bool(self._members) and all(m.durable for m in self._members)

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

    def followers(self) -> list[str]:
        """The running members that do not lead now (resolved when a follower fault fires)."""
        leader = self.leader()
        return [str(getattr(m, "name", "")) for m in self._members
                if getattr(m, "name", None) != leader and m.is_running() and not m.paused]

    def rejoin_member(self, name: str, leader: str) -> None:
        """Bring a killed follower back with its data, following ``leader`` (a plain restart here)."""
        self.restart_member(name)

    def wipe_member(self, name: str, leader: str) -> None:
        """Bring a killed member back on its ports WITHOUT its data, in the role it had (the primary
        if it is ``leader``). Unsupported unless a cluster says how its members rejoin empty."""
        raise FaultUnsupported(f"{self!r}: {self.wipe_refused}")

    def isolate_member(self, name: str, keep_pids: Collection[int] = ()) -> None:
        """Cut ``name`` off from its peers, both ways, on real sockets (its peer proxy and theirs);
        the processes ``keep_pids`` (a holder's client) still reach it. Until ``heal_member``."""
        if not self.peers:
            raise FaultUnsupported(f"{self!r} does not route its members' traffic through proxies")
        self.member(name)
        pids = {str(getattr(m, "name", "")): m.pid for m in self._members if m.is_running()}
        self.peers.isolate(name, pids, keep_pids)

    def heal_member(self, name: str) -> None:
        """Undo ``isolate_member``: the member's peers reach it again (cut connections are redialled)."""
        self.member(name)
        self.peers.heal()

    def __repr__(self) -> str:
        ports = ",".join(str(m._ports[0]) for m in self._members if m._ports)
        return f"<{type(self).__name__} {LOOPBACK}:{ports or 'unstarted'}>"


# --- etcd ----------------------------------------------------------------------------------------


class EtcdMember(EtcdServer):
    """One member of a private etcd cluster: its ports and its peers are chosen by the cluster."""

    def __init__(self, name: str, ports: tuple[int, int], initial_cluster: str, token: str, *,
                 fast: bool = True, startup_timeout: float = 20.0, advertise_peer_port: int | None = None) -> None:
        super().__init__(fast=fast, startup_timeout=startup_timeout)
        self.name = name
        self._assigned = ports
        self._advertise_peer_port = advertise_peer_port
        """The port peers dial: its peer proxy's, when the cluster routes peer traffic through one."""
        self._initial_cluster = initial_cluster
        self._token = token
        self._cluster_state = "new"

    def _pick_ports(self) -> tuple[int, ...]:
        return self._assigned

    @property
    def advertised_peer_url(self) -> str:
        return f"http://{self.host}:{self._advertise_peer_port or self.peer_port}"

    def join_as_new_member(self, initial_cluster: str) -> None:
        """Next launch: an empty data dir, joining the running cluster (``existing``) as the member
        just added under this name; what etcd requires of a member whose disk was lost."""
        self._initial_cluster = initial_cluster
        self._cluster_state = "existing"
        if self.workdir is not None:
            shutil.rmtree(self.workdir / "data", ignore_errors=True)

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """One call to this member's JSON gateway (``/v3/...``), or None if it does not answer."""
        req = urllib.request.Request(f"http://{self.host}:{self.port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with _HTTP.open(req, timeout=_STATUS_TIMEOUT_S) as resp:
                data: dict[str, Any] = json.loads(resp.read())
                return data
        except (OSError, ValueError):
            return None

    def _args(self, workdir: Path) -> list[str]:
        client = f"http://{self.host}:{self.port}"
        peer = f"http://{self.host}:{self.peer_port}"
        advertised = f"http://{self.host}:{self._advertise_peer_port or self.peer_port}"
        args = [
            "--name", self.name, "--data-dir", str(workdir / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", advertised,
            "--initial-cluster", self._initial_cluster, "--initial-cluster-state", self._cluster_state,
            "--initial-cluster-token", self._token,
        ]
        if self.fast:
            return [*args, "--heartbeat-interval", "10", "--election-timeout", "100"]
        return args

    def _discard_partial_state(self, workdir: Path) -> None:
        shutil.rmtree(workdir / "data", ignore_errors=True)

    def status(self) -> dict[str, Any] | None:
        """This member's Maintenance.Status (through etcd's JSON gateway), or None if it does not answer."""
        return self.call("/v3/maintenance/status", {})


ETCD_WIPE_CONTAINERS = (
    "an etcd member's lost disk (remove it, re-add it as a new member, start it empty) is built for "
    "process mode only")
MEMBERSHIP_WAIT_S = 20.0
"""How long a membership change may wait for the surviving members to elect a leader and agree."""


class EtcdCluster(ProcessCluster):
    """Three etcd 3.4 members on loopback with the single node's fast timing (10 ms / 100 ms)."""

    kind = "etcd"
    member_type: type[EtcdMember] = EtcdMember
    """What each member is (a process here; container mode substitutes its own)."""

    def __init__(self, *, members: int = ETCD_MEMBERS, fast: bool = True, route_peers: bool = True) -> None:
        super().__init__()
        self.size = members
        self.fast = fast
        self.route_peers = route_peers
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
        # Peers dial each member's proxy (isolate_member cuts there); clients dial the member itself.
        advertised = [self.peers.add(n, p[1]) if self.route_peers else p[1] for n, p in zip(names, pairs, strict=True)]
        initial = ",".join(f"{n}=http://{LOOPBACK}:{a}" for n, a in zip(names, advertised, strict=True))
        token = f"lockchaos-{uuid.uuid4().hex[:12]}"
        return [self.member_type(n, p, initial, token, fast=self.fast, advertise_peer_port=a)
                for n, p, a in zip(names, pairs, advertised, strict=True)]

    def _after_start(self) -> None:
        self.leader()

    wipe_refused: str | None = None

    def wipe_member(self, name: str, leader: str) -> None:
        """Bring a killed member back without its data, as etcd allows it: an etcd member restarted on
        an empty data dir exits at once (measured, etcd 3.4: "member <id> has already been
        bootstrapped"), so it is removed from the cluster, added again as a new member under its
        name and peer URL, and started empty to join the running cluster, which sends it a snapshot.
        Both changes need a quorum of the others, so this waits for them to have elected a leader."""
        member = self.member(name)
        assert isinstance(member, EtcdMember)
        if member.is_running():
            raise InfrastructureError(f"cannot wipe {member!r}: it must be killed first")
        deadline = time.monotonic() + MEMBERSHIP_WAIT_S
        others = [m for m in self._members if isinstance(m, EtcdMember) and m is not member and m.is_running()]
        while True:
            listed = self._ask(others, "/v3/cluster/member/list", {})
            old = [str(m["ID"]) for m in (listed or {}).get("members", []) if m.get("name") == name
                   or member.advertised_peer_url in m.get("peerURLs", [])]
            if listed is not None and not old:
                break  # removed (by the previous attempt, whose reply was lost)
            if old and self._ask(others, "/v3/cluster/member/remove", {"ID": old[0]}) is not None:
                continue
            self._wait(deadline, f"remove {name} from the cluster")
        adding = {"peerURLs": [member.advertised_peer_url]}
        while (added := self._ask(others, "/v3/cluster/member/add", adding)) is None:
            self._wait(deadline, f"add {name} back as a new member")
        peers = {str(m.get("name") or ""): m.get("peerURLs", [""])[0] for m in added.get("members", [])}
        peers[name] = member.advertised_peer_url  # the new member has no name until it starts
        peers.pop("", None)
        member.join_as_new_member(",".join(f"{n}=http://{u.split('://', 1)[-1]}" for n, u in sorted(peers.items())))
        member.restart()

    @staticmethod
    def _ask(members: list[EtcdMember], path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The first answer without an error from any of ``members``."""
        for m in members:
            reply = m.call(path, body)
            if reply is not None and "error" not in reply and "code" not in reply:
                return reply
        return None

    def _wait(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise InfrastructureError(f"{self!r}: could not {what} within {MEMBERSHIP_WAIT_S:g} s")
        time.sleep(0.05)

    def raft_term(self) -> int | None:
        """The highest Raft term the running members report (``run/promotions.py`` watches it rise)."""
        terms = []
        for m in self._members:
            assert isinstance(m, EtcdMember)
            if m.paused:  # a killed member refuses at once; a frozen one would hold the poll up
                continue
            st = m.status()
            raw = None if st is None else st.get("header", {}).get("raft_term")
            if isinstance(raw, str | int) and str(raw).isdigit():
                terms.append(int(raw))
        return max(terms, default=None)

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
        if isinstance(self.cluster, RedlockCluster) and self.cluster.clock_faults:
            self.cluster.jump_clock(delta_ms)
            return
        raise FaultUnsupported("a clock jump reaches only Redlock's clock master among the clusters")

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

    def followers(self) -> list[str]:
        return self.cluster.followers()

    def rejoin_member(self, name: str, leader: str) -> None:
        self.cluster.rejoin_member(name, leader)

    def wipe_member(self, name: str, leader: str) -> None:
        self.cluster.wipe_member(name, leader)

    def isolate_member(self, name: str, keep_pids: Collection[int] = ()) -> None:
        self.cluster.isolate_member(name, keep_pids)

    @property
    def clients_cross_peers(self) -> bool:
        return self.cluster.clients_cross_peers

    def heal_member(self, name: str) -> None:
        self.cluster.heal_member(name)

    def masters(self) -> list[str]:
        return self._redlock().masters()

    def granting_masters(self) -> list[str]:
        return self._redlock().granting_masters()

    def _redlock(self) -> RedlockCluster:
        if not isinstance(self.cluster, RedlockCluster):
            raise FaultUnsupported(f"{self.cluster!r} has no independent Redlock masters")
        return self.cluster


# --- Redis with Sentinel ------------------------------------------------------------------------------

SENTINEL_SERVICE = "mymaster"
SENTINEL_DOWN_AFTER_MS = 250
SENTINEL_FAILOVER_TIMEOUT_MS = 1000
SENTINEL_DEMOTION_MS = 9000
"""A returning old primary is demoted after reporting its stale role for 8 s, seen by INFO each 1 s."""
_REPLICATION_PROBE_KEY = "lockchaos-harness:replication-probe"
"""Written and deleted at once on a group the harness launched, outside every lock's key prefix."""
SENTINEL_SETTLE_S = 30.0
"""How long a fresh Sentinel group may take to find its replicas and each other (hello every 2 s; a
Sentinel learns the replicas from the primary's INFO, every 10 s: beside two CPU hogs one Sentinel
still knew nobody after 15 s)."""


class RedisNode(RedisServer):
    """A data node of a Sentinel group: the primary, or a replica of the port it is given."""

    def __init__(self, name: str, port: int, primary_port: int | None, *, clock_faults: bool = False,
                 announce_port: int | None = None) -> None:
        super().__init__(persistence=False, clock_faults=clock_faults)
        self.name = name
        self._assigned = (port,)
        self._primary_port = primary_port
        self._announce_port = announce_port

    @property
    def peer_port(self) -> int:
        """The port replicas and Sentinels (and so clients, who ask Sentinel) know this node by:
        its peer proxy's, when the group routes its traffic through proxies."""
        return self._announce_port or self.port

    def _pick_ports(self) -> tuple[int, ...]:
        return self._assigned

    def follow(self, primary_port: int | None) -> None:
        """Replicate ``primary_port`` (None: be a primary) from the next launch on."""
        self._primary_port = primary_port

    def _args(self, workdir: Path) -> list[str]:
        # Redis 7 waits 5 s before a diskless full sync to batch replicas: a group would sit unreplicated.
        args = [*super()._args(workdir), "--repl-diskless-sync-delay", "0"]
        if self._primary_port is not None:
            args += ["--replicaof", self.host, str(self._primary_port)]
        if self._announce_port is not None:  # the primary lists it (INFO) at its proxy, for Sentinel
            args += ["--replica-announce-ip", self.host, "--replica-announce-port", str(self._announce_port)]
        return args

    def replicas_connected(self) -> int:
        """How many replicas this node, as a primary, has connected to it (ROLE); 0 if it does not answer."""
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=_STATUS_TIMEOUT_S,
                             socket_connect_timeout=_STATUS_TIMEOUT_S, retry=Retry(NoBackoff(), 0),
                             decode_responses=True)
        try:
            reply = client.role()
            return len(reply[2]) if reply[0] == "master" else 0
        except (redis.RedisError, IndexError, TypeError):
            return 0
        finally:
            client.close()

    def replicas_acknowledging(self, want: int, timeout_ms: int) -> int:
        """How many replicas acknowledge a probe write within ``timeout_ms`` (WAIT on the connection that
        wrote it); 0 if the node does not answer. Only this proves the replication stream flows: a
        replica can be listed online and in sync before its first acknowledgement reaches the primary,
        and a grant's WAIT then counts nobody."""
        timeout_s = _STATUS_TIMEOUT_S + timeout_ms / 1000
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=timeout_s,
                             socket_connect_timeout=_STATUS_TIMEOUT_S, retry=Retry(NoBackoff(), 0),
                             decode_responses=True, single_connection_client=True)
        try:
            client.set(_REPLICATION_PROBE_KEY, "1")
            client.delete(_REPLICATION_PROBE_KEY)
            return int(client.wait(want, timeout_ms))
        except (redis.RedisError, IndexError, TypeError, ValueError):
            return 0
        finally:
            client.close()

    def role(self) -> str | None:
        """``master``, ``slave`` (in sync with its primary) or ``syncing``, as the node says (ROLE);
        None if it does not answer."""
        client = redis.Redis(host=self.host, port=self.port, socket_timeout=_STATUS_TIMEOUT_S,
                             socket_connect_timeout=_STATUS_TIMEOUT_S, retry=Retry(NoBackoff(), 0),
                             decode_responses=True)
        try:
            reply = client.role()
            if reply[0] == "slave" and reply[3] != "connected":
                return "syncing"
            return str(reply[0])
        except (redis.RedisError, IndexError, TypeError):
            return None
        finally:
            client.close()


class SentinelServer(_ProcessServer):
    """One Redis Sentinel watching the group's primary, with short timeouts so a failover takes ~1-2 s.

    Debian ships Sentinel as ``redis-sentinel`` (package redis-sentinel); without it the same
    ``redis-server`` binary runs in Sentinel mode with ``--sentinel``.
    """

    kind = "redis-sentinel"
    binary_name = "redis-sentinel"
    debian_package = "redis-sentinel"
    env_var = "LOCKCHAOS_REDIS_SENTINEL"

    def __init__(self, name: str, port: int, primary_port: int, *, quorum: int, myid: str,
                 replicas: Sequence[int], peers: Sequence[tuple[int, str]]) -> None:
        super().__init__(binary=None, startup_timeout=10.0, stop_timeout=5.0)
        self.name = name
        self._assigned = (port,)
        self._primary_port = primary_port
        self._quorum = quorum
        self._myid = myid
        self._replicas = tuple(replicas)
        self._peers = tuple(peers)
        self._sentinel_mode_flag: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def _pick_ports(self) -> tuple[int, ...]:
        return self._assigned

    def _resolve_binary(self) -> str:
        try:
            return super()._resolve_binary()
        except InfrastructureError:
            found = shutil.which("redis-server")
            if found is None:
                raise
            self._sentinel_mode_flag = ["--sentinel"]
            return found

    def _args(self, workdir: Path) -> list[str]:
        conf = workdir / "sentinel.conf"
        if not conf.exists():  # Sentinel rewrites it with what it learns: a restart keeps that
            conf.write_text(self.config_text(str(workdir)))
        return [str(conf), *self._sentinel_mode_flag]

    def config_text(self, workdir: str) -> str:
        """The first sentinel.conf, with ``dir`` ``workdir`` (container mode writes it into a volume)."""
        return "\n".join([
            f"port {self.port}", f"bind {self.host}", "daemonize no", f"dir {workdir}", 'logfile ""',
            f"sentinel monitor {SENTINEL_SERVICE} {self.host} {self._primary_port} {self._quorum}",
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} {SENTINEL_DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SENTINEL_SERVICE} {SENTINEL_FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {SENTINEL_SERVICE} 2", f"sentinel myid {self._myid}",
            # Told up front what Sentinels otherwise learn from INFO (every 10 s) and hello messages
            # (every 2 s): the group is ready for a failover as soon as it is up.
            *(f"sentinel known-replica {SENTINEL_SERVICE} {self.host} {p}" for p in self._replicas),
            *(f"sentinel known-sentinel {SENTINEL_SERVICE} {self.host} {p} {rid}" for p, rid in self._peers),
            "",
        ])

    def _ready(self) -> bool:
        return redis_ready(self.host, self.port)

    def _client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=_STATUS_TIMEOUT_S,
                           socket_connect_timeout=_STATUS_TIMEOUT_S, retry=Retry(NoBackoff(), 0),
                           decode_responses=True)

    def primary_port(self) -> int | None:
        """The primary's port as this Sentinel sees it, None if it does not answer."""
        client = self._client()
        try:
            addr = client.sentinel_get_master_addr_by_name(SENTINEL_SERVICE)
            return int(addr[1]) if isinstance(addr, (tuple, list)) else None
        except (redis.RedisError, ValueError, IndexError):
            return None
        finally:
            client.close()

    def knows(self) -> tuple[int, int]:
        """(replicas, other Sentinels) this Sentinel knows of."""
        client = self._client()
        try:
            info = client.sentinel_master(SENTINEL_SERVICE)
            if not isinstance(info, dict):
                return 0, 0
            return int(info.get("num-slaves", 0)), int(info.get("num-other-sentinels", 0))
        except (redis.RedisError, ValueError, TypeError):
            return 0, 0
        finally:
            client.close()


class SentinelCluster(ProcessCluster):
    """One primary, two replicas and three Sentinels (quorum 2) on loopback, no persistence.

    Replication is asynchronous: a primary acknowledges a grant before its replicas have it, so a
    promotion can lose it. ``leader()`` is the primary a majority of Sentinels name, itself a master.
    """

    kind = "redis-sentinel"
    node_type: type[RedisNode] = RedisNode
    sentinel_type: type[SentinelServer] = SentinelServer
    """What each data node and Sentinel is (processes here; container mode substitutes its own)."""

    def __init__(self, *, replicas: int = 2, sentinels: int = 3, route_peers: bool = True,
                 wait_replicas: int = 0) -> None:
        super().__init__()
        self.replicas = replicas
        self.wait_replicas = wait_replicas
        """Clients are told (``?wait_replicas=``) to count a grant only once this many replicas
        acknowledged it (WAIT); 0: plain asynchronous Sentinel."""
        self.sentinel_count = sentinels
        self.route_peers = route_peers
        self.clients_cross_peers = route_peers
        self._primary_at_kill = "r0"
        from lockchaos.backends.redis import DEFAULT_TIMEOUT_MS

        # Until the group has settled on one primary that clients find: detection (down-after), the
        # Sentinels' vote (a split vote is retried after twice the failover timeout; Sentinels start
        # up to 1 s apart) and the promotion; then an old primary that returns (restarted, resumed)
        # keeps answering as a primary to the clients still connected to it until Sentinel demotes it,
        # which Sentinel does only after it has reported that role for 4 hello periods (8 s, fixed in
        # Redis) plus an INFO period; plus the adapter's 1 s timeout on a frozen primary.
        # Measured on loopback: ~1.5-2.1 s from kill -9 until a client is granted again.
        self.failover_ms = (SENTINEL_DOWN_AFTER_MS + 2 * SENTINEL_FAILOVER_TIMEOUT_MS + 1000
                            + SENTINEL_DEMOTION_MS + DEFAULT_TIMEOUT_MS)

    @property
    def nodes(self) -> list[RedisNode]:
        return [m for m in self._members if isinstance(m, RedisNode)]

    @property
    def sentinels(self) -> list[SentinelServer]:
        return [m for m in self._members if isinstance(m, SentinelServer)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"{s.host}:{s.port}" for s in self.sentinels)
        query = f"?wait_replicas={self.wait_replicas}" if self.wait_replicas else ""
        return f"redis+sentinel://{hosts}/{SENTINEL_SERVICE}{query}"

    @property
    def port(self) -> int:
        return self.sentinels[0].port

    def _build(self) -> list[_ProcessServer]:
        ports = free_ports(1 + self.replicas + self.sentinel_count)
        # Replicas and Sentinels reach each node through its peer proxy (isolate_member cuts there).
        data = range(1 + self.replicas)
        known = [self.peers.add(f"r{i}", ports[i]) if self.route_peers else ports[i] for i in data]
        announce = known if self.route_peers else [None for _ in data]
        primary = known[0]
        nodes: list[_ProcessServer] = [self.node_type("r0", ports[0], None, announce_port=announce[0])]
        nodes += [self.node_type(f"r{i}", ports[i], primary, announce_port=announce[i])
                  for i in range(1, 1 + self.replicas)]
        quorum = self.sentinel_count // 2 + 1
        replica_ports = known[1:]
        sentinel_ports = ports[1 + self.replicas:]
        ids = [uuid.uuid4().hex + uuid.uuid4().hex[:8] for _ in sentinel_ports]  # 40 hex digits
        for i, port in enumerate(sentinel_ports):
            peers = [(p, rid) for j, (p, rid) in enumerate(zip(sentinel_ports, ids, strict=True)) if j != i]
            nodes.append(self.sentinel_type(f"s{i}", port, primary, quorum=quorum, myid=ids[i],
                                        replicas=replica_ports, peers=peers))
        return nodes

    def _start_members(self) -> None:
        # The data nodes first: a Sentinel started before its primary answers would wait for it.
        _parallel(self.nodes, lambda m: m.start())
        self._await_replicas()
        _parallel(self.sentinels, lambda m: m.start())

    def _after_start(self) -> None:
        """Wait until every Sentinel knows every replica and every other Sentinel: before that, a
        failover could not gather its quorum."""
        deadline = time.monotonic() + SENTINEL_SETTLE_S
        want = (self.replicas, self.sentinel_count - 1)
        while any(s.knows() != want for s in self.sentinels):
            if time.monotonic() > deadline:
                seen = {s.name: s.knows() for s in self.sentinels}
                raise InfrastructureError(f"{self!r}: Sentinels did not discover the group within "
                                          f"{SENTINEL_SETTLE_S:g} s (replicas, sentinels known: {seen})")
            time.sleep(0.05)
        self.leader()

    def _await_replicas(self) -> None:
        """Until every replica has finished its first sync: a grant before that has no copy at all."""
        deadline = time.monotonic() + SENTINEL_SETTLE_S
        def settled() -> bool:
            # Both ends: each replica says it is connected, and the primary lists them all (only then
            # can a WAIT for every replica be met, so a grant can have its copies).
            if any(n.role() != ("master" if n._primary_port is None else "slave") for n in self.nodes):
                return False
            primaries = [n for n in self.nodes if n._primary_port is None]
            want = len(self.nodes) - 1
            return all(n.replicas_connected() >= want and n.replicas_acknowledging(want, 200) >= want
                       for n in primaries)

        while not settled():
            if time.monotonic() > deadline:
                roles = {n.name: n.role() for n in self.nodes}
                raise InfrastructureError(f"{self!r}: replicas not in sync within {SENTINEL_SETTLE_S:g} s: {roles}")
            time.sleep(0.02)

    def kill(self) -> None:
        """kill -9 of every process; the primary is remembered so that restart() keeps the roles."""
        with contextlib.suppress(InfrastructureError):
            self._primary_at_kill = self.leader()
        super().kill()

    def restart(self) -> None:
        """Bring the group back as it was: the last primary as primary, the others replicating it,
        then the Sentinels, whose rewritten configs name that primary (a node restarted in its
        launch role instead would contradict them until Sentinel demotes it, 8 s later)."""
        primary = self.member(self._primary_at_kill)
        assert isinstance(primary, RedisNode)
        for node in self.nodes:
            node.follow(None if node is primary else primary.peer_port)
        _parallel(self.nodes, lambda m: m.restart())
        self._await_replicas()
        _parallel(self.sentinels, lambda m: m.restart())

    def followers(self) -> list[str]:
        """The running data nodes that are not the primary now (the Sentinels hold no lock)."""
        leader = self.leader()
        return [n.name for n in self.nodes if n.name != leader and n.is_running() and not n.paused]

    def rejoin_member(self, name: str, leader: str) -> None:
        """Restart a killed replica with its data as a replica of the primary now (not of the one it
        was launched with, which may since have been demoted)."""
        self._follow(name, leader)
        self.restart_member(name)

    wipe_refused: str | None = None

    def wipe_member(self, name: str, leader: str) -> None:
        """Restart a killed data node with no dataset at all: the primary comes back as an empty
        primary (its replicas then resync from it and drop what they had: Redis's famous amnesia),
        a replica as an empty replica of the primary."""
        node = self._follow(name, leader)
        workdir = node.workdir
        if workdir is None or node.is_running():
            raise InfrastructureError(f"cannot wipe {node!r}: it must be started and killed first")
        for path in list(workdir.rglob("*")):  # any RDB or AOF a replica's disk sync may have left
            if path.is_dir() and path.name == "appendonlydir":
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.endswith((".rdb", ".aof")):
                path.unlink(missing_ok=True)
        self.restart_member(name)

    def _follow(self, name: str, leader: str) -> RedisNode:
        node = self.member(name)
        if not isinstance(node, RedisNode):
            raise FaultUnsupported(f"{name} is a Sentinel, not a data node")
        primary = self.member(leader)
        assert isinstance(primary, RedisNode)
        node.follow(None if node is primary else primary.peer_port)
        return node

    def leader(self) -> str:
        """The primary a majority of the Sentinels name, itself answering as a master."""
        deadline = time.monotonic() + LEADER_WAIT_S
        while True:
            views = [s.primary_port() for s in self.sentinels if s.is_running() and not s.paused]
            for node in self.nodes:
                if views.count(node.peer_port) > self.sentinel_count // 2 and node.is_running() and not node.paused \
                        and node.role() == "master":
                    return node.name
            if time.monotonic() > deadline:
                raise InfrastructureError(f"{self!r}: no primary named by a majority of Sentinels within "
                                          f"{LEADER_WAIT_S:g} s (their views: {views})")
            time.sleep(0.02)

    def __repr__(self) -> str:
        ports = ",".join(str(m._ports[0]) for m in self._members if m._ports)
        return f"<SentinelCluster {LOOPBACK}:{ports or 'unstarted'}>"


# --- Redlock: independent masters -------------------------------------------------------------------

REDLOCK_MASTERS = 5
REDLOCK_KEY_PATTERN = "redlock:*"
"""pottery's Redlock names its keys ``redlock:<name>``."""


class RedlockCluster(ProcessCluster):
    """Five independent non-persistent redis-server masters on loopback: no replication, no Sentinel.

    Redlock has no leader: a lock is a quorum of masters (3 of 5). A master restarted after kill -9
    comes back empty, forgetting the grants it held; that is the hazard the Redlock faults exercise.
    With ``clock_faults`` the first master (``m0``) runs under libfaketime and ``jump_clock`` steps
    its wall clock alone: one master's clock fault, which Redlock's quorum claims to survive.
    """

    kind = "redlock"
    CLOCK_MASTER = "m0"
    node_type: type[RedisNode] = RedisNode

    def __init__(self, *, masters: int = REDLOCK_MASTERS, clock_faults: bool = False) -> None:
        super().__init__()
        self.size = masters
        self.clock_faults = clock_faults
        from lockchaos.backends.libs.pottery_quorum import RESTART_MS
        from lockchaos.backends.redis import DEFAULT_TIMEOUT_MS

        self.failover_ms = DEFAULT_TIMEOUT_MS + RESTART_MS

    @property
    def url(self) -> str:
        return "redlock://" + ",".join(f"{m.host}:{m.port}" for m in self._members) + "/0"

    def _build(self) -> list[_ProcessServer]:
        return [self.node_type(f"m{i}", port, None, clock_faults=self.clock_faults and f"m{i}" == self.CLOCK_MASTER)
                for i, port in enumerate(free_ports(self.size))]

    def jump_clock(self, delta_ms: int) -> None:
        """Step the wall clock of ``m0`` alone (cumulative), the one master launched for clock faults."""
        node = self.member(self.CLOCK_MASTER)
        assert isinstance(node, RedisNode)
        node.jump_clock(delta_ms)

    def leader(self) -> str:
        raise FaultUnsupported("Redlock has no leader: its masters are independent (use the redlock faults)")

    def masters(self) -> list[str]:
        return [m.name for m in self.nodes]

    @property
    def nodes(self) -> list[RedisNode]:
        return [m for m in self._members if isinstance(m, RedisNode)]

    def granting_masters(self) -> list[str]:
        """The running masters that hold some Redlock key now (that granted a lock still in force)."""
        out = []
        for node in self.nodes:
            if not node.is_running() or node.paused:
                continue
            client = redis.Redis(host=node.host, port=node.port, socket_timeout=_STATUS_TIMEOUT_S,
                                 socket_connect_timeout=_STATUS_TIMEOUT_S, retry=Retry(NoBackoff(), 0))
            try:
                if next(iter(client.scan_iter(match=REDLOCK_KEY_PATTERN, count=100)), None) is not None:
                    out.append(node.name)
            except redis.RedisError:
                continue
            finally:
                client.close()
        return out


# --- what the CLI provisions -------------------------------------------------------------------------

CLUSTERS = ("etcd-cluster", "redis-sentinel", "redis-sentinel-wait", "redlock")
SENTINEL_WAIT_REPLICAS = 1
"""``redis-sentinel-wait``: a grant counts once one of the two replicas acknowledged it (WAIT 1)."""


def provision_cluster(kind: str, *, clock_faults: bool = False) -> ProcessCluster:
    """Start a private cluster of ``kind`` (process mode); ``clock_faults``: Redlock's ``m0`` under libfaketime."""
    if kind == "etcd-cluster":
        return EtcdCluster().start()
    if kind == "redis-sentinel":
        return SentinelCluster().start()
    if kind == "redis-sentinel-wait":
        return SentinelCluster(wait_replicas=SENTINEL_WAIT_REPLICAS).start()
    if kind == "redlock":
        return RedlockCluster(clock_faults=clock_faults and missing_reason() is None).start()
    raise InfrastructureError(f"unknown cluster kind {kind!r}")
