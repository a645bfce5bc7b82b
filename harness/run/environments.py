"""One scenario's world: the server, one client and one faultable link per worker, and the clock.

The fake lives in-process, on real or virtual time, and takes faults through its own hooks. Real
servers are launched here and each worker reaches its server through its own fault proxy, so a
partition or latency hits exactly one client with real bytes. Whatever a world cannot do is said
before the run (``unsupported``), so the scenario is skipped with the reason.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from collections.abc import Collection
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from lockchaos.backends.base import Capabilities, LockBackend
from lockchaos.backends.fake import PROFILES, FakeClient, FakeKVLock, drop_fake_server, fake_server
from lockchaos.harness.faults.fault import Reach
from lockchaos.harness.faults.nemesis import ServerFaults
from lockchaos.harness.faults.proxy import Proxy, ProxyPool
from lockchaos.harness.faults.registry import lookup
from lockchaos.harness.run.clusterlinks import MemberLinks, member_proxies
from lockchaos.harness.run.runtime import Runtime
from lockchaos.harness.run.targets import Target, guarded_open, start_server
from lockchaos.harness.run.worker import LinkFaults
from lockchaos.harness.servers.clusters import ClusterServerFaults, ProcessCluster, RedlockCluster
from lockchaos.harness.servers.external import is_cluster_url, is_loopback, purge_prefix, with_run_prefix
from lockchaos.harness.servers.faketime import missing_reason
from lockchaos.harness.servers.handle import ServerHandle
from lockchaos.harness.servers.process import ExternalServer, RedisServer
from lockchaos.harness.servers.residue import Snapshot, fake_snapshot, server_snapshot


class Environment(Protocol):
    runtime: Runtime
    server: ServerFaults
    capabilities: Capabilities

    def open_client(self, index: int) -> LockBackend: ...

    def client_url(self, index: int) -> str | None:
        """The URL worker ``index`` opens from a process of its own (None: only in-process clients)."""
        ...

    def open_observer(self) -> LockBackend: ...

    def link(self, index: int) -> LinkFaults | None: ...

    def unsupported(self, fault: str) -> str | None: ...

    def residue(self) -> Snapshot:
        """What the server holds now, read-only (``harness/servers/residue.py``)."""
        ...

    def close(self) -> None: ...


class FakeLink:
    """Network faults of one fake client."""

    def __init__(self, client: FakeClient) -> None:
        self.client = client

    def partition(self) -> None:
        self.client.partition()

    def heal(self) -> None:
        self.client.heal()

    def set_latency(self, one_way_ms: int) -> None:
        self.client.set_latency(one_way_ms)

    def delay_replies(self, ms: int) -> None:
        self.client.set_reply_delay(ms)

    def reset(self) -> None:
        self.client.reset_connection()

    def drop_replies(self, on: bool) -> None:
        self.client.lose_replies(on)

    def lose_next_reply(self) -> None:
        self.client.reset_connection()


class FakeFailover:
    """The reference's failover: instant and lossless, so a leader fault changes nothing it serves.

    The fake stands for an ideal replicated service: another member takes over at once with every
    grant it had. Cluster backends are judged against that (the reference never loses a granted lock
    on failover); their real election time is what liveness measures.
    """

    def __init__(self, fake: FakeKVLock) -> None:
        self.fake = fake

    def kill(self) -> None:
        self.fake.kill()

    def restart(self) -> None:
        self.fake.restart()

    def pause(self) -> None:
        self.fake.pause()

    def resume(self) -> None:
        self.fake.resume()

    def jump_clock(self, delta_ms: int) -> None:
        self.fake.jump_clock(delta_ms)

    def leader(self) -> str:
        return "fake"

    def kill_member(self, name: str) -> None:
        """Nothing to do: the next member serves every call without a gap."""

    def restart_member(self, name: str) -> None:
        """Nothing to do: the member rejoins as a follower."""

    def pause_member(self, name: str) -> None:
        """Nothing to do: the next member serves every call without a gap."""

    def resume_member(self, name: str) -> None:
        """Nothing to do: the member rejoins as a follower."""

    def followers(self) -> list[str]:
        return ["fake-follower"]

    def rejoin_member(self, name: str, leader: str) -> None:
        """Nothing to do: a follower's crash never interrupts the service."""

    def wipe_member(self, name: str, leader: str) -> None:
        """Nothing to do: the reference's members never lose a grant (the others still hold it)."""

    def isolate_member(self, name: str, keep_pids: Collection[int] = ()) -> None:
        """Nothing to do: the majority's new leader has every grant, the cut-off one grants nothing."""

    def heal_member(self, name: str) -> None:
        """Nothing to do: the member rejoins as a follower."""

    def masters(self) -> list[str]:
        """Redlock faults on the reference: its masters never forget, so a restart changes nothing."""
        return ["fake"]

    def granting_masters(self) -> list[str]:
        return ["fake"]


class FakeEnvironment:
    def __init__(self, target: Target, runtime: Runtime, *, durable: bool | None, timeout_ms: int | None):
        base = PROFILES["ideal"]
        caps = base if durable is None else Capabilities(durable=durable)
        self.name = f"lockchaos-run-{uuid.uuid4().hex[:12]}"
        self.fake: FakeKVLock = fake_server(self.name, clock=runtime, capabilities=caps,
                                            timeout_ms=timeout_ms or 2000)
        self.target = target
        self.runtime = runtime
        self.server: ServerFaults = FakeFailover(self.fake)
        self.capabilities = caps
        self._links: dict[int, LinkFaults] = {}
        self._ours = target.adapter_spec is None
        self._faultable_links = self._ours
        # A user's adapter opens the fake by URL: the scenario's client timeout rides along.
        self.url = f"fake://{self.name}" if timeout_ms is None else f"fake://{self.name}?timeout_ms={timeout_ms}"
        if not self._ours:
            try:
                probe = guarded_open(target, self.url)
                # An adapter that is itself a fake client (a tokenless fake, say) is judged by what
                # it declares, and its network can be faulted like ours.
                self.capabilities = probe.capabilities
                self._faultable_links = isinstance(probe, FakeClient)
                probe.close()
            except BaseException:
                self.close()
                raise

    def open_client(self, index: int) -> LockBackend:
        if self._ours:
            client = FakeClient(self.fake)
        else:
            opened = self.target.open(self.url)
            if not isinstance(opened, FakeClient):
                return opened
            client = opened
        self._links[index] = FakeLink(client)
        return client

    def client_url(self, index: int) -> str | None:
        return None  # the fake lives in this process: a worker process calls a client kept here

    def open_observer(self) -> LockBackend:
        """A client off the workers' links, for checks that must not be faulted."""
        return FakeClient(self.fake) if self._ours else self.target.open(self.url)

    def link(self, index: int) -> LinkFaults | None:
        return self._links.get(index)

    @property
    def reach(self) -> Reach:
        """Every fault reaches the fake through its hooks; links only when the clients are ours."""
        return Reach(self.target.label, "fake", in_process=True, faultable_links=self._faultable_links)

    def unsupported(self, fault: str) -> str | None:
        return lookup(fault).unsupported(self.reach)

    def residue(self) -> Snapshot:
        return fake_snapshot(self.fake)

    def close(self) -> None:
        drop_fake_server(self.name)




LOSE_REPLY_FOR_S = 0.15
"""How long a proxy swallows replies before the reset (well under any client timeout)."""


class ProxyLink:
    """Network faults of one worker's own TCP proxy."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    def partition(self) -> None:
        self.proxy.blackhole()

    def heal(self) -> None:
        self.proxy.heal()

    def set_latency(self, one_way_ms: int) -> None:
        self.proxy.set_latency(one_way_ms)

    def delay_replies(self, ms: int) -> None:
        self.proxy.delay_replies(ms)

    def reset(self) -> None:
        self.proxy.reset()

    def drop_replies(self, on: bool) -> None:
        if on:
            self.proxy.blackhole_replies()
        else:
            self.proxy.heal()

    def lose_next_reply(self) -> None:
        """Replies vanish for a moment, long enough for the next request to take effect at the
        server, then every connection is reset: the caller sees its connection drop, reply lost."""
        self.proxy.blackhole_replies()
        timer = threading.Timer(LOSE_REPLY_FOR_S, self._heal_and_reset)
        timer.daemon = True  # never outlives the run by more than this moment
        timer.start()

    def _heal_and_reset(self) -> None:
        with contextlib.suppress(Exception):  # the proxy may have been stopped with the run
            self.proxy.heal()
            self.proxy.reset()


def with_query(url: str, **params: object) -> str:
    parts = urlsplit(url)
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


class ServerEnvironment:
    """A real server: launched here (process mode), or the user's own (``--url``, external mode)."""

    def __init__(self, target: Target, runtime: Runtime, *, persistence: bool | None,
                 timeout_ms: int | None, clock_faults: bool = False) -> None:
        self.target = target
        self.runtime = runtime
        self.timeout_ms = timeout_ms
        self._prefix: str | None = None
        self.handle: ServerHandle
        if target.external_url is not None:
            url, self._prefix = with_run_prefix(target.external_url)
            self.handle = ExternalServer(url)
        else:  # the scenario's insistence wins, else the target's own (``--server redis-aof``)
            self.handle = start_server(target, target.persistence if persistence is None else persistence,
                                       clock_faults=clock_faults)
        self._cluster = self.handle if isinstance(self.handle, ProcessCluster) else None
        self.server: ServerFaults = (self.handle if self._cluster is None  # a handle takes server faults itself
                                     else ClusterServerFaults(self._cluster))
        # One proxy per worker, for per-client network faults; none to a remote server of the user's,
        # nor (yet) to a cluster, whose clients talk to every member.
        # nor to a user's cluster (several hosts in the URL): a proxy forwards to one server.
        loopback = is_loopback(self.handle.url) and self._cluster is None and not is_cluster_url(self.handle.url)
        self._proxies = ProxyPool(self.handle.host, self.handle.port) if loopback else None
        self._members = member_proxies(self.handle.url) if self._prefix is not None else None
        self._links: dict[int, LinkFaults] = {}
        try:
            probe = guarded_open(target, self._url(self.handle.url))
            self.capabilities = probe.capabilities
            probe.close()
            if self._cluster is not None:  # the cluster we launched knows its own timing best
                self.capabilities = dataclasses.replace(self.capabilities, failover_ms=self._cluster.failover_ms)
        except BaseException:
            with contextlib.suppress(Exception):  # "cannot reach" is the news, not the failed cleanup
                self.close()
            raise

    def _url(self, url: str) -> str:
        """A client URL: a scenario's client timeout reaches every factory, a user's included, as the
        ``?timeout_ms=`` option (``lockchaos.backends.urlopts`` reads it)."""
        if self.timeout_ms is not None:
            url = with_query(url, timeout_ms=self.timeout_ms)
        return url

    def _open(self, url: str) -> LockBackend:
        return self.target.open(self._url(url))

    def open_client(self, index: int) -> LockBackend:
        return self.target.open(self.client_url(index))

    def client_url(self, index: int) -> str:
        """Worker ``index``'s URL: through its own fault proxy when the server is on this machine."""
        if self._members is not None:
            url, proxies = self._members.worker_url(self.handle.url, index)
            self._links.setdefault(index, MemberLinks(proxies))
            return self._url(url)
        if self._proxies is None:
            return self._url(self.handle.url)
        proxy = self._proxies.proxy_for(f"w{index}")
        self._links.setdefault(index, ProxyLink(proxy))
        return self._url(proxy.url_for(self.handle.url))

    def open_observer(self) -> LockBackend:
        return self._open(self.handle.url)

    def link(self, index: int) -> LinkFaults | None:
        return self._links.get(index)

    @property
    def reach(self) -> Reach:
        """Signals reach a server (or cluster) we started; a proxy per worker, a server on this machine."""
        remote = not is_loopback(self.handle.url)
        cluster_kind = self._cluster.kind if self._cluster is not None else None
        if cluster_kind is None and is_cluster_url(self.handle.url) and not remote:  # a user's cluster here
            cluster_kind = self.target.server_kind if self.target.server_kind != "etcd" else "etcd-cluster"
        return Reach(self.target.label, self.handle.kind, in_process=False,
                     faultable_links=self._proxies is not None or self._members is not None,
                     started_here=self._prefix is None, cluster_kind=cluster_kind,
                     remote=remote, clock_faults=self._clock_faults(),
                     clock_missing=self._clock_missing(),
                     wipe_refused=self._cluster.wipe_refused if self._cluster is not None else None)

    def _clock_faults(self) -> bool:
        """A process-mode Redis (or Redlock's master) launched under libfaketime: its clock can be stepped."""
        return isinstance(self.handle, RedisServer | RedlockCluster) and self.handle.clock_faults

    def _clock_missing(self) -> str | None:
        """Why the harness launched a Redis it could step the clock of without libfaketime, if it did."""
        if isinstance(self.handle, RedisServer | RedlockCluster) and not self.handle.clock_faults:
            return missing_reason()
        return None

    def unsupported(self, fault: str) -> str | None:
        return lookup(fault).unsupported(self.reach)

    def residue(self) -> Snapshot:
        """Every key of a server we started; only the run's prefix on the user's own."""
        return server_snapshot(self.handle.url, self._prefix)

    def close(self) -> None:
        if self._proxies is not None:
            with contextlib.suppress(Exception):
                self._proxies.stop()
        if self._members is not None:
            with contextlib.suppress(Exception):
                self._members.stop()
        self.handle.stop()
        if self._prefix is not None:
            prefix, self._prefix = self._prefix, None
            purge_prefix(self.handle.url, prefix, settle=True)
