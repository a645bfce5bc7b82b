"""Exit statuses are a contract with CI scripts (DESIGN.md): keep them in one place."""

OK = 0
CHECK_FAILED = 1
USAGE = 2
INFRASTRUCTURE = 3
