"""Runs the contract rules against one backend factory and reports per rule."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from lockchaos.backends.base import LockBackend
from lockchaos.backends.clock import REAL_CLOCK, Clock
from lockchaos.harness.contract.context import (
    ContractContext,
    ContractFailure,
    Inconclusive,
    RuleSkipped,
    ServerControl,
)
from lockchaos.harness.contract.rules import RULES, Rule

Status = Literal["passed", "failed", "skipped"]

MAX_ATTEMPTS = 5
"""Inconclusive timing probes are retried on a fresh key; five misses in a row is a finding."""


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: str
    statement: str
    status: Status
    message: str
    seconds: float
    attempts: int


def run_rule(
    rule: Rule,
    factory: Callable[[], LockBackend],
    *,
    clock: Clock = REAL_CLOCK,
    server: ServerControl | None = None,
) -> RuleResult:
    start = time.monotonic()
    status: Status = "failed"
    message = ""
    attempt = 0
    for attempt in range(1, MAX_ATTEMPTS + 1):  # noqa: B007 - reported below
        ctx: ContractContext | None = None
        try:
            ctx = ContractContext(factory, clock=clock, server=server)
            rule.check(ctx)
            status, message = "passed", ""
        except Inconclusive as exc:
            status, message = "failed", f"inconclusive {MAX_ATTEMPTS} times in a row: {exc}"
            continue
        except RuleSkipped as exc:
            status, message = "skipped", str(exc)
        except ContractFailure as exc:
            status, message = "failed", str(exc)
        except Exception as exc:
            status, message = "failed", f"raised {type(exc).__name__}: {exc}"
        finally:
            if ctx is not None:
                ctx.close()
        break
    return RuleResult(rule.name, rule.statement, status, message, time.monotonic() - start, attempt)


def run_contract(
    factory: Callable[[], LockBackend],
    *,
    rules: Iterable[Rule] = RULES,
    clock: Clock = REAL_CLOCK,
    server: ServerControl | None = None,
    on_result: Callable[[RuleResult], None] | None = None,
) -> list[RuleResult]:
    results = []
    for rule in rules:
        result = run_rule(rule, factory, clock=clock, server=server)
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results
