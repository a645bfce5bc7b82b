"""Checkers on hand-written histories: one minimal history per violation kind, and near misses that pass.

Times are in milliseconds on a 1000 ms TTL with no declared lag unless a test says otherwise.
"""

from __future__ import annotations

from typing import Any

from lockchaos.harness.checkers import check_history
from lockchaos.harness.checkers.findings import CheckResult
from lockchaos.harness.run.history import FaultRecord, NoteRecord, OpRecord, Record, WriteRecord

MS = 1_000_000


def meta(lag_ms: int = 0, durable: bool = True, ttl_ms: int = 1000, granularity: int = 1) -> NoteRecord:
    caps = {"ttl_granularity_ms": granularity, "min_ttl_ms": 1, "expiry_lag_ms": lag_ms, "durable": durable,
            "fencing_tokens": True}
    return NoteRecord("meta", 0, {"ttl_ms": ttl_ms, "capabilities": caps, "plan": {"retry_every": 0.1}})


def op(client: str, name: str, t0: int, t1: int, outcome: str = "ok", token: int | None = None,
       ttl: int = 1000, owner: str | None = None) -> OpRecord:
    args: dict[str, Any] = {} if name == "holder" else {"owner": client}
    if name in ("acquire", "renew"):
        args["ttl_ms"] = ttl
    lease = None
    if token is not None:
        lease = {"owner": owner or client, "token": token, "ttl_ms": ttl}
    return OpRecord(client, name, "k", args, t0 * MS, t1 * MS, outcome, lease)  # type: ignore[arg-type]


def write(client: str, token: int, t: int, accepted: bool = True, fencing: bool = False, seq: int = 0) -> WriteRecord:
    return WriteRecord(client, "k", token, t * MS, accepted, fencing, seq)


def fault(name: str, phase: str, t: int, target: str = "server") -> FaultRecord:
    return FaultRecord(name, phase, target, t * MS)  # type: ignore[arg-type]


def results(*records: Record) -> dict[str, CheckResult]:
    _, res = check_history(list(records))
    return {r.checker: r for r in res}


def kinds(res: dict[str, CheckResult], severity: str = "violation") -> set[str]:
    return {f.kind for r in res.values() for f in r.findings if f.severity == severity}


# --- violations, one minimal history each ------------------------------------------------------


def test_double_grant_is_caught_by_exclusion_by_grants() -> None:
    res = results(meta(), op("a", "acquire", 0, 5, token=1), op("b", "acquire", 100, 105, token=2))
    assert "double-grant" in kinds(res)
    f = res["exclusion-grants"].violations[0]
    assert f.lines == (2, 3) and set(f.clients) == {"a", "b"}


def test_refusal_of_a_free_key_is_a_conformance_violation() -> None:
    res = results(meta(), op("a", "acquire", 0, 5, outcome="fail"))
    assert "refused-free-key" in kinds(res)


def test_refusal_of_a_free_key_is_known_unsafe_when_the_backend_declares_spurious_refusals() -> None:
    declared = meta()
    declared.data["capabilities"]["spurious_refusals"] = True
    res = results(declared, op("a", "acquire", 0, 5, outcome="fail"))
    assert kinds(res) == set()
    assert kinds(res, "known-unsafe") == {"refused-free-key"}
    assert res["conformance"].verdict() == "known-unsafe"


def test_renew_after_expiry_succeeding_is_caught() -> None:
    res = results(meta(), op("a", "acquire", 0, 5, token=1), op("a", "renew", 2000, 2005, token=1))
    assert "renew-after-end" in kinds(res)


def test_renew_refused_while_surely_held_is_caught() -> None:
    res = results(meta(), op("a", "acquire", 0, 5, token=1), op("a", "renew", 300, 305, outcome="fail"))
    assert "renew-refused-for-holder" in kinds(res)


def test_release_after_release_succeeding_is_caught() -> None:
    res = results(meta(), op("a", "acquire", 0, 5, token=1), op("a", "release", 100, 105),
                  op("a", "release", 200, 205))
    assert "release-after-end" in kinds(res)


def test_holder_reporting_an_expired_lease_is_caught() -> None:
    res = results(meta(), op("a", "acquire", 0, 5, token=1), op("o", "holder", 3000, 3005, token=1, owner="a"))
    assert "holder-phantom" in kinds(res)


def test_holder_missing_a_live_lease_is_caught() -> None:
    res = results(meta(), op("a", "acquire", 0, 5, token=1), op("o", "holder", 300, 305))
    assert "holder-missed" in kinds(res)


def test_wrong_applied_ttl_is_caught() -> None:
    res = results(meta(), op("a", "acquire", 0, 5, token=1, ttl=1000).__class__(
        "a", "acquire", "k", {"owner": "a", "ttl_ms": 1500}, 0, 5 * MS, "ok",
        {"owner": "a", "token": 1, "ttl_ms": 2000}))
    assert "ttl" in kinds(res)


def test_token_regression_on_a_durable_backend_is_a_violation() -> None:
    res = results(meta(durable=True), op("a", "acquire", 0, 5, token=5), op("a", "release", 10, 15),
                  op("b", "acquire", 20, 25, token=3))
    assert "token-regression" in kinds(res)


def test_token_regression_after_restart_without_durability_is_known_unsafe() -> None:
    res = results(meta(durable=False), op("a", "acquire", 0, 5, token=5), fault("server-kill", "start", 100),
                  fault("server-kill", "end", 200), op("b", "acquire", 300, 305, token=1),
                  op("a", "renew", 310, 315, outcome="fail"))
    assert "token-regression" in kinds(res, "known-unsafe")
    assert "lost-on-restart" in kinds(res, "known-unsafe")
    assert not kinds(res)


def test_stale_write_without_fencing_is_known_unsafe_and_with_fencing_a_violation() -> None:
    unfenced = results(meta(), write("b", 2, 100), write("a", 1, 200))
    assert "stale-write" in kinds(unfenced, "known-unsafe") and not kinds(unfenced)
    fenced = results(meta(), write("b", 2, 100, fencing=True), write("a", 1, 200, fencing=True))
    assert "stale-write" in kinds(fenced)


def test_two_writers_with_one_token_is_a_violation() -> None:
    res = results(meta(), write("a", 1, 100, fencing=True), write("b", 1, 200, fencing=True))
    assert "shared-token" in kinds(res)


def test_slow_failover_after_holder_crash_is_caught() -> None:
    res = results(meta(), op("a", "acquire", 0, 5, token=1), fault("holder-crash", "start", 100, "a"),
                  fault("holder-crash", "end", 200, "a"), op("b", "acquire", 4000, 4005, token=2))
    assert "slow-failover" in kinds(res)


def test_unexpected_exception_is_an_error_handling_violation_not_a_semantics_one() -> None:
    # Issue 13: an unmapped exception is the adapter's error mapping failing, reported as its own kind;
    # the call's outcome is unknown, so the lock-semantics checkers treat it as indeterminate.
    rec = OpRecord("a", "release", "k", {"owner": "a"}, 0, 5 * MS, "indeterminate", None,
                   "unexpected PermissionError: not yours")
    res = results(meta(), rec)
    assert "unmapped-exception" in kinds(res)
    assert res["error-handling"].verdict() == "fail" and not res["conformance"].findings


# --- near misses that must pass -----------------------------------------------------------------


def test_acquire_overlapping_the_previous_expiry_passes() -> None:
    # a's lease expires somewhere in [1000, 1005]; b's acquire window straddles that.
    res = results(meta(), op("a", "acquire", 0, 5, token=1), op("b", "acquire", 998, 1010, token=2))
    assert not kinds(res)


def test_acquire_inside_declared_lag_may_be_refused() -> None:
    res = results(meta(lag_ms=500), op("a", "acquire", 0, 5, token=1), op("b", "acquire", 1200, 1205, outcome="fail"),
                  op("b", "acquire", 1300, 1305, token=2))
    assert not kinds(res)


def test_indeterminate_acquire_may_explain_a_refusal() -> None:
    res = results(meta(), op("a", "acquire", 0, 900, outcome="indeterminate"),
                  op("b", "acquire", 950, 955, outcome="fail"))
    assert not kinds(res)


def test_indeterminate_release_may_have_freed_the_key() -> None:
    res = results(meta(), op("a", "acquire", 0, 5, token=1), op("a", "release", 100, 400, outcome="indeterminate"),
                  op("b", "acquire", 300, 305, token=2))
    assert not kinds(res)


def test_request_queued_in_a_paused_server_may_apply_on_resume() -> None:
    res = results(meta(), fault("server-pause", "start", 0), op("a", "acquire", 10, 510, outcome="indeterminate"),
                  fault("server-pause", "end", 2000), op("b", "acquire", 2100, 2105, outcome="fail"))
    assert not kinds(res)


def test_renew_extends_so_later_refusal_is_fine() -> None:
    res = results(meta(), op("a", "acquire", 0, 5, token=1), op("a", "renew", 800, 805, token=1),
                  op("b", "acquire", 1500, 1505, outcome="fail"), op("b", "acquire", 1900, 1905, token=2))
    assert not kinds(res)


def test_restart_of_a_durable_server_keeps_holder_without_findings() -> None:
    res = results(meta(durable=True), op("a", "acquire", 0, 5, token=1), fault("server-kill", "start", 100),
                  fault("server-kill", "end", 200), op("a", "renew", 300, 305, token=1),
                  op("b", "acquire", 400, 405, outcome="fail"))
    assert not kinds(res) and not kinds(res, "known-unsafe")


def test_fast_failover_passes_and_is_measured() -> None:
    res = results(meta(), op("a", "acquire", 0, 5, token=1), fault("holder-crash", "start", 100, "a"),
                  fault("holder-crash", "end", 200, "a"), op("b", "acquire", 1050, 1055, token=2))
    assert not kinds(res)
    assert res["liveness"].stats["failovers"] == 1
    assert 0.9 < float(res["liveness"].stats["p50_s"]) < 1.0
