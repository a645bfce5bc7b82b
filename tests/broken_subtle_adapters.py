"""Subtly broken lock adapters: each keeps every blatant clause and breaks exactly one guarantee.

They are written from the bug classes of issue 14 (never copied from any held-out set), the way real
lock code goes wrong: on the tiny ``MiniKV`` store of ``tests.broken_adapters`` where no network is
needed, and on redis-py against a real ``redis-server`` where the bug needs a second OS process or a
real link to show. ``MINIKV`` and ``REDIS`` map each to the contract rule or soak scenario that must
catch it (tests/test_detection_power.py).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from collections.abc import Callable

from lockchaos.backends.base import BackendUnavailable, Lease, validate_call
from lockchaos.backends.etcd import EtcdLock, parse_etcd_url
from lockchaos.backends.redis import RedisLock, parse_redis_url
from tests.broken_adapters import CorrectAdapter, _Value

# --- on MiniKV --------------------------------------------------------------------------------------


class CachingHolder(CorrectAdapter):
    """Trusts its own grants: holder() answers from the lease it acquired or renewed until that
    lease's TTL is up, without asking the server; its own release is forgotten."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._mine: dict[str, tuple[float, Lease]] = {}

    def _remember(self, key: str, lease: Lease | None) -> Lease | None:
        if lease is not None:
            self._mine[key] = (time.monotonic() + lease.ttl_ms / 1000, lease)
        return lease

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        return self._remember(key, super().acquire(key, owner, ttl_ms))

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        return self._remember(key, super().renew(key, owner, ttl_ms))

    def holder(self, key: str) -> Lease | None:
        validate_call(key)
        mine = self._mine.get(key)
        if mine is not None and time.monotonic() < mine[0]:
            return mine[1]
        return super().holder(key)


class RenewKeepsTheAcquireTtl(CorrectAdapter):
    """Reports the TTL renew was asked for, but re-applies the one the lease was acquired with."""

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        with self.kv.lock:
            v = self.kv._live(key)
            original = None if v is None else v.ttl_ms
        if v is None or original is None:
            return None
        got = self.kv.compare_and_extend(key, owner, original)
        return None if got is None else Lease(key, owner, got.token, self._applied(ttl_ms))


class RenewMakesTheLeasePermanent(CorrectAdapter):
    """Renew rewrites the entry without its expiry (a SET that forgot PX): renewed leases never end."""

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        lease = super().renew(key, owner, ttl_ms)
        if lease is not None:
            with self.kv.lock:
                v = self.kv.data.get(key)
                if v is not None and v.owner == owner:
                    v.expires_at = math.inf
        return lease


class ClockTokens(CorrectAdapter):
    """Tokens are the wall clock in milliseconds: increasing, unless two grants share a millisecond."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        applied = self._applied(ttl_ms)
        token = int(time.time() * 1000)
        if not self.kv.set_if_absent(key, _Value(owner, token, applied, time.monotonic() + applied / 1000)):
            return None
        return Lease(key, owner, token, applied)


_counter_deadlines: dict[tuple[int, str], float] = {}
_deadlines_lock = threading.Lock()


class CounterExpiresWhenIdle(CorrectAdapter):
    """The token counter is given ten TTLs to live after each grant, lest idle keys leak counters."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        applied = self._applied(ttl_ms)
        slot = (id(self.kv), key)
        with self.kv.lock, _deadlines_lock:
            now = time.monotonic()
            if self.kv._live(key) is not None:
                return None
            if _counter_deadlines.get(slot, math.inf) <= now:
                self.kv.counters.pop(key, None)  # the counter expired while the key was idle
            self.kv.counters[key] = token = self.kv.counters.get(key, 0) + 1
            _counter_deadlines[slot] = now + 10 * applied / 1000
            self.kv.data[key] = _Value(owner, token, applied, now + applied / 1000)
        return Lease(key, owner, token, applied)


class SelfHealingRenew(CorrectAdapter):
    """A renew that finds its expired key free re-creates it ("heals" the lock) with its old token."""

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        applied = self._applied(ttl_ms)
        with self.kv.lock:
            v = self.kv._live(key)
            if v is None:
                token = self.kv.counters.get(key)
                if token is None:
                    return None
                self.kv.data[key] = v = _Value(owner, token, applied, time.monotonic() + applied / 1000)
            elif v.owner != owner:
                return None
            v.ttl_ms, v.expires_at = applied, time.monotonic() + applied / 1000
            return Lease(key, owner, v.token, applied)


class UnderDeclaredExpiryLag(CorrectAdapter):
    """Expired entries stay visible 40 ms more (a lazy expiry sweep) while it declares no lag at all:
    too little for the contract's 50 ms probe slack, plenty for contenders polling at the expiry."""

    HIDDEN_LAG_S = 0.04

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        lease = super().acquire(key, owner, ttl_ms)
        if lease is not None:
            with self.kv.lock:
                self.kv.data[key].expires_at += self.HIDDEN_LAG_S
        return lease

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        lease = super().renew(key, owner, ttl_ms)
        if lease is not None:
            with self.kv.lock:
                v = self.kv.data.get(key)
                if v is not None:
                    v.expires_at += self.HIDDEN_LAG_S
        return lease


# --- on redis-py, against a real redis-server -------------------------------------------------------

_ACQUIRE_WITH_TOKEN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', ARGV[3], 'ttl', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return tonumber(ARGV[3])
"""

_process_tokens = itertools.count(1)
_process_tokens_lock = threading.Lock()


class PerProcessCounterTokens(RedisLock):
    """Tokens from a counter in the client's process: shared by every client here, restarted in another."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        with _process_tokens_lock:
            token = next(_process_tokens)
        script = self.client.register_script(_ACQUIRE_WITH_TOKEN)
        got = self._call("acquire", key, lambda: script(keys=[self.lock_key(key)], args=[owner, ttl_ms, token]))
        return None if got is None else Lease(key, owner, int(got), ttl_ms)


_ACQUIRE_COUNTER_EXPIRES = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], 10 * tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token, 'ttl', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return token
"""


class RedisCounterExpiresWhenIdle(RedisLock):
    """PEXPIREs the token counter at ten TTLs after each grant, so idle keys leave nothing behind."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        script = self.client.register_script(_ACQUIRE_COUNTER_EXPIRES)
        token = self._call("acquire", key, lambda: script(
            keys=[self.lock_key(key), self.counter_key(key)], args=[owner, ttl_ms]))
        return None if token is None else Lease(key, owner, int(token), ttl_ms)


_ACQUIRE_TOKEN_IN_RECORD = """
if redis.call('HEXISTS', KEYS[1], 'owner') == 1 then return false end
local token = redis.call('HINCRBY', KEYS[1], 'token', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'ttl', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return token
"""


class TokenInTheLockRecord(RedisLock):
    """Keeps the counter in the lock's own hash (one key per lock, tidy): every release or expiry
    deletes the hash, and the count starts again at 1."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        script = self.client.register_script(_ACQUIRE_TOKEN_IN_RECORD)
        token = self._call("acquire", key, lambda: script(keys=[self.lock_key(key)], args=[owner, ttl_ms]))
        return None if token is None else Lease(key, owner, int(token), ttl_ms)


class TwoRoundTripRelease(RedisLock):
    """release as HGET owner, then DEL: right unless the lease expires, and another client takes the
    key, between the two round trips; then it deletes the new holder's lock."""

    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        lock_key = self.lock_key(key)
        current = self._call("release", key, lambda: self.client.hget(lock_key, "owner"))
        if current != owner:
            return False
        self._call("release", key, lambda: self.client.delete(lock_key))
        return True


class RetriesAcquireInternally(RedisLock):
    """Retries an acquire whose reply was lost, as redis-py's own Retry would: the first copy took
    effect, so the retry finds the key held and the caller is told "not acquired" while it holds."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        try:
            return super().acquire(key, owner, ttl_ms)
        except BackendUnavailable:
            return super().acquire(key, owner, ttl_ms)


class ReleaseReportsLostRequestAsDone(RedisLock):
    """A release whose outcome is unknown (the request or its reply lost, the client gave up) is
    reported as done: "the key will expire anyway". Contenders are then sent to a key still held."""

    def release(self, key: str, owner: str) -> bool:
        try:
            return super().release(key, owner)
        except BackendUnavailable:
            return True


class RenewReportsLostRequestAsDone(RedisLock):
    """A renew whose outcome is unknown is reported as done ("it almost always goes through"): the
    holder keeps working on a lease that ended at its old time, beside the next holder."""

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        try:
            return super().renew(key, owner, ttl_ms)
        except BackendUnavailable:
            return Lease(key, owner, None, ttl_ms)


class RenewExtendsThenChecksOwner(RedisLock):
    """renew as PEXPIRE, then a look at the owner (act, then check): another owner's refused renew
    has already stretched the holder's lease to its own TTL."""

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        lock_key = self.lock_key(key)
        pipe = self.client.pipeline(transaction=True)
        pipe.pexpire(lock_key, ttl_ms)
        pipe.hmget(lock_key, "owner", "token")
        _, (current, token) = self._call("renew", key, pipe.execute)
        if current != owner:
            return None
        self._call("renew", key, lambda: self.client.hset(lock_key, "ttl", ttl_ms))
        return Lease(key, owner, int(token), ttl_ms)


class ReleaseRestoresOthersLock(RedisLock):
    """release takes the record away (HGETALL + DEL in one MULTI) and puts it back with its full TTL
    when it was not the caller's: the holder's lease is stretched, and the key is free meanwhile."""

    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        lock_key = self.lock_key(key)
        pipe = self.client.pipeline(transaction=True)
        pipe.hgetall(lock_key)
        pipe.delete(lock_key)
        record, _ = self._call("release", key, pipe.execute)
        if not record:
            return False
        if record.get("owner") == owner:
            return True
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(lock_key, mapping=record)
        pipe.pexpire(lock_key, int(record["ttl"]))
        self._call("release", key, pipe.execute)
        return False


class HolderSwallowsUnavailable(RedisLock):
    """holder() answers "nobody" when the server does not answer: a caller deciding whether to take
    over, or to report the lock free, is told the key is free while it may be held."""

    def holder(self, key: str) -> Lease | None:
        try:
            return super().holder(key)
        except BackendUnavailable:
            return None


class AcquireUndoesUnknownWithDel(RedisLock):
    """An acquire whose outcome is unknown is "undone" with a blind DEL of the key and reported as not
    acquired: the DEL may remove another owner's lock (the key was held, nothing was applied)."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        try:
            return super().acquire(key, owner, ttl_ms)
        except BackendUnavailable:
            with contextlib.suppress(Exception):
                self.client.delete(self.lock_key(key))
            return None


class RenewReportsUnknownAsLost(RedisLock):
    """A renew whose outcome is unknown is reported as lost ("assume the worst"): the holder gives up
    a lease that may well have been extended, and the history shows a refusal the server never gave."""

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        try:
            return super().renew(key, owner, ttl_ms)
        except BackendUnavailable:
            return None


class ReleaseReportsUnknownAsNotHeld(RedisLock):
    """A release whose outcome is unknown is reported as "was not yours" (False)."""

    def release(self, key: str, owner: str) -> bool:
        try:
            return super().release(key, owner)
        except BackendUnavailable:
            return False


_GRANT_WITHOUT_EXPIRY = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', token, 'ttl', ARGV[2])
return token
"""


class ExpirySetInASecondRoundTrip(RedisLock):
    """The classic SETNX, then EXPIRE: the grant and its expiry in two round trips. A client that gives
    up between them (a timeout, a crash) leaves a key that never expires."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        script = self.client.register_script(_GRANT_WITHOUT_EXPIRY)
        lock_key = self.lock_key(key)
        token = self._call("acquire", key, lambda: script(keys=[lock_key, self.counter_key(key)], args=[owner, ttl_ms]))
        if token is None:
            return None
        self._call("acquire", key, lambda: self.client.pexpire(lock_key, ttl_ms))
        return Lease(key, owner, int(token), ttl_ms)


# --- on python3-etcd3, against a real etcd ----------------------------------------------------------


class EtcdModRevisionToken(EtcdLock):
    """The token is the key's mod_revision: the create revision until a renew with another TTL moves
    the key to a new lease, and then a new, larger one for the same lease."""

    def _mod_revision(self, key: str) -> int | None:
        _, meta = self._call("holder", lambda: self._client.get(self.etcd_key(key)))
        return None if meta is None else int(meta.mod_revision)

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        lease = super().renew(key, owner, ttl_ms)
        mod = None if lease is None else self._mod_revision(key)
        return lease if lease is None or mod is None else Lease(key, owner, mod, lease.ttl_ms)

    def holder(self, key: str) -> Lease | None:
        lease = super().holder(key)
        mod = None if lease is None else self._mod_revision(key)
        return lease if lease is None or mod is None else Lease(key, lease.owner, mod, lease.ttl_ms)


class EtcdAcquireUnknownIsRefused(EtcdLock):
    """An acquire whose Txn outcome is unknown is reported as refused: the key may be ours until the TTL."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        try:
            return super().acquire(key, owner, ttl_ms)
        except BackendUnavailable:
            return None


def _connected(cls: type[RedisLock]) -> Callable[[str], RedisLock]:
    return lambda url: cls(parse_redis_url(url)).connect()


per_process_counter_tokens = _connected(PerProcessCounterTokens)
redis_counter_expires_when_idle = _connected(RedisCounterExpiresWhenIdle)
token_in_the_lock_record = _connected(TokenInTheLockRecord)
two_round_trip_release = _connected(TwoRoundTripRelease)
retries_acquire_internally = _connected(RetriesAcquireInternally)
release_reports_lost_request_as_done = _connected(ReleaseReportsLostRequestAsDone)
renew_reports_lost_request_as_done = _connected(RenewReportsLostRequestAsDone)
renew_extends_then_checks_owner = _connected(RenewExtendsThenChecksOwner)
release_restores_others_lock = _connected(ReleaseRestoresOthersLock)
holder_swallows_unavailable = _connected(HolderSwallowsUnavailable)
acquire_undoes_unknown_with_del = _connected(AcquireUndoesUnknownWithDel)
renew_reports_unknown_as_lost = _connected(RenewReportsUnknownAsLost)
release_reports_unknown_as_not_held = _connected(ReleaseReportsUnknownAsNotHeld)
expiry_set_in_a_second_round_trip = _connected(ExpirySetInASecondRoundTrip)


def _etcd(cls: type[EtcdLock]) -> Callable[[str], EtcdLock]:
    return lambda url: cls(parse_etcd_url(url)).connect()


etcd_mod_revision_token = _etcd(EtcdModRevisionToken)
etcd_acquire_unknown_is_refused = _etcd(EtcdAcquireUnknownIsRefused)


def redis_correct(url: str) -> RedisLock:
    """The real adapter through the same --adapter path: the honest control for the Redis ones."""
    return RedisLock(parse_redis_url(url)).connect()


MINIKV: dict[str, type[CorrectAdapter]] = {
    "caching_holder": CachingHolder,
    "renew_keeps_the_acquire_ttl": RenewKeepsTheAcquireTtl,
    "renew_makes_the_lease_permanent": RenewMakesTheLeasePermanent,
    "clock_tokens": ClockTokens,
    "counter_expires_when_idle": CounterExpiresWhenIdle,
    "self_healing_renew": SelfHealingRenew,
    "under_declared_expiry_lag": UnderDeclaredExpiryLag,
}

REDIS: dict[str, Callable[[str], RedisLock]] = {
    "per_process_counter_tokens": per_process_counter_tokens,
    "redis_counter_expires_when_idle": redis_counter_expires_when_idle,
    "token_in_the_lock_record": token_in_the_lock_record,
    "two_round_trip_release": two_round_trip_release,
    "retries_acquire_internally": retries_acquire_internally,
    "release_reports_lost_request_as_done": release_reports_lost_request_as_done,
    "renew_reports_lost_request_as_done": renew_reports_lost_request_as_done,
    "renew_extends_then_checks_owner": renew_extends_then_checks_owner,
    "release_restores_others_lock": release_restores_others_lock,
    "holder_swallows_unavailable": holder_swallows_unavailable,
    "acquire_undoes_unknown_with_del": acquire_undoes_unknown_with_del,
    "renew_reports_unknown_as_lost": renew_reports_unknown_as_lost,
    "release_reports_unknown_as_not_held": release_reports_unknown_as_not_held,
    "expiry_set_in_a_second_round_trip": expiry_set_in_a_second_round_trip,
}

ETCD: dict[str, Callable[[str], EtcdLock]] = {
    "etcd_mod_revision_token": etcd_mod_revision_token,
    "etcd_acquire_unknown_is_refused": etcd_acquire_unknown_is_refused,
}


def _factory(cls: type[CorrectAdapter]) -> Callable[[str], CorrectAdapter]:
    return lambda url: cls(url)


for _name, _cls in MINIKV.items():
    globals()[_name] = _factory(_cls)
