"""FakeKVLock: the in-memory lock server whose behaviour *is* the reference semantics.

A ``FakeKVLock`` is a server: ``open_backend("fake://NAME")`` returns a new ``FakeClient`` of the
server named NAME, so two clients share locks exactly as two connections to one Redis do, and a
client-side fault (partition, latency, lost replies, pause) hits one client only. Server-side faults
(kill, restart with or without durable state, pause, clock jump) live on the server, so every
scenario that faults Redis or etcd can fault the fake the same way.

Every wait goes through the injected ``Clock``: on a ``ManualClock`` or the driver's virtual clock,
a paused server or a timed-out call costs no wall time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from .base import (
    BackendTimeout,
    BackendUnavailable,
    Capabilities,
    ConfigurationError,
    HolderInfo,
    Lease,
    LockChaosError,
    validate_call,
)
from .clock import NS_PER_MS, REAL_CLOCK, Clock
from .redaction import redact_url
from .urlopts import ms_option, split_url, url_options

T = TypeVar("T")

_POLL_S = 0.005

# Capabilities the fake can be told to mimic, so fake runs are judged like the real backend's.
PROFILES: dict[str, Capabilities] = {
    "ideal": Capabilities(durable=True),
    "redis": Capabilities(durable=False),
    "redis-aof": Capabilities(durable=True),
    "etcd": Capabilities(ttl_granularity_ms=1000, min_ttl_ms=1000, expiry_lag_ms=1000, durable=True),
    # A lock library that truncates TTLs to whole seconds and refuses what truncates to 0 (``SET EX``).
    "truncating": Capabilities(ttl_granularity_ms=1000, ttl_rounding="down", min_ttl_ms=1000,
                               refuses_below_min=True, durable=False),
}


def _check_refusal(caps: Capabilities, ttl_ms: int) -> None:
    """A declared refusal, decided before any I/O like every other bad-input check."""
    if caps.refuses_ttl(ttl_ms):
        raise ValueError(f"ttl_ms must be >= {caps.min_ttl_ms} for this backend, got {ttl_ms}")


@dataclass(frozen=True, slots=True)
class _Entry:
    owner: str
    token: int
    ttl_ms: int
    expires_at_ns: int


class FakeKVLock:
    """The reference lock server. Thread-safe; its public lock methods form a fault-free client.

    A key is held at server time t iff it has an entry and ``t < expires_at + lag``, where ``lag``
    is the expiry lag this fake actually exhibits (0 unless it mimics a lagging backend).
    """

    def __init__(
        self,
        clock: Clock = REAL_CLOCK,
        capabilities: Capabilities = PROFILES["ideal"],
        *,
        expiry_lag_ms: int | None = None,
        name: str = "fake",
        timeout_ms: int = 2000,
        rearm_on_restart: bool = False,
    ) -> None:
        self.name = name
        self.clock = clock
        self.capabilities = capabilities
        lag = capabilities.expiry_lag_ms if expiry_lag_ms is None else expiry_lag_ms
        if not 0 <= lag <= capabilities.expiry_lag_ms:
            raise ValueError("the fake may not lag more than it declares")
        self._lag_ns = lag * NS_PER_MS
        self.timeout_ms = timeout_ms
        self.rearm_on_restart = rearm_on_restart
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._counters: dict[str, int] = {}
        self._up = True
        self._paused = False
        self._offset_ns = 0

    # --- server time and state ----------------------------------------------------------------

    def server_now_ns(self) -> int:
        """The server's own clock: the injected clock plus any jump a fault applied."""
        return self.clock.now_ns() + self._offset_ns

    def _live(self, key: str, now: int) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if now >= entry.expires_at_ns + self._lag_ns:
            del self._entries[key]
            return None
        return entry

    @staticmethod
    def _lease(key: str, entry: _Entry) -> Lease:
        return Lease(key=key, owner=entry.owner, token=entry.token, ttl_ms=entry.ttl_ms)

    # --- the reference semantics, applied atomically under the server lock ---------------------

    def _do_acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        now = self.server_now_ns()
        if self._live(key, now) is not None:
            return None  # held, by anyone: not re-entrant
        applied = self.capabilities.applied_ttl(ttl_ms)
        token = self._counters.get(key, 0) + 1
        self._counters[key] = token
        entry = _Entry(owner, token, applied, now + applied * NS_PER_MS)
        self._entries[key] = entry
        return self._lease(key, entry)

    def _do_renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        now = self.server_now_ns()
        entry = self._live(key, now)
        if entry is None or entry.owner != owner:
            return None
        applied = self.capabilities.applied_ttl(ttl_ms)
        renewed = _Entry(owner, entry.token, applied, now + applied * NS_PER_MS)
        self._entries[key] = renewed
        return self._lease(key, renewed)

    def _do_release(self, key: str, owner: str) -> bool:
        entry = self._live(key, self.server_now_ns())
        if entry is None or entry.owner != owner:
            return False
        del self._entries[key]
        return True

    def _do_holder(self, key: str) -> Lease | None:
        entry = self._live(key, self.server_now_ns())
        return None if entry is None else self._lease(key, entry)

    def serve(self, op: Callable[[], T], timeout_ms: int) -> T:
        """Run one request at the server, as a client with ``timeout_ms`` would see it.

        A dead server refuses at once; a paused one holds the request until it resumes or the
        client gives up. A request the client gave up on is dropped, never applied later.
        """
        deadline = self.clock.now_ns() + timeout_ms * NS_PER_MS
        while True:
            with self._lock:
                if not self._up:
                    raise BackendUnavailable("fake server is down")
                if not self._paused:
                    return op()
            remaining_s = (deadline - self.clock.now_ns()) / 1e9
            if remaining_s <= 0:
                raise BackendTimeout(f"fake server did not answer in {timeout_ms} ms")
            poll_until = getattr(self.clock, "poll_until", None)
            if poll_until is not None:  # a simulated clock polls for us, without waking us every 5 ms
                poll_until(self._answering, deadline, _POLL_S)
            else:
                self.clock.sleep(min(_POLL_S, remaining_s))

    def _answering(self) -> bool:
        """Whether a request waiting at the server would now get an answer (or a refusal)."""
        return not self._up or not self._paused

    # --- LockBackend, as a fault-free client of this server ------------------------------------

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        _check_refusal(self.capabilities, ttl_ms)
        return self.serve(lambda: self._do_acquire(key, owner, ttl_ms), self.timeout_ms)

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        _check_refusal(self.capabilities, ttl_ms)
        return self.serve(lambda: self._do_renew(key, owner, ttl_ms), self.timeout_ms)

    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        return self.serve(lambda: self._do_release(key, owner), self.timeout_ms)

    def holder(self, key: str) -> Lease | None:
        validate_call(key)
        return self.serve(lambda: self._do_holder(key), self.timeout_ms)

    def close(self) -> None:
        """Nothing to release: the server outlives its clients."""

    # --- server faults ------------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._up

    @property
    def paused(self) -> bool:
        return self._paused

    def kill(self) -> None:
        """Stop answering, like ``kill -9``: every call fails until ``restart``."""
        with self._lock:
            now = self.server_now_ns()
            for key in list(self._entries):
                self._live(key, now)  # what had expired is gone; the rest waits for the restart
            self._up = False
            self._paused = False

    def restart(self, *, keep_state: bool | None = None) -> None:
        """Come back up; state survives only if the server is durable (or ``keep_state`` says so).

        A non-durable restart forgets holders *and* token counters, as Redis without persistence
        does: tokens start again from 1, which is exactly the fencing hazard scenarios look for.
        """
        with self._lock:
            durable = self.capabilities.durable if keep_state is None else keep_state
            if not durable:
                self._entries.clear()
                self._counters.clear()
            elif self.rearm_on_restart:
                # etcd does this when a restarted member becomes leader: every lease that was live
                # when it went down gets a fresh TTL from now, so it may outlive its old deadline.
                now = self.server_now_ns()
                for key, entry in list(self._entries.items()):
                    self._entries[key] = _Entry(entry.owner, entry.token, entry.ttl_ms,
                                                now + entry.ttl_ms * NS_PER_MS)
            self._up = True

    def crash(self, *, keep_state: bool | None = None) -> None:
        """Kill and restart in one step."""
        self.kill()
        self.restart(keep_state=keep_state)

    def pause(self) -> None:
        """Like SIGSTOP: requests wait (and time out); leases keep expiring on the clock."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    def jump_clock(self, delta_ms: int) -> None:
        """Move the server's clock (forward expires leases early; backward extends them)."""
        with self._lock:
            self._offset_ns += delta_ms * NS_PER_MS


class FakeClient:
    """One client connection to a ``FakeKVLock``, with the client-side faults a network causes.

    ``one_way_delay_ms`` models latency each way: a request arrives after one delay and its reply
    after another, so a call whose round trip exceeds the timeout may have taken effect
    (indeterminate), exactly as with a real socket timeout.
    """

    def __init__(self, server: FakeKVLock, *, timeout_ms: int | None = None, tokens: bool = True,
                 holder_info: HolderInfo = "lease") -> None:
        self.server = server
        self.name = server.name
        # A tokenless or owner-opaque client is how the fake plays a lock library: same server
        # semantics, but it shows (and declares) only what such a library can tell its caller.
        self.capabilities = replace(server.capabilities, fencing_tokens=tokens and server.capabilities.fencing_tokens,
                                    holder_info=holder_info)
        self._tokens = tokens
        self.timeout_ms = server.timeout_ms if timeout_ms is None else timeout_ms
        self._lock = threading.Lock()
        self._partitioned = False
        self._lose_replies = False
        self._lose_next_reply = False
        self._paused = False
        self._closed = False
        self.one_way_delay_ms = 0
        self.reply_delay_ms = 0
        self.max_pause_s = 3600.0

    # --- client faults ------------------------------------------------------------------------

    def partition(self) -> None:
        """Requests vanish on the way to the server: calls time out and never take effect."""
        with self._lock:
            self._partitioned = True

    def heal(self) -> None:
        with self._lock:
            self._partitioned = False
            self._lose_replies = False
            self.one_way_delay_ms = 0
            self.reply_delay_ms = 0

    def lose_replies(self, on: bool = True) -> None:
        """Requests take effect but the connection resets before the reply arrives."""
        with self._lock:
            self._lose_replies = on

    def reset_connection(self) -> None:
        """A connection reset: the next call is applied but its reply is lost (then all is normal)."""
        with self._lock:
            self._lose_next_reply = True

    def set_latency(self, one_way_delay_ms: int) -> None:
        if one_way_delay_ms < 0:
            raise ValueError("latency must be >= 0")
        with self._lock:
            self.one_way_delay_ms = one_way_delay_ms

    def set_reply_delay(self, ms: int) -> None:
        """Replies (only) arrive ``ms`` late: the server acts at once, the client learns late."""
        if ms < 0:
            raise ValueError("reply delay must be >= 0")
        with self._lock:
            self.reply_delay_ms = ms

    def pause(self) -> None:
        """Freeze this client, like SIGSTOP on its process: calls block until ``resume``."""
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False

    # --- the request path ---------------------------------------------------------------------

    def _call(self, op: Callable[[], T]) -> T:
        clock = self.server.clock
        if self._closed:
            raise LockChaosError("client is closed")
        waited = 0.0
        while self._paused:
            if waited >= self.max_pause_s:
                raise BackendTimeout("client stayed paused past its bound")
            clock.sleep(_POLL_S)
            waited += _POLL_S
        timeout_s = self.timeout_ms / 1000
        delay_s = self.one_way_delay_ms / 1000
        if self._partitioned or delay_s >= timeout_s:
            clock.sleep(timeout_s)
            raise BackendTimeout(f"no reply within {self.timeout_ms} ms (request lost)")
        start = clock.now_ns()
        clock.sleep(delay_s)
        result = self.server.serve(op, max(1, self.timeout_ms - self.one_way_delay_ms))
        with self._lock:
            lost, self._lose_next_reply = self._lose_replies or self._lose_next_reply, False
        if lost:
            raise BackendUnavailable("connection reset before the reply arrived")
        back_s = delay_s + self.reply_delay_ms / 1000
        spent_s = (clock.now_ns() - start) / 1e9
        if spent_s + back_s >= timeout_s:
            clock.sleep(max(0.0, timeout_s - spent_s))
            raise BackendTimeout(f"no reply within {self.timeout_ms} ms (request was applied)")
        clock.sleep(back_s)
        return result

    def _shown(self, lease: Lease | None) -> Lease | None:
        """The lease as this client may tell it: without a token when it declares none."""
        if lease is None or self._tokens:
            return lease
        return replace(lease, token=None)

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        _check_refusal(self.capabilities, ttl_ms)
        return self._shown(self._call(lambda: self.server._do_acquire(key, owner, ttl_ms)))

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        _check_refusal(self.capabilities, ttl_ms)
        return self._shown(self._call(lambda: self.server._do_renew(key, owner, ttl_ms)))

    def release(self, key: str, owner: str) -> bool:
        validate_call(key, owner)
        return self._call(lambda: self.server._do_release(key, owner))

    def holder(self, key: str) -> Lease | None:
        validate_call(key)
        info = self.capabilities.holder_info
        if info == "none":
            raise NotImplementedError("this client declares holder_info='none': it cannot tell the holder")
        lease = self._shown(self._call(lambda: self.server._do_holder(key)))
        if lease is None or info == "lease":
            return lease
        if info == "owner":
            return replace(lease, ttl_ms=0)
        return Lease(key=key, owner="", token=None, ttl_ms=0)

    def close(self) -> None:
        self._closed = True


# --- named in-process servers behind fake://NAME ---------------------------------------------

_servers: dict[str, FakeKVLock] = {}
_servers_lock = threading.Lock()


def fake_server(name: str, **config: object) -> FakeKVLock:
    """The fake server called ``name``, created with ``config`` on first use.

    Creating it explicitly first (with a virtual clock, say) is how a driver decides how the
    server behaves before any client opens ``fake://NAME``.
    """
    with _servers_lock:
        server = _servers.get(name)
        if server is None:
            server = FakeKVLock(name=name, **config)  # type: ignore[arg-type]
            _servers[name] = server
        return server


def drop_fake_server(name: str) -> None:
    """Forget a named server so that a later run starts from an empty one."""
    with _servers_lock:
        _servers.pop(name, None)


_TOKENS = ("fencing", "none")
_HOLDER_INFO: tuple[HolderInfo, ...] = ("lease", "owner", "presence", "none")


def open_fake(url: str) -> FakeClient:
    """``fake://NAME[?profile=etcd&timeout_ms=500&tokens=none&holder=owner]``: a new client of NAME.

    ``tokens=none`` makes the client a tokenless lock (leases carry no token, ``fencing_tokens`` is
    declared False) and ``holder=owner|presence|none`` limits what ``holder()`` tells, as most lock
    libraries do: the server's semantics stay the reference, only what the client shows changes.
    """
    parts = split_url(url, "fake")
    name = parts.netloc + parts.path
    if not name:
        raise ConfigurationError(f"fake URL needs a server name: {redact_url(url)!r} (try fake://default)")
    query = url_options(parts.query, ("profile", "timeout_ms", "tokens", "holder"), "fake", url)
    tokens = query.get("tokens", "fencing")
    if tokens not in _TOKENS:
        raise ConfigurationError(f"tokens must be one of {', '.join(_TOKENS)}, got {tokens!r} in {redact_url(url)!r}")
    holder = query.get("holder", "lease")
    if holder not in _HOLDER_INFO:
        raise ConfigurationError(f"holder must be one of {', '.join(_HOLDER_INFO)}, got {holder!r} in "
                                 f"{redact_url(url)!r}")
    profile = query.get("profile")
    if profile is not None and profile not in PROFILES:
        raise ConfigurationError(f"unknown fake profile {profile!r}; choose from {sorted(PROFILES)}")
    timeout = ms_option(query, "timeout_ms", 0, url) or None
    server = fake_server(name, capabilities=PROFILES[profile or "ideal"], rearm_on_restart=profile == "etcd")
    if profile is not None and server.capabilities != PROFILES[profile]:
        raise ConfigurationError(f"fake server {name!r} already exists with other capabilities")
    info: HolderInfo = next(h for h in _HOLDER_INFO if h == holder)
    return FakeClient(server, timeout_ms=timeout, tokens=tokens == "fencing", holder_info=info)
