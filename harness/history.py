"""The run's history: every operation and fault, one JSON object per line, flushed per event.

It is the single source the checkers read, so it must be analysable even when the run was killed
mid-write: each line is self-contained and a torn last line is ignored by the reader. Times are
nanoseconds since the run's start on the run's clock (real or virtual), so a virtual-time run with
the same seed produces the same bytes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from lockchaos.backends.base import Lease

Outcome = Literal["ok", "fail", "indeterminate"]
OpName = Literal["acquire", "renew", "release", "holder"]

HISTORY_FILE = "history.jsonl"


@dataclass(frozen=True, slots=True)
class OpRecord:
    """One client call. ``lease`` is what the backend returned (acquire/renew/holder)."""

    client: str
    op: OpName
    key: str
    args: dict[str, Any]
    invoke_ns: int
    complete_ns: int
    outcome: Outcome
    lease: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    """The exception's class (``module.QualName``): an ``error`` that starts with ``unexpected`` is one
    the adapter did not map to ``BackendUnavailable`` (its outcome is unknown all the same)."""
    type: str = field(default="op", init=False)


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """A write to the fenced register by a worker that believed it held the lock."""

    client: str
    key: str
    token: int | None
    time_ns: int
    accepted: bool
    fencing: bool
    seq: int
    type: str = field(default="write", init=False)


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """One edge of a fault window: ``phase`` is start or end."""

    fault: str
    phase: Literal["start", "end"]
    target: str
    time_ns: int
    detail: dict[str, Any] = field(default_factory=dict)
    type: str = field(default="fault", init=False)


@dataclass(frozen=True, slots=True)
class NoteRecord:
    """Run-level facts: ``meta`` first, ``end`` last, and markers such as quiesce."""

    kind: str
    time_ns: int
    data: dict[str, Any] = field(default_factory=dict)
    type: str = field(default="note", init=False)


Record = OpRecord | WriteRecord | FaultRecord | NoteRecord


def lease_dict(lease: Lease | None) -> dict[str, Any] | None:
    if lease is None:
        return None
    return {"owner": lease.owner, "token": lease.token, "ttl_ms": lease.ttl_ms}


_TIME_FIELDS = ("invoke_ns", "complete_ns", "time_ns")


def to_json(record: Record, t0: int = 0) -> str:
    """One line of JSON, times rebased to ``t0``; hand-rolled because ``asdict`` deep-copies."""
    d = {name: getattr(record, name) for name in record.__dataclass_fields__}
    if t0:
        for name in _TIME_FIELDS:
            if name in d:
                d[name] -= t0
    return orjson.dumps(d, option=orjson.OPT_SORT_KEYS).decode()


class HistoryWriter:
    """Appends records from many threads; each line is written and flushed whole.

    ``t0`` is the run's start on its clock: histories hold times relative to it, so that a
    virtual-time run is byte-for-byte stable and a real one reads in seconds since its start.
    """

    def __init__(self, path: Path, t0: int = 0) -> None:
        self.path = path
        self.t0 = t0
        self._lock = threading.Lock()
        self._file: IO[str] | None = path.open("w", encoding="utf-8")
        self.count = 0

    def append(self, record: Record) -> None:
        line = to_json(record, self.t0) + "\n"
        with self._lock:
            if self._file is None:
                return  # a straggler after close: the run is over, its verdict is sealed
            self._file.write(line)
            self._file.flush()
            self.count += 1

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


_TYPES: dict[str, type[Any]] = {
    "op": OpRecord,
    "write": WriteRecord,
    "fault": FaultRecord,
    "note": NoteRecord,
}


def parse_record(line: str) -> Record:
    raw = orjson.loads(line)
    kind = raw.pop("type")
    return _TYPES[kind](**raw)  # type: ignore[no-any-return]


def read_history(path: Path) -> Iterator[Record]:
    """Every complete record; a torn final line (killed run) is skipped, corruption elsewhere raises."""
    with path.open(encoding="utf-8") as f:
        lines = f.readlines()
    for i, line in enumerate(lines):
        try:
            yield parse_record(line)
        except (orjson.JSONDecodeError, ValueError, KeyError, TypeError):
            if i == len(lines) - 1 and not line.endswith("\n"):
                return
            raise ValueError(f"{path}:{i + 1}: not a history record") from None
