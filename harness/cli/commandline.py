"""The ``lockchaos`` command line: parse, validate everything, then run (command and flag names are a contract)."""

from __future__ import annotations

import argparse
import math
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from rich.console import Console

from lockchaos.backends.base import ConfigurationError, InfrastructureError
from lockchaos.backends.redaction import redact_text
from lockchaos.harness import exitcodes
from lockchaos.harness.run import interrupts
from lockchaos.harness.run.rundir import DEFAULT_PARENT
from lockchaos.harness.run.targets import (
    BACKEND_CHOICES,
    SERVERS,
    Target,
    adapter_target,
    backend_names,
    backend_target,
    external_target,
    probe_client,
    provisioned,
)
from lockchaos.harness.scenarios import CATALOGUE, find_scenario

if TYPE_CHECKING:
    from lockchaos.harness.cli.soak import SoakPlan


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit status 2, as for every bad input."""

    def error(self, message: str) -> NoReturn:
        raise ConfigurationError(message)


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lockchaos", description="Chaos and soak harness for distributed lease locks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    contract = sub.add_parser("contract", help="run the lock contract suite against a backend or adapter")
    _add_target_args(contract)

    soak = sub.add_parser("soak", help="run failover scenarios with faults and record histories")
    _add_target_args(soak)
    soak.add_argument("--scenario", default="all", help="scenario name, or all (default)")
    soak.add_argument("--duration", type=_positive(float, "--duration", MAX_DURATION_S), metavar="S",
                      help="seconds each scenario runs (default: the scenario's own length)")
    soak.add_argument("--seed", type=_non_negative_int("--seed"), help="seed (default: random, recorded)")
    soak.add_argument("--workers", type=_bounded_int("--workers", 1, 256), help="worker clients (1-256)")
    soak.add_argument("--keys", type=_bounded_int("--keys", 1, 4096),
                      help="lock keys the workers share, each acquire on one drawn at random (1-4096; "
                           "default: the scenario's own, 64 for stress)")
    soak.add_argument("--ttl-ms", type=_bounded_int("--ttl-ms", 1, 3_600_000), dest="ttl_ms",
                      help="lease TTL in ms (default: 1000, 2000 for etcd)")
    soak.add_argument("--virtual-time", action="store_true", help="simulate time (fake backend only)")
    soak.add_argument("--workers-mode", choices=("auto", "process", "thread"), default="auto", dest="workers_mode",
                      help="real time: each worker in its own OS process (a crash is kill -9, a pause SIGSTOPs "
                           "the library's threads too) or a thread of the harness; auto (default): processes "
                           "against a real server, threads on the in-process fake")
    soak.add_argument("--out", type=_path("--out"), metavar="DIR",
                      help="run directory (default: ./lockchaos-runs/TIME)")

    mode = soak.add_mutually_exclusive_group()
    mode.add_argument("--quiet", action="store_true", help="no progress or table: one summary line")
    mode.add_argument("--json", action="store_true", help="print the run index as JSON, nothing else")
    soak.add_argument("--strict", action="store_true",
                      help="known-unsafe configurations doing what they are known to do also fail the run")

    check = sub.add_parser("check", help="re-run the checkers on a recorded run or history")
    check.add_argument("target", type=_path("RUN_DIR_OR_HISTORY"), metavar="RUN_DIR_OR_HISTORY")
    check.add_argument("--strict", action="store_true", help="known-unsafe findings also fail")

    report = sub.add_parser("report", help="(re)build report.html, index.html and junit.xml of a recorded run")
    report.add_argument("target", type=_path("RUN_DIR_OR_HISTORY"), metavar="RUN_DIR_OR_HISTORY")

    sub.add_parser("scenarios", help="list the scenario catalogue")
    return parser


MAX_DURATION_S = 30 * 24 * 3600
"""A month of (simulated) time per scenario: anything longer is a typo, not a soak."""


def _positive(kind: Callable[[str], float], flag: str, high: float = math.inf) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{flag} must be > 0, got {text!r}")
        if value > high:
            raise argparse.ArgumentTypeError(f"{flag} must be at most {high:g} seconds (30 days), got {text!r}")
        return value

    return parse


def _path(what: str) -> Callable[[str], Path]:
    """A path argument; an empty one is refused: ``Path("")`` is the working directory, which ``check``
    would search through and ``--out`` would fill."""
    def parse(text: str) -> Path:
        if not text.strip() or "\x00" in text:
            raise argparse.ArgumentTypeError(f"{what} must be a path, got {text!r} (empty)" if not text.strip()
                                             else f"{what} must be a path, got {text!r} (a NUL byte)")
        path = Path(text)
        try:  # a missing path is fine here; one the system refuses to look up (too long, no access) is not
            path.exists()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"{what} {text!r}: {exc.strerror or exc}") from None
        return path

    return parse


def _bounded_int(flag: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{flag} must be between {low} and {high}, got {value}")
        return value

    return parse


def _non_negative_int(flag: str) -> Callable[[str], int]:
    return _bounded_int(flag, 0, 2**63 - 1)


def _backend_list(text: str) -> str:
    """``--backend`` takes one choice or several, comma-separated (``all,libs``: ours and every library)."""
    parts = [p.strip() for p in text.split(",")]
    bad = [p for p in parts if p not in BACKEND_CHOICES]
    if bad or not parts:
        raise argparse.ArgumentTypeError(f"invalid choice: {(bad or [text])[0]!r} (choose from "
                                         f"{', '.join(BACKEND_CHOICES)}; several, comma-separated)")
    return ",".join(parts)


def _add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", type=_backend_list, metavar="|".join(BACKEND_CHOICES),
                   help="one of our backends, or all of them; a lock library, or libs for all of them; "
                        "a cluster (etcd-cluster, redis-sentinel, redis-sentinel-wait, redlock: never in all); "
                        "several, comma-separated")
    p.add_argument("--adapter", metavar="PKG.MOD:FACTORY", help="your adapter: factory(url) -> LockBackend")
    p.add_argument("--server", choices=SERVERS, help="server the harness provides to --adapter")
    p.add_argument("--provision", choices=("process", "container"), default="process",
                   help="how the harness runs the servers it starts: local binaries (default) or containers "
                        "on a Docker engine (see scripts/container-host.sh)")
    p.add_argument("--url", metavar="URL",
                   help="a redis:// or etcd:// server you run, or a cluster (etcd://h1:p,h2:p,h3:p, "
                        "redis+sentinel://h1:p,h2:p/SERVICE) (external mode: never started, stopped or "
                        "faulted; keys under a per-run prefix that is removed at the end)")


def _targets(args: argparse.Namespace, *, persistence: bool = False) -> list[Target]:
    targets = _choose_targets(args, persistence=persistence)
    if args.provision == "container":
        if args.url is not None:
            raise ConfigurationError("--provision container starts servers; --url is a server you run: pick one")
        if any(t.server_kind != "fake" for t in targets):
            from lockchaos.harness.servers.containers import container_engine_available

            why = container_engine_available()
            if why is not None:
                raise InfrastructureError(why)
    return targets


def _choose_targets(args: argparse.Namespace, *, persistence: bool = False) -> list[Target]:
    if args.url is not None:
        if args.server is not None:
            raise ConfigurationError("give either --server (the harness starts one) or --url (yours), not both")
        if args.backend in ("fake", "all"):
            raise ConfigurationError(f"--url is a real server; --backend {args.backend} cannot use it")
        if args.adapter is not None and args.backend is not None:
            raise ConfigurationError("give either --backend or --adapter, not both")
        return [external_target(args.url, backend=args.backend, adapter=args.adapter)]
    if args.adapter is not None:
        if args.backend is not None:
            raise ConfigurationError("give either --backend or --adapter, not both")
        if args.server is None:
            raise ConfigurationError("--adapter needs --server redis|redis-aof|etcd|none")
        # A user's adapter gets the server's default configuration: what its declaration must match.
        return [adapter_target(args.adapter, args.server, provision=args.provision)]
    if args.server is not None:
        raise ConfigurationError("--server goes with --adapter")
    return [backend_target(n, persistence=persistence, provision=args.provision) for n in backend_names(args.backend)]


def _soak_plan(args: argparse.Namespace) -> SoakPlan:
    from lockchaos.harness.cli.soak import SoakPlan
    from lockchaos.harness.run.driver import RunOptions  # here: ``check`` and ``report`` never load the driver

    targets = _targets(args)
    if args.virtual_time and any(t.server_kind != "fake" for t in targets):
        raise ConfigurationError("--virtual-time runs the fake only: use --backend fake (or --server none)")
    if args.workers_mode == "process":  # a factory a worker process cannot import: say so now (exit 2)
        from lockchaos.harness.run.procworker import uses_processes

        for target in targets:
            uses_processes(target, "process", args.virtual_time)
    scenarios = CATALOGUE if args.scenario == "all" else (find_scenario(args.scenario),)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    out = args.out if args.out is not None else DEFAULT_PARENT / time.strftime("%Y%m%d-%H%M%S")
    if args.out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigurationError(f"--out {out} exists and is not an empty directory")
    options = RunOptions(seed=seed, workers=args.workers, duration_s=args.duration,
                         virtual_time=args.virtual_time, strict=args.strict, workers_mode=args.workers_mode,
                         keys=args.keys)
    output = "json" if args.json else "quiet" if args.quiet else "rich"
    return SoakPlan(tuple(targets), tuple(scenarios), options, args.ttl_ms, out, output,
                    default_out=args.out is None)


def _probe_external(targets: Sequence[Target]) -> None:
    """A server the user runs is reached once before the run directory exists: a wrong password is
    one exit-2 line and an unreachable server one exit-3 line within seconds, not a failure per
    scenario of the catalogue."""
    for target in targets:
        if target.external_url is not None:
            with provisioned(target) as env:
                probe_client(env)


def _list_scenarios(console: Console) -> int:
    for s in CATALOGUE:
        console.print(f"{s.name:24} {s.description}", soft_wrap=True, highlight=False, markup=False)
    return exitcodes.OK


def _one_line(text: str) -> str:
    """An error quoting a user's exception (an adapter's, a server's) may span lines: the error is one line."""
    return " | ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def main(argv: Sequence[str] | None = None) -> int:
    # Piped output (CI logs) gets a wide console so tables stay readable.
    console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
    err = Console(stderr=True)
    if threading.current_thread() is threading.main_thread():
        interrupts.install()
    try:
        args = _build_parser().parse_args(argv)
        if args.command == "contract":
            from lockchaos.harness.contract.command import run_contract_command

            # A durable server, so that the durability rule has a claim to check, not a skip.
            return run_contract_command(_targets(args, persistence=True), console)
        if args.command == "soak":
            from lockchaos.harness.cli.soak import run_soak

            plan = _soak_plan(args)
            _probe_external(plan.targets)
            return run_soak(plan, console)
        if args.command == "scenarios":
            return _list_scenarios(console)
        if args.command == "report":
            from lockchaos.harness.report.command import report_command

            return report_command(args.target, console)
        if args.command == "check":
            from lockchaos.harness.cli.check import run_check

            return run_check(args.target, strict=args.strict, console=console)
        raise ConfigurationError(f"unknown command {args.command!r}")
    except ConfigurationError as exc:  # redacted at the source too; this is the net under it
        err.print(f"lockchaos: error: {_one_line(redact_text(str(exc)))}", highlight=False, markup=False,
                  soft_wrap=True)
        return exitcodes.USAGE
    except InfrastructureError as exc:
        err.print(f"lockchaos: infrastructure: {_one_line(redact_text(str(exc)))}", highlight=False, markup=False,
                  soft_wrap=True)
        return exitcodes.INFRASTRUCTURE
    except KeyboardInterrupt:
        err.print("lockchaos: interrupted", highlight=False, markup=False, soft_wrap=True)
        return interrupts.exit_status()


def entry() -> NoReturn:
    sys.exit(main())
