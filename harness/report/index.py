"""``index.html``: a soak's runs as a scenario x backend table, each verdict linking to its report."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lockchaos.harness.report.html import REPORT_FILE
from lockchaos.harness.report.markup import esc
from lockchaos.harness.report.runs import RunEntry, checks_of, discover, split_infrastructure
from lockchaos.harness.report.style import CSS
from lockchaos.harness.run.atomicfile import write_atomic

INDEX_HTML = "index.html"
_ORDER = ("fail", "error", "known-unsafe", "pass", "skipped", "unknown")


def write_index(out_dir: Path) -> Path:
    """Write ``out_dir/index.html`` from ``index.json`` (or the run directories) and each run's summary.

    Links are relative, so the directory can be moved or archived whole; a run links to its
    ``report.html`` when that exists (write the reports first), else to its ``summary.json``.
    """
    soak = discover(out_dir)
    infra = [split_infrastructure(x) for x in soak.infrastructure_failures]
    backends = list(dict.fromkeys([r.backend for r in soak.runs] + [b for b, _, _ in infra]))
    scenarios = list(dict.fromkeys([r.scenario for r in soak.runs] + [s for _, s, _ in infra]))
    checks = [None if r.status == "skipped" else checks_of(r) for r in soak.runs]  # judged at most once each
    cells = {(r.scenario, r.backend): _cell(r, c, out_dir) for r, c in zip(soak.runs, checks, strict=True)}
    for b, s, message in infra:
        cells[(s, b)] = (f'<td class="run" data-verdict="error"><span class="badge error">error</span>'
                         f'<div class="reason">{esc(message)}</div></td>')
    head = "".join(f"<th>{esc(b)}</th>" for b in backends)
    rows = []
    for s in scenarios:
        tds = "".join(cells.get((s, b), '<td class="muted">not run</td>') for b in backends)
        rows.append(f'<tr><th scope="row">{esc(s)}</th>{tds}</tr>')
    counts = Counter([_verdict(r, c) for r, c in zip(soak.runs, checks, strict=True)] + ["error"] * len(infra))
    tally = " · ".join(f'<span class="badge {esc(k)}">{counts[k]} {esc(k)}</span>'
                       for k in sorted(counts, key=lambda k: (_ORDER.index(k) if k in _ORDER else 99, k)))
    failures = ""
    if soak.infrastructure_failures:
        items = "".join(f"<li>{esc(x)}</li>" for x in soak.infrastructure_failures)
        failures = f'<section id="infrastructure"><h2>Infrastructure failures</h2><ul>{items}</ul></section>'
    facts = [f"{len(soak.runs)} runs", f"{len(backends)} backends"]
    if soak.seed is not None:
        facts.append(f"seed {esc(soak.seed)}")
    if soak.finished_at:
        facts.append(f"finished {esc(soak.finished_at)}")
    body = (f'<header><h1>lockchaos soak</h1><p class="facts">{" · ".join(facts)}</p><p>{tally}</p></header>'
            f'<section id="runs"><h2>Verdicts</h2><table id="matrix"><thead><tr><th>scenario</th>{head}</tr>'
            f'</thead><tbody>{"".join(rows)}</tbody></table>'
            '<p class="muted">pass: every check held · known-unsafe: a configuration did what it is known to do '
            "(passes unless --strict) · fail: the backend broke a guarantee it declared · skipped: the backend "
            "cannot take the scenario's faults (reason given) · error: the infrastructure failed.</p></section>"
            + failures)
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>"
            f"<title>lockchaos soak: {esc(out_dir.name)}</title><style>{CSS}</style></head>\n<body>\n{body}\n"
            "</body></html>\n")
    out = out_dir / INDEX_HTML
    write_atomic(out, page)
    return out


def _verdict(run: RunEntry, checks: dict[str, Any] | None) -> str:
    if run.status == "skipped":
        return "skipped"
    return str(checks["verdict"]) if checks is not None else "unknown"


def _href(run: RunEntry, name: str) -> str:
    return "/".join(quote(part) for part in run.rel.split("/") if part not in ("", ".")) + "/" + name


def _cell(run: RunEntry, checks: dict[str, Any] | None, out_dir: Path) -> str:
    verdict = _verdict(run, checks)
    own_dir = run.directory.resolve() != out_dir.resolve()
    target = next((n for n in (REPORT_FILE, "summary.json") if own_dir and (run.directory / n).is_file()), None)
    label = esc(verdict)
    if verdict == "fail":
        failing = [k for k, c in (checks or {}).get("checkers", {}).items() if c.get("verdict") == "fail"]
        if failing:
            label += f" ({esc(', '.join(failing))})"
    badge = (f'<a class="cell badge {esc(verdict)}" href="{esc(_href(run, target))}">{label}</a>' if target
             else f'<span class="badge {esc(verdict)}">{label}</span>')
    reason = f'<div class="reason">{esc(run.reason)}</div>' if run.reason else ""
    return f'<td class="run" data-verdict="{esc(verdict)}">{badge}{reason}</td>'
