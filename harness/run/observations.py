"""Plain facts read off a history, for the run summary: counts, stale writes, token regressions.

These are observations, not verdicts: the checkers decide what is a violation given the backend's
declared capabilities; this module only says what happened, so a person can read a run at a glance.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lockchaos.harness.faults.registry import named
from lockchaos.harness.run.history import FaultRecord, NoteRecord, OpRecord, Record, WriteRecord

RESTARTS = named(lambda t: t.restarts_server)
"""Faults that restart the server (and, without durability, its token counter): from the fault registry."""


@dataclass(frozen=True, slots=True)
class Observations:
    ops: dict[str, int]
    faults: dict[str, int]
    acquisitions: int
    writes_accepted: int
    writes_rejected: int
    stale_writes: int
    """Writes carrying a token older than one already granted by the time of the write; for a lock
    without tokens, writes by a client whose lease another grant had superseded by then."""
    stale_writes_accepted: int
    token_regressions: int
    """Grants whose token is not above every earlier grant's (a counter lost on restart)."""
    renew_failures_after_restart: int
    final_holder: dict[str, Any] | None
    examples: list[dict[str, Any]] = field(default_factory=list)


def observe(records: Iterable[Record]) -> Observations:
    ops: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    acquisitions = accepted = rejected = stale = stale_accepted = regressions = renew_after = 0
    granted_max = 0
    grant_seq = 0  # lease identity, for tokenless locks: how many grants so far, and each client's last
    client_seq: dict[str, int] = {}
    grants: list[tuple[int, int]] = []  # (complete, token), recent ones only
    restart_ends: list[int] = []
    final: dict[str, Any] | None = None
    examples: list[dict[str, Any]] = []
    tokens = True  # a lock declaring no fencing tokens is observed by lease identity only
    for rec in records:
        if isinstance(rec, NoteRecord) and rec.kind == "meta":
            tokens = bool(rec.data.get("capabilities", {}).get("fencing_tokens", True))
        elif isinstance(rec, OpRecord):
            ops[f"{rec.op}:{rec.outcome}"] += 1
            if rec.client == "observer":
                final = rec.lease
            elif rec.op == "acquire" and rec.outcome == "ok" and rec.lease is not None:
                acquisitions += 1
                grant_seq += 1
                client_seq[rec.client] = grant_seq
                if rec.lease.get("token") is None or not tokens:
                    continue  # a tokenless lock: no token order to observe
                token = int(rec.lease["token"])
                # Only grants that completed before this one was sent count: overlapping calls may finish
                # in either order (a slow reply), which is not a regression.
                before = max((t for c, t in grants if c < rec.invoke_ns), default=0)
                if token <= before:
                    regressions += 1
                    if len(examples) < 5:
                        examples.append({"kind": "token-regression", "client": rec.client, "token": token,
                                         "previous_max": before, "at_ns": rec.complete_ns})
                grants.append((rec.complete_ns, token))
                del grants[:-64]  # calls overlap with a handful of recent grants at most
                granted_max = max(granted_max, token)
            elif rec.op == "renew" and rec.outcome == "fail" and any(
                    rec.invoke_ns - end >= 0 for end in restart_ends[-1:]):
                renew_after += 1
        elif isinstance(rec, WriteRecord):
            accepted += rec.accepted
            rejected += not rec.accepted
            wtoken = rec.token if tokens else None
            superseded = wtoken is None and client_seq.get(rec.client, grant_seq) < grant_seq
            if superseded or (wtoken is not None and wtoken < granted_max):
                stale += 1
                stale_accepted += rec.accepted
                if len(examples) < 5:
                    examples.append({"kind": "stale-write", "client": rec.client, "token": rec.token,
                                     "newer_token": None if superseded else granted_max, "accepted": rec.accepted,
                                     "at_ns": rec.time_ns})
        elif isinstance(rec, FaultRecord):
            if rec.phase == "start":
                faults[rec.fault] += 1
            elif rec.fault in RESTARTS:
                restart_ends.append(rec.time_ns)
    return Observations(dict(sorted(ops.items())), dict(sorted(faults.items())), acquisitions, accepted,
                        rejected, stale, stale_accepted, regressions, renew_after, final, examples)
