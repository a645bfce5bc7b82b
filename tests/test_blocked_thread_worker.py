"""A call that never returns in a thread worker: judged as the adapter's slow call, not a harness failure."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from lockchaos.backends.base import Lease
from lockchaos.backends.fake import open_fake
from lockchaos.harness.cli import main
from lockchaos.harness.run import driver

RELEASE = threading.Event()
"""Set when the test ends, so that the blocked threads it leaves behind return."""


class BlocksOnSecondAcquire:
    """The fake, except that its second acquire blocks (until the test ends): a client with no timeout
    talking to a server that never answers."""

    name = "blocks"
    calls = 0

    def __init__(self, url: str) -> None:
        self._inner = open_fake(url)
        self.capabilities = self._inner.capabilities

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        BlocksOnSecondAcquire.calls += 1
        if BlocksOnSecondAcquire.calls >= 2:
            RELEASE.wait(600)
        return self._inner.acquire(key, owner, ttl_ms)

    def renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        return self._inner.renew(key, owner, ttl_ms)

    def release(self, key: str, owner: str) -> bool:
        return self._inner.release(key, owner)

    def holder(self, key: str) -> Lease | None:
        return self._inner.holder(key)

    def close(self) -> None:
        self._inner.close()


def blocks_on_second_acquire(url: str) -> BlocksOnSecondAcquire:
    return BlocksOnSecondAcquire(url)


def test_a_thread_worker_blocked_in_a_call_is_recorded_indeterminate_and_judged_slow(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(driver, "JOIN_TIMEOUT_S", 1.0)
    out = tmp_path / "run"
    try:
        status = main(["soak", "--adapter", f"{__name__}:blocks_on_second_acquire", "--server", "none",
                       "--scenario", "clean-handover", "--seed", "1", "--ttl-ms", "200", "--quiet", "--out", str(out)])
    finally:
        RELEASE.set()
    run = next(out.rglob("summary.json")).parent
    summary = json.loads((run / "summary.json").read_text())
    assert status == 1 and summary["status"] == "ran", summary  # judged, not an infrastructure failure
    assert summary["checks"]["checkers"]["slow-call"]["verdict"] == "fail", summary["checks"]
    ops = [json.loads(line) for line in (run / "history.jsonl").open()]
    blocked = [r for r in ops if r["type"] == "op" and "still blocked when the run ended" in (r.get("error") or "")]
    assert blocked and all(r["op"] == "acquire" and r["outcome"] == "indeterminate" for r in blocked), blocked
