"""Liveness at the edges of a holder's failover: the run stopping in the middle of it, and the service
failing over at the same time (a Redlock master restarting empty while the holder is paused).

Hand-written histories: TTL 1 s, retries every 0.1 TTL, so a holder's failover is due within
1 s + 2 x 0.1 s + 0.25 s slack = 1.45 s.
"""

from __future__ import annotations

import pytest

from lockchaos.harness.checkers import check_history
from lockchaos.harness.run.history import FaultRecord, NoteRecord, OpRecord, Record
from tests.test_liveness_ghost_grants import kinds, liveness

MS = 1_000_000


def meta(failover_ms: int = 0) -> NoteRecord:
    caps = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": False, "fencing_tokens": False,
            "failover_ms": failover_ms, "spurious_refusals": True}
    return NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": caps, "plan": {"retry_every": 0.1}})


def acq(name: str, t0: int, t1: int, outcome: str = "ok") -> OpRecord:
    lease = {"owner": name, "token": None, "ttl_ms": 1000} if outcome == "ok" else None
    return OpRecord(name, "acquire", "k", {"owner": name, "ttl_ms": 1000}, t0 * MS, t1 * MS,
                    outcome, lease)  # type: ignore[arg-type]


def refused(name: str, start: int, stop: int) -> list[Record]:
    return [acq(name, t, t + 5, "fail") for t in range(start, stop, 100)]


def _paused_then_stopped(quiesce: NoteRecord) -> list[Record]:
    """a holds and pauses at 0.1 s; c is refused until the workers are told to stop at 1.3 s."""
    return [meta(), acq("a", 0, 5), FaultRecord("holder-pause", "start", "a", 100 * MS),
            *refused("c", 200, 1300), FaultRecord("holder-pause", "end", "a", 1350 * MS),
            quiesce, NoteRecord("end", 12_000 * MS, {})]


def test_a_failover_cut_short_by_the_stop_is_not_judged_however_long_the_workers_took_to_stop() -> None:
    # Told to stop at 1.3 s (1.2 s into the failover, under its bound); the last worker stopped at 11 s.
    res = liveness(_paused_then_stopped(NoteRecord("quiesce", 11_000 * MS, {"drained_ms": 9700})))
    assert kinds(res) == [], res.violations


def test_without_the_drain_the_stop_is_the_quiesce_and_the_same_wait_is_no_failover() -> None:
    res = liveness(_paused_then_stopped(NoteRecord("quiesce", 11_000 * MS, {})))
    assert kinds(res) == ["no-failover"], res.violations


@pytest.mark.parametrize("drained", [-1, 20_000, "9700", float("nan"), [1]])
def test_a_drain_no_run_writes_is_refused_with_its_line(drained: object) -> None:
    with pytest.raises(ValueError, match="drained_ms"):
        check_history(_paused_then_stopped(NoteRecord("quiesce", 11_000 * MS, {"drained_ms": drained})))


def _paused_while_a_master_restarts(acquired_at: int, *, failover_ms: int = 2000,
                                    master_fault: bool = True) -> list[Record]:
    """a holds and pauses at 0.1 s as a master restarts empty (0.1-0.4 s); c's acquire meets the
    restarting master and hangs until 1.2 s (redis-py retries), then c asks every 100 ms."""
    fault = ([FaultRecord("redlock-master-amnesia", "start", "masters:m2", 100 * MS),
              FaultRecord("redlock-master-amnesia", "end", "masters:m2", 400 * MS)] if master_fault else [])
    return [meta(failover_ms), acq("a", 0, 5), *fault[:1], FaultRecord("holder-pause", "start", "a", 100 * MS),
            acq("c", 150, 1200, "fail"), *fault[1:], *refused("c", 1300, acquired_at),
            acq("c", acquired_at, acquired_at + 5), FaultRecord("holder-pause", "end", "a", 1600 * MS),
            NoteRecord("quiesce", 8000 * MS, {}), NoteRecord("end", 9000 * MS, {})]


def test_a_holder_failover_during_the_service_s_own_failover_may_take_its_declared_time_too() -> None:
    res = liveness(_paused_while_a_master_restarts(1600))
    assert kinds(res) == [], res.violations
    assert res.stats["failovers"] == 1


def test_the_same_failover_without_a_service_fault_is_slow() -> None:
    res = liveness(_paused_while_a_master_restarts(1600, master_fault=False))
    assert kinds(res) == ["slow-failover"], res.violations


def test_a_failover_slower_than_the_bound_plus_the_declared_service_failover_is_slow() -> None:
    res = liveness(_paused_while_a_master_restarts(3700))  # 3.6 s > 1.45 s + 2 s
    assert kinds(res) == ["slow-failover"], res.violations
    assert "the service's own failover" in res.violations[0].message
