"""Per-worker fault proxies in front of every member of a multi-endpoint service on this machine.

An etcd client given ``etcd://h1:p,h2:p,h3:p`` talks to one member and moves to the next when a call
fails, and a Redlock client (``redlock://m1,...,m5``) talks to every master at once, so one proxy in
front of one member would fault part of a link: the client would walk around it. Each worker gets its
own proxy per member instead, and its URL names those proxies; a network fault of that worker hits
all of them at once. The cluster's own traffic and every other client pass untouched: the faults
still reach only the harness's own connections, and a cluster fault (a leader cut off from its peers
through the peer proxies) composes with them.

A Sentinel group cannot be handled this way: its clients are sent to data nodes by the address
Sentinel announces, which is where the harness cuts an isolated primary off from the contenders
(``peerproxies.py``); a second per-worker proxy there would hide the worker from that cut.
"""

from __future__ import annotations

import contextlib
import threading
from urllib.parse import urlsplit, urlunsplit

from lockchaos.backends.base import InfrastructureError
from lockchaos.backends.etcd import parse_etcd_url
from lockchaos.harness.faults.proxy import Proxy, ProxyPool
from lockchaos.harness.servers.flags import LOOPBACK

LOSE_REPLY_FOR_S = 0.15
"""How long replies are swallowed before the reset, as for one proxy (well under any client timeout)."""


def member_proxies(url: str) -> MemberProxies | None:
    """Per-worker proxies for a multi-endpoint etcd URL or a Redlock URL whose members are all on this
    machine (the proxies forward to 127.0.0.1 only); None for any other URL."""
    from lockchaos.harness.servers.external import is_cluster_url, is_loopback

    scheme = urlsplit(url).scheme
    if not is_loopback(url) or not ((scheme == "etcd" and is_cluster_url(url)) or scheme == "redlock"):
        return None
    return MemberProxies(url)


def _endpoints(url: str) -> tuple[tuple[str, int], ...]:
    """The members a client of ``url`` talks to, in the URL's order."""
    if urlsplit(url).scheme == "redlock":
        from lockchaos.backends.libs.pottery_quorum import parse_redlock_url

        return tuple((m.host, m.port) for m in parse_redlock_url(url).masters)
    return parse_etcd_url(url).endpoints


class MemberProxies:
    """One ``ProxyPool`` per member on this machine; worker ``index``'s URL names its own proxy of
    every member, in the URL's order."""

    def __init__(self, url: str) -> None:
        self._endpoints = _endpoints(url)
        self._pools: list[ProxyPool] = []
        try:
            for host, port in self._endpoints:
                self._pools.append(ProxyPool(host, port))
        except BaseException:
            self.stop()
            raise

    def worker_url(self, url: str, index: int) -> tuple[str, list[Proxy]]:
        """``url`` with each member replaced by worker ``index``'s proxy of it, and those proxies."""
        proxies = [pool.proxy_for(f"w{index}") for pool in self._pools]
        netloc = ",".join(f"{LOOPBACK}:{p.port}" for p in proxies)
        return urlunsplit(urlsplit(url)._replace(netloc=netloc)), proxies

    def stop(self) -> None:
        errors: list[InfrastructureError] = []
        for pool in self._pools:
            try:
                pool.stop()
            except InfrastructureError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


class MemberLinks:
    """The network faults of one worker, applied to its proxy of every member at once."""

    def __init__(self, proxies: list[Proxy]) -> None:
        self.proxies = proxies

    def partition(self) -> None:
        for p in self.proxies:
            p.blackhole()

    def heal(self) -> None:
        """Back to normal, and every connection reset. The proxies discard bytes during a partition
        (a real network would retransmit them), and the client, walking from member to member, opens
        connections during it whose gRPC/HTTP2 handshake is lost: measured, those channels never
        answered again after a plain heal (every call timed out until the run ended). A reset makes
        the client reconnect, as a connection that outlived a long partition usually is."""
        for p in self.proxies:
            p.heal()
        for p in self.proxies:
            p.reset()

    def set_latency(self, one_way_ms: int) -> None:
        for p in self.proxies:
            p.set_latency(one_way_ms)

    def delay_replies(self, ms: int) -> None:
        for p in self.proxies:
            p.delay_replies(ms)

    def reset(self) -> None:
        for p in self.proxies:
            p.reset()

    def drop_replies(self, on: bool) -> None:
        for p in self.proxies:
            if on:
                p.blackhole_replies()
            else:
                p.heal()

    def lose_next_reply(self) -> None:
        """Replies from every member vanish for a moment, then every connection is reset."""
        self.drop_replies(True)
        timer = threading.Timer(LOSE_REPLY_FOR_S, self._heal_and_reset)
        timer.daemon = True
        timer.start()

    def _heal_and_reset(self) -> None:
        with contextlib.suppress(Exception):  # the proxies may have been stopped with the run
            self.heal()
