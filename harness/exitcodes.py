"""Exit statuses are a contract with CI scripts (README, Verdicts): keep them in one place."""

OK = 0
CHECK_FAILED = 1
USAGE = 2
INFRASTRUCTURE = 3
