"""The contract suite as a pytest plugin, so adapter authors run it in their own test session.

Two ways in, one test per rule (rule names are the test ids):
- define a fixture ``lockchaos_factory`` in a ``conftest.py`` that returns ``factory(url)``; the
  contract is collected beside that conftest;
- or run ``pytest --lockchaos-adapter pkg.mod:factory [--lockchaos-server redis|redis-aof|etcd|none]``.
The harness provides the server (``none``: a fresh in-process fake) and passes its URL to the factory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lockchaos.harness.contract.rules import RULES, Rule
from lockchaos.harness.contract.runner import run_rule
from lockchaos.harness.run.adapters import AdapterFactory, load_factory
from lockchaos.harness.run.targets import SERVERS, Target, provisioned, server_of

FIXTURE = "lockchaos_factory"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lockchaos", "lockchaos lock contract")
    group.addoption("--lockchaos-adapter", metavar="PKG.MOD:FACTORY", default=None,
                    help="run the lockchaos contract suite against this adapter factory")
    group.addoption("--lockchaos-server", choices=SERVERS, default="none",
                    help="server the harness provides to the adapter (default: none = in-process fake)")


@pytest.fixture
def lockchaos_factory(request: pytest.FixtureRequest) -> AdapterFactory:
    """Default: the factory named by --lockchaos-adapter. Override it in your conftest.py."""
    spec = request.config.getoption("--lockchaos-adapter")
    if spec is None:
        raise pytest.UsageError(f"define a {FIXTURE!r} fixture or pass --lockchaos-adapter")
    return load_factory(spec)


def _make_test(rule: Rule) -> Callable[..., None]:
    def test(lockchaos_factory: AdapterFactory, request: pytest.FixtureRequest) -> None:
        server = request.config.getoption("--lockchaos-server")
        kind, durable = server_of(server)
        target = Target(f"pytest:{rule.name}", kind, lockchaos_factory, adapter_spec=FIXTURE, persistence=durable)
        with provisioned(target) as env:
            result = run_rule(rule, env.client_factory(), server=env.server_control())
        if result.status == "skipped":
            pytest.skip(result.message)
        if result.status == "failed":
            pytest.fail(f"{rule.statement}\n{result.message}", pytrace=False)

    test.__doc__ = rule.statement
    return test


class ContractFile(pytest.File):
    """A virtual test file whose tests are the contract rules."""

    def collect(self) -> Iterator[pytest.Item]:
        for rule in RULES:
            yield pytest.Function.from_parent(self, name=rule.name, callobj=_make_test(rule))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Any:
    if file_path.name == "conftest.py" and FIXTURE in file_path.read_text(errors="replace"):
        return ContractFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    if config.getoption("--lockchaos-adapter") is None:
        return
    if any(isinstance(item.parent, ContractFile) for item in items):
        return
    virtual = ContractFile.from_parent(session, path=config.rootpath / "lockchaos-contract")
    items.extend(virtual.collect())
