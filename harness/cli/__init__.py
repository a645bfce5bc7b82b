"""The ``lockchaos`` command line and its subcommands (command and flag names are a contract)."""

from lockchaos.harness.cli.main import entry, main

__all__ = ["entry", "main"]
