"""Every deliberately broken adapter, run through ``lockchaos soak --adapter``, is caught by a checker.

Each runs the scenario that exercises its bug, in real time at a 200 ms TTL, and must exit 1 with the
named checker failing in its summary; the correct adapter on the same store must pass them all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockchaos.harness.cli import main
from tests.broken_adapters import BROKEN

# adapter -> (scenario that exercises the bug, checkers any of which may catch it first)
CAUGHT_BY: dict[str, tuple[str, set[str]]] = {
    "check_then_set_acquire": ("contention", {"exclusion-grants", "conformance"}),
    "constant_token": ("clean-handover", {"fencing"}),
    "lying_release": ("silent-renewer-death", {"conformance"}),
    "no_expiry": ("contention", {"conformance"}),
    "no_input_validation": ("clean-handover", {"conformance"}),
    "raises_for_not_yours": ("silent-renewer-death", {"conformance", "error-handling"}),
    "reentrant": ("duplicate-owner", {"conformance"}),
    "release_without_owner_check": ("silent-renewer-death", {"exclusion-grants", "conformance"}),
    "renew_does_not_extend": ("clean-handover", {"exclusion-grants", "conformance"}),
    "renew_without_owner_check": ("holder-pause", {"conformance", "exclusion-grants"}),
    "rounds_to_seconds_but_declares_ms": ("clean-handover", {"conformance"}),
    "secretly_rounds_to_seconds": ("contention", {"conformance"}),
    "undeclared_expiry_lag": ("under-declared-lag", {"conformance"}),
}


def _soak(adapter: str, scenario: str, out: Path) -> tuple[int, dict[str, object]]:
    status = main(["soak", "--adapter", f"tests.broken_adapters:{adapter}", "--server", "none",
                   "--scenario", scenario, "--ttl-ms", "200", "--seed", "1", "--out", str(out)])
    label = f"tests.broken_adapters_{adapter}_none"
    summary = json.loads((out / label / scenario / "summary.json").read_text())
    return status, summary


def test_every_broken_adapter_has_a_scenario() -> None:
    assert set(CAUGHT_BY) == set(BROKEN)


@pytest.mark.parametrize("adapter", sorted(CAUGHT_BY))
def test_soak_catches_broken_adapter(adapter: str, tmp_path: Path) -> None:
    scenario, checkers = CAUGHT_BY[adapter]
    status, summary = _soak(adapter, scenario, tmp_path)
    checks = summary["checks"]
    assert isinstance(checks, dict)
    assert status == 1
    failing = {name for name, c in checks["checkers"].items() if c["verdict"] == "fail"}
    assert failing & checkers, checks


@pytest.mark.parametrize("scenario", sorted({s for s, _ in CAUGHT_BY.values()}))
def test_correct_adapter_passes_the_same_scenarios(scenario: str, tmp_path: Path) -> None:
    status, summary = _soak("correct", scenario, tmp_path)
    assert status == 0, summary["checks"]
