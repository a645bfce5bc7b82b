"""Exit statuses are a contract with CI scripts (README, Verdicts): keep them in one place."""

OK = 0
CHECK_FAILED = 1
USAGE = 2
"""A ``ConfigurationError`` (backends/base.py): bad input, before anything runs."""
INFRASTRUCTURE = 3
"""An ``InfrastructureError``: a server or proxy could not be started, reached or faulted."""
