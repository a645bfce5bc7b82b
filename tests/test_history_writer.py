"""The history writer: per-record writes in real time, whole-line batches in virtual time."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lockchaos.harness.run.history import (
    BUFFERED_LINES,
    FaultRecord,
    HistoryWriter,
    NoteRecord,
    OpRecord,
    read_history,
    to_json,
)


def _note(i: int) -> NoteRecord:
    return NoteRecord("marker", 1_000 + i, {"i": i})


def test_unbuffered_writer_has_every_record_on_disk_before_close(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    w = HistoryWriter(path, t0=1_000)
    for i in range(3):
        w.append(_note(i))
    assert path.read_text().splitlines() == [to_json(_note(i), 1_000) for i in range(3)]
    w.close()


def test_buffered_writer_writes_whole_line_batches_and_the_rest_on_close(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    w = HistoryWriter(path, t0=1_000, buffered=True)
    total = BUFFERED_LINES + 5
    for i in range(total):
        w.append(_note(i))
    # what a SIGKILL now would leave: the first batch, whole lines only, a judgeable prefix
    on_disk = path.read_bytes()
    assert on_disk.endswith(b"\n") and on_disk.count(b"\n") == BUFFERED_LINES
    w.close()
    assert [r.data["i"] for r in read_history(path) if isinstance(r, NoteRecord)] == list(range(total))


def test_buffered_and_unbuffered_writers_write_the_same_bytes(tmp_path: Path) -> None:
    records = [_note(i) for i in range(BUFFERED_LINES * 2 + 3)]
    for name, buffered in (("a", False), ("b", True)):
        w = HistoryWriter(tmp_path / name, t0=1_000, buffered=buffered)
        for rec in records:
            w.append(rec)
        w.close()
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_records_keep_their_dataclass_contract_with_the_fast_init() -> None:
    a, b = FaultRecord("pause", "start", "w1#1", 5), FaultRecord(fault="pause", phase="start", target="w1#1", time_ns=5)
    assert a == b and a.detail == {} and a.detail is not b.detail and a.type == "fault"
    op = OpRecord("w1#1", "acquire", "k", {"owner": "w1#1"}, 1, 2, "fail")
    assert (op.lease, op.error, op.error_type, op.type) == (None, None, None, "op")
    assert dataclasses.replace(op, outcome="ok").outcome == "ok"
    with pytest.raises(dataclasses.FrozenInstanceError):
        op.outcome = "ok"  # type: ignore[misc]
    with pytest.raises(TypeError):
        OpRecord(client="w1#1")  # type: ignore[call-arg]
