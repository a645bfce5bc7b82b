"""A revived worker is a new process: no fault armed on the one that died strikes it.

A worker process's new child starts with none armed; a thread worker, revived in place, must behave
the same (a pause or a lost request armed before the crash would otherwise hit the next incarnation).
"""

from __future__ import annotations

import random

import pytest

from lockchaos.backends.base import Lease
from lockchaos.backends.fake import FakeClient, FakeKVLock
from lockchaos.harness.run.armedfaults import ARMABLE, ArmedFaults
from lockchaos.harness.run.environments import FakeLink
from lockchaos.harness.run.history import FaultRecord, Record
from lockchaos.harness.run.register import FencedRegister
from lockchaos.harness.run.runtime import RealRuntime
from lockchaos.harness.run.worker import Timing, Worker
from lockchaos.harness.scenarios import WorkerPlan

KEY = "lockchaos/revived"
TTL_MS = 1000
CALL_TIMEOUT_MS = 50
"""The fake's client gives up this soon on a request its link dropped: a lost renew costs little."""

ARMED: dict[str, object] = {"pause_for_s": 2.0, "renewer_dead": True, "lose_release_reply": True,
                            "late_release_ms": 200, "lose_acquire_reply": True, "lose_release_request": True,
                            "lose_renew_requests_s": 1.5}


def thread_worker(records: list[Record]) -> tuple[Worker, FakeClient]:
    server = FakeKVLock(timeout_ms=CALL_TIMEOUT_MS)
    client = FakeClient(server)
    link = FakeLink(client)
    rt = RealRuntime()
    plan = WorkerPlan()
    register = FencedRegister(KEY, fencing=True, now_ns=rt.now_ns, record=records.append)
    worker = Worker("w0", lambda: client, KEY, plan, Timing.of(plan, TTL_MS), rt, records.append, register,
                    random.Random(1), link_of=lambda: link)
    worker.connect()
    return worker, client


def test_every_armable_fault_has_an_armed_value_here() -> None:
    assert set(ARMED) == set(ARMABLE)
    assert all(value != getattr(ArmedFaults, name) for name, value in ARMED.items())


@pytest.mark.parametrize("flag", sorted(ARMED))
def test_a_thread_worker_revived_with_a_fault_armed_does_not_keep_it(flag: str) -> None:
    worker, _ = thread_worker([])
    setattr(worker, flag, ARMED[flag])
    worker.crash()
    worker.revive()
    assert getattr(worker, flag) == getattr(ArmedFaults, flag), f"{flag} survived the revival"
    assert worker.name == "w0#2"


def test_a_thread_worker_revived_with_a_pause_armed_does_not_pause() -> None:
    records: list[Record] = []
    worker, _ = thread_worker(records)
    worker.pause_for_s = 2.0
    worker.crash()
    worker.revive()
    worker._pause_point()
    assert [r for r in records if isinstance(r, FaultRecord)] == []


def test_a_thread_worker_revived_inside_its_lost_renew_window_renews_at_the_server() -> None:
    records: list[Record] = []
    worker, client = thread_worker(records)
    assert client.acquire(KEY, worker.owner, TTL_MS) is not None
    worker.lose_renew_requests_s = 60.0  # the window opens at this incarnation's first renew
    outcome, _ = worker._renew(client)
    assert outcome == "indeterminate"  # lost: the window is open
    worker.crash()
    worker.revive()
    assert client.server.release(KEY, "w0#1")  # the dead one's lease, gone (as after its TTL)
    assert client.acquire(KEY, worker.owner, TTL_MS) is not None
    outcome, value = worker._renew(client)
    assert outcome == "ok" and isinstance(value, Lease) and value.owner == "w0#2", (outcome, value)
