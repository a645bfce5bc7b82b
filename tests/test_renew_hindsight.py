"""A renew that succeeded proves its lease was in force until its invoke + TTL, however late its reply
came: a grant to another owner inside that span is a double grant (exclusion-grants)."""

from __future__ import annotations

from lockchaos.harness.checkers import check_history
from lockchaos.harness.run.history import NoteRecord, OpRecord, Record

MS = 1_000_000
CAPS = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": False, "fencing_tokens": True}


def _acquire(client: str, owner: str, t0: int, t1: int, token: int) -> OpRecord:
    return OpRecord(client, "acquire", "k", {"owner": owner, "ttl_ms": 1000}, t0 * MS, t1 * MS, "ok",
                    {"owner": owner, "token": token, "ttl_ms": 1000})


def _history(*, slow_renew_ok: bool, shared_owner: bool = False) -> list[Record]:
    # a holds from 0 (lease to 1000); its renew sent at 300 is answered only at 1600; b is granted at 1100.
    renew = OpRecord("a", "renew", "k", {"owner": "a", "ttl_ms": 1000}, 300 * MS, 1600 * MS,
                     "ok" if slow_renew_ok else "indeterminate",
                     {"owner": "a", "token": 1, "ttl_ms": 1000} if slow_renew_ok else None)
    records: list[Record] = [NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": CAPS, "plan": {}}),
                             _acquire("a", "a", 0, 5, 1), renew, _acquire("b", "b", 1100, 1105, 2)]
    if shared_owner:  # a third client given the same owner id: a's renew may have met its lease
        records.append(_acquire("c", "a", 2200, 2205, 3))
    return [*records, NoteRecord("end", 4000 * MS, {})]


def _double_grants(records: list[Record]) -> list[str]:
    _, results = check_history(records)
    grants = next(r for r in results if r.checker == "exclusion-grants")
    return [f.message for f in grants.violations if f.kind == "double-grant"]


def test_grant_inside_a_span_a_late_ok_renew_vouches_for_is_a_double_grant() -> None:
    found = _double_grants(_history(slow_renew_ok=True))
    assert len(found) == 1 and "answered ok at 1.600 s proves" in found[0], found


def test_an_indeterminate_renew_vouches_for_nothing() -> None:
    assert _double_grants(_history(slow_renew_ok=False)) == []


def test_a_renew_whose_owner_id_another_client_shares_vouches_for_nothing() -> None:
    assert _double_grants(_history(slow_renew_ok=True, shared_owner=True)) == []
