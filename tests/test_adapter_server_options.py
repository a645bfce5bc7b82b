"""A user's ``--adapter`` gets what our own backends get: the scenario's client timeout, a durable server."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lockchaos.harness.run.driver import RunOptions, run_scenario
from lockchaos.harness.run.history import NoteRecord, read_history
from lockchaos.harness.run.targets import adapter_target
from lockchaos.harness.scenarios import find_scenario

from . import url_adapters

pytestmark = [pytest.mark.redis]

TTL_MS = 300


def _meta(run_dir: Path) -> dict[str, object]:
    return next(r.data for r in read_history(run_dir / "history.jsonl")
                if isinstance(r, NoteRecord) and r.kind == "meta")


@pytest.mark.redis
def test_scenario_client_timeout_reaches_a_users_adapter(tmp_path: Path) -> None:
    url_adapters.SEEN_TIMEOUTS.clear()
    scenario = replace(find_scenario("slow-acquire-reply"), duration=3)
    target = adapter_target("tests.url_adapters:needs_timeout", "redis")
    result = run_scenario(target, scenario, RunOptions(seed=1, ttl_ms=TTL_MS), tmp_path)
    assert result.status == "ran", result.reason
    assert scenario.client_timeout is not None
    expected = round(scenario.client_timeout * TTL_MS)
    assert url_adapters.SEEN_TIMEOUTS and set(url_adapters.SEEN_TIMEOUTS) == {expected}


def test_scenario_client_timeout_reaches_an_adapter_on_the_fake(tmp_path: Path) -> None:
    url_adapters.SEEN_TIMEOUTS.clear()
    scenario = replace(find_scenario("clean-handover"), duration=2, client_timeout=2)
    target = adapter_target("tests.url_adapters:needs_timeout", "none")
    result = run_scenario(target, scenario, RunOptions(seed=1, ttl_ms=TTL_MS), tmp_path)
    assert result.status == "ran", result.reason
    assert set(url_adapters.SEEN_TIMEOUTS) == {2 * TTL_MS}


@pytest.mark.redis
def test_server_restart_durable_runs_an_adapter_against_a_durable_redis(tmp_path: Path) -> None:
    # Our Redis client asks the server (durable=auto): it declares durable only with AOF fsync always.
    target = adapter_target("lockchaos.backends:open_backend", "redis-aof")
    scenario = replace(find_scenario("server-restart-durable"), duration=4)
    result = run_scenario(target, scenario, RunOptions(seed=2, ttl_ms=TTL_MS), tmp_path)
    assert result.status == "ran", result.reason
    caps = _meta(result.run_dir)["capabilities"]
    assert isinstance(caps, dict) and caps["durable"] is True
    assert result.judgement is not None and not result.judgement.failed, result.judgement.to_dict()


@pytest.mark.redis
def test_redis_aof_server_is_durable_for_every_scenario_of_an_adapter(tmp_path: Path) -> None:
    target = adapter_target("lockchaos.backends:open_backend", "redis-aof")
    result = run_scenario(target, replace(find_scenario("clean-handover"), duration=2),
                          RunOptions(seed=2, ttl_ms=TTL_MS), tmp_path)
    caps = _meta(result.run_dir)["capabilities"]
    assert isinstance(caps, dict) and caps["durable"] is True
    assert "--server redis-aof" in result.run_dir.joinpath("summary.json").read_text()


@pytest.mark.redis
def test_plain_redis_server_for_an_adapter_stays_non_durable(tmp_path: Path) -> None:
    target = adapter_target("lockchaos.backends:open_backend", "redis")
    result = run_scenario(target, replace(find_scenario("clean-handover"), duration=2),
                          RunOptions(seed=2, ttl_ms=TTL_MS), tmp_path)
    caps = _meta(result.run_dir)["capabilities"]
    assert isinstance(caps, dict) and caps["durable"] is False
