"""``report.html``: one run on one self-contained page (inline CSS and SVG; no script, no URL).

Top to bottom: what ran (backend, scenario, seed, TTL, virtual or real time) and its verdicts with
failover times; the scenario and the command that reproduces it; the timeline of who was granted
the lock, who believed it held it, writes, faults and findings; the findings with their evidence.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from lockchaos.backends.base import ConfigurationError
from lockchaos.backends.redaction import redact_text
from lockchaos.harness.checkers.model import History
from lockchaos.harness.checkers.verdicts import SUMMARY_FILE, Judgement
from lockchaos.harness.report.loading import (
    MAX_FINDINGS_SHOWN,
    FindingRow,
    LoadedRun,
    load_run,
    read_summary,
    summary_beside,
)
from lockchaos.harness.report.markup import esc, plural
from lockchaos.harness.report.style import CSS, fault_colour
from lockchaos.harness.report.svg import Rendered, render_timeline
from lockchaos.harness.report.timeline import extract
from lockchaos.harness.run import reproduce
from lockchaos.harness.run.atomicfile import write_atomic
from lockchaos.harness.run.history import HISTORY_FILE

REPORT_FILE = "report.html"
EVIDENCE_CHARS = 800


def write_report(run_dir: Path, summary: dict[str, Any] | None = None,
                 judged: tuple[History, Judgement] | None = None) -> Path:
    """Write ``run_dir/report.html`` from its history (and summary); a skipped run gets its reason.

    The driver passes the summary it wrote and the history it judged, with the judgement, so that a
    run is read and judged once; ``lockchaos report`` passes neither and reads them from disk."""
    history = run_dir / HISTORY_FILE
    if summary is None:
        summary = read_summary(run_dir / SUMMARY_FILE)
    out = run_dir / REPORT_FILE
    if not history.is_file():
        if summary.get("status") != "skipped":
            raise ConfigurationError(f"{run_dir}: no {HISTORY_FILE} here (give a run directory or a history file)")
        write_atomic(out, skipped_page(summary))
        return out
    return write_report_for(history, out, summary, judged)


def write_report_for(history: Path, out: Path, summary: dict[str, Any] | None = None,
                     judged: tuple[History, Judgement] | None = None) -> Path:
    """Write a report of any history file (``summary`` defaults to the one beside a run's history)."""
    run = load_run(history, summary_beside(history) if summary is None else summary, judged)
    write_atomic(out, page(run))
    return out


def _doc(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n" + "\n".join(body)
            + "\n<footer><p class=\"muted\">Written by <code>lockchaos report</code>; self-contained: "
              "no script, no network.</p></footer>\n</body></html>\n")


def skipped_page(summary: dict[str, Any]) -> str:
    backend, scenario = str(summary.get("backend", "?")), str(summary.get("scenario", "?"))
    body = [f'<header><h1>lockchaos: {esc(backend)} / {esc(scenario)} <span class="badge skipped">skipped</span>'
            "</h1></header>",
            f'<section id="verdicts"><h2>Skipped</h2><p>{esc(summary.get("reason") or "no reason recorded")}</p>'
            "</section>",
            _scenario_section(summary, {})]
    return _doc(f"lockchaos {backend} / {scenario}: skipped", body)


def page(run: LoadedRun) -> str:
    h = run.history
    meta, summary = h.meta, run.summary
    backend = str(summary.get("backend", meta.get("backend", "unknown backend")))
    scenario = str(summary.get("scenario", meta.get("scenario", "unknown scenario")))
    data = extract(h, run.findings)
    timeline = render_timeline(data)
    body = [_header(run, backend, scenario), _verdicts(run), _throughput(summary),
            _scenario_section(summary, meta),
            _timeline_section(run, timeline),
            _findings_section(run)]
    return _doc(f"lockchaos {backend} / {scenario}: {run.verdict}", body)


def _header(run: LoadedRun, backend: str, scenario: str) -> str:
    h, s = run.history, run.summary
    meta = h.meta
    ttl = s.get("ttl_ms", meta.get("ttl_ms"))
    virtual = s.get("virtual_time", meta.get("virtual_time"))
    mode = "virtual time" if virtual else "real time" if virtual is not None else "time mode unknown"
    seed = s.get("seed", meta.get("seed"))
    caps = h.caps
    facts = [f"seed {esc(seed) if seed is not None else 'unknown'}", f"TTL {esc(ttl)} ms", mode,
             f"{h.end_ns / 1e9:.3f} s recorded",
             f"{esc(meta.get('workers', len({o.rec.client for o in h.ops})))} workers"]
    if "fencing" in meta:
        facts.append("fencing " + ("on" if meta["fencing"] else "off"))
    facts2 = [plural(len(h.ops), "operation"), plural(len(h.writes), "register write"),
              plural(len(h.faults), "fault"), plural(sum(1 for g in h.grants if g.definite), "grant"),
              f"declared: {'durable' if caps.durable else 'not durable'}, expiry lag {caps.expiry_lag_ms} ms, "
              f"TTL granularity {caps.ttl_granularity_ms} ms"]
    trunc = ('<p class="note">The history ends without its end record (a killed or unfinished run): '
             "judged up to its last complete event.</p>") if h.truncated else ""
    return (f'<header><h1>lockchaos: {esc(backend)} / {esc(scenario)} '
            f'<span class="badge {esc(run.verdict)}">{esc(run.verdict)}</span></h1>'
            f'<p class="facts">{" · ".join(facts)}</p><p class="facts muted">{" · ".join(facts2)}</p>'
            f"{trunc}</header>")


def _verdicts(run: LoadedRun) -> str:
    rows = []
    for c in run.checkers:
        stats = ", ".join(f"{esc(k)}={esc(v)}" for k, v in c.stats.items())
        rows.append(f'<tr><td>{esc(c.name)}</td><td><span class="badge {esc(c.verdict)}">{esc(c.verdict)}</span></td>'
                    f"<td>{c.violations}</td><td>{c.known_unsafe}</td><td><code>{stats}</code></td></tr>")
    live = next((c.stats for c in run.checkers if c.name == "liveness"), {})
    if "p50_s" in live:
        failover = (f"<p>Failover after a holder crash, pause or partition: p50 <b>{esc(live['p50_s'])} s</b>, "
                    f"p99 <b>{esc(live.get('p99_s', '?'))} s</b>, max <b>{esc(live.get('max_s', '?'))} s</b> "
                    f"({esc(live.get('failovers', '?'))} measured, {esc(live.get('excused', 0))} excused by "
                    f"server faults; bound {esc(live.get('bound_s', '?'))} s).</p>")
    else:
        failover = '<p class="muted">No failover measured (no holder crash, pause or partition hit a holder).</p>'
    strict = " (strict: known-unsafe counts as failure)" if run.strict else ""
    return (f'<section id="verdicts"><h2>Verdicts{strict}</h2><table><thead><tr><th>checker</th><th>verdict</th>'
            "<th>violations</th><th>known-unsafe</th><th>stats</th></tr></thead><tbody>"
            + "".join(rows) + f"</tbody></table>{failover}</section>")


def _throughput(summary: dict[str, Any]) -> str:
    """The lock calls per second the run drove, next to the server's raw capacity when measured."""
    t = summary.get("throughput")
    if not isinstance(t, dict) or not isinstance(t.get("ops_per_s"), dict):
        return ""
    per_s: dict[str, Any] = t["ops_per_s"]
    kinds = ", ".join(f"{esc(k)} {esc(v)}" for k, v in per_s.items() if k != "total")
    line = f"<b>{esc(per_s.get('total'))} lock calls/s</b> over {esc(t.get('seconds'))} s ({kinds})"
    cap = t.get("capacity")
    if isinstance(cap, dict) and cap.get("ops_per_s"):
        line += (f"; the server took <b>{float(cap['ops_per_s']):,.0f} raw calls/s</b> ({esc(cap.get('method'))}, "
                 f"{esc(cap.get('threads'))} threads, {esc(cap.get('seconds'))} s) before the run: "
                 f"<b>{float(t.get('capacity_ratio') or 0):.0%}</b> of it")
    elif t.get("capacity_note"):
        line += f'. <span class="muted">{esc(t["capacity_note"])}</span>'
    return f'<section id="throughput"><h2>Load</h2><p>{line}.</p></section>'


def reproduce_command(summary: dict[str, Any], meta: dict[str, Any]) -> str | None:
    """The recorded command; for a run recorded without one, the command its meta record describes.

    Redacted again: a run recorded by an older lockchaos may hold a password in its summary."""
    cmd = summary.get("reproduce")
    if isinstance(cmd, str):
        return redact_text(cmd)
    backend, scenario, seed, ttl = (meta.get(k) for k in ("backend", "scenario", "seed", "ttl_ms"))
    if None in (backend, scenario, seed, ttl):
        return None
    workers, duration = meta.get("workers"), meta.get("duration_ttls")
    if not str(seed).isdecimal() or not str(ttl).isdecimal():
        return None  # a meta edited by hand: no command reproduces it
    return reproduce.reproduce_command(reproduce.Invocation(
        str(backend), str(scenario), int(str(seed)), int(str(ttl)),
        workers=workers if isinstance(workers, int) else None,
        duration_s=duration * int(str(ttl)) / 1000 if isinstance(duration, int | float) else None,
        virtual_time=bool(meta.get("virtual_time")),
        keys=meta["keys"] if isinstance(meta.get("keys"), int) else None))


def _scenario_section(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    description = summary.get("description")
    if not isinstance(description, str):
        description = "No scenario description recorded."
    cmd = reproduce_command(summary, meta)
    repro = (f"<h3>Reproduce</h3><pre><code>{esc(cmd)}</code></pre>" if cmd else
             '<p class="muted">No reproducing command recorded.</p>')
    return f'<section id="scenario"><h2>Scenario</h2><p>{esc(description)}</p>{repro}</section>'


def _legend() -> str:
    def key(style: str, text: str) -> str:
        return f'<span class="key"><span class="swatch" style="{style}"></span>{esc(text)}</span>'

    return ('<p class="legend">'
            + key("background:#2563eb", "granted by the service")
            + key("background:#93c5fd;border:1px dashed #60a5fa", "maybe granted (indeterminate acquire)")
            + key("background:#111827;height:.3em", "held in the worker's belief")
            + key("background:#16a34a;width:2px", "write accepted")
            + key("background:#9333ea;width:3px", "write rejected by fencing")
            + key("background:#f97316;opacity:.4", "fault window (label: fault and target)")
            + key("background:#dc2626", "violation")
            + key("background:#f59e0b", "known-unsafe")
            + "</p>")


def _timeline_section(run: LoadedRun, timeline: Rendered) -> str:
    h = run.history
    kinds = Counter(f.fault for f in h.faults)
    fault_list = ", ".join(f'<span style="color:{fault_colour(k)}">&#9632;</span> {esc(k)} &#215;{n}'
                           for k, n in kinds.most_common()) or "none"
    downsampled = [n for n in timeline.notes if "labels" not in n]
    note = ""
    if timeline.downsampled:
        note = ('<p class="note" id="downsampled">Downsampled to stay responsive '
                f"({timeline.elements} SVG elements): " + "; ".join(esc(n) for n in downsampled) + ".</p>")
    labels = [n for n in timeline.notes if "labels" in n]
    labels_note = f'<p class="muted">{esc(labels[0])}.</p>' if labels else ""
    return ('<section id="timeline-section"><h2>Timeline</h2>'
            "<p class=\"muted\">Time in seconds since the run's start; one lane per worker (restarted incarnations "
            "share their worker's lane). Hover any bar, window or marker for details; a marker links to its "
            "finding.</p>"
            + _legend() + note + f'<div class="scroll">{timeline.svg}</div>' + labels_note
            + f"<p>Faults: {fault_list}</p></section>")


def _evidence(path: Path, findings: tuple[FindingRow, ...]) -> dict[int, str]:
    wanted = {n for f in findings for n in f.lines}
    found: dict[int, str] = {}
    if not wanted:
        return found
    last = max(wanted)
    with path.open(encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, start=1):
            if n in wanted:
                text = line.rstrip("\n")
                found[n] = text if len(text) <= EVIDENCE_CHARS else text[:EVIDENCE_CHARS] + " ..."
            if n >= last:
                break
    return found


def _findings_section(run: LoadedRun) -> str:
    if not run.findings:
        return '<section id="findings"><h2>Findings</h2><p>None: every checker found nothing to report.</p></section>'
    evidence = _evidence(run.history_path, run.findings)
    rows = []
    for f in run.findings:
        lines = ", ".join(map(str, f.lines))
        proof = "".join(f"{n}: {esc(evidence[n])}\n" for n in f.lines if n in evidence)
        cell = (f"<details><summary>{esc(lines)}</summary><pre>{proof}</pre></details>" if proof else esc(lines))
        rows.append(f'<tr id="finding-{f.number}" class="finding-row {f.severity}"><td>'
                    f'<a href="#timeline">{f.number}</a></td><td>{f.time_s:.3f}</td>'
                    f"<td>{esc(f.checker)}/{esc(f.kind)}</td><td class=\"sev\">{esc(f.severity)}</td>"
                    f'<td class="msg">{esc(f.message)}</td><td>{esc(", ".join(f.clients))}</td>'
                    f"<td>{esc(', '.join(map(str, f.tokens)))}</td><td>{cell}</td></tr>")
    more = ""
    if run.findings_total > len(run.findings):
        more = (f'<p class="note">{run.findings_total} findings; the first {MAX_FINDINGS_SHOWN} are shown '
                "(violations first); the timeline marks those shown.</p>")
    return (f'<section id="findings"><h2>Findings ({run.findings_total})</h2>{more}<table><thead><tr>'
            "<th>#</th><th>time (s)</th><th>checker/kind</th><th>severity</th><th>message</th><th>clients</th>"
            "<th>tokens</th><th>history lines (evidence)</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></section>")
