"""The run's history: every operation and fault, one JSON object per line, written per event
(in batches of whole lines in virtual time: see ``HistoryWriter``).

It is the single source the checkers read, so it must be analysable even when the run was killed
mid-write: each line is self-contained and a torn last line is ignored by the reader. Times are
nanoseconds since the run's start on the run's clock (real or virtual), so a virtual-time run with
the same seed produces the same bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import os
import reprlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

import orjson

from lockchaos.backends.base import InfrastructureError, Lease

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


def _fast_init(cls: type[Any]) -> None:
    """Give a frozen record class an ``__init__`` that sets its slots through their own descriptors.

    The dataclass's ``__init__`` sets each field through ``object.__setattr__`` (the class is frozen),
    which makes building a record cost about twice as much; a simulated hour builds some 140,000. The
    generated one takes the same parameters with the same defaults and sets the same values.
    """
    ns: dict[str, Any] = {"MISSING": dataclasses.MISSING}
    params, body = [], []
    for i, f in enumerate(dataclasses.fields(cls)):
        ns[f"set{i}"] = getattr(cls, f.name).__set__
        if not f.init:
            ns[f"d{i}"] = f.default
            body.append(f"    set{i}(self, d{i})")
            continue
        if f.default is not dataclasses.MISSING:
            ns[f"d{i}"] = f.default
            params.append(f"{f.name}=d{i}")
        elif f.default_factory is not dataclasses.MISSING:
            ns[f"factory{i}"] = f.default_factory
            params.append(f"{f.name}=MISSING")
            body.append(f"    if {f.name} is MISSING:\n        {f.name} = factory{i}()")
        else:
            params.append(f.name)
        body.append(f"    set{i}(self, {f.name})")
    exec(f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body), ns)  # from the class's own fields
    init = ns["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init


for _cls in (OpRecord, WriteRecord, FaultRecord, NoteRecord):
    _fast_init(_cls)


def lease_dict(lease: Lease | None) -> dict[str, Any] | None:
    if lease is None:
        return None
    return {"owner": lease.owner, "token": lease.token, "ttl_ms": lease.ttl_ms}


_TIME_FIELDS = ("invoke_ns", "complete_ns", "time_ns")
_JSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE


@functools.cache
def _as_dict(cls: type[Record]) -> Callable[[Any, int], dict[str, Any]]:
    """A record class's fields as a dict, times rebased, by one generated dict display: three times
    as fast as a loop over the fields, on the writer's hot path (about 140,000 records a simulated hour)."""
    items = (f"{name!r}: r.{name}" + (" - t0" if name in _TIME_FIELDS else "") for name in cls.__dataclass_fields__)
    ns: dict[str, Any] = {}
    exec(f"def as_dict(r, t0):\n    return {{{', '.join(items)}}}", ns)  # from the dataclass's own field names
    return ns["as_dict"]  # type: ignore[no-any-return]


def to_json_bytes(record: Record, t0: int = 0) -> bytes:
    """One line of JSON with its newline, times rebased to ``t0``: what the history file holds.
    Hand-rolled because ``asdict`` deep-copies."""
    return orjson.dumps(_as_dict(type(record))(record, t0), option=_JSON_OPTIONS)  # type: ignore[arg-type]


def to_json(record: Record, t0: int = 0) -> str:
    """One line of JSON (no newline), times rebased to ``t0``."""
    return to_json_bytes(record, t0)[:-1].decode()


BUFFERED_LINES = 1024
"""A buffered writer writes its lines in batches of this many (about 100 KiB), each batch whole lines."""


class HistoryWriter:
    """Appends records from many threads; each line is written and flushed whole.

    ``t0`` is the run's start on its clock: histories hold times relative to it, so that a
    virtual-time run is byte-for-byte stable and a real one reads in seconds since its start.

    ``buffered`` (virtual time only) writes whole lines in batches of ``BUFFERED_LINES`` and the rest
    on ``close``, instead of one ``write`` + ``flush`` per record, which cost about a fifth of a
    simulated hour. A real-time run must not buffer: a real harness can be killed at any moment and
    its history is the evidence of what the servers did. A simulated run is a pure function of its
    seed: Ctrl-C and SIGTERM still reach ``close`` (the driver's ``finally``), and a SIGKILLed one
    leaves every batch written before it, whole lines only, a judgeable prefix of the same history;
    its seed reproduces the rest.
    """

    def __init__(self, path: Path, t0: int = 0, *, buffered: bool = False) -> None:
        self.path = path
        self.t0 = t0
        self._lock = threading.Lock()
        self.failure: str | None = None
        """Why the history could not be written (full or read-only disk): every later append raises it."""
        try:
            self._file: IO[bytes] | None = path.open("wb", buffering=0)
        except OSError as exc:
            raise InfrastructureError(f"cannot write {path}: {exc.strerror or exc}") from None
        self.count = 0
        """Records appended (in the file, or in the buffer of a buffered writer)."""
        self._written = 0
        self._batch = BUFFERED_LINES if buffered else 1
        self._pending = bytearray()
        """Whole lines not yet written; a bytearray, not a list of lines: a list's thousand small
        objects freed at once let the allocator hand the memory back, to fault it in again (3x slower)."""
        self._pending_lines = 0

    def append(self, record: Record) -> None:
        """Write one line (or buffer it); a write error ends the run as an infrastructure failure."""
        line = to_json_bytes(record, self.t0)
        with self._lock:
            if self.failure is not None:
                raise InfrastructureError(self.failure)
            if self._file is None:
                return  # a straggler after close: the run is over, its verdict is sealed
            self.count += 1
            if self._batch == 1:
                self._write(line, 1)
                return
            self._pending += line
            self._pending_lines += 1
            if self._pending_lines >= self._batch:
                self._write(self._pending, self._pending_lines)
                self._pending.clear()
                self._pending_lines = 0

    def _write(self, data: bytes | bytearray, lines: int) -> None:
        """Write whole lines in one go (an unbuffered file: nothing is left in user space).

        On a full disk the file keeps what fitted, as a line-at-a-time writer's would: whole lines
        and perhaps one torn last line, which the reader ignores.
        """
        assert self._file is not None
        done = 0
        try:
            while done < len(data):  # a raw file may write less than asked (a nearly full disk)
                n = self._file.write(memoryview(data)[done:])
                if not n:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                done += n
        except OSError as exc:
            self.failure = f"cannot write {self.path}: {exc.strerror or exc}"
            self._written += data.count(b"\n", 0, done)
            self._pending.clear()
            self._abandon()
            raise InfrastructureError(self.failure) from None
        self._written += lines

    def _abandon(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
        if self._written == 0:  # not one line: an empty file would only look like a broken history
            with contextlib.suppress(OSError):
                self.path.unlink()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                if self._pending_lines:
                    self._write(self._pending, self._pending_lines)
                    self._pending.clear()
                try:
                    self._file.close()
                except OSError as exc:
                    self.failure = f"cannot write {self.path}: {exc.strerror or exc}"
                    self._file = None
                    raise InfrastructureError(self.failure) from None
                self._file = None


_TYPES: dict[str, type[Any]] = {
    "op": OpRecord,
    "write": WriteRecord,
    "fault": FaultRecord,
    "note": NoteRecord,
}


MAX_LINE_BYTES = 1 << 20
"""A record is a few hundred bytes; a longer line than this is not one, and is never read whole."""
MAX_TIME_NS = 366 * 24 * 3600 * 1_000_000_000
"""Times are since the run's start and a run lasts at most 30 days: a later time cannot be true."""


class _Builder:
    """Builds one record class from a parsed line about twice as fast as its frozen ``__init__``, which
    sets each field through ``object.__setattr__``: the slots' own descriptors set them here. A line
    with a missing or unknown field goes through the real ``__init__``, for its ``TypeError``."""

    def __init__(self, cls: type[Any]) -> None:
        self.cls = cls
        fields = [f for f in dataclasses.fields(cls) if f.init]
        self.required = frozenset(f.name for f in fields if f.default is dataclasses.MISSING
                                  and f.default_factory is dataclasses.MISSING)
        self.allowed = frozenset(f.name for f in fields)
        self.setters = [(getattr(cls, f.name).__set__, f.name, f.default, f.default_factory) for f in fields]
        self.fixed = [(getattr(cls, f.name).__set__, f.default) for f in dataclasses.fields(cls) if not f.init]

    def __call__(self, raw: dict[str, Any]) -> Any:
        keys = raw.keys()
        if not (self.required <= keys <= self.allowed):
            return self.cls(**raw)
        obj = object.__new__(self.cls)
        missing = dataclasses.MISSING
        for put, name, default, factory in self.setters:
            if name in raw:
                put(obj, raw[name])
            else:
                put(obj, factory() if factory is not missing else default)
        for put, value in self.fixed:
            put(obj, value)
        return obj


_SHARED_FIELDS = frozenset({"client", "op", "key", "outcome", "error_type", "fault", "target", "kind"})
"""Fields whose few values repeat on every line: one string object per value, not one per record."""
_SHARED: dict[str, str] = {}
_MAX_SHARED = 1 << 16
"""Distinct values kept for sharing: clients, keys and names are few; past this, values are kept as read."""


def _share(value: Any) -> Any:
    if type(value) is not str:
        return value
    shared = _SHARED.get(value)
    if shared is None:
        if len(_SHARED) >= _MAX_SHARED:
            return value
        shared = _SHARED[value] = value
    return shared


_SHARED_ARGS: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}


def _share_args(value: Any) -> Any:
    """One dict per distinct call arguments (a worker's owner and TTL, the same on most of its calls),
    items and their order alike. Records are never changed once read, the dicts in them neither."""
    if type(value) is not dict or len(value) > 4:
        return value
    try:
        items = tuple(value.items())
        shared = _SHARED_ARGS.get(items)
    except TypeError:  # an unhashable argument: kept as read
        return value
    if shared is None:
        if len(_SHARED_ARGS) >= _MAX_SHARED:
            return value
        shared = _SHARED_ARGS[items] = value
    return shared


def _fast_builder(cls: type[Any], shared: bool = True) -> Callable[[dict[str, Any]], Any]:
    """The common case, a line holding exactly the class's fields (as ``to_json`` writes them), built
    by straight-line code generated once per class: a loop over the fields costs as much again. Any
    other line goes through ``_Builder`` (defaults, or the real ``__init__``'s ``TypeError``)."""
    fields = [f for f in dataclasses.fields(cls) if f.init]
    fixed = [f for f in dataclasses.fields(cls) if not f.init]
    ns: dict[str, Any] = {"new": object.__new__, "cls": cls, "slow": _Builder(cls),
                          "names": frozenset(f.name for f in fields), "share": _share,
                          "share_args": _share_args}
    body = ["def build(raw):", "    if raw.keys() != names:", "        return slow(raw)", "    obj = new(cls)"]
    for n, f in enumerate(fields):
        ns[f"put{n}"] = getattr(cls, f.name).__set__
        value = f"raw[{f.name!r}]"
        if shared and f.name in _SHARED_FIELDS:
            body.append(f"    put{n}(obj, share({value}))")
        elif shared and f.name == "args":
            body.append(f"    put{n}(obj, share_args({value}))")
        else:
            body.append(f"    put{n}(obj, {value})")
    for n, f in enumerate(fixed):
        ns[f"fix{n}"], ns[f"val{n}"] = getattr(cls, f.name).__set__, f.default
        body.append(f"    fix{n}(obj, val{n})")
    body.append("    return obj")
    exec("\n".join(body), ns)  # code generated from the dataclass's own field names, nothing read
    return ns["build"]  # type: ignore[no-any-return]


_BUILDERS = {kind: _fast_builder(cls) for kind, cls in _TYPES.items()}
_PASSING_BUILDERS = {kind: _fast_builder(cls, shared=False) for kind, cls in _TYPES.items()}
"""For records read and let go (``read_history(kept=False)``): sharing their strings would only cost time."""


def parse_record(line: str | bytes) -> Record:
    raw = orjson.loads(line)
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    kind = raw.pop("type")
    return _BUILDERS[kind](raw)  # type: ignore[no-any-return]


def _time_fields_of(cls: type[Any]) -> tuple[str, ...]:
    """The time fields a record class has, looked up once per class rather than once per record."""
    names = _TIME_FIELDS_OF.get(cls)
    if names is None:
        names = _TIME_FIELDS_OF[cls] = tuple(name for name in _TIME_FIELDS if name in cls.__dataclass_fields__)
    return names


_TIME_FIELDS_OF: dict[type[Any], tuple[str, ...]] = {}


def impossibility(rec: Record) -> str | None:
    """Why ``rec`` cannot have been recorded by any run (bad input, not a backend's fault), or None."""
    for name in _time_fields_of(type(rec)):
        t = getattr(rec, name)
        if not isinstance(t, int) or isinstance(t, bool):
            return f"{name} is not an integer number of nanoseconds: {short_repr(t)}"
        if not 0 <= t <= MAX_TIME_NS:
            return f"{name} {t} is outside the run (0 to {MAX_TIME_NS} ns)"
    if isinstance(rec, OpRecord) and rec.complete_ns < rec.invoke_ns:
        return f"the {short_repr(rec.op)} completes ({rec.complete_ns}) before it is invoked ({rec.invoke_ns})"
    return malformed(rec)


OP_NAMES = frozenset({"acquire", "renew", "release", "holder"})
OUTCOMES = frozenset({"ok", "fail", "indeterminate"})
MAX_TTL_MS = MAX_TIME_NS // 1_000_000
"""A lease no longer than the longest run: a TTL beyond it is no lock's, and only overflows arithmetic."""


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 40, 40


def short_repr(value: object) -> str:
    """A hostile value in one short line of an error message: depth and length bounded (``repr`` of a
    value nested a thousand deep would raise RecursionError)."""
    text = _REPR.repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _ttl(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_TTL_MS


def malformed(rec: Record) -> str | None:
    """Which field of ``rec`` holds a value of a type no run writes (a string for a dict, an unknown
    op), or None: the checkers take every field's type on trust, so a hostile file is refused here,
    with its line, instead of raising deep inside a checker."""
    kind = type(rec)
    if kind is OpRecord:
        return _op_malformed(rec)  # type: ignore[arg-type]
    if kind is WriteRecord:
        w: WriteRecord = rec  # type: ignore[assignment]
        if type(w.client) is not str or type(w.key) is not str:
            return f"a write's client and key must be strings, got {short_repr((w.client, w.key))}"
        if not (w.token is None or type(w.token) is int) or type(w.seq) is not int:
            return f"a write's token and seq must be integers, got {short_repr((w.token, w.seq))}"
        if type(w.accepted) is not bool or type(w.fencing) is not bool:
            return f"a write's accepted and fencing must be true or false, got {short_repr((w.accepted, w.fencing))}"
        return None
    if kind is FaultRecord:
        f: FaultRecord = rec  # type: ignore[assignment]
        if type(f.fault) is not str or type(f.target) is not str:
            return f"a fault's name and target must be strings, got {short_repr((f.fault, f.target))}"
        if f.phase not in ("start", "end"):
            return f"a fault's phase must be start or end, got {short_repr(f.phase)}"
        if type(f.detail) is not dict:
            return f"a fault's detail must be an object, got {short_repr(f.detail)}"
        return None
    n: NoteRecord = rec  # type: ignore[assignment]
    if type(n.kind) is not str or type(n.data) is not dict:
        return f"a note's kind must be a string and its data an object, got {short_repr((n.kind, n.data))}"
    return None


def _op_malformed(rec: OpRecord) -> str | None:
    args, lease, error, error_type = rec.args, rec.lease, rec.error, rec.error_type
    # The common case in one expression (this runs once per call read): every field of the type a run writes.
    if type(rec.client) is str and type(rec.key) is str and type(op := rec.op) is str and op in OP_NAMES \
            and type(outcome := rec.outcome) is str and outcome in OUTCOMES and type(args) is dict \
            and type(args.get("owner", "")) is str and type(ttl := args.get("ttl_ms", 0)) is int \
            and 0 <= ttl <= MAX_TTL_MS and (error is None or type(error) is str) \
            and (error_type is None or type(error_type) is str):
        if lease is None:
            return None
        if type(lease) is dict and type(lease.get("owner", "")) is str \
                and ((token := lease.get("token")) is None or type(token) is int) \
                and type(ttl := lease.get("ttl_ms")) in (int, float) and 0 <= ttl <= MAX_TTL_MS:
            return None  # a float TTL (an adapter's seconds * 1000) is read as its integer part, as it always was
        return (f"a lease must be null or an object with a string owner, an integer token or null and ttl_ms "
                f"0 to {MAX_TTL_MS}, got {short_repr(lease)}")
    if type(rec.client) is not str or type(rec.key) is not str:
        return f"a call's client and key must be strings, got {short_repr((rec.client, rec.key))}"
    if type(rec.op) is not str or rec.op not in OP_NAMES:
        return f"unknown op {short_repr(rec.op)} (one of {', '.join(sorted(OP_NAMES))})"
    if type(rec.outcome) is not str or rec.outcome not in OUTCOMES:
        return f"unknown outcome {short_repr(rec.outcome)} (one of {', '.join(sorted(OUTCOMES))})"
    if type(args) is not dict:
        return f"a call's args must be an object, got {short_repr(args)}"
    if type(args.get("owner", "")) is not str or not _ttl(args.get("ttl_ms", 0)):
        return f"a call's owner must be a string and its ttl_ms 0 to {MAX_TTL_MS}, got {short_repr(args)}"
    return f"a call's error and error_type must be strings or null, got {short_repr((error, error_type))}"


READ_BLOCK = 1 << 18
"""Bytes read at a time: lines are split out of blocks, never read whole before their length is known."""


def _blocks(f: IO[bytes]) -> Iterator[tuple[list[bytes], bool]]:
    """The file's lines without their newlines, a block's worth at a time, and whether they all had
    one (only a torn last line has not, alone in the last block).

    A line longer than ``MAX_LINE_BYTES`` is yielded as soon as that is known, cut short (the caller
    refuses it): at most about one bound plus one block is ever held."""
    parts: list[bytes] = []
    size = 0
    while block := f.read(READ_BLOCK):
        first = block.find(b"\n")
        if first < 0:
            parts.append(block)
            size += len(block)
            if size > MAX_LINE_BYTES:
                yield [b"".join(parts)[:MAX_LINE_BYTES + 1]], False
                return
            continue
        lines = block.split(b"\n")
        if parts:
            parts.append(lines[0])
            lines[0] = b"".join(parts)
        last = lines.pop()
        parts, size = ([last], len(last)) if last else ([], 0)
        yield lines, True
    if parts:
        yield [b"".join(parts)], False


def numbered_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """Each line of the file without its newline, numbered from 1, and whether it had one (only a torn
    last line has not): for a reader that parses only some lines (``checkers/stream.py``). A line longer
    than ``MAX_LINE_BYTES`` comes cut short, one byte past the bound."""
    number = 0
    with path.open("rb") as f:
        for lines, whole in _blocks(f):
            for line in lines:
                number += 1
                yield number, line, whole


def possible_record(line: bytes) -> Record:
    """The record on one line, as ``read_history`` reads it; ``ValueError`` if it is none or impossible."""
    try:
        raw = orjson.loads(line)
        kind = raw.pop("type")
        rec: Record = _BUILDERS[kind](raw)
    except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError):
        raise ValueError("not a history record") from None
    why = impossibility(rec)
    if why is not None:
        raise ValueError(f"impossible record: {why}")
    return rec


def read_history(path: Path, *, kept: bool = True) -> Iterator[Record]:
    """Every complete record; a torn final line (killed run) is skipped, corruption elsewhere raises.

    Lines are read in bounded pieces: an over-long line is refused without being loaded whole, and
    a record no run can have written (an op completing before its invocation, a time outside the
    run) is refused with its line number: ``ValueError`` for both, which ``check`` reports as bad input.
    ``kept=False``: the caller lets each record go before the next (a streamed judgement), so their
    repeated strings and arguments are not shared (which saves memory only on records kept).
    """
    builders = _BUILDERS if kept else _PASSING_BUILDERS
    loads = orjson.loads
    number = 0
    with path.open("rb") as f:
        for lines, whole in _blocks(f):
            for line in lines:
                number += 1
                if len(line) > MAX_LINE_BYTES:
                    raise ValueError(f"{path}:{number}: line longer than {MAX_LINE_BYTES} bytes: not a history record")
                try:
                    raw = loads(line)
                    kind = raw.pop("type")
                    rec: Record = builders[kind](raw)
                except (orjson.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError):
                    if not whole:  # only the last line can lack its newline: torn by a kill
                        return
                    raise ValueError(f"{path}:{number}: not a history record") from None
                # The common case of ``impossibility`` (plain integer times within the run, in order), inline.
                if kind == "op":
                    t, u = raw["invoke_ns"], raw["complete_ns"]
                    possible = type(t) is int and type(u) is int and 0 <= t <= u <= MAX_TIME_NS
                else:
                    t = raw["time_ns"]
                    possible = type(t) is int and 0 <= t <= MAX_TIME_NS
                why = malformed(rec) if possible else impossibility(rec)
                if why is not None:
                    raise ValueError(f"{path}:{number}: impossible record: {why}")
                yield rec
