"""Where a launched server listens: its loopback host and the ports its latest launch bound.

Process mode and container mode name a server the same way (the harness binds loopback only, and a
server has no port before it was started), so the block lives here once and both handles mix it in.
"""

from __future__ import annotations

from lockchaos.backends.base import InfrastructureError
from lockchaos.harness.servers.flags import LOOPBACK, free_ports


class LoopbackPorts:
    """``host``, ``port`` and the started ports of a server the harness launches on loopback.

    The handle sets ``_ports`` when a launch binds them and ``_port_count`` from its spec; a cluster
    member overrides ``_pick_ports`` to take the ports its cluster assigned."""

    _ports: tuple[int, ...] = ()
    _port_count = 1

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def port(self) -> int:
        return self._started_ports()[0]

    def _started_ports(self) -> tuple[int, ...]:
        if not self._ports:
            raise InfrastructureError(f"{type(self).__name__} has no port: it was never started")
        return self._ports

    def _pick_ports(self) -> tuple[int, ...]:
        """The ports of the next launch attempt; a cluster member is told its ports by its cluster."""
        return free_ports(self._port_count)
