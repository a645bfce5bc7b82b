"""The guarded resource: a register that workers write while they believe they hold the lock.

It is how a stale holder shows up. With fencing on it refuses a write whose token is older than
one it has already accepted (what a fencing-aware storage would do); with fencing off it accepts
everything, so the history shows what fencing would have prevented.

One register object stands for one register per lock key: a write names its key (the scenario's
only key by default), and a token is fenced against the highest accepted on that key alone, as a
storage guarded by many locks keeps one fencing high-water mark per resource.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from lockchaos.harness.run.history import WriteRecord


class FencedRegister:
    def __init__(self, key: str, *, fencing: bool, now_ns: Callable[[], int],
                 record: Callable[[WriteRecord], None]) -> None:
        self.key = key
        self.fencing = fencing
        self._now_ns = now_ns
        self._record = record
        self._lock = threading.Lock()
        self._max_token: dict[str, int] = {}
        self._seq = itertools.count(1)
        self.accepted = 0
        self.rejected = 0

    def write(self, client: str, token: int | None, key: str | None = None) -> bool:
        # A lock without tokens cannot be fenced: the register takes the write, and the checkers judge
        # it by lease identity (a write after the writer's grant surely ended is a stale write).
        key = self.key if key is None else key
        with self._lock:
            highest = self._max_token.get(key, 0)
            accepted = not self.fencing or token is None or token >= highest
            if accepted:
                if token is not None:
                    self._max_token[key] = max(highest, token)
                self.accepted += 1
            else:
                self.rejected += 1
            self._record(WriteRecord(client=client, key=key, token=token, time_ns=self._now_ns(),
                                     accepted=accepted, fencing=self.fencing, seq=next(self._seq)))
            return accepted
