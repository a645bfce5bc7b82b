"""``python -m lockchaos``: the same entry point as the ``lockchaos`` console script."""

from lockchaos.harness.cli import entry

entry()
