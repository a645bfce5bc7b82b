"""``lockchaos check``: re-run the checkers on recorded histories and print what they found."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from lockchaos.backends.base import ConfigurationError, InfrastructureError
from lockchaos.harness import exitcodes
from lockchaos.harness.checkers.verdicts import Judgement, history_paths, judge, update_summary

STYLE = {"pass": "green", "fail": "bold red", "known-unsafe": "yellow", "skipped": "dim"}


def run_check(target: Path, *, strict: bool, console: Console) -> int:
    failed = False
    for path in history_paths(target):
        try:
            judgement = judge(path, strict=strict)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"{path}: not a readable lockchaos history: {exc}") from None
        except OSError as exc:  # unreadable (permissions, I/O error): the input is bad, nothing ran
            raise ConfigurationError(f"{path}: cannot read it: {exc.strerror or exc}") from None
        except RecursionError:  # JSON may nest 1024 deep; quoting such a value in a finding cannot
            raise ConfigurationError(f"{path}: not a readable lockchaos history: a value nested too deeply") from None
        try:
            update_summary(path.parent, judgement)
            unsaved = None
        except InfrastructureError as exc:  # a read-only or full run directory: the verdict still stands
            unsaved = exc
        console.print(judgement_table(str(path.parent), judgement))
        print_findings(console, judgement)
        if unsaved is not None:
            console.print(f"[yellow]verdict printed, not saved:[/] {unsaved}", soft_wrap=True, highlight=False)
        failed |= judgement.failed
    return exitcodes.CHECK_FAILED if failed else exitcodes.OK


def judgement_table(title: str, judgement: Judgement) -> Table:
    table = Table(title=f"{title}: [{STYLE[judgement.verdict]}]{judgement.verdict}[/]"
                  + (" (history truncated: judged up to its last complete event)" if judgement.truncated else ""))
    for col in ("checker", "verdict", "violations", "known-unsafe", "stats"):
        table.add_column(col)
    for r in judgement.results:
        v = r.verdict(judgement.strict)
        stats = ", ".join(f"{k}={val}" for k, val in r.stats.items())
        table.add_row(r.checker, f"[{STYLE[v]}]{v}[/]", str(len(r.violations)), str(len(r.known_unsafe)), stats)
    return table


def print_findings(console: Console, judgement: Judgement, limit: int = 3) -> None:
    for r in judgement.results:
        for f in r.findings[:limit]:
            style = "red" if f.severity == "violation" else "yellow"
            console.print(f"  [{style}]{f.severity}[/] {r.checker}/{f.kind} at {f.time_ns / 1e9:.3f}s "
                          f"(history lines {', '.join(map(str, f.lines))}): {f.message}",
                          soft_wrap=True, highlight=False)
