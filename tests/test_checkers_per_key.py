"""Checkers judge each lock key on its own: a stress run holds many keys in one history.

Two owners holding two different keys at once is no double grant, tokens increase per key, a stale
write on one key is judged against that key's writes only, and a holder's failover is timed on the
key it held. Times in milliseconds on a 1000 ms TTL, as in ``test_checkers``.
"""

from __future__ import annotations

from typing import Any

from lockchaos.harness.checkers import check_history
from lockchaos.harness.checkers.findings import CheckResult
from lockchaos.harness.run.history import FaultRecord, NoteRecord, OpRecord, Record, WriteRecord

MS = 1_000_000


def meta() -> NoteRecord:
    caps = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": True, "fencing_tokens": True}
    return NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": caps, "plan": {"retry_every": 0.1}})


def op(client: str, name: str, key: str, t0: int, t1: int, outcome: str = "ok",
       token: int | None = None) -> OpRecord:
    args: dict[str, Any] = {"owner": client, "ttl_ms": 1000}
    lease = None if token is None else {"owner": client, "token": token, "ttl_ms": 1000}
    return OpRecord(client, name, key, args, t0 * MS, t1 * MS, outcome, lease)  # type: ignore[arg-type]


def results(*records: Record) -> dict[str, CheckResult]:
    _, res = check_history(list(records))
    return {r.checker: r for r in res}


def violations(res: dict[str, CheckResult]) -> set[str]:
    return {f.kind for r in res.values() for f in r.findings if f.severity == "violation"}


def test_two_owners_holding_different_keys_at_once_is_no_double_grant() -> None:
    res = results(meta(), op("a", "acquire", "k1", 0, 5, token=1), op("b", "acquire", "k2", 100, 105, token=1))
    assert violations(res) == set()


def test_two_owners_holding_the_same_key_among_others_is_a_double_grant() -> None:
    res = results(meta(), op("a", "acquire", "k1", 0, 5, token=1), op("c", "acquire", "k2", 50, 55, token=1),
                  op("b", "acquire", "k1", 100, 105, token=2))
    assert violations(res) == {"double-grant"}
    assert set(res["exclusion-grants"].violations[0].clients) == {"a", "b"}


def test_tokens_increase_per_key_not_across_keys() -> None:
    res = results(meta(), op("a", "acquire", "k1", 0, 5, token=7), op("a", "release", "k1", 10, 15),
                  op("b", "acquire", "k2", 2000, 2005, token=1))
    assert "token-regression" not in violations(res)
    res = results(meta(), op("a", "acquire", "k1", 0, 5, token=7), op("a", "release", "k1", 10, 15),
                  op("b", "acquire", "k1", 2000, 2005, token=3))
    assert "token-regression" in violations(res)


def test_a_refusal_is_judged_by_the_grants_on_its_own_key() -> None:
    res = results(meta(), op("a", "acquire", "k1", 0, 5, token=1), op("b", "acquire", "k2", 100, 105, outcome="fail"))
    assert violations(res) == {"refused-free-key"}


def test_register_writes_are_judged_per_key() -> None:
    res = results(meta(), op("a", "acquire", "k1", 0, 5, token=5), op("b", "acquire", "k2", 0, 5, token=1),
                  WriteRecord("a", "k1", 5, 10 * MS, True, True, 0), WriteRecord("b", "k2", 1, 20 * MS, True, True, 0))
    assert violations(res) == set()
    res = results(meta(), op("a", "acquire", "k1", 0, 5, token=5), op("b", "acquire", "k2", 0, 5, token=1),
                  WriteRecord("a", "k1", 5, 10 * MS, True, True, 0), WriteRecord("b", "k1", 1, 20 * MS, True, True, 0))
    assert "stale-write" in violations(res)


def test_a_holder_failover_is_timed_on_the_key_it_held() -> None:
    """``a`` holds k1 and crashes; ``b`` gets k2 at once but k1 only 5 s later: a slow failover of k1."""
    records: list[Record] = [meta(), op("a", "acquire", "k1", 0, 5, token=1),
                             FaultRecord("holder-crash", "start", "a", 100 * MS)]
    records += [op("b", "acquire", "k1", t, t + 5, outcome="fail") for t in range(200, 5000, 100)]
    records += [op("b", "acquire", "k2", 150, 155, token=1), op("b", "acquire", "k1", 5000, 5005, token=2),
                FaultRecord("holder-crash", "end", "a", 6000 * MS), NoteRecord("end", 7000 * MS)]
    slow = [f for f in results(*records)["liveness"].violations if f.kind == "slow-failover"]
    assert len(slow) == 1 and "acquired on k1" in slow[0].message
