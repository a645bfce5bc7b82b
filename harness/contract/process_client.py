"""A lock client in a second OS process, for rules about state that must not live in one process.

``python -m lockchaos.harness.contract.process_client FACTORY URL KEY OWNER TTL_MS N`` opens one
client through the same factory and server URL as the contract, takes and releases KEY N times,
and prints the tokens as a JSON list. A token counter kept in the client's process (a module-level
``itertools.count``) starts again here, which is what the contract rule looks for.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass

from lockchaos.harness.run.adapters import checked_backend, load_factory

ACQUIRE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """How another process opens a client of the same lock: ``pkg.mod:factory`` and the server URL."""

    factory: str
    url: str


def grant_tokens(spec: ClientSpec, key: str, owner: str, ttl_ms: int, grants: int) -> list[int | None]:
    backend = checked_backend(load_factory(spec.factory), spec.url, spec.factory)
    tokens: list[int | None] = []
    try:
        for i in range(grants):
            lease = None
            for _ in range(ACQUIRE_ATTEMPTS):  # bounded: the key is free, but a first connect may be slow
                lease = backend.acquire(key, owner, ttl_ms)
                if lease is not None:
                    break
            if lease is None:
                raise SystemExit(f"grant {i + 1}: acquire of the free key {key!r} returned None")
            tokens.append(lease.token)
            if backend.release(key, owner) is not True:
                raise SystemExit(f"grant {i + 1}: release by the holder did not return True")
    finally:
        backend.close()
    return tokens


def main(argv: list[str]) -> int:
    if len(argv) != 6:
        print("usage: process_client FACTORY URL KEY OWNER TTL_MS N", file=sys.stderr)
        return 2
    factory, url, key, owner, ttl, grants = argv
    print(json.dumps(grant_tokens(ClientSpec(factory, url), key, owner, int(ttl), int(grants))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
