"""The Redis adapter calls EVALSHA directly; a server that lost its script cache still works."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from lockchaos.backends.redis import ACQUIRE_LUA, RELEASE_LUA, RENEW_LUA, RedisLock, open_redis
from lockchaos.harness.servers.process import RedisServer

pytestmark = [pytest.mark.redis]


@pytest.fixture(scope="module")
def lock() -> Iterator[RedisLock]:
    with RedisServer() as server, open_redis(server.url) as client:
        yield client


def test_every_script_runs_once_after_the_server_flushed_its_script_cache(lock: RedisLock) -> None:
    """NOSCRIPT means nothing ran, so the adapter runs the script with EVAL; it must run exactly once:
    one token drawn per grant, no double release."""
    first = lock.acquire("cache", "a", 5000)
    assert first is not None and first.token is not None
    assert lock.release("cache", "a")
    lock.client.script_flush()
    second = lock.acquire("cache", "a", 5000)
    assert second is not None and second.token == first.token + 1
    assert int(lock.client.get(lock.counter_key("cache"))) == first.token + 1
    lock.client.script_flush()
    renewed = lock.renew("cache", "a", 7000)
    assert renewed is not None and (renewed.token, renewed.ttl_ms) == (second.token, 7000)
    assert lock.holder("cache") == renewed
    lock.client.script_flush()
    assert lock.release("cache", "a")
    assert lock.holder("cache") is None
    assert lock.acquire("cache", "b", 5000) is not None  # EVAL cached it again: EVALSHA works
    shas = [hashlib.sha1(lua.encode()).hexdigest() for lua in (ACQUIRE_LUA, RENEW_LUA, RELEASE_LUA)]
    assert lock.client.script_exists(*shas) == [True, False, True]  # renew has not run since the flush
