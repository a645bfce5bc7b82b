"""Leader changes a Raft cluster made on its own, watched during a real-time run and recorded in its history.

A new etcd leader re-arms every lease it finds (its lessor's ``Promote``: each lease is refreshed to
a full TTL plus an election timeout from the promotion), so a lease can outlive its TTL by that much
after any election, not only after the leader faults the nemesis declares. On a loaded machine the
harness's own clusters elect often: with the fast flags (100 ms election timeout) a member starved of
CPU for a few hundred ms is enough (measured beside two CPU hogs: server reads stalled up to 843 ms,
and a partitioned holder's lease, due at 9.1 s, was still refusing contenders at 11.7 s). The checkers
cannot tell such a lease from a lock that failed to expire, unless they know when leadership changed.

So a thread polls the cluster's Raft term (``RaftCluster.raft_term``) every ``EVERY_S``; each rise is a
``promotion`` note: the window since the poll before (the election happened in it) and the extension
a promotion grants. Only clusters the harness launched are watched (it knows their timing); a
cluster behind ``--url`` is not, and virtual time records none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from lockchaos.harness.run.history import NoteRecord
from lockchaos.harness.run.lateness import MAX_LATE_MS, ProbeThread

EVERY_S = 0.025
"""The poll's pace: a promotion is placed within this (plus however long a stalled member takes)."""
PROMOTION_NOTE = "promotion"


@runtime_checkable
class RaftCluster(Protocol):
    """A cluster that can tell its current Raft term, and its election timeout."""

    election_timeout_ms: int

    def raft_term(self) -> int | None:
        """The highest term the answering members report, or None if none answers."""


@dataclass(frozen=True, slots=True)
class PromotionWindow:
    """Leadership changed between ``start_ns`` and ``end_ns``; a lease in force then may last until
    the end plus its TTL plus ``extend_ns``."""

    start_ns: int
    end_ns: int
    extend_ns: int


def promotion_window(time_ns: int, data: dict[str, object]) -> PromotionWindow | None:
    """A ``promotion`` note's window (the note is written at its end); None if the note is malformed."""
    window, extend = data.get("window_ms"), data.get("extend_ms")
    if not isinstance(window, int | float) or not isinstance(extend, int | float):
        return None
    if not (0 <= window <= MAX_LATE_MS and 0 <= extend <= MAX_LATE_MS):  # NaN fails both
        return None
    return PromotionWindow(time_ns - int(window * 1_000_000), time_ns, int(extend * 1_000_000))


class PromotionProbe(ProbeThread):
    """Polls the term for as long as the run records; a rise is a ``promotion`` note."""

    name = "promotion-probe"

    def __init__(self, now_ns: Callable[[], int], record: Callable[[NoteRecord], None], cluster: RaftCluster) -> None:
        super().__init__(now_ns, record)
        self._cluster = cluster
        # etcd's Promote extends by an election timeout; twice that covers randomised timeouts.
        self._extend_ms = 2 * cluster.election_timeout_ms

    def _probe(self) -> None:
        since = self._now_ns()  # when the last term that was read was still to be asked for
        term = self._cluster.raft_term()
        while not self._stop.wait(EVERY_S):  # bounded by the run: stop() ends it
            asked = self._now_ns()
            now_term = self._cluster.raft_term()
            if now_term is None:
                continue  # nobody answered: the window stays open until someone does
            if term is not None and now_term > term:
                now = self._now_ns()
                self._note(NoteRecord(PROMOTION_NOTE, now, {"term": now_term, "extend_ms": self._extend_ms,
                                                             "window_ms": round((now - since) / 1e6, 3)}))
            term, since = max(now_term, term or 0), asked
