"""Colours and the inline stylesheet shared by the run report and the index (no external resource)."""

from __future__ import annotations

from lockchaos.harness.faults.registry import FAULTS

VERDICT_COLOURS = {"pass": "#15803d", "known-unsafe": "#b45309", "fail": "#b91c1c", "skipped": "#6b7280",
                   "error": "#7f1d1d", "unknown": "#6b7280"}

FAULT_COLOURS = {name: fault.colour for name, fault in FAULTS.items()}
"""Each registered fault's own colour (``harness/faults/registry.py``)."""
_SPARE = ("#84cc16", "#06b6d4", "#d946ef", "#f43f5e", "#22c55e", "#3b82f6")
MIXED_FAULTS = "#94a3b8"


def fault_colour(fault: str) -> str:
    """A registered fault's colour; one of the spares, stable per name, for one no longer registered."""
    if fault in FAULT_COLOURS:
        return FAULT_COLOURS[fault]
    return _SPARE[sum(map(ord, fault)) % len(_SPARE)]


CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 1.5rem 2rem; color: #111827; background: #fff; line-height: 1.4; }
h1 { font-size: 1.5rem; margin: 0 0 .3rem; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 .5rem; border-bottom: 1px solid #e5e7eb; padding-bottom: .2rem; }
h3 { font-size: 1rem; margin: 1rem 0 .3rem; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
            font-size: .85rem; }
pre { background: #f3f4f6; padding: .6rem .8rem; border-radius: 4px; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border: 1px solid #e5e7eb; padding: .25rem .55rem; text-align: left; vertical-align: top; }
th { background: #f9fafb; }
.facts { color: #374151; margin: .2rem 0; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: 999px; color: #fff;
         font-size: .85rem; font-weight: 600; vertical-align: middle; }
.badge.pass { background: #15803d; } .badge.known-unsafe { background: #b45309; } .badge.fail { background: #b91c1c; }
.badge.skipped { background: #6b7280; } .badge.error { background: #7f1d1d; } .badge.unknown { background: #6b7280; }
.note { color: #92400e; background: #fffbeb; border: 1px solid #fde68a; padding: .3rem .6rem;
        border-radius: 4px; display: inline-block; }
.muted { color: #6b7280; }
.scroll { overflow-x: auto; border: 1px solid #e5e7eb; border-radius: 4px; }
.legend span.key { display: inline-block; margin-right: 1rem; white-space: nowrap; font-size: .85rem; }
.swatch { display: inline-block; width: 1.4em; height: .8em; vertical-align: middle; margin-right: .3em;
          border-radius: 2px; }
tr.finding-row:target { outline: 3px solid #2563eb; background: #eff6ff; }
tr.violation td.sev { color: #b91c1c; font-weight: 600; }
tr.known-unsafe td.sev { color: #b45309; font-weight: 600; }
td.msg { max-width: 48rem; }
details pre { margin: .3rem 0 0; max-width: 60rem; }
a.cell { color: #fff; text-decoration: none; }
.reason { font-size: .8rem; color: #4b5563; max-width: 22rem; }
"""

SVG_CSS = """
svg.timeline { display: block; font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
svg.timeline text { font-size: 11px; fill: #374151; }
svg.timeline .lane-label { font-size: 12px; fill: #111827; }
svg.timeline .fault-label { font-size: 10px; fill: #1f2937; }
svg.timeline .axis-label { font-size: 10px; fill: #6b7280; }
svg.timeline .lane-bg { fill: #f8fafc; }
svg.timeline .grid { stroke: #e5e7eb; stroke-width: 1; fill: none; }
svg.timeline .fault-window { opacity: .22; }
svg.timeline .fault-target { opacity: .45; }
svg.timeline .grant { fill: #2563eb; }
svg.timeline .maybe { fill: #93c5fd; fill-opacity: .45; stroke: #60a5fa; stroke-dasharray: 3 2; stroke-width: .8; }
svg.timeline path.maybe { stroke: none; fill-opacity: .6; }
svg.timeline .believed { fill: #111827; }
svg.timeline .grant-hover { fill: #000; fill-opacity: 0; }
svg.timeline .grant-hover:hover { fill-opacity: .08; }
svg.timeline .writes-accepted { stroke: #16a34a; stroke-width: 1; fill: none; }
svg.timeline .writes-rejected { stroke: #9333ea; stroke-width: 1.4; fill: none; }
svg.timeline .finding-marker line { stroke-width: 1.2; stroke-dasharray: 4 3; }
svg.timeline .finding-marker.violation path, svg.timeline .finding-marker.violation circle { fill: #dc2626; }
svg.timeline .finding-marker.violation line { stroke: #dc2626; }
svg.timeline .finding-marker.known-unsafe path, svg.timeline .finding-marker.known-unsafe circle { fill: #f59e0b; }
svg.timeline .finding-marker.known-unsafe line { stroke: #f59e0b; }
svg.timeline .finding-marker circle { stroke: #fff; stroke-width: 1; }
svg.timeline a.finding-marker:hover path, svg.timeline a.finding-marker:hover circle { stroke: #111827; }
"""
