"""Hostile input gets one clear line and exit status 2, or an honest verdict: never a traceback or a hang.

``lockchaos check`` is fed files nobody wrote a test for (mutations of a real recorded history, drawn by
hypothesis, and named nasty cases: binary, FIFOs, loops, huge lines, wrong-typed fields of every record
kind); the other subcommands hostile arguments and hostile ``--adapter`` modules. The contract
(DESIGN.md): ``check`` exits 0 or 1 with a verdict, or 2 with exactly one line on stderr; bad arguments
exit 2 with one line before anything runs (no run directory); nothing ever prints a traceback or hangs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lockchaos.harness.contract.runner as contract_runner
import lockchaos.harness.run.targets as targets
from lockchaos.harness.cli import main
from lockchaos.harness.run.history import MAX_LINE_BYTES

CASE_LIMIT_S = 20.0
"""Every case ends well within this on a loaded 2-core machine (each takes well under a second alone);
past it the case counts as a hang."""

FUZZ = settings(max_examples=int(os.environ.get("LOCKCHAOS_FUZZ_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
"""Modest by default (the module runs in seconds); ``LOCKCHAOS_FUZZ_EXAMPLES=2000`` for a deeper hunt."""


@dataclass(frozen=True)
class Outcome:
    status: int
    out: str
    err: str
    seconds: float


def run_cli(argv: Sequence[str], *, limit_s: float = CASE_LIMIT_S) -> Outcome:
    """``lockchaos ARGV`` in-process, in a thread so that a hang fails the test instead of blocking it."""
    out, err = io.StringIO(), io.StringIO()
    box: list[int | BaseException] = []

    def call() -> None:
        try:
            box.append(main(list(argv)))
        except BaseException as exc:  # the assertion in the caller shows it
            box.append(exc)

    started = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        worker = threading.Thread(target=call, name="hostile-cli", daemon=True)
        worker.start()
        worker.join(limit_s)
    seconds = time.monotonic() - started
    assert box, f"lockchaos {argv} did not return within {limit_s} s (a hang)"
    result = box[0]
    if isinstance(result, BaseException):
        raise AssertionError(f"lockchaos {argv} raised {type(result).__name__}: {result}") from result
    return Outcome(result, out.getvalue(), err.getvalue(), seconds)


def assert_contract(o: Outcome, *, allowed: frozenset[int] = frozenset({0, 1, 2})) -> None:
    """Exit 0/1 (a verdict) or 2 with exactly one line on stderr naming the problem; never a traceback."""
    assert "Traceback" not in o.out + o.err, o.out + o.err
    assert o.status in allowed, (o.status, o.out[-2000:], o.err)
    if o.status == 2:
        lines = o.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lockchaos: error: "), o.err
        assert len(lines[0]) > len("lockchaos: error: ") + 10, o.err  # it names the problem
    assert o.seconds < CASE_LIMIT_S


def check(path: Path) -> Outcome:
    o = run_cli(["check", str(path)])
    assert_contract(o)
    return o


# -- a real history, recorded once per session by a virtual-time run of the fake ----------------------------

@pytest.fixture(scope="module")
def recorded_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A soak's directory holding one run (``fake/holder-crash``): history, summary, reports."""
    out = tmp_path_factory.mktemp("recorded") / "run"
    o = run_cli(["soak", "--backend", "fake", "--virtual-time", "--scenario", "holder-crash", "--seed", "4",
                 "--duration", "3", "--out", str(out), "--quiet"], limit_s=120)
    assert o.status == 0, o.out + o.err
    return out


@pytest.fixture(scope="module")
def recorded(recorded_run: Path) -> list[dict[str, Any]]:
    lines = (recorded_run / "fake" / "holder-crash" / "history.jsonl").read_bytes().splitlines()
    records = [orjson.loads(line) for line in lines]
    kinds = {(r["type"], r.get("kind")) for r in records}
    assert {("note", "meta"), ("op", None), ("write", None), ("fault", None), ("note", "end")} <= kinds, kinds
    return records


def write_history(directory: Path, records: Sequence[object], tail: bytes = b"") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"history-{uuid.uuid4().hex[:8]}.jsonl"
    path.write_bytes(deepened(b"".join(orjson.dumps(r) + b"\n" for r in records) + tail))
    return path


def test_the_recorded_history_passes_unmutated(recorded: list[dict[str, Any]], tmp_path: Path) -> None:
    """The baseline the mutations start from: a clean verdict, so a 2 below is the mutation's doing."""
    assert check(write_history(tmp_path, recorded)).status == 0


# -- hypothesis: every field of every record kind, wrong-typed or absurd ---------------------------------

DELETE = object()
DEEP = "lockchaos-hostile-deep-value"
"""Stands for a list nested 1000 deep (orjson reads up to 1024 levels, writes only 255): substituted in
the bytes written. Quoting such a value with ``str`` or ``repr`` raises RecursionError."""
DEEP_JSON = b"[" * 1000 + b"]" * 1000


def deepened(text: bytes) -> bytes:
    return text.replace(f'"{DEEP}"'.encode(), DEEP_JSON)


HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e308, -1e308, 5e-324, 0.5]),
    st.text(max_size=8), st.sampled_from(["", "x", "acquire", "ok", "start", "meta", "end", "late", "9", DEEP]),
    st.lists(st.integers(min_value=-3, max_value=3), max_size=3),
    st.dictionaries(st.sampled_from(["owner", "token", "ttl_ms", "x"]), st.integers(-5, 5), max_size=3),
    st.recursive(st.integers(0, 3), lambda inner: st.lists(inner, max_size=2) | st.dictionaries(
        st.text(max_size=2), inner, max_size=2), max_leaves=6),
)


def _paths(value: object, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field of a record, nested ones too (``data.capabilities.ttl_granularity_ms``, ``lease.token``)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _representatives(records: list[dict[str, Any]]) -> list[int]:
    """One line of each record shape (kind, note kind, op, outcome, fault phase): mutating every line
    would repeat the same few shapes a hundred times."""
    seen: dict[tuple[object, ...], int] = {}
    for i, r in enumerate(records):
        seen.setdefault((r["type"], r.get("kind"), r.get("op"), r.get("outcome"), r.get("phase")), i)
    return sorted(seen.values())


@FUZZ
@given(data=st.data())
def test_check_of_a_record_with_a_hostile_field_gives_a_verdict_or_one_line(
        recorded: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    records = json.loads(json.dumps(recorded))  # a deep copy
    index = data.draw(st.sampled_from(_representatives(records)), label="line")
    where = data.draw(st.sampled_from(list(_paths(records[index]))), label="field")
    value = data.draw(st.one_of(st.just(DELETE), HOSTILE_VALUES), label="value")
    parent: Any = records[index]
    for step in where[:-1]:
        parent = parent[step]
    if value is DELETE:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    check(write_history(tmp_path_factory.mktemp("field"), records))


def _mutated(value: Any, data: st.DataObject) -> Any:
    """``value`` (a deep copy) with one field, at any depth, replaced by a hostile value or deleted."""
    value = json.loads(json.dumps(value))
    where = data.draw(st.sampled_from(list(_paths(value))), label="field")
    replacement = data.draw(st.one_of(st.just(DELETE), HOSTILE_VALUES), label="value")
    parent: Any = value
    for step in where[:-1]:
        parent = parent[step]
    if replacement is DELETE:
        del parent[where[-1]]
    else:
        parent[where[-1]] = replacement
    return value


@FUZZ
@given(data=st.data())
def test_report_of_a_run_with_a_hostile_summary_or_history_field_writes_or_exits_2(
        recorded_run: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    """``report`` reads the summary.json a run wrote as well as its history: a hostile field in either
    is exit 2 with one line, or the report is written from the history (verdicts judged again)."""
    top = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(recorded_run, top)
    run = top / "fake" / "holder-crash"
    if data.draw(st.booleans(), label="mutate the summary"):
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_bytes(deepened(json.dumps(_mutated(summary, data)).encode()))
    else:
        records = [orjson.loads(line) for line in (run / "history.jsonl").read_bytes().splitlines()]
        index = data.draw(st.sampled_from(_representatives(records)), label="line")
        records[index] = _mutated(records[index], data)
        (run / "history.jsonl").write_bytes(deepened(b"".join(orjson.dumps(r) + b"\n" for r in records)))
    for target in (run, top):
        o = run_cli(["report", str(target)])
        assert_contract(o, allowed=frozenset({0, 2}))


@FUZZ
@given(data=st.data())
def test_report_of_a_soak_with_a_hostile_index_writes_or_exits_2(
        recorded_run: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    top = tmp_path_factory.mktemp("index") / "run"
    shutil.copytree(recorded_run, top)
    index = json.loads((top / "index.json").read_text())
    (top / "index.json").write_bytes(deepened(json.dumps(_mutated(index, data)).encode()))
    assert_contract(run_cli(["report", str(top)]), allowed=frozenset({0, 2}))


@pytest.mark.parametrize("name", ["summary.json", "index.json"])
def test_check_and_report_of_a_soak_with_a_deeply_nested_summary_or_index(
        name: str, recorded_run: Path, tmp_path: Path) -> None:
    """Python's json (summaries, indexes) raises RecursionError, not ValueError, on a value nested 1000 deep."""
    top = tmp_path / "soak"
    shutil.copytree(recorded_run, top)
    (top / "fake" / "holder-crash" / name if name == "summary.json" else top / name).write_bytes(DEEP_JSON)
    assert_contract(run_cli(["check", str(top)]), allowed=frozenset({0}))
    assert_contract(run_cli(["report", str(top)]), allowed=frozenset({0, 2}))


@pytest.mark.parametrize("elsewhere", ["absolute", "../escape", "symlink"])
def test_report_never_writes_outside_the_soak_an_index_names(
        elsewhere: str, recorded_run: Path, tmp_path: Path) -> None:
    """A hostile index.json naming a run directory outside the soak (``/etc``, ``../..``, a symlink out)
    is refused: ``report`` writes report.html into every run directory the index names."""
    top, victim = tmp_path / "soak", tmp_path / "victim"
    shutil.copytree(recorded_run, top)
    victim.mkdir()
    shutil.copy(top / "fake" / "holder-crash" / "history.jsonl", victim / "history.jsonl")
    (top / "out").symlink_to(victim)
    name = {"absolute": str(victim), "../escape": "../victim", "symlink": "out"}[elsewhere]
    index = json.loads((top / "index.json").read_text())
    index["runs"][0]["dir"] = name
    (top / "index.json").write_text(json.dumps(index))
    o = run_cli(["report", str(top)])
    assert_contract(o, allowed=frozenset({2}))
    assert "is not under" in o.err
    assert not (victim / "report.html").exists()


@FUZZ
@given(data=st.data())
def test_check_of_shuffled_cut_or_repeated_lines_gives_a_verdict_or_one_line(
        recorded: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    lines = [orjson.dumps(r) for r in recorded]
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        i = data.draw(st.integers(0, len(lines) - 1), label="at")
        edit = data.draw(st.sampled_from(["drop", "repeat", "move", "cut", "garbage", "shift-time"]), label="edit")
        if edit == "drop" and len(lines) > 1:
            del lines[i]
        elif edit == "repeat":
            lines.insert(data.draw(st.integers(0, len(lines))), lines[i])
        elif edit == "move":
            lines.insert(data.draw(st.integers(0, len(lines))), lines.pop(i))
        elif edit == "cut":
            lines[i] = lines[i][:data.draw(st.integers(0, max(0, len(lines[i]) - 1)))]
        elif edit == "garbage":
            lines[i] = data.draw(st.binary(max_size=40))
        else:  # times going backwards, or past the end of any run
            try:
                raw = orjson.loads(lines[i])
            except orjson.JSONDecodeError:
                raw = None
            if isinstance(raw, dict):
                for name in ("time_ns", "invoke_ns", "complete_ns"):
                    if isinstance(raw.get(name), int):
                        raw[name] = data.draw(st.integers(-(2**63), 2**63 - 1), label=name)
                lines[i] = orjson.dumps(raw)
    body = b"\n".join(lines) + (b"\n" if data.draw(st.booleans(), label="final newline") else b"")
    directory = tmp_path_factory.mktemp("lines")
    (directory / "history.jsonl").write_bytes(body)
    check(directory / "history.jsonl")


@FUZZ
@given(data=st.data())
def test_check_of_a_history_with_flipped_bytes_gives_a_verdict_or_one_line(
        recorded: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    body = bytearray(b"".join(orjson.dumps(r) + b"\n" for r in recorded))
    for _ in range(data.draw(st.integers(1, 8), label="flips")):
        body[data.draw(st.integers(0, len(body) - 1))] = data.draw(st.integers(0, 255))
    check(write_history(tmp_path_factory.mktemp("bytes"), [], bytes(body)))


# -- named hostile files ---------------------------------------------------------------------------------

def _with(records: list[dict[str, Any]], index: int, **fields: object) -> list[dict[str, Any]]:
    copy = json.loads(json.dumps(records))
    copy[index].update(fields)
    return copy


def _meta(records: list[dict[str, Any]], **data: object) -> list[dict[str, Any]]:
    copy = json.loads(json.dumps(records))
    copy[0]["data"].update(data)
    return copy


def _caps(records: list[dict[str, Any]], **caps: object) -> list[dict[str, Any]]:
    copy = json.loads(json.dumps(records))
    copy[0]["data"]["capabilities"].update(caps)
    return copy


def _first(records: list[dict[str, Any]], kind: str) -> int:
    return next(i for i, r in enumerate(records) if r["type"] == kind)


def _note(kind: str, time_ns: int, data: object) -> dict[str, Any]:
    return {"type": "note", "kind": kind, "time_ns": time_ns, "data": data}


NOT_A_HISTORY: dict[str, Any] = {
    "empty": lambda r: b"",
    "blank lines": lambda r: b"\n\n\n",
    "binary": lambda r: bytes(range(256)) * 8,
    "non-UTF-8": lambda r: b'{"type":"note","kind":"meta","time_ns":0,"data":{"\xe9":1}}\n',
    "a JSON array per line": lambda r: b"[1,2,3]\n" * 3,
    "a JSON scalar": lambda r: b"42\n",
    "deeply nested JSON": lambda r: b"[" * 5000 + b"]" * 5000 + b"\n",
    "NaN and Infinity": lambda r: b'{"type":"note","kind":"meta","time_ns":NaN,"data":{"ttl_ms":Infinity}}\n',
    "a number too large for a double": lambda r: b'{"type":"note","kind":"meta","time_ns":1' + b"0" * 400 + b"}\n",
    "a huge single line": lambda r: b'{"type":"note","data":"' + b"x" * (MAX_LINE_BYTES + 10) + b'"}\n',
    "a huge line without a newline": lambda r: b"x" * (MAX_LINE_BYTES * 2),
    "missing meta": lambda r: r[1:],
    "two metas": lambda r: [r[0], *r],
    "meta data a list": lambda r: _with(r, 0, data=[1, 2]),
    "meta without capabilities": lambda r: _meta(r, capabilities=None),
    "capabilities a string": lambda r: _meta(r, capabilities="durable"),
    "capabilities with an unknown field": lambda r: _caps(r, teleports=True),
    "capability ttl_granularity_ms 0": lambda r: _caps(r, ttl_granularity_ms=0),
    "capability expiry_lag_ms 1e308": lambda r: _caps(r, expiry_lag_ms=1e308),
    "capability failover_ms a string": lambda r: _caps(r, failover_ms="1s"),
    "capability durable a string": lambda r: _caps(r, durable="yes"),
    "capability replication unknown": lambda r: _caps(r, replication="quantum"),
    "ttl_ms 0": lambda r: _meta(r, ttl_ms=0),
    "ttl_ms negative": lambda r: _meta(r, ttl_ms=-1000),
    "ttl_ms a string": lambda r: _meta(r, ttl_ms="x"),
    "ttl_ms 1e308": lambda r: _meta(r, ttl_ms=1e308),
    "plan a string": lambda r: _meta(r, plan="x"),
    "plan retry_every 1e308": lambda r: _meta(r, plan={"retry_every": 1e308}),
    "an unknown op": lambda r: _with(r, _first(r, "op"), op="steal"),
    "an unknown outcome": lambda r: _with(r, _first(r, "op"), outcome="maybe"),
    "an op's args a string": lambda r: _with(r, _first(r, "op"), args="owner=me"),
    "an op's lease a list": lambda r: _with(r, _first(r, "op"), lease=[1]),
    "an op's times strings": lambda r: _with(r, _first(r, "op"), invoke_ns="0", complete_ns="1"),
    "an op's time negative": lambda r: _with(r, _first(r, "op"), invoke_ns=-5),
    "an op's time 1e308": lambda r: _with(r, _first(r, "op"), complete_ns=1e308),
    "an op completing before it is invoked": lambda r: _with(r, _first(r, "op"), invoke_ns=9, complete_ns=3),
    "an unknown record type": lambda r: _with(r, 1, type="telemetry"),
    "a record without a type": lambda r: [r[0], {k: v for k, v in r[1].items() if k != "type"}, *r[2:]],
    "a fault's target a number": lambda r: _with(r, _first(r, "fault"), target=-1),
    "a fault's phase unknown": lambda r: _with(r, _first(r, "fault"), phase="middle"),
    "a write's accepted a string": lambda r: _with(r, _first(r, "write"), accepted="yes"),
    "a note's data a string": lambda r: _with(r, 1, data="x"),
    "a residue note with wrong types": lambda r: [*r[:-1], _note("residue", 1, {"at_end": {"keys": "k"}}), r[-1]],
    "a client note naming a list": lambda r: [r[0], _note("client", 0, {"client": [1]}), *r[1:]],
    "a client note naming a deeply nested client": lambda r: [r[0], _note("client", 0, {"client": DEEP}), *r[1:]],
    "an open-error note with a deeply nested error": lambda r: [*r[:-1], _note("open-error", 1, {
        "client": "w0#1", "error": DEEP, "error_type": "x"}), r[-1]],
    "a meta naming a deeply nested backend": lambda r: _meta(r, backend=DEEP),
    "a meta naming a deeply nested key": lambda r: _meta(r, key=DEEP),
    "a meta with a seed that is no number": lambda r: _meta(r, seed="4"),
    "a residue note with a list for a look": lambda r: [*r[:-1], _note("residue", 1, {"at_stop": [1]}), r[-1]],
}

JUDGED: dict[str, Any] = {
    "a truncated last line": lambda r: b"".join(orjson.dumps(x) + b"\n" for x in r)[:-25],
    "records after end": lambda r: [*r, *r[1:6]],
    "times going backwards": lambda r: [r[0], *reversed(r[1:])],
    "duplicate keys": lambda r: b"".join(orjson.dumps(x)[:-1] + b',"type":"' + x["type"].encode() + b'"}\n'
                                         for x in r),
    "a late note with absurd values": lambda r: [*r[:-1], _note("late", 1, {"window_ms": 1e308, "late_ms": -1}),
                                                 _note("late", 2, {"window_ms": "x", "late_ms": 1e308}),
                                                 _note("late", 3, {"window_ms": 1e300, "late_ms": 1e300}),
                                                 _note("late", 4, {"window_ms": 1e308, "late_ms": 1e308}), r[-1]],
    "a late note with data a list": lambda r: [*r[:-1], _note("late", 1, {"window_ms": [1], "late_ms": {}}), r[-1]],
    "a client note with an absurd timeout": lambda r: [r[0], _note("client", 0, {
        "client": "w0#1", "timeout_ms": 1e308}), *r[1:]],
    "an unknown note kind": lambda r: [*r[:-1], _note("gossip", 1, {"x": 1}), r[-1]],
    "a lease with a float ttl_ms (an adapter's seconds * 1000)": lambda r: [
        {**x, "lease": {**x["lease"], "ttl_ms": 1000.0}} if x.get("lease") else x for x in r],
}


def _materialise(directory: Path, built: object) -> Path:
    if isinstance(built, bytes):
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "history.jsonl"
        path.write_bytes(built)
        return path
    assert isinstance(built, list)
    return write_history(directory, built)


@pytest.mark.parametrize("case", sorted(NOT_A_HISTORY))
def test_check_of_a_file_that_is_no_history_exits_2_with_one_line(
        case: str, recorded: list[dict[str, Any]], tmp_path: Path) -> None:
    o = check(_materialise(tmp_path / "case", NOT_A_HISTORY[case](recorded)))
    assert o.status == 2, (case, o.out[-1500:])


@pytest.mark.parametrize("case", sorted(JUDGED))
def test_check_of_an_odd_but_readable_history_gives_a_verdict(
        case: str, recorded: list[dict[str, Any]], tmp_path: Path) -> None:
    o = check(_materialise(tmp_path / "case", JUDGED[case](recorded)))
    assert o.status in (0, 1), (case, o.err)


def test_check_of_a_run_directory_whose_history_is_a_directory_exits_2(tmp_path: Path) -> None:
    (tmp_path / "run" / "history.jsonl").mkdir(parents=True)
    assert check(tmp_path / "run").status == 2


def test_check_of_a_fifo_exits_2_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    try:
        assert check(fifo).status == 2
    finally:
        _unblock(fifo)


def test_check_of_a_run_directory_whose_history_is_a_fifo_exits_2_without_blocking(tmp_path: Path) -> None:
    run = tmp_path / "run" / "fake" / "holder-crash"
    run.mkdir(parents=True)
    os.mkfifo(run / "history.jsonl")
    try:
        assert check(tmp_path / "run").status == 2
    finally:
        _unblock(run / "history.jsonl")


def _unblock(fifo: Path) -> None:
    """A reader blocked on the FIFO (the defect) gets end-of-file: opening for writing succeeds only then."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_check_of_a_symlink_loop_exits_2(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert check(tmp_path / "a").status == 2
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.jsonl").symlink_to(run / "history.jsonl")
    (run / "again").symlink_to(run)
    assert check(run).status == 2


def test_check_of_a_missing_path_or_an_empty_directory_exits_2(tmp_path: Path) -> None:
    assert check(tmp_path / "nowhere").status == 2
    assert check(tmp_path).status == 2


def test_check_of_an_empty_path_argument_exits_2_without_searching_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recorded: list[dict[str, Any]]) -> None:
    monkeypatch.chdir(tmp_path)
    write_history(tmp_path / "some-run", recorded).rename(tmp_path / "some-run" / "history.jsonl")
    o = run_cli(["check", ""])
    assert_contract(o)
    assert o.status == 2 and "empty" in o.err


# -- hostile command lines: exit 2, one line, before anything runs ----------------------------------------

SOAK = ["soak", "--backend", "fake", "--virtual-time", "--scenario", "holder-crash"]

BAD_ARGUMENTS: list[tuple[list[str], str]] = [
    (["soak", "--backend", "mongo"], "invalid choice"),
    (["soak", "--backend", "fake,,redis"], "invalid choice"),
    (["contract", "--backend", ""], "invalid choice"),
    ([*SOAK, "--duration=nan"], "--duration must be > 0"),
    ([*SOAK, "--duration=inf"], "--duration must be > 0"),
    ([*SOAK, "--duration=-inf"], "--duration must be > 0"),
    ([*SOAK, "--duration=-1"], "--duration must be > 0"),
    ([*SOAK, "--duration=0"], "--duration must be > 0"),
    ([*SOAK, "--duration=1e12"], "--duration must be at most"),
    ([*SOAK, "--seed=18446744073709551616"], "--seed must be between"),
    ([*SOAK, "--seed=-1"], "--seed must be between"),
    ([*SOAK, "--workers=0"], "--workers must be between"),
    ([*SOAK, "--workers=100000"], "--workers must be between"),
    ([*SOAK, "--ttl-ms=0"], "--ttl-ms must be between"),
    ([*SOAK, "--ttl-ms=nan"], "--ttl-ms must be an integer"),
    ([*SOAK, "--keys=0"], "--keys must be between"),
    ([*SOAK, "--scenario", "nope"], "unknown scenario"),
    ([*SOAK, "--workers-mode", "fork"], "invalid choice"),
    ([*SOAK, "--out", ""], "--out"),
    (["soak", "--backend", "redis", "--url", "http://127.0.0.1:6379"], "--url must be a redis:// or etcd://"),
    (["soak", "--backend", "redis", "--url", "redis://127.0.0.1:0"], "port 0"),
    (["soak", "--backend", "redis", "--url", "redis://127.0.0.1:70000"], "Port out of range"),
    (["soak", "--backend", "redis", "--url", "redis://127.0.0.1:abc"], "Port could not be cast"),
    (["contract", "--url", "etcd://127.0.0.1:1,127.0.0.1:x"], "bad host:port"),
    (["contract", "--url", "redis://[::1"], "malformed redis URL"),
    (["contract", "--url", "redis://"], "names no host"),
    (["contract", "--url", "redis://127.0.0.1:1/notadb"], "redis database must be a number"),
    (["contract", "--url", "redis://127.0.0.1:1?socket_timeout=nan"], "unknown redis URL option"),
    (["contract", "--url", "redis+sentinel://127.0.0.1:1"], "must name one service"),
    (["contract", "--url", "redis+sentinel://[::1/svc"], "malformed redis+sentinel URL"),
    (["soak", "--backend", "fake", "--url", "redis://127.0.0.1:1"], "cannot use it"),
    (["report", ""], "empty"),
    (["check", "/" + "x" * 300], "File name too long"),
    (["report", "/" + "x" * 300], "File name too long"),
    ([*SOAK, "--out", "/" + "x" * 300], "File name too long"),
    (["check"], "required"),
    (["frobnicate"], "invalid choice"),
]


def _no_run_left(tmp_path: Path, before: set[str]) -> None:
    assert set(os.listdir(tmp_path)) == before, "a run directory was created for bad input"


@pytest.mark.parametrize(("argv", "message"), BAD_ARGUMENTS, ids=[" ".join(a)[-60:] for a, _ in BAD_ARGUMENTS])
def test_hostile_arguments_exit_2_with_one_line_and_leave_nothing(
        argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default run directory would appear here
    before = set(os.listdir(tmp_path))
    o = run_cli(argv)
    assert_contract(o, allowed=frozenset({2}))
    assert message in o.err, o.err
    _no_run_left(tmp_path, before)


URL_SCHEMES = ["redis", "rediss", "etcd", "redis+sentinel", "REDIS", "unix", "http", "etcd+https", ""]
URL_USERS = ["", "u:p@", ":@", "@@", "%zz@", "u:p:q@"]
URL_HOSTS = ["127.0.0.1", "localhost", "[::1]", "", "[::1", "[", "0.0.0.0", "%", "a b", "[fe80::1%25lo]", "@"]
URL_PORTS = [":1", ":0", ":65536", ":70000", ":-1", ":1e3", ":abc", ":99999999999999999999", ": 1", ":1:2", ":+1"]
"""Every endpoint names a port, and the only valid one is 1: nothing listens there, so no case reaches a
server (another test's, on a default port)."""
URL_PATHS = ["", "/", "/0", "/-1", "/99999999999999999999", "/x/y", "/%zz", "/svc", "//"]
URL_QUERIES = ["", "?", "?timeout_ms=0", "?timeout_ms=-1", "?timeout_ms=nan", "?timeout_ms=1e309",
               "?durable=maybe", "?prefix=", "?prefix=%00", "?a=1&a=2", "?timeout_ms=1&timeout_ms=2", "?=", "#frag"]


@FUZZ
@given(command=st.sampled_from(["contract", "soak"]),
       parts=st.tuples(*(st.sampled_from(p) for p in (URL_SCHEMES, URL_USERS, URL_HOSTS, URL_PORTS, URL_PATHS,
                                                       URL_QUERIES))))
def test_a_hostile_url_is_one_line_exit_2_or_an_unreachable_server_exit_3(
        command: str, parts: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory) -> None:
    scheme, user, host, port, path, query = parts
    url = f"{scheme}://{user}{host}{port}{path}{query}"
    out = tmp_path_factory.mktemp("url") / "run"
    o = run_cli([command, "--url", url] + (["--scenario", "holder-crash", "--out", str(out)] if command == "soak"
                                           else []))
    assert "Traceback" not in o.out + o.err
    assert o.status in (2, 3), (url, o.status, o.err)
    lines = o.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(("lockchaos: error: ", "lockchaos: infrastructure: ")), o.err
    assert "u:p@" not in o.err and ":p:q@" not in o.err, o.err  # a password is never echoed
    assert not out.exists()


def test_out_pointing_at_a_file_or_under_one_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub", Path("/proc/lockchaos-nowhere/run")):
        o = run_cli([*SOAK, "--out", str(out)])
        assert_contract(o, allowed=frozenset({2}))
        assert "--out" in o.err
    assert afile.read_text() == "x"


def test_out_naming_a_dangling_symlink_or_a_loop_exits_2_saying_so(tmp_path: Path) -> None:
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    for out in ("dangling", "loop-a"):
        o = run_cli([*SOAK, "--out", str(tmp_path / out)])
        assert_contract(o, allowed=frozenset({2}))
        assert "symlink to nothing" in o.err, o.err
    assert not (tmp_path / "nowhere").exists()


NUMBER_FLAGS = {"--duration": (0.0, 30 * 24 * 3600), "--seed": (0, 2**63 - 1), "--workers": (1, 256),
                "--ttl-ms": (1, 3_600_000), "--keys": (1, 4096)}


def _valid(flag: str, text: str) -> bool:
    low, high = NUMBER_FLAGS[flag]
    try:
        value = float(text) if flag == "--duration" else int(text)
    except ValueError:
        return False
    return (low < value <= high) if flag == "--duration" else (low <= value <= high)


@FUZZ
@given(flag=st.sampled_from(sorted(NUMBER_FLAGS)),
       text=st.one_of(st.text(max_size=12), st.integers(-(2**70), 2**70).map(str),
                      st.floats().map(repr), st.sampled_from(["nan", "-nan", "inf", "1e309", "0x10", "1_0", " 5"])))
def test_hostile_numbers_for_soak_flags_exit_2_with_one_line(
        flag: str, text: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    if _valid(flag, text) or "\x00" in text:
        return  # a valid value would start a run: those are the other tests' business
    out = tmp_path_factory.mktemp("numbers") / "run"
    o = run_cli([*SOAK, f"{flag}={text}", "--out", str(out)])
    assert_contract(o, allowed=frozenset({2}))
    assert flag in o.err, o.err
    assert not out.exists()


# -- hostile --adapter modules ---------------------------------------------------------------------------

HOSTILE_MODULE = '''
import threading
RELEASE = threading.Event()
not_callable = 5
def raises(url):
    raise RuntimeError("the adapter\\nspans\\nlines")
def returns_int(url):
    return 42
def returns_none(url):
    return None
def hangs(url):
    RELEASE.wait(60)
def exits(url):
    raise SystemExit(3)
class _Shy:
    def __getattr__(self, name):
        raise RuntimeError("no attributes here")
shy = _Shy()
from lockchaos.backends.base import Capabilities
class _Lockish:
    name = "hostile"
    capabilities = Capabilities()
    def __init__(self, url):
        pass
    def acquire(self, *args, **kwargs):
        raise RuntimeError("not a lock really")
    renew = release = holder = acquire
    def close(self):
        pass
class close_raises(_Lockish):
    def close(self):
        raise RuntimeError("close failed")
class close_hangs(_Lockish):
    def close(self):
        RELEASE.wait(60)
class caps_string(_Lockish):
    capabilities = "durable"
class name_list(_Lockish):
    name = ["hostile"]
class acquire_hangs(_Lockish):
    def acquire(self, *args, **kwargs):
        RELEASE.wait(60)
'''


@pytest.fixture(scope="module")
def hostile_modules(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A module of broken factories, and modules that break on import, importable under a fresh name."""
    prefix = f"lockchaos_hostile_{uuid.uuid4().hex[:8]}"
    where = tmp_path_factory.mktemp("adapters")
    (where / f"{prefix}.py").write_text(HOSTILE_MODULE)
    (where / f"{prefix}_raises.py").write_text("raise RuntimeError('broken at import')\n")
    (where / f"{prefix}_exits.py").write_text("import sys\nsys.exit(3)\n")
    (where / f"{prefix}_syntax.py").write_text("def (:\n")
    sys.path.insert(0, str(where))
    try:
        yield prefix
    finally:
        sys.path.remove(str(where))
        module = sys.modules.get(prefix)
        if module is not None:
            module.RELEASE.set()  # a hung factory's thread ends


ADAPTERS = [
    ("{m}_missing:factory", "cannot import adapter module"),
    ("{m}:nope", "has no 'nope'"),
    ("{m}:not_callable", "is not callable"),
    ("{m}_raises:factory", "broken at import"),
    ("{m}_exits:factory", "SystemExit"),
    ("{m}_syntax:factory", "invalid syntax"),
    ("{m}:shy.factory", "no attributes here"),
    ("{m}:raises", "the adapter"),
    ("{m}:returns_int", "not a LockBackend"),
    ("{m}:returns_none", "not a LockBackend"),
    ("{m}:exits", "SystemExit"),
    ("{m}:close_raises", "closing a client raised RuntimeError: close failed"),
    ("{m}:caps_string", "capabilities is a str"),
    ("{m}:name_list", "name a list"),
    ("{m}", "must look like pkg.mod:factory"),
    ("{m}:", "must look like pkg.mod:factory"),
    (".{m}:raises", "cannot import adapter module"),
]


@pytest.mark.parametrize("command", ["soak", "contract"])
@pytest.mark.parametrize(("spec", "message"), ADAPTERS, ids=[s.replace("{m}", "M") for s, _ in ADAPTERS])
def test_a_hostile_adapter_exits_2_with_one_line_and_leaves_nothing(
        command: str, spec: str, message: str, hostile_modules: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    argv = [command, "--adapter", spec.format(m=hostile_modules), "--server", "none"]
    o = run_cli(argv + (["--virtual-time", "--scenario", "holder-crash", "--out", str(out)]
                        if command == "soak" else []))
    assert_contract(o, allowed=frozenset({2}))
    assert message in o.err, o.err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command", ["soak", "contract"])
@pytest.mark.parametrize(("factory", "message"), [("hangs", "opening a client of"),
                                                  ("close_hangs", "closing a client")])
def test_an_adapter_hanging_at_construction_or_close_is_bounded(
        command: str, factory: str, message: str, hostile_modules: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "FACTORY_TIMEOUT_S", 1.0)
    monkeypatch.chdir(tmp_path)
    argv = [command, "--adapter", f"{hostile_modules}:{factory}", "--server", "none"]
    o = run_cli(argv + (["--virtual-time", "--scenario", "holder-crash", "--out", str(tmp_path / "run")]
                        if command == "soak" else []))
    assert_contract(o, allowed=frozenset({2}))
    assert message in o.err and "did not return within 1 s" in o.err and o.seconds < 10, (o.err, o.seconds)
    assert os.listdir(tmp_path) == []


def test_a_contract_whose_adapter_call_never_returns_ends_failed_not_hung(
        hostile_modules: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's acquire without a timeout blocked the contract forever: the rule fails once its bound
    passes, and the rules after it are skipped (each would block as long)."""
    monkeypatch.setattr(contract_runner, "RULE_BOUND_S", 2.0)
    o = run_cli(["contract", "--adapter", f"{hostile_modules}:acquire_hangs", "--server", "none"])
    assert_contract(o, allowed=frozenset({1}))
    assert "did not finish within 2 s" in o.out and "never returned" in o.out, o.out[-3000:]
    assert o.seconds < 15, o.seconds
