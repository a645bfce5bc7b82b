"""Leader changes a Raft cluster makes on its own: watched during a run (``run/promotions.py``) and
read by the checkers, since each new etcd leader re-arms every lease it finds for a TTL and an election
timeout. Seen beside two CPU hogs on the harness's fast-timed etcd cluster: a partitioned holder's
lease, due at 9.1 s, still refused contenders at 11.7 s after an election at about 9.5 s, and liveness
reported a slow failover of a correct cluster.

Hand-written histories (TTL 2 s, expiry lag 1 s, tokens) judged whole and streamed; and a real cluster
whose leader is killed under the probe.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lockchaos.harness.checkers.findings import CheckResult
from lockchaos.harness.run.history import FaultRecord, NoteRecord, OpRecord, Record
from lockchaos.harness.run.promotions import PROMOTION_NOTE, PromotionProbe, promotion_window
from lockchaos.harness.servers.clusters import EtcdCluster
from tests.judged_both_ways import judged_both_ways

MS = 1_000_000


def meta() -> NoteRecord:
    caps = {"ttl_granularity_ms": 1000, "min_ttl_ms": 1000, "expiry_lag_ms": 1000, "durable": True,
            "fencing_tokens": True, "replication": "linearizable", "failover_ms": 2400}
    return NoteRecord("meta", 0, {"ttl_ms": 2000, "capabilities": caps, "plan": {"retry_every": 0.1}})


def acq(name: str, t0: int, t1: int, outcome: str = "ok", token: int = 1) -> OpRecord:
    lease = {"owner": name, "token": token, "ttl_ms": 2000} if outcome == "ok" else None
    return OpRecord(name, "acquire", "k", {"owner": name, "ttl_ms": 2000}, t0 * MS, t1 * MS,
                    outcome, lease)  # type: ignore[arg-type]


def promotion(at_ms: int, window_ms: float = 40) -> NoteRecord:
    return NoteRecord(PROMOTION_NOTE, at_ms * MS, {"term": 3, "window_ms": window_ms, "extend_ms": 200})


def _holder_crashes(*notes: Record, refused_until: int = 4800) -> list[Record]:
    """a holds k from 0.1 s (due 2.1 s, 3.1 s with the lag) and crashes at 0.5 s; b is refused every
    100 ms from 1 s until ``refused_until``, then granted token 2."""
    return [meta(), acq("a", 100, 105), FaultRecord("holder-crash", "start", "a", 500 * MS), *notes,
            *(acq("b", t, t + 5, "fail") for t in range(1000, refused_until, 100)),
            acq("b", refused_until, refused_until + 5, token=2),
            FaultRecord("holder-crash", "end", "a", 5000 * MS), NoteRecord("end", 6000 * MS, {})]


def checked(records: list[Record], tmp_path: Path, checker: str) -> tuple[CheckResult, CheckResult]:
    return judged_both_ways(records, tmp_path, checker)


def test_a_lease_refusing_after_its_due_end_is_reported_where_no_leader_changed(tmp_path: Path) -> None:
    for result in checked(_holder_crashes(), tmp_path, "conformance"):
        assert {v.kind for v in result.violations} == {"refused-free-key"}
    for result in checked(_holder_crashes(), tmp_path, "liveness"):
        assert [v.kind for v in result.violations] == ["slow-failover"]


def test_a_leader_change_while_the_lease_stood_lets_it_stand_a_ttl_longer(tmp_path: Path) -> None:
    # Elected between 2.96 and 3.0 s, while a's lease could still stand: re-armed until 3.0 + 2 + 0.2 s
    # (+ the lag), so b's refusals until 4.8 s are the cluster's, and so is the failover's length.
    for checker in ("conformance", "liveness", "exclusion-grants"):
        for result in checked(_holder_crashes(promotion(3000)), tmp_path, checker):
            assert not result.violations, (checker, result.violations)


def test_a_leader_change_after_the_lease_ended_prolongs_nothing(tmp_path: Path) -> None:
    for result in checked(_holder_crashes(promotion(3500)), tmp_path, "conformance"):
        assert {v.kind for v in result.violations} == {"refused-free-key"}


def test_a_lease_refusing_past_the_re_armed_end_is_still_reported(tmp_path: Path) -> None:
    records = _holder_crashes(promotion(3000), refused_until=7500)
    for result in checked(records, tmp_path, "conformance"):
        assert "refused-free-key" in [v.kind for v in result.violations]


@pytest.mark.parametrize("data", [{"window_ms": -1, "extend_ms": 200}, {"window_ms": 10, "extend_ms": "x"},
                                  {"extend_ms": 200}, {"window_ms": float("nan"), "extend_ms": 1},
                                  {"window_ms": 10, "extend_ms": 1e300}])
def test_a_malformed_promotion_note_is_ignored_not_trusted(data: dict[str, object]) -> None:
    assert promotion_window(100 * MS, data) is None


def test_a_promotion_note_is_the_window_it_was_seen_in() -> None:
    window = promotion_window(100 * MS, {"window_ms": 25, "extend_ms": 200, "term": 4})
    assert window is not None and (window.start_ns, window.end_ns, window.extend_ns) == (75 * MS, 100 * MS, 200 * MS)


@pytest.mark.etcd
def test_the_probe_records_the_election_after_the_leader_is_killed() -> None:
    notes: list[NoteRecord] = []
    with EtcdCluster() as cluster:
        probe = PromotionProbe(time.monotonic_ns, notes.append, cluster)
        probe.start()
        time.sleep(0.2)
        killed = time.monotonic_ns()
        cluster.kill_member(cluster.leader())
        deadline = time.monotonic() + 10
        while not notes and time.monotonic() < deadline:
            time.sleep(0.05)
        probe.stop()
        seen = time.monotonic_ns()
    assert notes, "no promotion recorded after the leader was killed"
    window = promotion_window(notes[0].time_ns, notes[0].data)
    assert window is not None and killed - 50 * MS <= window.start_ns <= window.end_ns <= seen
    assert window.extend_ns == 2 * cluster.election_timeout_ms * MS
    assert isinstance(notes[0].data["term"], int)
