"""``parse_record`` builds records by their slots for speed: it must give what the dataclass would."""

from __future__ import annotations

import orjson
import pytest

from lockchaos.harness.run.history import FaultRecord, NoteRecord, OpRecord, Record, WriteRecord, parse_record, to_json

RECORDS: list[Record] = [
    OpRecord("w0", "acquire", "k", {"owner": "w0", "ttl_ms": 100}, 1, 2, "ok", {"owner": "w0", "token": 3,
                                                                              "ttl_ms": 100}),
    OpRecord("w1", "renew", "k", {}, 5, 9, "indeterminate", None, "BackendUnavailable: reset", "x.Y"),
    WriteRecord("w0", "k", 3, 4, True, True, 1),
    WriteRecord("w0", "k", None, 4, False, False, 2),
    FaultRecord("server-pause", "start", "server", 7, {"for_s": 1.5}),
    NoteRecord("meta", 0, {"ttl_ms": 100}),
]


@pytest.mark.parametrize("rec", RECORDS, ids=lambda r: type(r).__name__)
def test_parsed_record_equals_the_one_written(rec: Record) -> None:
    parsed = parse_record(to_json(rec))
    assert parsed == rec and type(parsed) is type(rec) and parsed.type == rec.type


def test_omitted_defaults_are_filled_like_the_constructor() -> None:
    note = parse_record(b'{"type":"note","kind":"end","time_ns":3}')
    fault = parse_record(b'{"type":"fault","fault":"latency","phase":"end","target":"l","time_ns":3}')
    assert note == NoteRecord("end", 3) and fault == FaultRecord("latency", "end", "l", 3)
    assert isinstance(note, NoteRecord) and note.data == {} and note.data is not NoteRecord("end", 3).data


def test_missing_or_unknown_field_is_refused_as_the_constructor_does() -> None:
    with pytest.raises(TypeError, match="missing"):
        parse_record(b'{"type":"op","client":"w0"}')
    with pytest.raises(TypeError, match="unexpected"):
        parse_record(orjson.dumps({"type": "note", "kind": "meta", "time_ns": 1, "bogus": 2}))


def test_parsed_record_stays_frozen() -> None:
    rec = parse_record(to_json(RECORDS[0]))
    with pytest.raises(AttributeError):
        rec.client = "other"  # type: ignore[misc]
