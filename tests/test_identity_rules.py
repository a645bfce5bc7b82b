"""Near names are distinct names: the contract catches a lock that folds, cuts, normalises or
prefix-matches keys or owners, and passes the shipped backends (real servers started here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lockchaos.backends import open_backend
from lockchaos.harness.cli import main
from lockchaos.harness.contract.rules import find_rule
from lockchaos.harness.contract.runner import run_rule
from lockchaos.harness.servers.process import EtcdServer, RedisServer
from tests.broken_adapters import LOOSE_NAMES, CorrectAdapter

RULES = ("keys_are_compared_exactly", "owners_are_compared_exactly")


@pytest.mark.parametrize("name", sorted(LOOSE_NAMES))
def test_contract_rule_catches_an_adapter_that_takes_near_names_for_one(name: str) -> None:
    cls, expected = LOOSE_NAMES[name]
    results = {rule: run_rule(find_rule(rule), lambda: cls(f"fake://loose-{name}")) for rule in RULES}
    assert results[expected].status == "failed", results[expected].message
    other = next(r for r in RULES if r != expected)
    assert results[other].status == "passed", results[other].message  # one defect, one rule


@pytest.mark.parametrize("rule", RULES)
def test_correct_adapter_keeps_near_names_apart(rule: str) -> None:
    result = run_rule(find_rule(rule), lambda: CorrectAdapter("fake://exact-names"))
    assert result.status == "passed", result.message


def test_contract_command_names_the_rule_a_prefix_matching_release_fails(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["contract", "--adapter", "tests.broken_adapters:prefix_release", "--server", "none"])
    out = capsys.readouterr().out
    assert status == 1
    failed_line = next(line for line in out.splitlines() if "rule(s) failed" in line)
    assert failed_line.rstrip().endswith("keys_are_compared_exactly")  # that rule, and no other


@pytest.fixture(scope="module", params=["fake", pytest.param("redis", marks=pytest.mark.redis),
                                        pytest.param("etcd", marks=pytest.mark.etcd)])
def backend_url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "fake":
        yield "fake://identity-rules"
        return
    server_type = RedisServer if request.param == "redis" else EtcdServer
    with server_type() as server:
        yield server.url


@pytest.mark.parametrize("rule", RULES)
def test_shipped_backends_keep_near_names_apart(backend_url: str, rule: str) -> None:
    result = run_rule(find_rule(rule), lambda: open_backend(backend_url))
    assert result.status == "passed", result.message
