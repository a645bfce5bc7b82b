"""Adapter authors get the contract inside their own pytest session, one test per rule."""

from __future__ import annotations

import pytest

from lockchaos.harness.contract import rule_names

CONFTEST = """
import pytest
from lockchaos.backends import open_backend

@pytest.fixture
def lockchaos_factory():
    return open_backend
"""


def test_conftest_fixture_runs_one_test_per_rule(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    result = pytester.runpytest("-v", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    # Rules for capabilities the fake does not declare (refusals, truncation) skip, saying why.
    assert outcomes.get("failed", 0) == 0 and outcomes.get("error", 0) == 0
    assert outcomes["passed"] + outcomes.get("skipped", 0) == len(rule_names())
    for name in rule_names():
        result.stdout.fnmatch_lines([f"*conftest.py::{name} [PS][AK][SI]*"])


def test_adapter_option_runs_the_contract_and_names_failing_rules(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--lockchaos-adapter", "tests.broken_adapters:release_without_owner_check",
                                "-p", "no:cacheprovider", "-q")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 1
    result.stdout.fnmatch_lines(["*FAILED*release_by_other_owner_fails*"])


def test_without_adapter_or_fixture_the_plugin_adds_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
