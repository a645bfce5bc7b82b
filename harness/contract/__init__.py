"""The lock contract: the shipped suite every backend, ours or a user's, is judged by."""

from . import subtle_rules  # noqa: F401 - registers its rules into RULES (it imports rules.py first)
from .context import ContractContext, ContractFailure, ServerControl
from .rules import RULES, Rule, find_rule, rule_names
from .runner import RuleResult, run_contract, run_rule

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
