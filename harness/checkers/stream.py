"""Judging a history file without loading it: two reads, and only the grants kept.

A long run's history is mostly refused acquires and register writes (about nine events in ten of a
soak); loading every record costs about 300 bytes an event for the whole judgement. Here:

1. **Resident read.** Every line is looked at, but only the records that make grants (acquires that
   may have taken effect, renews, releases), the faults and the notes are parsed and kept: a refused
   acquire or a write is recognised by its bytes (``to_json_bytes`` writes sorted keys, no spaces) and
   only its time is read, for the run's end. From these the grants and their bounds are made exactly
   as ``load_history`` makes them: nothing a grant depends on is skipped.
2. **Streamed read.** Every record is read again, in history order, and fed to the checkers that
   look at every call or write (``conformance``, ``exclusion`` by the register, ``liveness``,
   ``error-handling``, ``slow-call``, ``residue``), which keep per-key, per-client and per-fault
   state, never the records. The checkers of grants alone (``exclusion`` by grants, ``fencing``) run
   on the resident history.

The second read also checks what the first assumed: every line it skipped was a refused acquire or
a write, every other op is the one it kept, and the run's end is the same. If anything differs (a
history not written by ``to_json_bytes``), or if reading fails anywhere, the file is judged the old
way, by ``load_history``: the same findings and the same errors, only not in flat memory.

Memory then grows with the grants (and their renews), not with the events: about one event in ten
of a soak. The in-memory ``History`` handed back holds the grants and the calls behind them, not the
writes or the refused acquires; the report draws from a ``load_history`` of its own.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

from lockchaos.harness.checkers import conformance, errors, exclusion, fencing, liveness, residue, slowcalls
from lockchaos.harness.checkers.findings import CheckResult
from lockchaos.harness.checkers.model import History, Notes, history_of, load_records
from lockchaos.harness.run.history import (
    MAX_LINE_BYTES,
    OpRecord,
    Record,
    WriteRecord,
    numbered_lines,
    possible_record,
    read_history,
)

WRITE_MARK = b'"type":"write"'
"""Every write line holds this (sorted keys, no spaces: ``to_json_bytes``)."""
REFUSED_MARKS = (b'"op":"acquire"', b'"outcome":"fail"')
"""A refused acquire's line holds both: it makes no grant, so the resident read skips it."""


class Unstreamable(Exception):
    """The file breaks an assumption of the two reads: judged by ``load_history`` instead."""


def check_file(path: Path) -> tuple[History, list[CheckResult]]:
    """What ``check_history`` finds in the history file ``path``, in memory that grows with its grants only."""
    try:
        return _streamed(path)
    except Exception:  # any failure: judged again the old way, which reports it as before
        return judged_whole(path)


def judged_whole(path: Path) -> tuple[History, list[CheckResult]]:
    """The history loaded whole and judged: what a file that cannot be streamed gets."""
    from lockchaos.harness.checkers import CHECKERS
    from lockchaos.harness.checkers.model import load_history

    h = load_history(path)
    return h, [checker(h) for checker in CHECKERS]


def _streamed(path: Path) -> tuple[History, list[CheckResult]]:
    skipped = _Skipped()
    notes = Notes()
    collecting = gc.isenabled()
    gc.disable()  # the resident read allocates and frees no cycles (see ``load_history``)
    try:
        meta, ops, writes, faults, end_ns, truncated = load_records(_resident(path, skipped, notes), notes)
    finally:
        if collecting:
            gc.enable()
    h = history_of(meta, ops, writes, faults, end_ns, truncated, notes)
    return h, _judge(h, path, skipped)


class _Skipped:
    """What the resident read skipped, for the streamed read to check."""

    writes = 0
    refused = 0
    others = 0  # records other than ops and writes that it loaded (faults, notes)


def _resident(path: Path, skipped: _Skipped, notes: Notes) -> Iterator[tuple[int, Record]]:
    """The records grants depend on, numbered; the others only timed (``notes.unread_end_ns``)."""
    refused_op, refused_outcome = REFUSED_MARKS
    unread_end = 0
    for number, line, whole in numbered_lines(path):
        if len(line) > MAX_LINE_BYTES:
            raise Unstreamable(f"line {number} too long")
        # A last line without its newline is parsed in full: a record if it parses, else torn and ignored.
        if whole and WRITE_MARK in line:
            t = _int_after(line, b'"time_ns":')
            skipped.writes += 1
        elif whole and refused_op in line and refused_outcome in line:
            t = _int_after(line, b'"complete_ns":')
            skipped.refused += 1
        else:
            t = -1
        if t >= 0:
            if t > unread_end:
                unread_end = notes.unread_end_ns = t
            continue
        try:
            rec = possible_record(line)
        except ValueError:
            if not whole:  # a torn last line: ignored, as ``read_history`` does
                break
            raise
        if type(rec) is not OpRecord and type(rec) is not WriteRecord:
            skipped.others += 1
        yield number, rec


def _int_after(line: bytes, name: bytes) -> int:
    """The integer following ``name`` up to the next field (sorted keys: ``complete_ns`` and ``time_ns``
    are never last); the streamed read checks the run's end it gives against the parsed records."""
    start = line.index(name) + len(name)
    return int(line[start:line.index(b",", start)])


def _judge(h: History, path: Path, skipped: _Skipped) -> list[CheckResult]:
    conf, register, live = conformance.Judge(h), exclusion.RegisterJudge(h), liveness.Calls(h)
    errs, slow, left = errors.Judge(h), slowcalls.Judge(h), residue.Judge(h)
    per_op = (conf.op, live.op, errs.op, slow.op, left.op)
    kept = h.ops
    k = writes = refused = others = end_ns = 0
    for number, rec in enumerate(read_history(path, kept=False), start=1):
        kind = type(rec)
        if kind is OpRecord:
            if k < len(kept) and kept[k].line == number:
                k += 1
            elif rec.op == "acquire" and rec.outcome == "fail":  # type: ignore[union-attr]
                refused += 1
            else:
                raise Unstreamable(f"line {number}: an op the resident read did not keep")
            for judge in per_op:
                judge(number, rec)  # type: ignore[arg-type]
            t = rec.complete_ns  # type: ignore[union-attr]
        elif kind is WriteRecord:
            writes += 1
            register.write(number, rec)  # type: ignore[arg-type]
            t = rec.time_ns  # type: ignore[union-attr]
        else:
            others += 1
            t = rec.time_ns  # type: ignore[union-attr]
        if t > end_ns:
            end_ns = t
    if (k, writes, refused, others, end_ns) != (len(kept), skipped.writes + len(h.writes), skipped.refused,
                                                 skipped.others, h.end_ns):
        raise Unstreamable("the two reads disagree")
    return [conf.finish(), exclusion.check_grants(h), register.finish(), fencing.check(h), live.finish(),
            errs.finish(), slow.finish(), left.finish()]
