"""``lockchaos report RUN_DIR_OR_HISTORY``: (re)build reports from what a run recorded."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from lockchaos.backends.base import ConfigurationError
from lockchaos.harness import exitcodes
from lockchaos.harness.checkers.verdicts import SUMMARY_FILE
from lockchaos.harness.report.html import REPORT_FILE, write_report, write_report_for
from lockchaos.harness.report.index import write_index
from lockchaos.harness.report.junit import write_junit
from lockchaos.harness.report.loading import read_summary
from lockchaos.harness.report.runs import discover, is_soak_dir
from lockchaos.harness.run.history import HISTORY_FILE


def report_command(target: Path, console: Console) -> int:
    """A run directory: its report.html. A soak's top directory: every run's report, index.html and
    junit.xml. A history file: report.html beside it. Missing or unreadable input: ConfigurationError."""
    try:
        written = _build(target)
    except RecursionError:  # JSON may nest 1024 deep: a summary or history value quoted in the page cannot
        raise ConfigurationError(f"{target}: a summary or history holds a value nested too deeply") from None
    for path in written:
        console.print(f"wrote {path}", soft_wrap=True, highlight=False)
    return exitcodes.OK


def _build(target: Path) -> list[Path]:
    if target.is_file():
        return [write_report_for(target, target.parent / REPORT_FILE)]
    if not target.is_dir():
        raise ConfigurationError(f"{target}: no such file or directory")
    if (target / HISTORY_FILE).is_file() or read_summary(target / SUMMARY_FILE).get("status") == "skipped":
        return [write_report(target)]
    if not is_soak_dir(target):
        raise ConfigurationError(f"{target}: no {HISTORY_FILE} and no soak runs here "
                                 "(give a run directory, a soak's directory or a history file)")
    written = []
    top = target.resolve()
    for run in discover(target).runs:
        if run.directory.resolve() == top:
            continue  # a run that never got its own directory (skipped before it started)
        if run.history.is_file() or run.summary.get("status") == "skipped":
            written.append(write_report(run.directory))
    written.append(write_index(target))
    written.append(write_junit(target))
    return written
