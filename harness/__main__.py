from lockchaos.harness.cli.main import entry

entry()
