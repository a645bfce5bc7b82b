"""What the harness must know to run one kind of lock server, whoever runs it (process or container).

A ``ServerSpec`` is a value: the binary and its Debian package, the image, how many loopback ports a
server needs and the command line it gets on them, how to ask it whether it is ready, what its URL
looks like, whether it keeps its state across a kill -9, and how a run's keys are removed from a
server the user runs. The process and container mechanisms (``process.py``, ``containers.py``) and
external mode (``external.py``) read it, so a new server kind is one spec and one registry line
(``specs/__init__.py``), not a branch in each mechanism.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Self


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """One server kind, as launched; subclasses fill in the class constants and the three hooks."""

    name: str
    """The registry name (``redis``, ``redis-aof``, ``etcd``): what ``--server`` and ``provision`` take."""

    kind: ClassVar[str]
    """The server kind, also the URL scheme of its clients."""
    binary_name: ClassVar[str]
    debian_package: ClassVar[str]
    binary_env: ClassVar[str]
    """The environment variable that names another binary (process mode)."""
    image_env: ClassVar[str]
    """The environment variable that names another image (container mode)."""
    default_image: ClassVar[str]
    port_count: ClassVar[int]
    """Loopback ports one server binds: the first is its client port."""
    default_port: ClassVar[int]
    """The client port of a URL that names none (external mode, the fault proxy)."""
    takes_faketime: ClassVar[bool]
    """Whether libfaketime reaches the server's clock, so that process mode can launch it for clock faults."""
    state_in_subdir: ClassVar[bool]
    """Whether the server keeps its state in a subdirectory of its work dir (``data`` in process mode,
    ``/data/<kind>`` in a container, as the images' own command lines do), which a launch that lost
    its port must discard."""
    soak_ttl_ms: ClassVar[int]
    """The lease TTL a soak uses when ``--ttl-ms`` is not given: room for the server's TTL grain and lag."""
    key_separator: ClassVar[str]
    default_prefix: ClassVar[str]
    """The key prefix our adapter uses when the URL names none; per-run prefixes go inside it."""

    @property
    def durable(self) -> bool:
        """Whether the server keeps every acknowledged write across a kill -9 and restart."""
        raise NotImplementedError

    def with_durability(self, durable: bool) -> Self:
        """The same server with its durability switch set (a server that is always durable ignores it)."""
        raise NotImplementedError

    def flags(self, host: str, ports: tuple[int, ...], data_dir: str) -> list[str]:
        """The command line after the binary; no config file, so no system default leaks in."""
        raise NotImplementedError

    def ready(self, host: str, port: int) -> bool:
        """One bounded readiness probe; the mechanism's deadline loop is the retry."""
        raise NotImplementedError

    def url(self, host: str, ports: tuple[int, ...]) -> str:
        """The URL our adapter (and a user's) opens for a server on ``host`` and ``ports``."""
        raise NotImplementedError

    def purge(self, url: str, prefix: str) -> int:
        """Delete every key under ``prefix`` on the server at ``url`` (external mode); returns how many."""
        raise NotImplementedError

    def env(self, environ: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment the server process starts with: ours, unless the server reads it as flags."""
        return dict(os.environ if environ is None else environ)
