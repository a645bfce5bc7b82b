"""Tokenless locks (most lock libraries) are judged by lease identity, never by made-up tokens.

Hand-written histories pin each rule; the tokenless fake (``fake://NAME?tokens=none``) runs the whole
catalogue in virtual time and must come out pass or known-unsafe, with holder-pause's stale write
reported as the known hazard of a lock without fencing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lockchaos.backends import open_backend
from lockchaos.backends.base import ConfigurationError
from lockchaos.backends.fake import drop_fake_server
from lockchaos.harness.checkers import check_history
from lockchaos.harness.checkers.findings import CheckResult
from lockchaos.harness.cli import main
from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.history import NoteRecord, OpRecord, Record, WriteRecord
from lockchaos.harness.run.targets import adapter_target
from lockchaos.harness.scenarios import find_scenario
from tests.catalogue_params import every_scenario

MS = 1_000_000
TOKENLESS = adapter_target("tests.tokenless_adapters:fake_tokenless", "none")


def meta(holder_info: str = "owner") -> NoteRecord:
    caps = {"ttl_granularity_ms": 1, "min_ttl_ms": 1, "expiry_lag_ms": 0, "durable": True,
            "fencing_tokens": False, "holder_info": holder_info}
    return NoteRecord("meta", 0, {"ttl_ms": 1000, "capabilities": caps, "plan": {"retry_every": 0.1}})


def op(client: str, name: str, t0: int, t1: int, outcome: str = "ok", lease: bool = True,
       owner: str | None = None) -> OpRecord:
    args: dict[str, Any] = {} if name == "holder" else {"owner": client}
    if name in ("acquire", "renew"):
        args["ttl_ms"] = 1000
    shown = {"owner": owner or client, "token": None, "ttl_ms": 0 if name == "holder" else 1000}
    return OpRecord(client, name, "k", args, t0 * MS, t1 * MS, outcome,  # type: ignore[arg-type]
                    shown if lease and outcome == "ok" else None)


def write(client: str, t: int, fencing: bool = False) -> WriteRecord:
    return WriteRecord(client, "k", None, t * MS, True, fencing, 0)


def results(*records: Record) -> dict[str, CheckResult]:
    _, res = check_history(list(records))
    return {r.checker: r for r in res}


def findings(res: dict[str, CheckResult], severity: str) -> set[str]:
    return {f"{r.checker}/{f.kind}" for r in res.values() for f in r.findings if f.severity == severity}


# --- checkers on hand-written tokenless histories ------------------------------------------------


def test_tokenless_handover_passes_and_fencing_is_skipped_with_the_reason() -> None:
    res = results(meta(), op("a", "acquire", 0, 5), write("a", 100), op("a", "release", 200, 205),
                  op("b", "acquire", 300, 305), write("b", 400), op("b", "release", 500, 505))
    assert not findings(res, "violation") and not findings(res, "known-unsafe")
    assert res["fencing"].verdict() == "skipped" and "fencing_tokens=False" in res["fencing"].stats["skipped"]


def test_tokenless_double_grant_is_still_a_violation() -> None:
    res = results(meta(), op("a", "acquire", 0, 5), op("b", "acquire", 100, 105))
    assert "exclusion-grants/double-grant" in findings(res, "violation")


def test_write_after_the_writers_lease_surely_ended_is_a_known_unsafe_stale_write() -> None:
    res = results(meta(), op("a", "acquire", 0, 5), write("a", 100), write("a", 2500))
    assert findings(res, "known-unsafe") == {"exclusion-register/stale-write"}
    assert not findings(res, "violation")
    f = res["exclusion-register"].findings[0]
    assert f.lines == (2, 4) and "surely ended" in f.message


def test_write_after_another_client_was_granted_is_a_stale_write_even_with_fencing_on() -> None:
    # The register cannot refuse a tokenless write, so fencing on or off it is the lock's known hazard.
    res = results(meta(), op("a", "acquire", 0, 5), op("b", "acquire", 1100, 1105), write("a", 1200, fencing=True))
    assert findings(res, "known-unsafe") == {"exclusion-register/stale-write"}
    assert "b was granted the lock after it" in res["exclusion-register"].findings[0].message


def test_write_within_the_lease_is_not_stale() -> None:
    res = results(meta(), op("a", "acquire", 0, 5), write("a", 990), op("a", "renew", 300, 305), write("a", 1250))
    assert not findings(res, "known-unsafe") and not findings(res, "violation")


def test_two_owners_writing_without_tokens_is_never_a_shared_token_finding() -> None:
    res = results(meta(), op("a", "acquire", 0, 5), write("a", 10), op("a", "release", 20, 25),
                  op("b", "acquire", 30, 35), write("b", 40), op("b", "release", 50, 55))
    assert not res["exclusion-register"].findings and not res["fencing"].findings


def test_owner_only_holder_is_judged_by_owner() -> None:
    ok = results(meta("owner"), op("a", "acquire", 0, 5), op("x", "holder", 100, 105, owner="a"))
    assert not findings(ok, "violation")
    phantom = results(meta("owner"), op("a", "acquire", 0, 5), op("x", "holder", 100, 105, owner="b"))
    assert "conformance/holder-phantom" in findings(phantom, "violation")


def test_presence_only_holder_is_judged_by_presence() -> None:
    ok = results(meta("presence"), op("a", "acquire", 0, 5), op("x", "holder", 100, 105, owner=""))
    assert not findings(ok, "violation")
    phantom = results(meta("presence"), op("x", "holder", 100, 105, owner=""))
    assert "conformance/holder-phantom" in findings(phantom, "violation")
    missed = results(meta("presence"), op("a", "acquire", 0, 5), op("x", "holder", 100, 105, lease=False))
    assert "conformance/holder-missed" in findings(missed, "violation")


# --- the tokenless fake --------------------------------------------------------------------------


def test_fake_url_tokens_none_gives_leases_without_tokens_and_says_so() -> None:
    try:
        c = open_backend("fake://tokenless-url-test?tokens=none&holder=presence")
        assert not c.capabilities.fencing_tokens and c.capabilities.holder_info == "presence"
        lease = c.acquire("k", "me", 1000)
        assert lease is not None and lease.token is None
        renewed = c.renew("k", "me", 1000)
        assert renewed is not None and renewed.token is None
        assert c.holder("k") is not None and c.holder("k").owner == ""  # type: ignore[union-attr]
    finally:
        drop_fake_server("tokenless-url-test")


@pytest.mark.parametrize("url", ["fake://x?tokens=some", "fake://x?holder=everything"])
def test_fake_url_bad_tokenless_options_are_one_clear_error(url: str) -> None:
    with pytest.raises(ConfigurationError, match="must be one of"):
        open_backend(url)


def test_holder_pause_on_a_tokenless_lock_reports_the_stale_write_as_known_unsafe(tmp_path: Path) -> None:
    r = run_scenario(TOKENLESS, find_scenario("holder-pause"), RunOptions(seed=3, virtual_time=True), tmp_path)
    assert r.judgement is not None and r.judgement.verdict == "known-unsafe"
    by = {x.checker: x for x in r.judgement.results}
    assert [f.kind for f in by["exclusion-register"].known_unsafe][:1] == ["stale-write"]
    assert by["fencing"].verdict() == "skipped"
    assert r.observations is not None and r.observations.stale_writes >= 1


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("scenario", every_scenario())
def test_tokenless_fake_passes_every_scenario(scenario: str, seed: int, tmp_path: Path) -> None:
    r = run_scenario(TOKENLESS, find_scenario(scenario), RunOptions(seed=seed, virtual_time=True), tmp_path)
    assert r.status == "ran", r.reason
    assert r.judgement is not None and not r.judgement.failed, r.judgement.to_dict()
    assert not any(f.kind in ("token-regression", "shared-token") for x in r.judgement.results for f in x.findings)


# --- the contract honours what a library-style lock declares ---------------------------------------


@pytest.mark.parametrize("adapter", ["fake_tokenless", "fake_presence_only",
                                     pytest.param("fake_truncating", marks=pytest.mark.slow), "fake_no_holder"])
def test_correct_library_style_lock_passes_the_contract(adapter: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["contract", "--adapter", f"tests.tokenless_adapters:{adapter}", "--server", "none"])
    assert status == 0, capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize(("adapter", "rule"), [
    ("truncation_declared_but_rounds_up", "declared_truncation_expires_at_the_truncated_ttl"),
    ("refusal_declared_but_raised_to_minimum", "declared_refusal_below_minimum"),
    ("refusal_declared_but_raised_to_minimum", "declared_refusal_happens_before_io"),
])
def test_false_ttl_declaration_fails_the_contract(adapter: str, rule: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["contract", "--adapter", f"tests.tokenless_adapters:{adapter}", "--server", "none"])
    out = capsys.readouterr().out
    assert status == 1
    failed_line = next(line for line in out.splitlines() if "rule(s) failed" in line)
    assert rule in failed_line


@pytest.mark.redis
def test_tokenless_lock_on_real_redis_passes_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["contract", "--adapter", "tests.tokenless_adapters:redis_tokenless", "--server", "redis"])
    assert status == 0, capsys.readouterr().out


@pytest.mark.redis
@pytest.mark.parametrize("scenario", ["holder-pause", "server-restart", "latency"])
def test_tokenless_lock_on_real_redis_passes_soak_scenarios(scenario: str, tmp_path: Path) -> None:
    status = main(["soak", "--adapter", "tests.tokenless_adapters:redis_tokenless", "--server", "redis",
                   "--scenario", scenario, "--ttl-ms", "300", "--seed", "1", "--out", str(tmp_path / "runs"),
                   "--quiet"])
    assert status == 0


def test_ttl_the_lock_refuses_skips_the_scenario_with_the_reason(tmp_path: Path) -> None:
    target = adapter_target("tests.tokenless_adapters:fake_truncating", "none")
    r = run_scenario(target, find_scenario("clean-handover"), RunOptions(seed=1, ttl_ms=500, virtual_time=True),
                     tmp_path)
    assert r.status == "skipped" and "--ttl-ms 1000" in r.reason


def test_register_takes_and_counts_tokenless_writes_even_with_fencing_on() -> None:
    from lockchaos.harness.run.register import FencedRegister

    seen: list[Record] = []
    reg = FencedRegister("k", fencing=True, now_ns=lambda: 0, record=seen.append)
    assert reg.write("a", 5) and not reg.write("b", 4)
    assert reg.write("c", None)  # nothing to fence a tokenless write with
    assert (reg.accepted, reg.rejected) == (2, 1)
    assert [w.accepted for w in seen if isinstance(w, WriteRecord)] == [True, False, True]


def test_numbers_from_a_lock_declaring_no_fencing_tokens_are_never_judged_as_tokens() -> None:
    # A lock that declares fencing_tokens=False yet hands out a constant "token": no token rule may fire.
    def acq(client: str, t0: int) -> OpRecord:
        return OpRecord(client, "acquire", "k", {"owner": client, "ttl_ms": 1000}, t0 * MS, (t0 + 5) * MS, "ok",
                        {"owner": client, "token": 1, "ttl_ms": 1000})

    def rel(client: str, t0: int) -> OpRecord:
        return OpRecord(client, "release", "k", {"owner": client}, t0 * MS, (t0 + 5) * MS, "ok")

    res = results(meta(), acq("a", 0), WriteRecord("a", "k", 1, 10 * MS, True, True, 1), rel("a", 20),
                  acq("b", 30), WriteRecord("b", "k", 1, 40 * MS, True, True, 2), rel("b", 50))
    assert not findings(res, "violation") and not findings(res, "known-unsafe")
