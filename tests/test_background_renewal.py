"""Clients that renew held leases from their own thread (``Capabilities.renews_in_background``).

python-redis-lock's ``auto_renewal`` keeps a lease alive, unrecorded, until release or until its
holder's process dies or freezes; the checkers and the contract must judge it by that, not by the
TTL of the last recorded call (issue 13).
"""

from __future__ import annotations

from typing import Any

import pytest

from lockchaos.harness.checkers import check_history
from lockchaos.harness.run.history import FaultRecord, NoteRecord, OpRecord, Record

MS = 1_000_000


def meta(background: bool) -> NoteRecord:
    caps = {"min_ttl_ms": 1, "durable": False, "fencing_tokens": False, "holder_info": "presence",
            "renews_in_background": background}
    return NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": caps, "plan": {"retry_every": 0.1}})


def op(client: str, name: str, t0: int, t1: int, outcome: str = "ok") -> OpRecord:
    args: dict[str, Any] = {"owner": client}
    lease = None
    if name in ("acquire", "renew"):
        args["ttl_ms"] = 1000
        lease = {"owner": client, "token": None, "ttl_ms": 1000} if outcome == "ok" else None
    return OpRecord(client, name, "k", args, t0 * MS, t1 * MS, outcome, lease)  # type: ignore[arg-type]


def kinds(*records: Record) -> set[str]:
    _, res = check_history(list(records))
    return {f.kind for r in res for f in r.findings if f.severity == "violation"}


@pytest.mark.parametrize("background", [False, True])
def test_refusal_long_after_the_ttl_is_explained_only_by_background_renewal(background: bool) -> None:
    found = kinds(meta(background), op("a", "acquire", 0, 5), op("b", "acquire", 3000, 3005, outcome="fail"))
    assert ("refused-free-key" in found) is not background


@pytest.mark.parametrize("background", [False, True])
def test_release_long_after_the_ttl_is_explained_only_by_background_renewal(background: bool) -> None:
    found = kinds(meta(background), op("a", "acquire", 0, 5), op("a", "release", 5000, 5005))
    assert ("release-after-end" in found) is not background


def test_background_renewal_ends_when_its_holder_process_is_killed() -> None:
    found = kinds(meta(True), op("a", "acquire", 0, 5),
                  FaultRecord("holder-crash", "start", "a,c", 1000 * MS), FaultRecord("holder-crash", "end", "a,c",
                                                                                       1500 * MS),
                  op("b", "acquire", 4000, 4005, outcome="fail"))
    assert "refused-free-key" in found


def test_background_renewal_ends_when_its_holder_process_is_frozen_longer_than_the_lease() -> None:
    def pause(phase: str, t: int) -> FaultRecord:
        return FaultRecord("holder-pause", phase, "a", t * MS, {"signal": "SIGSTOP"} if phase == "start" else {})

    frozen = kinds(meta(True), op("a", "acquire", 0, 5), pause("start", 1000), pause("end", 3500),
                   op("b", "acquire", 3000, 3005, outcome="fail"))
    assert "refused-free-key" in frozen
    brief = kinds(meta(True), op("a", "acquire", 0, 5), pause("start", 1000), pause("end", 1500),
                  op("b", "acquire", 3000, 3005, outcome="fail"))
    assert "refused-free-key" not in brief  # a short freeze: the thread resumes renewing a live lease
