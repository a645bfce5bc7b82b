"""A refusal that only a late-landing unheard acquire explains: excused when the lock's tokens prove
that acquire took effect (a token skipped between the definite grants around the refusal), reported
otherwise.

Seen on a loaded CI machine (renew-request-lost on real Redis, TTL 200 ms): two acquires timed out at
2.043 s, one of them landed about 55 ms later as token 5 (never seen: the next grant was token 6), and
the refusals its lease caused until 2.30 s were reported as refusals of a free key, while the
harness's own process had run only 16 ms late. Both judgement paths (whole, streamed) must agree.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lockchaos.harness.run.history import NoteRecord, OpRecord, Record
from tests.judged_both_ways import judged_both_ways

MS = 1_000_000


def meta(tokens: bool = True) -> NoteRecord:
    caps = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": True, "fencing_tokens": tokens}
    return NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": caps, "plan": {"retry_every": 0.1}})


def acq(name: str, t0: int, t1: int, outcome: str, token: int | None = None) -> OpRecord:
    lease = {"owner": name, "token": token, "ttl_ms": 1000} if outcome == "ok" else None
    error = "BackendTimeout: no reply within 50 ms" if outcome == "indeterminate" else None
    return OpRecord(name, "acquire", "k", {"owner": name, "ttl_ms": 1000}, t0 * MS, t1 * MS,
                    outcome, lease, error)  # type: ignore[arg-type]


def rel(name: str, t0: int, t1: int) -> OpRecord:
    return OpRecord(name, "release", "k", {"owner": name}, t0 * MS, t1 * MS, "ok", None, None)


def history(*middle: Record, tokens: bool = True) -> list[Record]:
    """a holds token 1 and releases; ``middle``; the end. c's refusal at 2.1 s is past the reach of an
    acquire that gave up at 1.05 s (its lease, had it landed by then, ended by 2.055 s)."""
    return [meta(tokens), acq("a", 0, 5, "ok", 1), rel("a", 500, 505), *middle, NoteRecord("end", 4000 * MS, {})]


GHOST = acq("b", 1000, 1050, "indeterminate")
REFUSED = acq("c", 2100, 2102, "fail")


def refused_free_key(records: list[Record], tmp_path: Path) -> list[int]:
    """How many refused-free-key findings, judged whole and streamed (asserted equal)."""
    results = judged_both_ways(records, tmp_path, "conformance")
    counts = [sum(f.kind == "refused-free-key" for f in r.violations) for r in results]
    assert counts[0] == counts[1], counts
    return counts


def test_a_refusal_a_late_unheard_acquire_explains_is_excused_when_the_next_grant_skips_its_token(
        tmp_path: Path) -> None:
    assert refused_free_key(history(GHOST, REFUSED, acq("c", 2300, 2302, "ok", 3)), tmp_path) == [0, 0]


def test_without_a_skipped_token_the_same_refusal_is_reported(tmp_path: Path) -> None:
    assert refused_free_key(history(GHOST, REFUSED, acq("c", 2300, 2302, "ok", 2)), tmp_path) == [1, 1]


def test_without_a_later_grant_nothing_proves_the_unheard_acquire_landed(tmp_path: Path) -> None:
    assert refused_free_key(history(GHOST, REFUSED), tmp_path) == [1, 1]


def test_the_refused_client_s_own_unheard_acquire_excuses_nothing(tmp_path: Path) -> None:
    own = acq("c", 1000, 1050, "indeterminate")
    assert refused_free_key(history(own, REFUSED, acq("d", 2300, 2302, "ok", 3)), tmp_path) == [1, 1]


def test_an_unheard_acquire_sent_before_the_last_definite_grant_excuses_nothing(tmp_path: Path) -> None:
    early = acq("b", 300, 350, "indeterminate")
    records = history(early, acq("d", 600, 605, "ok", 3), rel("d", 700, 705), REFUSED, acq("c", 2300, 2302, "ok", 5))
    assert refused_free_key(records, tmp_path) == [1, 1]


def test_a_lock_without_tokens_shows_no_proof_and_the_refusal_is_reported(tmp_path: Path) -> None:
    assert refused_free_key(history(GHOST, REFUSED, acq("c", 2300, 2302, "ok", 3), tokens=False), tmp_path) == [1, 1]


@pytest.mark.parametrize("later", [1, 40])
def test_refusals_held_for_the_next_grant_are_reported_in_invoke_order(later: int, tmp_path: Path) -> None:
    # many refusals wait for a grant that shows no skipped token: all reported, none lost
    refusals = [acq("c", 2100 + i * 5, 2102 + i * 5, "fail") for i in range(later)]
    records = history(GHOST, *refusals, acq("c", 2100 + later * 5 + 50, 2100 + later * 5 + 52, "ok", 2))
    assert refused_free_key(records, tmp_path) == [later, later]
