"""lockchaos: a chaos and soak harness for distributed lease locks.

The repository keeps ``backends/`` and ``harness/`` at its top; they install as ``lockchaos.backends``
and ``lockchaos.harness`` so that nothing generic lands at the top of a user's site-packages (a user's
own ``harness`` package must keep working beside ours). In a checkout, the two symlinks beside this
file give the same names without installing.
"""
