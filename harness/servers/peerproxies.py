"""A cluster's own traffic routed through the harness's fault proxies, so a member can be isolated.

Each member gets one ``FaultProxy`` in front of the port its peers dial (etcd's peer port, a Redis
node's data port as replicas and Sentinels reach it) and advertises the proxy's port instead of its
own. Every byte between members then crosses a proxy, on loopback like everything else.

One proxy per member, not one per pair: etcd advertises one peer URL per member, which every peer
dials, so no member can be given its own view of another. A proxy tells connections apart by who
owns the client's end instead: the process holding that source port (the kernel knows it, psutil
reads it). Isolating member M cuts, both ways, every connection into M's proxy except those of the
processes that must still reach M (a lock holder's client), and every connection from M's process
into the other members' proxies; everything else keeps flowing. Clients reach a member's client
port directly (etcd) or through the same proxy (Redis, whose clients ask Sentinel for the address
it knows, the proxy's): that is why the cut on M's own proxy spares chosen processes, not all.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import psutil

from lockchaos.backends.base import InfrastructureError
from lockchaos.harness.faults.proxy import FaultProxy, ProxyStats
from lockchaos.harness.servers.flags import LOOPBACK


def port_owned_by(pids: Collection[int]) -> Callable[[int], bool]:
    """A test of a loopback source port: does one of ``pids`` hold a TCP socket bound to it?

    The ports found are remembered: sweeping a proxy's open connections costs one look at each
    process, not one per connection, so a cut takes effect before a cluster's election timeout
    (100 ms) can pass. A port not yet seen (a connection just made) makes it look again."""
    wanted = frozenset(pids)
    known: set[int] = set()

    def look() -> None:
        for pid in wanted:
            try:
                conns = psutil.Process(pid).net_connections(kind="tcp")
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
            known.update(c.laddr.port for c in conns if c.laddr)

    def owned(port: int) -> bool:
        if port not in known and wanted:
            look()
        return port in known

    return owned


class PeerProxies:
    """One started fault proxy per member name, in front of that member's peer-facing port."""

    def __init__(self) -> None:
        self._proxies: dict[str, FaultProxy] = {}
        self.isolated: str | None = None

    def add(self, name: str, upstream_port: int) -> int:
        """Start the proxy for ``name`` (forwarding to ``upstream_port``) and return its port."""
        proxy = FaultProxy(LOOPBACK, upstream_port, name=f"peer-{name}").start()
        self._proxies[name] = proxy
        return proxy.port

    def port(self, name: str) -> int:
        return self._proxies[name].port

    def stats(self, name: str) -> ProxyStats:
        return self._proxies[name].stats()

    def isolate(self, name: str, pids: Mapping[str, int | None], keep_pids: Collection[int] = ()) -> None:
        """Cut ``name`` off from every other member, both ways, while ``keep_pids`` still reach it.

        ``pids`` maps each member to its process: the member's own outgoing connections are known
        by it on the others' proxies. In effect when this returns (for connections opened later too).
        """
        if name not in self._proxies:
            raise InfrastructureError(f"no peer proxy in front of member {name!r}")
        own_pid = pids.get(name)
        if own_pid is None:
            raise InfrastructureError(f"member {name!r} is not running: nothing to isolate")
        kept = port_owned_by(keep_pids)
        from_member = port_owned_by((own_pid,))
        self.isolated = name
        # Its own connections to the others first, its proxy last: until that last cut, the others
        # still hear it, so no election starts while the cut is half made (a new leader's first
        # heartbeat would otherwise reach it over a connection not cut yet).
        for other, proxy in self._proxies.items():
            if other != name:
                proxy.cut_clients(from_member)
        self._proxies[name].cut_clients(lambda port: not kept(port))

    def heal(self) -> None:
        """Every proxy back to plain forwarding; connections cut stay cut until their ends give up."""
        for proxy in self._proxies.values():
            proxy.heal()
        self.isolated = None

    def stop(self) -> None:
        """Stop every proxy, even when one fails to; then raise the first failure."""
        proxies, self._proxies = list(self._proxies.values()), {}
        errors: list[InfrastructureError] = []
        for proxy in proxies:
            try:
                proxy.stop()
            except InfrastructureError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def __bool__(self) -> bool:
        return bool(self._proxies)


__all__ = ["PeerProxies", "port_owned_by"]
