"""The one shape every lock server takes in the harness: launched, in a container, the user's, a cluster
or the in-process fake.

Scenarios, the nemesis, contract and soak fault a server without knowing how it runs. ``ServerFaults``
is the fault part alone (what the nemesis applies; the fake and a cluster's role view provide it
too), and ``ServerHandle`` is the whole: identity, lifecycle, durability and the faults.
A fault a server cannot take raises ``FaultUnsupported`` with the reason (a clock jump on a real
process, any fault on a server the harness did not start).
"""

from __future__ import annotations

from types import TracebackType
from typing import Protocol, Self, runtime_checkable


class ServerFaults(Protocol):
    """Server faults, each returning once the fault is in effect so that fault windows are true."""

    def kill(self) -> None:
        """kill -9: nothing the server had not made durable survives."""
        ...

    def restart(self) -> None:
        """Back on the same port(s) and data, as a crashed host reboots."""
        ...

    def pause(self) -> None:
        """Frozen with its sockets open: calls time out, as in a long GC pause."""
        ...

    def resume(self) -> None: ...

    def jump_clock(self, delta_ms: int) -> None: ...


@runtime_checkable
class ServerHandle(ServerFaults, Protocol):
    """One lock server, however provisioned."""

    @property
    def kind(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def durable(self) -> bool:
        """Whether its state survives ``kill`` + ``restart`` (Redis with AOF, etcd, the durable fake)."""
        ...

    def start(self) -> Self: ...
    def stop(self) -> None: ...
    def is_running(self) -> bool: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
