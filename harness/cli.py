"""The ``lockchaos`` command line: parse, validate everything, then run (DESIGN.md names are stable)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from rich.console import Console

from backends.base import ConfigurationError, InfrastructureError

from . import exitcodes
from .targets import BACKENDS, SERVERS, Target, adapter_target, backend_target


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2, as for every bad input."""

    def error(self, message: str) -> NoReturn:
        raise ConfigurationError(message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lockchaos", description="Chaos and soak harness for distributed lease locks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    contract = sub.add_parser("contract", help="run the lock contract suite against a backend or adapter")
    _add_target_args(contract)
    return parser


def _add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=[*BACKENDS, "all"], help="one of our backends, or all")
    p.add_argument("--adapter", metavar="PKG.MOD:FACTORY", help="your adapter: factory(url) -> LockBackend")
    p.add_argument("--server", choices=SERVERS, help="server the harness provides to --adapter")


def _targets(args: argparse.Namespace) -> list[Target]:
    if args.adapter is not None:
        if args.backend is not None:
            raise ConfigurationError("give either --backend or --adapter, not both")
        if args.server is None:
            raise ConfigurationError("--adapter needs --server redis|etcd|none")
        return [adapter_target(args.adapter, args.server)]
    if args.server is not None:
        raise ConfigurationError("--server goes with --adapter")
    names = BACKENDS if args.backend in (None, "all") else (args.backend,)
    return [backend_target(n) for n in names]


def main(argv: Sequence[str] | None = None) -> int:
    console = Console(stderr=False)
    err = Console(stderr=True)
    try:
        args = _build_parser().parse_args(argv)
        if args.command == "contract":
            from .contract.command import run_contract_command

            return run_contract_command(_targets(args), console)
        raise ConfigurationError(f"unknown command {args.command!r}")
    except ConfigurationError as exc:
        err.print(f"lockchaos: error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return exitcodes.USAGE
    except InfrastructureError as exc:
        err.print(f"lockchaos: infrastructure: {exc}", highlight=False, markup=False, soft_wrap=True)
        return exitcodes.INFRASTRUCTURE
    except KeyboardInterrupt:
        err.print("lockchaos: interrupted", highlight=False, markup=False, soft_wrap=True)
        return 130


def entry() -> NoReturn:
    sys.exit(main())
