"""The contract suite is worth shipping only if it passes correct locks and fails broken ones."""

from __future__ import annotations

import pytest

from lockchaos.harness.cli import main
from tests.broken_adapters import BROKEN

# The rule each broken adapter must at least fail (it may fail others too).
EXPECTED_RULE = {
    "release_without_owner_check": "release_by_other_owner_fails",
    "renew_without_owner_check": "renew_by_other_owner_fails",
    "check_then_set_acquire": "acquire_is_atomic_under_contention",
    "no_expiry": "expired_lease_frees_key",
    "constant_token": "tokens_increase_across_release",
    "lying_release": "release_of_free_key_fails",
    "renew_does_not_extend": "renew_by_owner_extends",
    "secretly_rounds_to_seconds": "declared_ttl_rounding_is_applied",
    "rounds_to_seconds_but_declares_ms": "acquire_free_key_grants",
    "reentrant": "acquire_is_not_reentrant",
    "raises_for_not_yours": "release_by_other_owner_fails",
    "no_input_validation": "bad_input_raises_value_error",
    "undeclared_expiry_lag": "expired_lease_frees_key",
}


def test_every_broken_adapter_has_an_expected_rule() -> None:
    assert set(EXPECTED_RULE) == set(BROKEN)


def test_fake_backend_passes_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "--backend", "fake"]) == 0
    assert "0 failed" in capsys.readouterr().out


def test_correct_minikv_adapter_passes_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "--adapter", "tests.broken_adapters:correct", "--server", "none"]) == 0


@pytest.mark.parametrize("name", sorted(EXPECTED_RULE))
def test_broken_adapter_fails_the_contract(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["contract", "--adapter", f"tests.broken_adapters:{name}", "--server", "none"])
    out = capsys.readouterr().out
    assert status == 1
    failed_line = next(line for line in out.splitlines() if "rule(s) failed" in line)
    assert EXPECTED_RULE[name] in failed_line
