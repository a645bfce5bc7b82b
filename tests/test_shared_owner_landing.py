"""Two clients sharing one owner id (``duplicate-owner``): a lock knows owners, not clients, so a late
renew of one can land on the other's fresh grant, and its answer's token shows it did.

Seen under load (two CPU hogs beside the suite): w1's renew waited 90 ms in a slow server, past its own
lease's end, and renewed w0's new grant (same owner, token 3); then w1's release deleted it. Joined to
w1's own dead grant, the renew prolonged that one (a "re-entrant" grant to w0) and the release proved
nothing about w0's lease, left "in force" when the next client got the lock (a "double grant").

Hand-written histories, each judged whole and streamed from a file: TTL 1 s, fencing tokens.
"""

from __future__ import annotations

from pathlib import Path

from lockchaos.harness.checkers.findings import CheckResult
from lockchaos.harness.run.history import NoteRecord, OpRecord, Record
from tests.judged_both_ways import every_result_both_ways

MS = 1_000_000


def meta() -> NoteRecord:
    caps = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": True, "fencing_tokens": True}
    return NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": caps, "plan": {"retry_every": 0.1}})


def call(client: str, op: str, t0: int, t1: int, outcome: str = "ok", token: int | None = None,
         owner: str | None = None) -> OpRecord:
    owner = owner or client
    args: dict[str, object] = {"owner": owner} if op == "release" else {"owner": owner, "ttl_ms": 1000}
    lease = ({"owner": owner, "token": token, "ttl_ms": 1000} if outcome == "ok" and op != "release" else None)
    return OpRecord(client, op, "k", args, t0 * MS, t1 * MS, outcome, lease)  # type: ignore[arg-type]


def judged(records: list[Record], tmp_path: Path) -> tuple[list[CheckResult], list[CheckResult]]:
    return every_result_both_ways(records, tmp_path)


def violations(results: list[CheckResult]) -> list[tuple[str, str]]:
    return [(r.checker, f.kind) for r in results for f in r.violations]


def _late_renew_lands_on_the_other_s_grant(renewed_token: int, sent_at: int = 1500) -> list[Record]:
    """a (owner o) holds token 1 until 1.6 s; b (owner o too) is granted token 2 at 1.7 s; a's renew,
    sent at 1.5 s, lands at about 1.75 s and is answered with ``renewed_token``; a then releases (ok),
    and c is granted token 3 at 1.9 s. Records in the order a run writes them (by completion)."""
    return [meta(),
            call("a", "acquire", 0, 5, token=1, owner="o"), call("a", "renew", 300, 305, token=1, owner="o"),
            call("a", "renew", 600, 605, token=1, owner="o"), call("c", "acquire", 1100, 1105, "fail"),
            call("b", "acquire", 1700, 1705, token=2, owner="o"),
            call("a", "renew", sent_at, 1760, token=renewed_token, owner="o"),
            call("a", "release", 1800, 1805, owner="o"),
            call("c", "acquire", 1900, 1905, token=3),
            call("b", "renew", 2000, 2005, "fail", owner="o"),
            call("c", "release", 2300, 2305),
            NoteRecord("end", 3000 * MS, {})]


def test_a_renew_answered_with_the_other_client_s_token_acts_on_that_grant(tmp_path: Path) -> None:
    for results in judged(_late_renew_lands_on_the_other_s_grant(2), tmp_path):
        assert violations(results) == [], violations(results)


def test_a_renew_sent_after_the_other_grant_was_asked_for_acts_on_it_too(tmp_path: Path) -> None:
    # Fed in invoke order, this renew comes after b's acquire: the grant it landed on is there already.
    for results in judged(_late_renew_lands_on_the_other_s_grant(2, sent_at=1702), tmp_path):
        assert violations(results) == [], violations(results)


def test_a_renew_answered_with_its_own_token_after_the_other_grant_is_still_reported(tmp_path: Path) -> None:
    # The same calls, but a's renew says it renewed token 1 after token 2 was granted: a lease the
    # server had let go was renewed, or two were in force (what the checkers said of both before).
    for results in judged(_late_renew_lands_on_the_other_s_grant(1), tmp_path):
        assert {"double-grant", "reentrant-grant"} & {kind for _, kind in violations(results)}
