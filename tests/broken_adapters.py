"""Deliberately broken lock adapters: each breaks one clause, and the contract suite must catch it.

They all sit on ``MiniKV``, a tiny shared key-value store in which every operation costs a simulated
network round trip, as a Redis command would. ``CorrectAdapter`` uses it properly (and must pass); each
broken subclass changes one method the way real adapters get it wrong. Factories take the URL the
harness provides (a ``fake://NAME``) and share one store per URL, as clients of one server do.
"""

from __future__ import annotations

import math
import threading
import time
import unicodedata
from dataclasses import dataclass

from lockchaos.backends.base import Capabilities, Lease, validate_call

RTT_S = 0.0002


@dataclass
class _Value:
    owner: str
    token: int
    ttl_ms: int
    expires_at: float


class MiniKV:
    """Each method is atomic on its own and costs one round trip; combining them is the adapter's job."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.data: dict[str, _Value] = {}
        self.counters: dict[str, int] = {}

    def _rtt(self) -> None:
        time.sleep(RTT_S)

    def _live(self, key: str) -> _Value | None:
        v = self.data.get(key)
        if v is not None and time.monotonic() >= v.expires_at:
            del self.data[key]
            return None
        return v

    def get(self, key: str) -> _Value | None:
        self._rtt()
        with self.lock:
            return self._live(key)

    def set(self, key: str, value: _Value) -> None:
        self._rtt()
        with self.lock:
            self.data[key] = value

    def set_if_absent(self, key: str, value: _Value) -> bool:
        self._rtt()
        with self.lock:
            if self._live(key) is not None:
                return False
            self.data[key] = value
            return True

    def incr(self, key: str) -> int:
        self._rtt()
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + 1
            return self.counters[key]

    def delete(self, key: str) -> None:
        self._rtt()
        with self.lock:
            self.data.pop(key, None)

    def compare_and_delete(self, key: str, owner: str) -> bool:
        self._rtt()
        with self.lock:
            v = self._live(key)
            if v is None or v.owner != owner:
                return False
            del self.data[key]
            return True

    def compare_and_extend(self, key: str, owner: str, ttl_ms: int) -> _Value | None:
        self._rtt()
        with self.lock:
            v = self._live(key)
            if v is None or v.owner != owner:
                return None
            v.ttl_ms, v.expires_at = ttl_ms, time.monotonic() + ttl_ms / 1000
            return v


_stores: dict[str, MiniKV] = {}
_stores_lock = threading.Lock()


def _store(url: str) -> MiniKV:
    with _stores_lock:
        return _stores.setdefault(url, MiniKV())


class CorrectAdapter:
    name = "minikv"
    capabilities = Capabilities()

    def __init__(self, url: str) -> None:
        self.kv = _store(url)

    def _applied(self, ttl_ms: int) -> int:
        return self.capabilities.applied_ttl(ttl_ms)

    def _new_value(self, key: str, owner: str, ttl_ms: int) -> _Value:
        return _Value(owner, self.kv.incr(key), ttl_ms, time.monotonic() + ttl_ms / 1000)

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        applied = self._applied(ttl_ms)
        # Like a Lua script: check, count and set as one step at the server.
        with self.kv.lock:
            if self.kv._live(key) is not None:
                return None
            self.kv.counters[key] = token = self.kv.counters.get(key, 0) + 1
            self.kv.data[key] = _Value(owner, token, applied, time.monotonic() + applied / 1000)
        return Lease(key, owner, token, applied)

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        v = self.kv.compare_and_extend(key, owner, self._applied(ttl_ms))
        return None if v is None else Lease(key, v.owner, v.token, v.ttl_ms)

    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        return self.kv.compare_and_delete(key, owner)

    def holder(self, key: str) -> Lease | None:
        validate_call(key)
        v = self.kv.get(key)
        return None if v is None else Lease(key, v.owner, v.token, v.ttl_ms)

    def close(self) -> None:
        pass


class ReleaseWithoutOwnerCheck(CorrectAdapter):
    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        existed = self.kv.get(key) is not None
        self.kv.delete(key)
        return existed


class RenewWithoutOwnerCheck(CorrectAdapter):
    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        v = self.kv.get(key)
        if v is None:
            return None
        applied = self._applied(ttl_ms)
        self.kv.set(key, _Value(owner, v.token, applied, time.monotonic() + applied / 1000))
        return Lease(key, owner, v.token, applied)


class CheckThenSetAcquire(CorrectAdapter):
    """GET then SET in two round trips: two clients both see the key free."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        if self.kv.get(key) is not None:
            return None
        applied = self._applied(ttl_ms)
        value = self._new_value(key, owner, applied)
        self.kv.set(key, value)
        return Lease(key, owner, value.token, applied)


class NoExpiry(CorrectAdapter):
    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        value = _Value(owner, 0, self._applied(ttl_ms), math.inf)
        if not self.kv.set_if_absent(key, value):
            return None
        value.token = self.kv.incr(key)
        return Lease(key, owner, value.token, value.ttl_ms)


class ConstantToken(CorrectAdapter):
    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        applied = self._applied(ttl_ms)
        if not self.kv.set_if_absent(key, _Value(owner, 1, applied, time.monotonic() + applied / 1000)):
            return None
        return Lease(key, owner, 1, applied)


class LyingRelease(CorrectAdapter):
    def release(self, key: str, owner: str) -> bool:
        super().release(key, owner)
        return True


class RenewDoesNotExtend(CorrectAdapter):
    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        v = self.kv.get(key)
        if v is None or v.owner != owner:
            return None
        return Lease(key, owner, v.token, self._applied(ttl_ms))


class SecretlyRoundsToSeconds(CorrectAdapter):
    """Declares millisecond TTLs, reports the requested TTL, but really applies whole seconds."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        lease = super().acquire(key, owner, math.ceil(ttl_ms / 1000) * 1000)
        return None if lease is None else Lease(key, owner, lease.token, self._applied(ttl_ms))


class HonestlyRoundsToSecondsButDeclaresMs(CorrectAdapter):
    def _applied(self, ttl_ms: int) -> int:
        return math.ceil(ttl_ms / 1000) * 1000


class Reentrant(CorrectAdapter):
    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        current = self.holder(key)
        if current is not None and current.owner == owner:
            return self.renew(key, owner, ttl_ms)
        return super().acquire(key, owner, ttl_ms)


class RaisesForNotYours(CorrectAdapter):
    def release(self, key: str, owner: str) -> bool:
        if not super().release(key, owner):
            raise PermissionError(f"{key} is not held by {owner}")
        return True


class NoInputValidation(CorrectAdapter):
    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        applied = max(1, int(ttl_ms or 1))
        if not self.kv.set_if_absent(key, _Value(owner, 0, applied, time.monotonic() + applied / 1000)):
            return None
        return Lease(key, owner, self.kv.incr(key), applied)


def _own_validation(key: object, owner: object = None, ttl_ms: object = 1) -> None:
    """An adapter's hand-written checks: types, emptiness and TTL, but no UTF-8 or length limits."""
    for value in (key, owner if owner is not None else "x"):
        if not isinstance(value, str) or not value:
            raise ValueError(f"bad name {value!r}")
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms <= 0:
        raise ValueError(f"bad ttl {ttl_ms!r}")


class ValidatesWithoutNameLimits(CorrectAdapter):
    """Checks its input by hand and forgets UTF-8 and length limits: harmless on this store, a codec
    error or an indeterminate call on a real server."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        _own_validation(key, owner, ttl_ms)
        applied = self._applied(ttl_ms)
        with self.kv.lock:
            if self.kv._live(key) is not None:
                return None
            self.kv.counters[key] = token = self.kv.counters.get(key, 0) + 1
            self.kv.data[key] = _Value(owner, token, applied, time.monotonic() + applied / 1000)
        return Lease(key, owner, token, applied)

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        _own_validation(key, owner, ttl_ms)
        v = self.kv.compare_and_extend(key, owner, self._applied(ttl_ms))
        return None if v is None else Lease(key, v.owner, v.token, v.ttl_ms)

    def release(self, key: str, owner: str) -> bool:
        _own_validation(key, owner)
        return self.kv.compare_and_delete(key, owner)

    def holder(self, key: str) -> Lease | None:
        _own_validation(key)
        v = self.kv.get(key)
        return None if v is None else Lease(key, v.owner, v.token, v.ttl_ms)


class DeclaresExpiryLagItDoesNotHave(CorrectAdapter):
    """Leases live 300 ms longer than the TTL while the declaration promises no lag at all."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        lease = super().acquire(key, owner, ttl_ms)
        if lease is not None:
            self._lag(key, lease)
        return lease

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        # Every extension lags, not only the first: otherwise a holder that renewed before crashing left
        # an honest lease, and whether the soak saw the lag depended on where the crash fell.
        lease = super().renew(key, owner, ttl_ms)
        if lease is not None:
            self._lag(key, lease)
        return lease

    def _lag(self, key: str, lease: Lease) -> None:
        with self.kv.lock:
            v = self.kv.data.get(key)
            if v is not None and v.owner == lease.owner:
                v.expires_at += 0.3


class _LooseKeys(CorrectAdapter):
    """Stores every key under ``_slot(key)``: a loose mapping makes two distinct keys one lock."""

    def _slot(self, key: str) -> str:
        raise NotImplementedError

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        lease = super().acquire(self._slot(key), owner, ttl_ms)
        return None if lease is None else Lease(key, lease.owner, lease.token, lease.ttl_ms)

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        lease = super().renew(self._slot(key), owner, ttl_ms)
        return None if lease is None else Lease(key, lease.owner, lease.token, lease.ttl_ms)

    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        return super().release(self._slot(key), owner)

    def holder(self, key: str) -> Lease | None:
        validate_call(key)
        lease = super().holder(self._slot(key))
        return None if lease is None else Lease(key, lease.owner, lease.token, lease.ttl_ms)


class CaseFoldedKeys(_LooseKeys):
    """Lower-cases lock names ("keys are case-insensitive, like host names")."""

    def _slot(self, key: str) -> str:
        return key.lower()


class TruncatedKeys(_LooseKeys):
    """Cuts keys to 200 characters (a column or a hash-slot label that was sized once)."""

    def _slot(self, key: str) -> str:
        return key[:200]


class NormalisedKeys(_LooseKeys):
    """Unicode-normalises keys (NFC): two byte strings, one lock."""

    def _slot(self, key: str) -> str:
        return unicodedata.normalize("NFC", key)


class TrimmedKeys(_LooseKeys):
    """Strips whitespace from keys (they came from a config file once)."""

    def _slot(self, key: str) -> str:
        return key.strip()


class PrefixRelease(CorrectAdapter):
    """Release deletes every key of the owner that starts with the key: a ``SCAN MATCH key*`` clean-up
    meant to take the lock's helper keys along."""

    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        self.kv._rtt()
        with self.kv.lock:
            mine = [k for k in list(self.kv.data) if k.startswith(key) and self.kv._live(k) is not None]
            found = key in mine and self.kv.data[key].owner == owner
            if found:
                for k in mine:
                    del self.kv.data[k]
            return found


class _LooseOwners(CorrectAdapter):
    """Renew and release compare owners with ``_same`` instead of ``==``."""

    def _same(self, stored: str, asked: str) -> bool:
        raise NotImplementedError

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        self.kv._rtt()
        with self.kv.lock:
            v = self.kv._live(key)
            if v is None or not self._same(v.owner, owner):
                return None
            v.ttl_ms = applied = self._applied(ttl_ms)
            v.expires_at = time.monotonic() + applied / 1000
            return Lease(key, v.owner, v.token, v.ttl_ms)

    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        self.kv._rtt()
        with self.kv.lock:
            v = self.kv._live(key)
            if v is None or not self._same(v.owner, owner):
                return False
            del self.kv.data[key]
            return True


class OwnerPrefixCheck(_LooseOwners):
    """``stored.startswith(owner)``: worker ``w1`` may release ``w10``'s lock."""

    def _same(self, stored: str, asked: str) -> bool:
        return stored.startswith(asked)


class CaseInsensitiveOwners(_LooseOwners):
    def _same(self, stored: str, asked: str) -> bool:
        return stored.casefold() == asked.casefold()


class TrimmedOwners(_LooseOwners):
    def _same(self, stored: str, asked: str) -> bool:
        return stored.strip() == asked.strip()


LOOSE_NAMES: dict[str, tuple[type[CorrectAdapter], str]] = {
    "case_folded_keys": (CaseFoldedKeys, "keys_are_compared_exactly"),
    "truncated_keys": (TruncatedKeys, "keys_are_compared_exactly"),
    "normalised_keys": (NormalisedKeys, "keys_are_compared_exactly"),
    "trimmed_keys": (TrimmedKeys, "keys_are_compared_exactly"),
    "prefix_release": (PrefixRelease, "keys_are_compared_exactly"),
    "owner_prefix_check": (OwnerPrefixCheck, "owners_are_compared_exactly"),
    "case_insensitive_owners": (CaseInsensitiveOwners, "owners_are_compared_exactly"),
    "trimmed_owners": (TrimmedOwners, "owners_are_compared_exactly"),
}
"""Adapters that take near names for one (and the contract rule that must catch each). Not in BROKEN:
a soak's few fixed names line them up only by chance, so only the contract is asked to catch them."""


BROKEN: dict[str, type[CorrectAdapter]] = {
    "release_without_owner_check": ReleaseWithoutOwnerCheck,
    "renew_without_owner_check": RenewWithoutOwnerCheck,
    "check_then_set_acquire": CheckThenSetAcquire,
    "no_expiry": NoExpiry,
    "constant_token": ConstantToken,
    "lying_release": LyingRelease,
    "renew_does_not_extend": RenewDoesNotExtend,
    "secretly_rounds_to_seconds": SecretlyRoundsToSeconds,
    "rounds_to_seconds_but_declares_ms": HonestlyRoundsToSecondsButDeclaresMs,
    "reentrant": Reentrant,
    "raises_for_not_yours": RaisesForNotYours,
    "no_input_validation": NoInputValidation,
    "undeclared_expiry_lag": DeclaresExpiryLagItDoesNotHave,
}
"""Adapters each soak scenario and the contract must catch (tests/test_soak_catches_broken.py)."""


def correct(url: str) -> CorrectAdapter:
    return CorrectAdapter(url)


def validates_without_name_limits(url: str) -> CorrectAdapter:
    """Not in BROKEN: it is correct on every name a soak uses, so only the contract can catch it."""
    return ValidatesWithoutNameLimits(url)


def _factory(cls: type[CorrectAdapter]):  # type: ignore[no-untyped-def]
    return lambda url: cls(url)


for _name, _cls in BROKEN.items():
    globals()[_name] = _factory(_cls)
for _name, (_cls, _rule) in LOOSE_NAMES.items():
    globals()[_name] = _factory(_cls)
