"""The stress scenario: many workers on many keys at the rate the client side can push.

It must find nothing on an honest lock (the fake in virtual time, real Redis), report the ops/s it
drove next to the server's raw capacity, and catch a lock that is wrong only across keys, which
every single-key scenario misses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lockchaos.harness.cli import main
from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.history import OpRecord, WriteRecord, read_history
from lockchaos.harness.run.targets import adapter_target, backend_target
from lockchaos.harness.scenarios import CATALOGUE, find_scenario

FAKE = backend_target("fake")
CROSS_KEY = adapter_target("tests.crosskey_adapters:fake_stale_cleanup", "none")


def test_stress_on_the_fake_in_virtual_time_passes_on_many_keys(tmp_path: Path) -> None:
    r = run_scenario(FAKE, find_scenario("stress"), RunOptions(seed=7, virtual_time=True, duration_s=3), tmp_path)
    assert r.status == "ran" and r.judgement is not None
    assert not r.judgement.failed, r.judgement.failing()
    recs = list(read_history(r.run_dir / "history.jsonl"))
    granted = {x.key for x in recs if isinstance(x, OpRecord) and x.op == "acquire" and x.outcome == "ok"}
    written = {x.key for x in recs if isinstance(x, WriteRecord)}
    assert len(granted) == 64 and written == granted
    assert r.throughput is not None and r.throughput["ops_per_s"]["total"] > 1000
    assert r.throughput["capacity"] is None  # virtual time: no wall-clock yardstick


def test_stress_is_reproducible_from_its_seed(tmp_path: Path) -> None:
    runs = [run_scenario(FAKE, find_scenario("stress"), RunOptions(seed=3, virtual_time=True, duration_s=1),
                         tmp_path / name) for name in ("a", "b")]
    assert (runs[0].run_dir / "history.jsonl").read_bytes() == (runs[1].run_dir / "history.jsonl").read_bytes()


def test_keys_option_sets_how_many_keys_the_workers_share(tmp_path: Path) -> None:
    r = run_scenario(FAKE, find_scenario("stress"),
                     RunOptions(seed=2, virtual_time=True, duration_s=1, keys=5), tmp_path)
    keys = {x.key for x in read_history(r.run_dir / "history.jsonl") if isinstance(x, OpRecord)}
    assert len(keys) == 5
    assert "--keys 5" in (r.run_dir / "summary.json").read_text()


@pytest.mark.parametrize("value", ["0", "4097", "many"])
def test_bad_keys_value_exits_2_with_one_line(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["soak", "--backend", "fake", "--scenario", "stress", "--keys", value]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lockchaos: error: argument --keys")


def test_stress_catches_a_lock_wrong_only_across_keys(tmp_path: Path) -> None:
    r = run_scenario(CROSS_KEY, find_scenario("stress"), RunOptions(seed=1, virtual_time=True, duration_s=2),
                     tmp_path / "stress")
    assert r.judgement is not None and "exclusion-grants" in r.judgement.failing()


@pytest.mark.parametrize("scenario", [s.name for s in CATALOGUE if s.keys == 1 and not s.faults])
def test_single_key_scenarios_miss_the_cross_key_lock(scenario: str, tmp_path: Path) -> None:
    r = run_scenario(CROSS_KEY, find_scenario(scenario), RunOptions(seed=1, virtual_time=True), tmp_path)
    assert r.judgement is not None and not r.judgement.failed, r.judgement.failing()


@pytest.mark.redis
def test_stress_on_real_redis_reports_its_rate_against_capacity_and_passes(tmp_path: Path) -> None:
    r = run_scenario(backend_target("redis"), find_scenario("stress"),
                     RunOptions(seed=4, duration_s=3, workers_mode="thread"), tmp_path)
    assert r.judgement is not None and not r.judgement.failed, r.judgement.failing()
    t = r.throughput
    assert t is not None and t["ops_per_s"]["total"] > 0 and t["ops_per_s"]["acquire"] > 0
    assert t["capacity"]["method"] == "redis-py SET PX/DEL" and t["capacity"]["ops_per_s"] > 0
    assert t["capacity_ratio"] > 0
    keys = {x.key for x in read_history(r.run_dir / "history.jsonl") if isinstance(x, OpRecord)}
    assert len(keys) == 64
