"""Liveness and ghost grants: another client's acquire that ended indeterminate may have taken effect
unheard, and then holds the key until its latest end however honest the lock. A failover or a recovery
that only such a grant explains is no finding; a key still refused long after it ended is.

Hand-written histories: TTL 1 s, retries every 0.1 TTL, so a holder's failover is due within
1 s + 2 x 0.1 s + 0.25 s slack = 1.45 s; after a server fault, within that + TTL + client timeout.
"""

from __future__ import annotations

from lockchaos.harness.checkers import check_history
from lockchaos.harness.checkers.findings import CheckResult
from lockchaos.harness.run.history import FaultRecord, NoteRecord, OpRecord, Record

MS = 1_000_000


def meta() -> NoteRecord:
    caps = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": True, "fencing_tokens": True}
    return NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": caps, "plan": {"retry_every": 0.1}})


def client(name: str) -> NoteRecord:
    return NoteRecord("client", 0, {"client": name, "timeout_ms": 1000})


def acq(name: str, t0: int, t1: int, outcome: str = "ok", token: int = 1) -> OpRecord:
    lease = {"owner": name, "token": token, "ttl_ms": 1000} if outcome == "ok" else None
    error = "BackendTimeout: no reply within 1000 ms" if outcome == "indeterminate" else None
    return OpRecord(name, "acquire", "k", {"owner": name, "ttl_ms": 1000}, t0 * MS, t1 * MS,
                    outcome, lease, error)  # type: ignore[arg-type]


def refused(name: str, start: int, stop: int) -> list[Record]:
    """``name`` asks every 100 ms from ``start`` until ``stop`` and is refused each time (an answer)."""
    return [acq(name, t, t + 5, "fail") for t in range(start, stop, 100)]


def liveness(records: list[Record]) -> CheckResult:
    _, res = check_history(records)
    return next(r for r in res if r.checker == "liveness")


def kinds(result: CheckResult) -> list[str]:
    return [f.kind for f in result.violations]


GHOST = [acq("b", 1010, 2010, "indeterminate")]
"""b asks just after a's lease ended and hears nothing: if it took effect, b holds k until 3.01 s."""


def _holder_crash_then(after: list[Record], end_ms: int) -> list[Record]:
    return [meta(), client("a"), client("b"), client("c"), acq("a", 0, 5),
            FaultRecord("holder-crash", "start", "a", 100 * MS), FaultRecord("holder-crash", "end", "a", 200 * MS),
            *after, NoteRecord("end", end_ms * MS, {})]


def test_a_failover_only_a_ghost_grant_explains_is_no_finding() -> None:
    # c is refused while b's unheard grant may hold k, and acquires right after it would have ended
    res = liveness(_holder_crash_then([*GHOST, *refused("c", 1100, 3100), acq("c", 3100, 3105, token=3)], 5000))
    assert kinds(res) == [], res.violations
    assert res.stats["failovers"] == 1 and res.stats["ghost_excused"] == 1


def test_a_key_still_refused_long_after_the_ghost_grant_ended_is_a_slow_failover() -> None:
    res = liveness(_holder_crash_then([*GHOST, *refused("c", 1100, 8000), acq("c", 8000, 8005, token=3)], 9000))
    assert kinds(res) == ["slow-failover"], res.violations
    assert "unheard grant" in res.violations[0].message


def test_a_key_never_granted_again_after_the_ghost_grant_ended_is_no_failover() -> None:
    res = liveness(_holder_crash_then([*GHOST, *refused("c", 1100, 9000)], 9000))
    assert kinds(res) == ["no-failover"], res.violations


def test_without_a_ghost_grant_the_same_wait_is_a_slow_failover() -> None:
    answered = [acq("b", 1010, 1015, "fail")]  # b was refused: nobody but a can have held k
    res = liveness(_holder_crash_then([*answered, *refused("c", 1100, 3100), acq("c", 3100, 3105, token=3)], 5000))
    assert kinds(res) == ["slow-failover"], res.violations


def test_ghost_grants_sent_in_turn_excuse_each_other_but_not_beyond() -> None:
    # b's second unheard acquire is sent while its first may still hold k: it may be the one in force
    chain = [*GHOST, acq("b", 3100, 4100, "indeterminate")]
    ok = liveness(_holder_crash_then([*chain, *refused("c", 1100, 5200), acq("c", 5200, 5205, token=3)], 7000))
    assert kinds(ok) == [], ok.violations
    late = liveness(_holder_crash_then([*chain, *refused("c", 1100, 6000), acq("c", 6000, 6005, token=3)], 7000))
    assert kinds(late) == ["slow-failover"], late.violations


def test_the_victims_own_unheard_acquire_excuses_nothing() -> None:
    # a partitioned holder's own acquires time out: its failover is still due at the bound
    records = [meta(), client("a"), client("c"), acq("a", 0, 5),
               FaultRecord("partition", "start", "a", 100 * MS), acq("a", 1010, 2010, "indeterminate"),
               *refused("c", 1100, 3100), acq("c", 3100, 3105, token=3),
               FaultRecord("partition", "end", "a", 2100 * MS), NoteRecord("end", 5000 * MS, {})]
    assert kinds(liveness(records)) == ["slow-failover"]


def _server_kill_then(after: list[Record], end_ms: int) -> list[Record]:
    return [meta(), client("a"), client("b"), client("c"), acq("a", 0, 5),
            FaultRecord("server-kill", "start", "server", 1000 * MS),
            FaultRecord("server-kill", "end", "server", 1500 * MS), *after, NoteRecord("end", end_ms * MS, {})]


RECOVERY_GHOST = [acq("b", 5000, 6000, "indeterminate")]
"""The server is back at 1.5 s; a's lease, re-armed by the restart, may last until 2.5 s, so the lock is
due within 3.45 s after (5.95 s). b asks at 5 s and hears nothing: if it took effect, b holds k until 7 s."""


def test_a_recovery_only_a_ghost_grant_explains_is_no_finding() -> None:
    res = liveness(_server_kill_then([*RECOVERY_GHOST, *refused("c", 5100, 7100), acq("c", 7100, 7105, token=3)],
                                     12000))
    assert res.stats["server_recoveries_judged"] == 1
    assert kinds(res) == [], res.violations


def test_a_lock_still_refused_long_after_the_recovery_ghost_ended_is_no_recovery() -> None:
    # due 3.45 s after the ghost's end (10.45 s)
    res = liveness(_server_kill_then([*RECOVERY_GHOST, *refused("c", 5100, 11000), acq("c", 11000, 11005, token=3)],
                                     16000))
    assert kinds(res) == ["no-recovery"], res.violations


def renew(name: str, t0: int, t1: int, outcome: str = "ok", token: int = 1) -> OpRecord:
    lease = {"owner": name, "token": token, "ttl_ms": 1000} if outcome == "ok" else None
    error = "BackendTimeout: no reply within 2000 ms" if outcome == "indeterminate" else None
    return OpRecord(name, "renew", "k", {"owner": name, "ttl_ms": 1000}, t0 * MS, t1 * MS,
                    outcome, lease, error)  # type: ignore[arg-type]


def test_a_fault_of_a_client_whose_grant_another_client_has_since_taken_is_no_failover() -> None:
    # a's renew goes unanswered across its lease's end (it may have prolonged it), but b is granted
    # the key at 1.1 s: a's grant was over, and a partition of a at 1.2 s has nothing to fail over
    # (b holds the key for 2 s, then c gets it: no slow failover from a)
    b_holds = [acq("b", 1100, 1105, token=2), *(renew("b", t, t + 5, token=2) for t in range(1400, 3100, 300)),
               OpRecord("b", "release", "k", {"owner": "b"}, 3100 * MS, 3105 * MS, "ok")]
    records = [meta(), client("a"), client("b"), client("c"), acq("a", 0, 5), renew("a", 300, 2300, "indeterminate"),
               *b_holds, FaultRecord("partition", "start", "a", 1200 * MS), *refused("c", 1250, 3150),
               FaultRecord("partition", "end", "a", 3200 * MS), acq("c", 3150, 3155, token=3),
               NoteRecord("end", 5000 * MS, {})]
    res = liveness(records)
    assert kinds(res) == [], res.violations
    assert res.stats["failovers"] == 0
