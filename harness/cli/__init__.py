"""The ``lockchaos`` command line and its subcommands (command and flag names are a contract).

``entry`` takes the signals over before anything heavy is imported: on a loaded machine importing the
clients and the checkers takes seconds, and a SIGTERM in that window must still end the process the
orderly way (status 143), not by the default action.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import NoReturn

from lockchaos.harness.run import interrupts


def main(argv: Sequence[str] | None = None) -> int:
    from lockchaos.harness.cli.commandline import main as run

    return run(argv)


def entry() -> NoReturn:
    interrupts.install()
    try:
        from lockchaos.harness.cli.commandline import main as run
    except KeyboardInterrupt:
        sys.exit(interrupts.exit_status())
    sys.exit(run())


__all__ = ["entry", "main"]
