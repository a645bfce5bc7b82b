"""lose-renew-request: for its window no renew of the holder reaches the server, the last one at the
lease's validity deadline included (thread workers in virtual time, worker processes in real time).

The renews are counted where they land: the reference fake server itself logs every renew it serves
(a subclass of ``FakeKVLock`` the run's environment creates), the windows from the run's own records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from lockchaos.backends import fake
from lockchaos.backends.base import Lease
from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.history import FaultRecord, Record
from lockchaos.harness.run.targets import backend_target
from lockchaos.harness.scenarios import find_scenario

SCENARIO = "renew-request-lost"
END_MARGIN_TTLS = 0.05
"""Real time: a window is taken to open at its first lost renew's record, a hair after it really
opened, so its end is judged this much early (a renew sent right after the end must not count)."""


class RenewLoggingServer(fake.FakeKVLock):
    """The reference server, which also notes each renew it serves: (owner, server time)."""

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.renews: list[tuple[str, int]] = []
        SERVERS.append(self)

    def _do_renew(self, key: str, owner: str, ttl_ms: int) -> Lease | None:
        self.renews.append((owner, self.server_now_ns()))
        return super()._do_renew(key, owner, ttl_ms)


SERVERS: list[RenewLoggingServer] = []


def lost_windows(records: list[Record], window_ns: int, margin_ns: int) -> list[tuple[str, int, int]]:
    """(holder, start, end) of each lose-renew-request window, on the run's clock (the server's too):
    it opens at the first lost renew of a holder not already inside one, and lasts the armed duration."""
    windows: list[tuple[str, int, int]] = []
    for rec in records:
        if not (isinstance(rec, FaultRecord) and rec.fault == "lose-renew-request" and rec.phase == "start"):
            continue
        open_ = [w for w in windows if w[0] == rec.target and w[1] <= rec.time_ns < w[1] + window_ns]
        if not open_:
            windows.append((rec.target, rec.time_ns, rec.time_ns + window_ns - margin_ns))
    return windows


def run_with_logged_renews(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, ttl_ms: int, duration_s: float,
        mode: Literal["thread", "process"], virtual: bool) -> tuple[list[Record], RenewLoggingServer]:
    """The run's records as they happen (times on the run's clock, not the history file's offsets)."""
    SERVERS.clear()
    records: list[Record] = []
    monkeypatch.setattr(fake, "FakeKVLock", RenewLoggingServer)
    scenario = find_scenario(SCENARIO)
    result = run_scenario(backend_target("fake"), scenario,
                          RunOptions(seed=1, ttl_ms=ttl_ms, duration_s=duration_s, virtual_time=virtual,
                                     workers_mode=mode), tmp_path, on_record=records.append)
    assert result.status == "ran", result.reason
    assert len(SERVERS) == 1, SERVERS
    return records, SERVERS[0]


def renews_inside(windows: list[tuple[str, int, int]], server: RenewLoggingServer) -> list[tuple[str, int, int, int]]:
    return [(holder, start, end, at) for holder, start, end in windows
            for owner, at in server.renews if owner == holder and start <= at < end]


def window_ttls() -> float:
    steps = find_scenario(SCENARIO).faults
    assert steps and {s.duration for s in steps} == {1.5}, steps
    return steps[0].duration


def test_no_renew_of_a_thread_worker_reaches_the_server_inside_its_lost_renew_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ttl_ms = 1000
    records, server = run_with_logged_renews(tmp_path, monkeypatch, ttl_ms=ttl_ms, duration_s=12.0,
                                             mode="thread", virtual=True)
    windows = lost_windows(records, round(window_ttls() * ttl_ms * 1e6), 0)
    assert len(windows) == 3, windows  # one per arming in the scenario
    # the log sees the renews that do land: the holders' own, outside their windows
    assert {h for h, _, _ in windows} & {owner for owner, _ in server.renews}, server.renews
    assert renews_inside(windows, server) == []


def test_no_renew_of_a_worker_process_reaches_the_server_inside_its_lost_renew_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ttl_ms = 300
    records, server = run_with_logged_renews(tmp_path, monkeypatch, ttl_ms=ttl_ms, duration_s=6 * ttl_ms / 1000,
                                             mode="process", virtual=False)
    windows = lost_windows(records, round(window_ttls() * ttl_ms * 1e6), round(END_MARGIN_TTLS * ttl_ms * 1e6))
    assert windows, "no lost renew at all: the fault never struck"
    assert server.renews, "the server logged no renew at all: the test sees nothing"
    assert renews_inside(windows, server) == []

