"""``--backend etcd3-lock``: python3-etcd3's ``etcd3.Lock``, as teams use it.

Client: ``etcd3.client(host, port, timeout=timeout_s)`` on the URL's first endpoint: the library's
single-endpoint client, whose endpoint is marked failed for ``time_retry`` (300 s) after one call
ends UNAVAILABLE / DEADLINE_EXCEEDED / INTERNAL; every later call then raises
``ValueError('Trying to use a failed node')`` until the 300 s are over. That error means "not sent:
this client will not talk to its server", so it is BackendUnavailable here, never bad input.

- acquire: ``Lock(name, ttl=ttl_s, etcd_client=client).acquire(timeout=0)``: one attempt. Each
  attempt grants a new lease, then a Txn puts ``/locks/name`` if absent. A failed attempt does not
  revoke the lease it granted (it lives until its TTL: a lease leaked per failed acquire).
- renew: ``refresh()``: one LeaseKeepAlive of the lock's lease. It never checks that the key is still
  there, and etcd answers a keep-alive of an expired lease with TTL 0 instead of an error, so refresh
  returns normally after expiry: reported as the renewal a team believes it got. A lease's TTL is
  fixed when granted, so a renew with another TTL still refreshes to the original (reported as such).
  The ``ValueError`` refresh raises when the object holds no lease is ``None``.
- release: ``release()``, a Txn deleting the key if its value is the object's uuid; ``False`` when not.
  The lease is not revoked.
TTLs are whole seconds (``ttl`` is an int): ``ceil(ttl_ms / 1000)``, raised by etcd to its minimum.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import etcd3
import etcd3.exceptions as eex
import grpc

from ..base import BackendTimeout, BackendUnavailable, Capabilities
from ..etcd import EXPIRY_LAG_MS, TTL_GRANULARITY_MS, parse_etcd_url
from .wrapper import LibraryLock

LIBRARY = "python3-etcd3 Lock"
FAILED_NODE = "Trying to use a failed node"
_UNKNOWN_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def ttl_seconds(ttl_ms: int) -> int:
    return max(1, math.ceil(ttl_ms / 1000))


class Etcd3Lock(LibraryLock[Any]):
    name = "etcd3-lock"

    def __init__(self, url: str) -> None:
        super().__init__()
        config = parse_etcd_url(url)
        host, port = config.endpoints[0]
        self._where = f"etcd://{host}:{port}"
        self._prefix = config.prefix
        self._client: Any = etcd3.client(host=host, port=port, timeout=config.timeout_ms / 1000)
        try:
            with self._errors("open", ""):
                # What etcd grants for 1 s is its minimum lease TTL (the lock's TTL floor).
                probe = self._client.lease(1)
                min_ttl_s = max(1, int(probe.ttl))
                probe.revoke()
        except BaseException:
            self._client.close()
            raise
        self.capabilities = Capabilities(
            ttl_granularity_ms=TTL_GRANULARITY_MS, min_ttl_ms=min_ttl_s * 1000, expiry_lag_ms=EXPIRY_LAG_MS,
            durable=True, fencing_tokens=False, holder_info="presence")

    def lock_name(self, key: str) -> str:
        return self._prefix + key

    def _new_lock(self, key: str, ttl_ms: int) -> Any:
        return etcd3.Lock(self.lock_name(key), ttl=ttl_seconds(ttl_ms), etcd_client=self._client)

    def _try_acquire(self, lock: Any) -> bool:
        return bool(lock.acquire(timeout=0))

    def _extend(self, lock: Any, ttl_ms: int) -> bool:
        if lock.lease is None:
            return False  # refresh() would raise ValueError('No lease associated with this lock ...')
        lock.refresh()
        return True

    def _release(self, lock: Any) -> bool:
        return bool(lock.release())

    def _present(self, key: str) -> bool:
        value, _ = self._client.get(etcd3.Lock.lock_prefix + self.lock_name(key))
        return value is not None

    def _errors(self, op: str, key: str) -> contextlib.AbstractContextManager[None]:
        return _etcd3_errors(op, key, self._where)

    def _granted_ttl(self, lock: Any, ttl_ms: int) -> int:
        lease = lock.lease
        return int(lease.ttl) * 1000 if lease is not None else ttl_seconds(ttl_ms) * 1000

    def _close_client(self) -> None:
        self._client.close()


@contextlib.contextmanager
def _etcd3_errors(op: str, key: str, where: str) -> Iterator[None]:
    """python3-etcd3's unknown-outcome errors (and its failed-node refusal) as BackendUnavailable."""
    try:
        yield
    except eex.ConnectionTimeoutError as exc:
        raise BackendTimeout(f"{LIBRARY} {op}({key!r}) at {where}: deadline exceeded (outcome unknown)") from exc
    except (eex.ConnectionFailedError, eex.InternalServerError, eex.NoServerAvailableError) as exc:
        raise BackendUnavailable(f"{LIBRARY} {op}({key!r}) at {where}: {type(exc).__name__} "
                                 "(outcome unknown)") from exc
    except ValueError as exc:
        if str(exc) != FAILED_NODE:
            raise
        raise BackendUnavailable(f"{LIBRARY} {op}({key!r}) at {where}: the client marked its only endpoint "
                                 "failed (python3-etcd3 refuses every call for 300 s after one failure)") from exc
    except grpc.RpcError as exc:
        if exc.code() not in _UNKNOWN_CODES:
            raise
        raise BackendUnavailable(f"{LIBRARY} {op}({key!r}) at {where}: {exc.code().name} (outcome unknown)") from exc


def open_etcd3_lock(url: str) -> Etcd3Lock:
    return Etcd3Lock(url)
