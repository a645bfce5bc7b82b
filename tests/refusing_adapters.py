"""Adapters that refuse a free key when contenders overlap, as Redlock's split votes do.

``SplitVotes`` grants a free key to a caller that meets no other contender, and refuses *every*
caller whose acquire overlapped another's on the same key: each took some votes, none a quorum, all
gave up. It never grants twice. Declared (``spurious_refusals=True``) that is Redlock's known hazard;
undeclared it is a lock refusing a free key, which the contract and the conformance checker must fail.
"""

from __future__ import annotations

import threading
import time

from lockchaos.backends.base import Capabilities, Lease, validate_call
from tests.broken_adapters import CorrectAdapter

VOTE_WINDOW_S = 0.02
"""How long an acquire's votes are out: contenders released together by the contract's barrier
overlap within it even on a loaded machine."""


class _Ballot:
    def __init__(self) -> None:
        self.split = False


_ballots: dict[tuple[int, str], list[_Ballot]] = {}
_ballots_lock = threading.Lock()


class SplitVotes(CorrectAdapter):
    """Refuses every acquire that overlapped another on the same key; does not declare it."""

    def acquire(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        validate_call(key, owner, ttl_ms)
        mine, where = _Ballot(), (id(self.kv), key)
        with _ballots_lock:
            out = _ballots.setdefault(where, [])
            if out:
                mine.split = True
                for other in out:
                    other.split = True
            out.append(mine)
        time.sleep(VOTE_WINDOW_S)
        with _ballots_lock:
            out.remove(mine)
            if not out:
                del _ballots[where]
        return None if mine.split else super().acquire(key, owner, ttl_ms)


class DeclaredSplitVotes(SplitVotes):
    capabilities = Capabilities(spurious_refusals=True)


def splits_votes(url: str) -> SplitVotes:
    return SplitVotes(url)


def splits_votes_declared(url: str) -> DeclaredSplitVotes:
    return DeclaredSplitVotes(url)
