from lockchaos.harness.cli import entry

entry()
