"""A history no run can have written is bad input (exit 2, its line named), not the backend's violation."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from lockchaos.harness.cli import main
from lockchaos.harness.run.history import MAX_LINE_BYTES, HistoryWriter, NoteRecord, OpRecord, read_history

MS = 1_000_000
CAPS = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": True, "fencing_tokens": True}


def _history(path: Path, *extra: str) -> Path:
    """A valid two-line history, then ``extra`` raw lines (line 3 onwards)."""
    w = HistoryWriter(path)
    w.append(NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": CAPS}))
    w.append(OpRecord("a", "acquire", "k", {"owner": "a", "ttl_ms": 1000}, 0, 5 * MS, "ok",
                      {"owner": "a", "token": 1, "ttl_ms": 1000}))
    w.close()
    with path.open("a", encoding="utf-8") as f:
        for line in extra:
            f.write(line + "\n")
    return path


def _op(invoke: str, complete: str) -> str:
    return ('{"type":"op","client":"b","op":"acquire","key":"k","args":{"owner":"b","ttl_ms":1000},'
            f'"invoke_ns":{invoke},"complete_ns":{complete},"outcome":"ok",'
            '"lease":{"owner":"b","token":2,"ttl_ms":1000},"error":null}')


@pytest.mark.parametrize(("invoke", "complete", "why"), [
    ("900000000", "100000000", "before it is invoked"),  # completes before it is invoked
    ("-5000000", "100000000", "outside the run"),  # a negative time
    ("1e40", "1e40", "not an integer"),  # absurd, as a float
    ("1" + "0" * 40, "1" + "0" * 40, "not an integer"),  # absurd, beyond 64 bits (parsed as a float)
    ("10000000000000000000", "10000000000000000000", "outside the run"),  # absurd and representable
])
def test_check_of_an_impossible_history_is_bad_input_naming_the_line(
        invoke: str, complete: str, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _history(tmp_path / "history.jsonl", _op(invoke, complete))
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3:" in err and why in err
    assert err.strip().count("\n") == 0
    assert not (tmp_path / "summary.json").exists()


def test_an_over_long_line_is_refused_without_reading_it_whole(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = _history(tmp_path / "history.jsonl", '{"type":"note","kind":"x","time_ns":1,"data":{"pad":"'
                    + "x" * (64 * MAX_LINE_BYTES) + '"}}')
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(ValueError, match=r"history\.jsonl:3: line longer than"):
            list(read_history(path))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_LINE_BYTES  # a 64 MiB line, read at most about one bound at a time
    assert time.monotonic() - started < 5
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert ":3: line longer than" in err and err.strip().count("\n") == 0


def test_a_line_just_within_the_bound_is_read(tmp_path: Path) -> None:
    head = '{"type":"note","kind":"x","time_ns":1,"data":{"pad":"'
    line = head + "x" * (MAX_LINE_BYTES - len(head) - 4) + '"}}'
    assert len(line) == MAX_LINE_BYTES - 1  # with its newline: exactly the bound
    path = _history(tmp_path / "history.jsonl", line)
    assert len(list(read_history(path))) == 3


def test_a_torn_last_line_is_still_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _history(tmp_path / "history.jsonl")
    path.write_text(path.read_text() + _op("100000000", "200000000")[:40])
    assert len(list(read_history(path))) == 2
    assert main(["check", str(path)]) == 0
    assert "truncated" in capsys.readouterr().out


def test_a_possible_history_is_still_judged_on_its_merits(tmp_path: Path) -> None:
    path = _history(tmp_path / "history.jsonl", _op("100000000", "100000000"))  # zero-length call: possible
    assert main(["check", str(path)]) == 1  # a double grant: the backend's violation
