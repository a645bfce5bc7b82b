"""``junit.xml`` for CI: one testsuite per backend, one testcase per scenario and checker.

A failing checker is a ``<failure>`` carrying its first findings; a known-unsafe verdict passes but
keeps its findings in ``<system-out>``; a skipped scenario is one ``run`` case with ``<skipped>``; a
run the infrastructure broke (or one without history or verdicts) is one ``run`` case with ``<error>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from lockchaos.harness.report.markup import clean
from lockchaos.harness.report.runs import RunEntry, checks_of, discover, split_infrastructure
from lockchaos.harness.run.atomicfile import write_atomic

JUNIT_FILE = "junit.xml"


def write_junit(out_dir: Path) -> Path:
    soak = discover(out_dir)
    infra = [split_infrastructure(x) for x in soak.infrastructure_failures]
    backends = list(dict.fromkeys([r.backend for r in soak.runs] + [b for b, _, _ in infra]))
    root = ET.Element("testsuites", name="lockchaos")
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    total_time = 0.0
    for backend in backends:
        suite = ET.SubElement(root, "testsuite", name=f"lockchaos.{clean(backend)}")
        counts = dict.fromkeys(totals, 0)
        suite_time = 0.0
        for run in (r for r in soak.runs if r.backend == backend):
            suite_time += _run_cases(suite, run, counts)
        for _, scenario, message in (x for x in infra if x[0] == backend):
            case = _case(suite, backend, scenario, "run", 0.0)
            ET.SubElement(case, "error", message=clean(message), type="infrastructure").text = clean(message)
            counts["tests"] += 1
            counts["errors"] += 1
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
        suite.set("time", f"{suite_time:.3f}")
        total_time += suite_time
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", f"{total_time:.3f}")
    ET.indent(root)
    out = out_dir / JUNIT_FILE
    write_atomic(out, ET.tostring(root, encoding="utf-8", xml_declaration=True))
    return out


def _case(suite: ET.Element, backend: str, scenario: str, name: str, seconds: float) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=clean(f"lockchaos.{backend}.{scenario}"), name=clean(name),
                         time=f"{seconds:.3f}")


def _run_cases(suite: ET.Element, run: RunEntry, counts: dict[str, int]) -> float:
    recorded = run.summary.get("wall_seconds")
    wall = float(recorded) if isinstance(recorded, int | float) and 0 <= recorded < 1e9 else 0.0  # hand-edited?
    if run.status == "skipped":
        case = _case(suite, run.backend, run.scenario, "run", 0.0)
        ET.SubElement(case, "skipped", message=clean(run.reason or "skipped"))
        counts["tests"] += 1
        counts["skipped"] += 1
        return 0.0
    checks = checks_of(run)
    if checks is None:
        case = _case(suite, run.backend, run.scenario, "run", wall)
        why = f"{run.rel}: no history and no verdicts recorded (the run did not finish)"
        ET.SubElement(case, "error", message=clean(why), type="no-verdict").text = clean(why)
        counts["tests"] += 1
        counts["errors"] += 1
        return wall
    checkers: dict[str, Any] = checks["checkers"]
    share = wall / max(1, len(checkers))
    for name, c in checkers.items():
        case = _case(suite, run.backend, run.scenario, name, share)
        counts["tests"] += 1
        verdict = c.get("verdict")
        first = list(c.get("first") or [])
        text = _findings_text(run, c, first)
        if verdict == "fail":
            counts["failures"] += 1
            message = (f"{first[0].get('kind', '?')}: {first[0].get('message', '')}" if first
                       else f"{name} failed")
            kind = str(first[0].get("kind", "failure")) if first else "failure"
            ET.SubElement(case, "failure", message=clean(message), type=clean(kind)).text = clean(text)
        elif verdict == "skipped":
            reason = str((c.get("stats") or {}).get("skipped", "not applicable to this run"))
            ET.SubElement(case, "skipped", message=clean(reason))
            counts["skipped"] += 1
        elif verdict == "known-unsafe":
            ET.SubElement(case, "system-out").text = clean("known-unsafe (passes unless --strict)\n" + text)
    return wall


def _findings_text(run: RunEntry, c: dict[str, Any], first: list[dict[str, Any]]) -> str:
    lines = [f"{f.get('severity', '?')} {f.get('checker', '?')}/{f.get('kind', '?')} at "
             f"{float(f.get('time_s', 0.0)):.3f} s (history lines {', '.join(map(str, f.get('lines', [])))}): "
             f"{f.get('message', '')}" for f in first]
    total = int(c.get("violations", 0)) + int(c.get("known_unsafe", 0))
    if total > len(first):
        lines.append(f"... {total - len(first)} more in {run.rel}/summary.json")
    if isinstance(run.summary.get("reproduce"), str):
        lines.append(f"reproduce: {run.summary['reproduce']}")
    lines.append(f"details: {run.rel}/report.html, {run.rel}/summary.json")
    return "\n".join(lines) + "\n"
