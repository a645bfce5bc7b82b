"""Scheduling lateness: a real-time run records where its machine ran late, and the checkers let an
indeterminate call take effect that much later (a request waits in a socket until the server runs).

Seen in CI: a stress run's reset-storm left an acquire indeterminate whose SET reached Redis 10-15 ms
after its client gave up (32 threads on two cores); its lease then outlived the checker's fixed 5 ms
slack and a correct Redis was reported for refusing a free key.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

from lockchaos.backends import open_backend
from lockchaos.backends.base import BackendUnavailable, Lease
from lockchaos.backends.fake import FakeClient, FakeKVLock
from lockchaos.harness.checkers.findings import CheckResult
from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.history import NoteRecord, OpRecord, Record, read_history
from lockchaos.harness.run.lateness import LATE_NOTE, REPORTED_NS, SchedulingProbe, ServerProbe, late_window
from lockchaos.harness.run.targets import backend_target
from lockchaos.harness.scenarios import find_scenario
from lockchaos.harness.servers.process import RedisServer
from tests.judged_both_ways import judged_both_ways

MS = 1_000_000


def meta() -> NoteRecord:
    caps = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": True, "fencing_tokens": True}
    return NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": caps, "plan": {"retry_every": 0.1}})


def acq(name: str, t0: int, t1: int, outcome: str, token: int = 1) -> OpRecord:
    lease = {"owner": name, "token": token, "ttl_ms": 1000} if outcome == "ok" else None
    error = "BackendUnavailable: connection reset" if outcome == "indeterminate" else None
    return OpRecord(name, "acquire", "k", {"owner": name, "ttl_ms": 1000}, t0 * MS, t1 * MS,
                    outcome, lease, error)  # type: ignore[arg-type]


def late(end_ms: int, late_ms: float, window_ms: float = 100) -> NoteRecord:
    return NoteRecord(LATE_NOTE, end_ms * MS, {"window_ms": window_ms, "late_ms": late_ms})


def _reset_then_refused(*notes: Record) -> list[Record]:
    """a's acquire is cut by a reset at 1.010 s (indeterminate: it may have reached the server); b is
    refused at 2.025 s: free by then unless a's SET landed more than ~10 ms after a gave up. b's grant
    is token 1: no token was skipped, so nothing but lateness can show that a's acquire landed late
    (tests/test_unheard_token_gap.py)."""
    return [meta(), acq("a", 1000, 1010, "indeterminate"), *notes, acq("b", 2025, 2027, "fail"),
            acq("b", 2200, 2202, "ok", token=1), NoteRecord("end", 3000 * MS, {})]


def conformance(records: list[Record], tmp_path: Path) -> tuple[CheckResult, CheckResult]:
    return judged_both_ways(records, tmp_path, "conformance")


def test_a_refusal_just_past_an_indeterminate_acquire_s_reach_is_flagged_where_the_machine_kept_time(
        tmp_path: Path) -> None:
    for result in conformance(_reset_then_refused(), tmp_path):
        assert [v.kind for v in result.violations] == ["refused-free-key"]


def test_an_indeterminate_acquire_reaches_as_late_as_the_machine_ran_around_it(tmp_path: Path) -> None:
    for result in conformance(_reset_then_refused(late(1100, 15)), tmp_path):
        assert not result.violations


def test_lateness_far_from_the_call_widens_nothing(tmp_path: Path) -> None:
    for result in conformance(_reset_then_refused(late(1500, 15), late(900, 30, window_ms=50)), tmp_path):
        assert [v.kind for v in result.violations] == ["refused-free-key"]


def test_a_long_server_window_counts_behind_a_short_harness_window_that_ends_first(tmp_path: Path) -> None:
    # The two probes' windows interleave: in end order, the harness's short window (1130-1150 ms, after
    # the call's reach) comes before the server's long one (a read that hung: 1050-1200 ms), which
    # overlaps the call's reach and is the one that widens it.
    notes = (late(1150, 3, window_ms=20), late(1200, 15, window_ms=150))
    for result in conformance(_reset_then_refused(*notes), tmp_path):
        assert not result.violations


def test_a_malformed_late_note_is_ignored_not_trusted() -> None:
    assert late_window(100 * MS, {"window_ms": 100, "late_ms": -5}) is None
    assert late_window(100 * MS, {"window_ms": "x", "late_ms": 5}) is None
    assert late_window(100 * MS, {"late_ms": 5}) is None
    window = late_window(100 * MS, {"window_ms": 100, "late_ms": 7.5})
    assert window is not None and (window.start_ns, window.end_ns, window.late_ns) == (0, 100 * MS, 7_500_000)


def test_the_probe_records_the_window_in_which_its_wake_up_came_late() -> None:
    # The probe's clock jumps 30 ms once, as a machine that did not run it for 30 ms would look.
    jumped = threading.Event()
    calls = 0

    def now_ns() -> int:
        nonlocal calls
        calls += 1
        if calls == 21:  # a wake-up's reading (1: the window's start, then due, now, due, now...)
            jumped.set()
        return time.monotonic_ns() + (30 * MS if jumped.is_set() else 0)

    notes: list[NoteRecord] = []
    probe = SchedulingProbe(now_ns, notes.append)
    probe.start()
    assert jumped.wait(5)
    time.sleep(0.25)
    probe.stop()
    assert [n.kind for n in notes if n.data["late_ms"] >= 30] == [LATE_NOTE]
    assert all(n.data["late_ms"] * MS > REPORTED_NS for n in notes)


def test_a_real_time_run_records_where_a_gil_hog_made_it_late_and_ends_with_its_end_note(tmp_path: Path) -> None:
    # A thread that keeps the GIL for 40 ms at a time: every other thread, the probe too, waits for it.
    switch = sys.getswitchinterval()
    stop = threading.Event()

    def hog() -> None:
        while not stop.is_set():
            sum(range(10_000))

    sys.setswitchinterval(0.04)
    hogging = threading.Thread(target=hog, daemon=True)
    hogging.start()
    try:
        r = run_scenario(backend_target("fake"), find_scenario("holder-crash"), RunOptions(seed=1, duration_s=1),
                         tmp_path)
    finally:
        stop.set()
        hogging.join()
        sys.setswitchinterval(switch)
    records = list(read_history(r.run_dir / "history.jsonl"))
    assert isinstance(records[-1], NoteRecord) and records[-1].kind == "end"
    windows = [late_window(n.time_ns, n.data) for n in records if isinstance(n, NoteRecord) and n.kind == LATE_NOTE]
    assert windows and all(w is not None for w in windows)
    assert max(w.late_ns for w in windows if w is not None) >= 20 * MS


def test_a_virtual_time_run_records_no_lateness(tmp_path: Path) -> None:
    r = run_scenario(backend_target("fake"), find_scenario("holder-crash"),
                     RunOptions(seed=1, duration_s=5, virtual_time=True), tmp_path)
    records = read_history(r.run_dir / "history.jsonl")
    assert not [n for n in records if isinstance(n, NoteRecord) and n.kind == LATE_NOTE]


@pytest.mark.redis
def test_the_server_probe_records_how_long_a_frozen_redis_kept_a_request_waiting() -> None:
    # The harness's own process keeps time throughout; only the server stops (SIGSTOP) for 300 ms.
    notes: list[NoteRecord] = []
    with RedisServer(persistence=False) as server:
        probe = ServerProbe(time.monotonic_ns, notes.append, lambda: open_backend(server.url))
        probe.start()
        time.sleep(0.3)
        server.pause()
        time.sleep(0.3)
        server.resume()
        time.sleep(0.3)
        probe.stop()
    waits = [n.data["late_ms"] for n in notes if n.data["where"] == "server"]
    assert waits and max(waits) >= 250, notes


def test_the_server_probe_counts_a_call_that_fails_for_as_long_as_it_took() -> None:
    class Stalling(FakeClient):
        calls = 0

        def holder(self, key: str) -> Lease | None:
            Stalling.calls += 1
            if Stalling.calls == 5:
                time.sleep(0.04)
                raise BackendUnavailable("no answer")
            return super().holder(key)

    notes: list[NoteRecord] = []
    probe = ServerProbe(time.monotonic_ns, notes.append, lambda: Stalling(FakeKVLock()))
    probe.start()
    time.sleep(0.3)
    probe.stop()
    windows = [late_window(n.time_ns, n.data) for n in notes]
    assert Stalling.calls > 5 and any(w is not None and w.late_ns >= 40 * MS for w in windows), notes
