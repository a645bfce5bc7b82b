"""``lockchaos check`` and the soak's verdicts: exit codes, truncated histories, planted violations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockchaos.harness.cli import main
from lockchaos.harness.run.history import HistoryWriter, NoteRecord, OpRecord

MS = 1_000_000


def _planted(path: Path) -> Path:
    """A history in which two owners were granted the lock at once."""
    w = HistoryWriter(path)
    caps = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": True, "fencing_tokens": True}
    w.append(NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": caps}))
    w.append(OpRecord("a", "acquire", "k", {"owner": "a", "ttl_ms": 1000}, 0, 5 * MS, "ok",
                      {"owner": "a", "token": 1, "ttl_ms": 1000}))
    w.append(OpRecord("b", "acquire", "k", {"owner": "b", "ttl_ms": 1000}, 100 * MS, 105 * MS, "ok",
                      {"owner": "b", "token": 2, "ttl_ms": 1000}))
    w.close()
    return path


def test_check_of_a_clean_virtual_run_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["soak", "--backend", "fake", "--virtual-time", "--scenario", "holder-crash", "--seed", "4",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["check", str(out)]) == 0
    summary = json.loads((out / "fake" / "holder-crash" / "summary.json").read_text())
    assert summary["checks"]["verdict"] == "pass"
    assert summary["checks"]["checkers"]["liveness"]["stats"]["failovers"] == 1
    assert "--seed 4" in summary["reproduce"]


def test_check_of_a_planted_violation_exits_1_and_names_it(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = _planted(tmp_path / "history.jsonl")
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "exclusion-grants/double-grant" in out and "history lines 2, 3" in out


def test_check_judges_a_truncated_history_up_to_its_last_complete_event(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = _planted(tmp_path / "history.jsonl")
    path.write_text(path.read_text() + '{"type":"op","client":"c","op":"acq')
    assert main(["check", str(path)]) == 1
    assert "truncated" in capsys.readouterr().out


def test_known_unsafe_passes_unless_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["soak", "--backend", "fake", "--virtual-time", "--scenario", "holder-pause", "--seed", "4",
                 "--out", str(out)]) == 0
    assert main(["check", str(out)]) == 0
    assert main(["check", "--strict", str(out)]) == 1
    assert "known-unsafe" in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    (None, "no history.jsonl here"),
    ("not json at all\n{}\n", "not a readable lockchaos history"),
    ('{"type":"op"}\n', "not a readable lockchaos history"),
])
def test_check_of_a_missing_or_corrupt_history_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       content: str | None, message: str) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    if content is not None:
        (target / "history.jsonl").write_text(content)
    assert main(["check", str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
