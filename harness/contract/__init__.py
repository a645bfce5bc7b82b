"""The lock contract: the shipped suite every backend, ours or a user's, is judged by."""

from lockchaos.harness.contract import subtle_rules  # noqa: F401 - registers its rules into RULES (it imports rules.py first)
from lockchaos.harness.contract.context import ContractContext, ContractFailure, ServerControl
from lockchaos.harness.contract.rules import RULES, Rule, find_rule, rule_names
from lockchaos.harness.contract.runner import RuleResult, run_contract, run_rule

__all__ = [
    "RULES",
    "ContractContext",
    "ContractFailure",
    "Rule",
    "RuleResult",
    "ServerControl",
    "find_rule",
    "rule_names",
    "run_contract",
    "run_rule",
]
