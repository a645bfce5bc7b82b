"""Bounded inputs: an absurd --duration is refused, a long one starts at once and stops on SIGTERM."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from lockchaos.harness.cli import main
from lockchaos.harness.scenarios import soak_schedule

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("duration", ["1e9", "2592001", "inf", "nan"])
def test_absurd_duration_is_refused_with_exit_2_and_nothing_created(
        duration: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    started = time.monotonic()
    assert main(["soak", "--backend", "fake", "--virtual-time", "--scenario", "soak", "--duration", duration,
                 "--out", str(out)]) == 2
    assert time.monotonic() - started < 5
    assert not out.exists()
    err = capsys.readouterr().err
    assert "--duration" in err and err.strip().count("\n") == 0


def test_a_month_long_schedule_is_drawn_lazily() -> None:
    started = time.monotonic()
    steps = soak_schedule(30 * 24 * 3600 * 1000.0, seed=7)  # a month of 1 ms TTLs: about a billion faults
    first = list(itertools.islice(steps, 1000))
    assert time.monotonic() - started < 1
    assert [s.at for s in first] == sorted(s.at for s in first)


def test_the_lazy_schedule_is_the_one_the_seed_always_drew() -> None:
    assert list(soak_schedule(30, seed=3)) == list(soak_schedule(30, seed=3))
    assert [s.fault for s in soak_schedule(30, seed=3)] == [
        s.fault for s in itertools.islice(soak_schedule(10**6, seed=3), len(list(soak_schedule(30, seed=3))))]
