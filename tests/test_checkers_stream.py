"""A history file is judged in two reads in memory that does not grow with its length
(``checkers/stream.py``): the same findings, stats, examples and grant bounds as the same records loaded
whole, without keeping a call, a write or a grant behind the watermark, and a file that breaks the
reads' assumptions is judged whole instead.
"""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest

from lockchaos.harness.checkers import check_history, stream
from lockchaos.harness.checkers.findings import CheckResult
from lockchaos.harness.checkers.model import History
from lockchaos.harness.run.history import (
    FaultRecord,
    HistoryWriter,
    NoteRecord,
    OpRecord,
    Record,
    WriteRecord,
    to_json,
)

MS = 1_000_000
FAULTS = ("server-kill", "server-pause", "holder-crash", "holder-pause", "partition", "leader-crash",
          "clock-jump", "latency", "reply-delay")


def _random_history(seed: int) -> list[Record]:
    """A history no honest run would write, so that every checker has something to say: calls with
    random outcomes, overlapping grants, stale writes, unmapped errors, slow calls, server and holder
    faults, a worker that stops calling, on one or two keys."""
    rnd = random.Random(seed)
    caps = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": rnd.choice([0, 50]),
            "durable": rnd.random() < 0.5, "fencing_tokens": rnd.random() < 0.7,
            "replication": rnd.choice(["none", "async", "linearizable"]), "failover_ms": rnd.choice([0, 300]),
            "holder_info": rnd.choice(["lease", "owner", "presence", "none"]),
            "renews_in_background": rnd.random() < 0.2}
    keys = ["k"] if rnd.random() < 0.5 else ["k", "k2"]
    clients = [f"w{i}#1" for i in range(rnd.randint(2, 5))]
    records: list[Record] = [NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": caps, "key": "k",
                                                     "plan": {"retry_every": 0.1, "renew_every": 0.33}})]
    records += [NoteRecord("client", 0, {"client": c, "timeout_ms": rnd.choice([None, 500])}) for c in clients]
    events: list[tuple[int, Record]] = []
    token = 0
    stopped = rnd.choice(clients)  # stops calling half-way (a killed worker)
    for c in clients:
        t = rnd.randint(0, 200) * MS
        end = 30_000 * MS if c != stopped else 12_000 * MS
        while t < end:
            name = rnd.choice(["acquire", "acquire", "acquire", "renew", "release", "holder"])
            took = rnd.choice([1, 5, 40, 300]) * MS if rnd.random() < 0.97 else 4_000 * MS
            outcome = rnd.choices(["ok", "fail", "indeterminate"], [3, 5, 1])[0]
            key = rnd.choice(keys)
            args: dict[str, Any] = {} if name == "holder" else {"owner": c, "ttl_ms": 1000}
            lease = None
            if outcome == "ok" and name in ("acquire", "renew"):
                token += name == "acquire"
                lease = {"owner": c, "token": token - rnd.choice([0, 0, 0, 1]), "ttl_ms": rnd.choice([1000, 1000, 999])}
            elif outcome == "ok" and name == "holder" and rnd.random() < 0.7:
                lease = {"owner": rnd.choice(clients), "token": max(token, 1), "ttl_ms": 1000}
            error = None
            if outcome == "indeterminate":
                error = rnd.choice(["BackendUnavailable: timeout", "unexpected ConnectionError: reset",
                                    "unexpected TimeoutError: slow"])
            events.append((t + took, OpRecord(c, name, key, args, t, t + took, outcome, lease,  # type: ignore[arg-type]
                                              error, "x.Error" if error and rnd.random() < 0.5 else None)))
            if outcome == "ok" and name == "acquire" and rnd.random() < 0.8:
                for n in range(rnd.randint(1, 4)):
                    at = t + took + (n + 1) * 50 * MS
                    events.append((at, WriteRecord(c, key, token - rnd.choice([0, 0, 1]), at, rnd.random() < 0.9,
                                                   rnd.random() < 0.5, n)))
            t += took + rnd.randint(1, 400) * MS
    for _ in range(rnd.randint(2, 8)):
        start = rnd.randint(0, 28_000) * MS
        name = rnd.choice(FAULTS)
        target = rnd.choice(clients) if name.startswith("holder") or name == "partition" else "server"
        detail = {"signal": "SIGSTOP"} if name == "holder-pause" else {"one_way_ms": 200} if name == "reply-delay" \
            else {}
        events.append((start, FaultRecord(name, "start", target, start, detail)))
        if rnd.random() < 0.9:  # else still open when the run ended
            stop = start + rnd.randint(0, 3_000) * MS
            events.append((stop, FaultRecord(name, "end", target, stop)))
    events.sort(key=lambda e: e[0])  # appended at completion, as the recorder does
    records += [rec for _, rec in events]
    last = max(at for at, _ in events)
    records.append(NoteRecord("quiesce", last, {}))
    records.append(OpRecord("observer", "holder", "k", {}, last + MS, last + 2 * MS, "ok",
                            {"owner": clients[0], "token": 1, "ttl_ms": 1000} if rnd.random() < 0.5 else None))
    records.append(NoteRecord("residue", last + 3 * MS, {"at_stop": {"keys": [], "leases": []},
                                                           "at_end": {"keys": [{"key": "k", "ttl_ms": None}]}}))
    if rnd.random() < 0.8:  # else truncated
        records.append(NoteRecord("end", last + 4 * MS, {}))
    return records


def _file(path: Path, records: list[Record]) -> Path:
    w = HistoryWriter(path)
    for rec in records:
        w.append(rec)
    w.close()
    return path


def _summary(h: History, results: list[CheckResult], made: list[tuple[int, int, int]] | None = None) -> list[Any]:
    """Findings, stats and every grant's bounds (a streamed judgement keeps no grant: ``made`` are those
    it passed to ``stream.observe_grant``)."""
    out: list[Any] = [[r.checker, [dataclasses.astuple(f) for f in r.findings], r.stats, r.skipped,
                       list(r.examples)] for r in results]
    out.append(sorted(made if made is not None and not h.grants
                      else [(g.acquire.line, g.latest_end, g.effect_horizon) for g in h.grants]))
    return out


def _streamed(path: Path) -> list[Any]:
    """The streamed judgement of ``path``, summarised with the bounds of the grants it made."""
    made: list[tuple[int, int, int]] = []
    stream.observe_grant.append(lambda g: made.append((g.acquire.line, g.latest_end, g.effect_horizon)))
    try:
        return _summary(*check_history(path), made=made)
    finally:
        stream.observe_grant.clear()


@pytest.fixture
def never_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails a test whose file is judged whole: the streamed judgement must be the one compared."""
    def whole(path: Path) -> Any:
        raise AssertionError(f"{path} was judged whole, not streamed")
    monkeypatch.setattr(stream, "judged_whole", whole)


@pytest.mark.parametrize("every", [1, 7, 512])
@pytest.mark.parametrize("seed", range(40))
def test_a_streamed_file_is_judged_as_its_records_loaded_whole(seed: int, every: int, tmp_path: Path,
                                                                never_whole: None,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """However often the watermark advances (``every`` records): grants made, fed and judged part-way
    through the file, a worker that stops calling half-way holding the watermark back."""
    monkeypatch.setattr(stream, "EVERY", every)
    records = _random_history(seed)
    streamed = _streamed(_file(tmp_path / "history.jsonl", records))
    whole = _summary(*check_history(records))
    assert json.dumps(streamed, default=str) == json.dumps(whole, default=str)


def test_random_histories_give_every_checker_something_to_find() -> None:
    """The equivalence above is only as strong as what the histories provoke."""
    found: set[str] = set()
    for seed in range(40):
        _, results = check_history(_random_history(seed))
        found |= {f"{r.checker}/{f.kind}" for r in results for f in r.findings}
    assert {"conformance/refused-free-key", "exclusion-grants/double-grant", "exclusion-register/stale-write",
            "error-handling/unmapped-exception", "slow-call/slow-call"} <= found
    assert any(k.startswith("liveness/") for k in found) and any(k.startswith("fencing/") for k in found)


def test_the_streamed_judgement_keeps_no_write_and_no_refused_acquire(tmp_path: Path, never_whole: None) -> None:
    caps = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": True, "fencing_tokens": True}
    records: list[Record] = [NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": caps}),
                             OpRecord("a", "acquire", "k", {"owner": "a", "ttl_ms": 1000}, 0, MS, "ok",
                                      {"owner": "a", "token": 1, "ttl_ms": 1000})]
    for i in range(5000):
        t = (i + 2) * MS // 10
        records.append(OpRecord("b", "acquire", "k", {"owner": "b", "ttl_ms": 1000}, t, t, "fail"))
        records.append(WriteRecord("a", "k", 1, t, True, True, i))
    records.append(NoteRecord("end", 600 * MS, {}))
    h, results = check_history(_file(tmp_path / "history.jsonl", records))
    assert h.ops == [] and h.writes == [] and h.grants == []  # the run's context only
    stats = {r.checker: r.stats for r in results}
    assert stats["conformance"]["ops_checked"] == 5001 and stats["exclusion-register"]["writes"] == 5000


def test_a_file_written_with_spaces_is_judged_alike(tmp_path: Path, never_whole: None) -> None:
    """Spaced JSON defeats the byte marks of the first read: it then keeps what it cannot recognise."""
    records = _random_history(7)
    path = tmp_path / "history.jsonl"
    path.write_text("".join(json.dumps(json.loads(to_json(r))) + "\n" for r in records))
    assert b'"type": "write"' in path.read_bytes()
    assert json.dumps(_streamed(path), default=str) == \
        json.dumps(_summary(*check_history(records)), default=str)


def test_a_line_that_fools_the_first_read_is_judged_whole_alike(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A note carrying the write's mark in its data is skipped by the first read as a write: the second
    read finds a note where it expected a write, and the file is loaded whole, with the same findings."""
    records = _random_history(7)
    records.insert(1, NoteRecord("client", 0, {"client": "w0#1", "timeout_ms": 100, "type": "write"}))
    path = _file(tmp_path / "history.jsonl", records)
    assert b'"type":"write"' in path.read_bytes().splitlines()[1]
    wholes: list[Path] = []
    original = stream.judged_whole

    def counted(p: Path) -> Any:
        wholes.append(p)
        return original(p)

    monkeypatch.setattr(stream, "judged_whole", counted)
    assert json.dumps(_streamed(path), default=str) == \
        json.dumps(_summary(*check_history(records)), default=str)
    assert wholes == [path]


@pytest.mark.parametrize("cut", [0, 30])
def test_a_last_line_without_its_newline_is_judged_as_a_whole_load_judges_it(cut: int, tmp_path: Path,
                                                                              never_whole: None) -> None:
    """A killed run's last line: a refused acquire complete but for its newline is a record, one torn
    short is ignored, as ``read_history`` does, and neither makes the file be loaded whole."""
    records = _random_history(3)
    records = [r for r in records if not (isinstance(r, NoteRecord) and r.kind == "end")]
    last = OpRecord("w0#1", "acquire", "k", {"owner": "w0#1", "ttl_ms": 1000}, 40_000 * MS, 40_001 * MS, "fail")
    path = _file(tmp_path / "history.jsonl", records)
    line = to_json(last)
    path.write_text(path.read_text() + (line[:-cut] if cut else line))
    kept = records + ([] if cut else [last])
    assert json.dumps(_streamed(path), default=str) == \
        json.dumps(_summary(*check_history(kept)), default=str)


def _turns(cycles: int, clients: int = 4) -> list[Record]:
    """Workers taking turns on one lock for ``cycles`` rounds: acquire, write, renew, release, with a
    contender refused meanwhile; a crashed worker comes back as its next incarnation."""
    caps = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": True, "fencing_tokens": True}
    records: list[Record] = [NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": caps})]
    t = MS
    opened: set[str] = set()
    for n in range(cycles):
        token = n + 1
        slot = n % clients
        c = f"w{slot}#{1 + n // (clients * 250)}"  # every slot is reborn every 250 of its rounds
        other = f"w{(slot + 1) % clients}#{1 + (n + 1) // (clients * 250)}"
        for name in (c, other):  # each incarnation says it opened before its first call, as workers do
            if name not in opened:
                opened.add(name)
                records.append(NoteRecord("client", t, {"client": name, "timeout_ms": 2000}))
        lease = {"owner": c, "token": token, "ttl_ms": 1000}
        records.append(OpRecord(c, "acquire", "k", {"owner": c, "ttl_ms": 1000}, t, t + MS, "ok", lease))
        records.append(OpRecord(other, "acquire", "k", {"owner": other, "ttl_ms": 1000}, t + MS, t + 2 * MS, "fail"))
        records.append(WriteRecord(c, "k", token, t + 2 * MS, True, True, n))
        records.append(OpRecord(c, "renew", "k", {"owner": c, "ttl_ms": 1000}, t + 3 * MS, t + 4 * MS, "ok", lease))
        records.append(OpRecord(c, "release", "k", {"owner": c}, t + 5 * MS, t + 6 * MS, "ok"))
        t += 10 * MS
    records.append(NoteRecord("end", t, {}))
    return records


def test_a_long_history_is_judged_with_only_its_last_grants_in_memory(tmp_path: Path, never_whole: None,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Flat memory, counted rather than timed: of 4,000 grants, no more than a batch's worth (the grants of
    the ``EVERY`` records read between two advances) are alive at any point of the streamed judgement,
    besides the last grant of each worker incarnation (the register judges a later write against it):
    each is let go once nothing still to judge can reach it."""
    import gc

    monkeypatch.setattr(stream, "EVERY", 40)  # 8 rounds of 5 records
    from lockchaos.harness.checkers.model import Grant

    made, most = [0], [0]

    def count(_: Any) -> None:
        made[0] += 1
        if made[0] % 100 == 0:
            most[0] = max(most[0], sum(1 for o in gc.get_objects() if type(o) is Grant))

    path = _file(tmp_path / "history.jsonl", _turns(4000))
    stream.observe_grant.append(count)
    try:
        _, results = check_history(path)
    finally:
        stream.observe_grant.clear()
    assert made[0] == 4000 and {r.checker: r.stats.get("grants") for r in results}["exclusion-grants"] == 4000
    assert not [f for r in results for f in r.findings]
    # About 7 grants a batch, kept until the next pruning (every PRUNE_EVERY batches), and 16 incarnations' last.
    bound = 8 * (stream.PRUNE_EVERY + 1) + 16
    assert 0 < most[0] <= bound, f"{most[0]} grants alive at once: the judgement keeps what it should let go"


def test_a_call_sent_before_the_watermark_is_judged_whole_alike(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A client first heard of long after others moved on, its call sent back then: the watermark had
    already passed it, so the file is judged whole, with the same result."""
    records = _turns(400)
    late = OpRecord("latecomer", "acquire", "k", {"owner": "latecomer", "ttl_ms": 1000}, 2 * MS, 3_000 * MS, "fail")
    records.insert(len(records) - 1, late)
    _assert_judged_whole_alike(_file(tmp_path / "history.jsonl", records), records, monkeypatch)


def test_an_old_incarnation_calling_again_is_judged_whole_alike(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """``w1#1`` renews after ``w1#2`` was heard of: no worker does that, but a file may say so, and the
    grants the streamed read let go of would then be judged without that renew: judged whole instead."""
    records = _turns(1600)
    records.insert(len(records) - 1, OpRecord("w1#1", "renew", "k", {"owner": "w1#1", "ttl_ms": 1000},
                                              16_000 * MS, 16_001 * MS, "ok", {"owner": "w1#1", "ttl_ms": 1000}))
    _assert_judged_whole_alike(_file(tmp_path / "history.jsonl", records), records, monkeypatch)


def _assert_judged_whole_alike(path: Path, records: list[Record], monkeypatch: pytest.MonkeyPatch) -> None:
    """``path`` is judged whole (once), with what its records loaded whole give."""
    wholes = [0]
    original = stream.judged_whole

    def counted(p: Path) -> Any:
        wholes[0] += 1
        return original(p)

    monkeypatch.setattr(stream, "judged_whole", counted)
    assert json.dumps(_streamed(path), default=str) == json.dumps(_summary(*check_history(records)), default=str)
    assert wholes == [1]
