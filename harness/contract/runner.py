"""Runs the contract rules against one backend factory and reports per rule."""

from __future__ import annotations

import threading
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


RULE_BOUND_S = 600.0
"""How long one rule may take, all its attempts together: far above the slowest rule on a loaded machine
(an etcd cluster's failover rules take well under a minute), so that a lock call that never returns (a
user's adapter without a timeout) fails the rule instead of hanging the contract forever."""


@dataclass(frozen=True, slots=True)
class RuleResult:
    rule: str
    statement: str
    status: Status
    message: str
    seconds: float
    attempts: int
    hung: bool = False
    """The rule did not finish within ``RULE_BOUND_S``: its thread is abandoned, still blocked in a call."""


def run_rule(
    rule: Rule,
    factory: Callable[[], LockBackend],
    *,
    clock: Clock = REAL_CLOCK,
    server: ServerControl | None = None,
) -> RuleResult:
    """The rule's result, within ``RULE_BOUND_S``: run in a daemon thread, abandoned if a call never returns."""
    box: list[RuleResult | BaseException] = []

    def attempt() -> None:
        try:
            box.append(_run_rule(rule, factory, clock=clock, server=server))
        except BaseException as exc:  # handed to the caller's thread
            box.append(exc)

    start = time.monotonic()
    worker = threading.Thread(target=attempt, name=f"contract-{rule.name}", daemon=True)
    worker.start()
    worker.join(RULE_BOUND_S)
    if not box:
        return RuleResult(rule.name, rule.statement, "failed",
                          f"did not finish within {RULE_BOUND_S:g} s: a call never returned (every call needs "
                          "a timeout)", time.monotonic() - start, 1, hung=True)
    if isinstance(box[0], BaseException):
        raise box[0]
    return box[0]


def _run_rule(
    rule: Rule,
    factory: Callable[[], LockBackend],
    *,
    clock: Clock,
    server: ServerControl | None,
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
    results: list[RuleResult] = []
    for rule in rules:
        hung = next((r.rule for r in results if r.hung), None)
        result = (run_rule(rule, factory, clock=clock, server=server) if hung is None else
                  RuleResult(rule.name, rule.statement, "skipped", f"not run: a call in rule {hung} never "
                             "returned, and another would block as long", 0.0, 0))
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results
