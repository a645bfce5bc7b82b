"""Reports of recorded runs: a self-contained HTML page per run, an index and JUnit XML per soak.

Everything here reads what a run wrote (``history.jsonl``, ``summary.json``, ``index.json``) and
nothing else, so a report can be rebuilt at any time with ``lockchaos report``.
"""

from __future__ import annotations

from lockchaos.harness.report.command import report_command
from lockchaos.harness.report.html import write_report
from lockchaos.harness.report.index import write_index
from lockchaos.harness.report.junit import write_junit

__all__ = ["report_command", "write_index", "write_junit", "write_report"]
