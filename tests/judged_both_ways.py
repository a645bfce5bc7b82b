"""A hand-written history judged both ways a run's history is: loaded whole (the soak driver's verdict)
and streamed from its file (``lockchaos check``). The two must find the same; tests assert it."""

from __future__ import annotations

from pathlib import Path

from lockchaos.harness.checkers import check_history
from lockchaos.harness.checkers.findings import CheckResult
from lockchaos.harness.run.history import HistoryWriter, Record


def every_result_both_ways(records: list[Record], tmp_path: Path) -> tuple[list[CheckResult], list[CheckResult]]:
    """Every checker's result on ``records`` judged whole, then streamed from a file written of them."""
    _, whole = check_history(records)
    path = tmp_path / "history.jsonl"
    writer = HistoryWriter(path, 0)
    for rec in records:
        writer.append(rec)
    writer.close()
    _, streamed = check_history(path)
    return list(whole), list(streamed)


def judged_both_ways(records: list[Record], tmp_path: Path, checker: str) -> tuple[CheckResult, CheckResult]:
    """``checker``'s result on ``records`` judged whole, then streamed from a file written of them."""
    whole, streamed = every_result_both_ways(records, tmp_path)
    return (next(r for r in whole if r.checker == checker), next(r for r in streamed if r.checker == checker))
