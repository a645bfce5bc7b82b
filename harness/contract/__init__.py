"""The lock contract: the shipped suite every backend, ours or a user's, is judged by."""

from lockchaos.harness.contract import subtle_rules  # noqa: F401 - registers its rules into RULES (it imports rules.py first)

# isort: split
from lockchaos.harness.contract import identity_rules  # noqa: F401 - registers its rules after subtle_rules'

# isort: split
from lockchaos.harness.contract import outage_rules  # noqa: F401 - registers its rules after identity_rules'

# isort: split
# Last: they kill and restart cluster members, so every other rule runs on an untouched cluster.
from lockchaos.harness.contract import failover_rules  # noqa: F401 - registers its rules after subtle_rules'
from lockchaos.harness.contract.context import ClusterControl, ContractContext, ContractFailure, ServerControl
from lockchaos.harness.contract.rules import RULES, Rule, find_rule, rule_names
from lockchaos.harness.contract.runner import RuleResult, run_contract, run_rule

__all__ = [
    "RULES",
    "ClusterControl",
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
