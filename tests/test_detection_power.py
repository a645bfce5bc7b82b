"""Detection power: every subtly broken adapter is caught by the rule or scenario named for its bug,
and the honest adapters pass the same rules and scenarios (no false alarms).

The adapters are in tests/broken_subtle_adapters.py; the MiniKV ones run with ``--server none``, the
redis-py ones against a real ``redis-server`` the harness starts.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lockchaos.harness.contract import find_rule, run_rule
from lockchaos.harness.contract.runner import RuleResult
from lockchaos.harness.targets import Provisioned, adapter_target, backend_target, provisioned
from tests.broken_subtle_adapters import MINIKV, REDIS

MODULE = "tests.broken_subtle_adapters"

# adapter -> (server, the contract rule that must fail it)
CONTRACT_CATCHES: dict[str, tuple[str, str]] = {
    "caching_holder": ("none", "holder_from_the_same_client_follows_its_calls"),
    "renew_keeps_the_acquire_ttl": ("none", "renew_applies_the_ttl_it_reports"),
    "renew_makes_the_lease_permanent": ("none", "renewed_lease_still_expires"),
    "clock_tokens": ("none", "tokens_increase_over_hundreds_of_grants_and_across_processes"),
    "counter_expires_when_idle": ("none", "tokens_increase_after_a_long_idle_gap"),
    "redis_counter_expires_when_idle": ("redis", "tokens_increase_after_a_long_idle_gap"),
    "per_process_counter_tokens": ("redis", "tokens_increase_over_hundreds_of_grants_and_across_processes"),
}

SUBTLE_RULES = sorted({rule for _, rule in CONTRACT_CATCHES.values()}
                      | {"holder_from_the_same_client_sees_its_lease_expire"})


def _run(env: Provisioned, rule: str) -> RuleResult:
    return run_rule(find_rule(rule), env.client_factory(), server=env.server_control())


@pytest.fixture(scope="module")
def redis_env() -> Iterator[Provisioned]:
    with provisioned(backend_target("redis")) as env:
        yield env


def test_every_subtle_adapter_is_named() -> None:
    assert set(CONTRACT_CATCHES) <= set(MINIKV) | set(REDIS)


@pytest.mark.parametrize("adapter", sorted(CONTRACT_CATCHES))
def test_contract_rule_catches_subtle_adapter(adapter: str) -> None:
    server, rule = CONTRACT_CATCHES[adapter]
    with provisioned(adapter_target(f"{MODULE}:{adapter}", server)) as env:
        result = _run(env, rule)
    assert result.status == "failed", result
    assert "inconclusive" not in result.message, result


@pytest.mark.parametrize("rule", SUBTLE_RULES)
@pytest.mark.parametrize("target", ["fake", "minikv", "redis-adapter"])
def test_honest_adapters_pass_the_subtle_rules(target: str, rule: str, redis_env: Provisioned) -> None:
    if target == "fake":
        with provisioned(backend_target("fake")) as env:
            result = _run(env, rule)
    elif target == "minikv":
        with provisioned(adapter_target("tests.broken_adapters:correct", "none")) as env:
            result = _run(env, rule)
    else:
        with provisioned(adapter_target(f"{MODULE}:redis_correct", "redis")) as env:
            result = _run(env, rule)
    assert result.status == "passed", result


def test_redis_backend_passes_the_cross_process_token_rule(redis_env: Provisioned) -> None:
    assert redis_env.client_spec() is not None  # so the rule really spawns the second process
    assert _run(redis_env, "tokens_increase_over_hundreds_of_grants_and_across_processes").status == "passed"
