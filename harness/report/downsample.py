"""Thinning a long run's timeline to what a screen can show: merged spans, one tick per pixel column.

Spans of one kind in one lane that are closer than a gap (in seconds: the renderer derives it from
a gap in pixels) are merged into one whose tooltip says how many, fault windows likewise whatever
their kind, and write ticks keep at most one per pixel column per lane and kind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from lockchaos.harness.report.timeline import FaultSpan, Span


def merge_spans(spans: Sequence[Span], gap_s: float, what: str) -> list[Span]:
    """Spans (originals, not already merged) closer than ``gap_s`` become one."""
    out: list[Span] = []
    group: list[Span] = []
    end = 0.0
    for s in sorted(spans, key=lambda s: s.start):
        if group and s.start > end + gap_s:
            out.append(_merged(group, end, what))
            group = []
        end = max(end, s.end) if group else s.end
        group.append(s)
    if group:
        out.append(_merged(group, end, what))
    return out


def _merged(group: Sequence[Span], end: float, what: str) -> Span:
    if len(group) == 1:
        return group[0]
    start = group[0].start
    lows = [g.token_lo for g in group if g.token_lo is not None]
    highs = [g.token_hi for g in group if g.token_hi is not None]
    tokens = f", tokens {min(lows)}-{max(highs)}" if lows and highs else ""
    return Span(start, end, f"{len(group)} {what} merged{tokens}: {start:.3f}-{end:.3f} s", len(group),
                min(lows) if lows else None, max(highs) if highs else None)


def merge_faults(faults: Sequence[FaultSpan], gap_s: float) -> list[FaultSpan]:
    """Fault windows (originals) closer than ``gap_s`` become one, whatever their kinds."""
    out: list[FaultSpan] = []
    group: list[FaultSpan] = []
    end = 0.0
    for f in sorted(faults, key=lambda f: f.start):
        if group and f.start > end + gap_s:
            out.append(_merged_faults(group, end))
            group = []
        end = max(end, f.end) if group else f.end
        group.append(f)
    if group:
        out.append(_merged_faults(group, end))
    return out


def _merged_faults(group: Sequence[FaultSpan], end: float) -> FaultSpan:
    if len(group) == 1:
        return group[0]
    start = group[0].start
    kinds = Counter(f.fault for f in group)
    listing = ", ".join(f"{k} x{n}" for k, n in kinds.most_common())
    lanes = tuple(dict.fromkeys(ln for f in group for ln in f.lanes))
    return FaultSpan(start, end, group[0].fault if len(kinds) == 1 else "", f"{len(group)} faults",
                     f"{len(group)} faults {start:.3f}-{end:.3f} s: {listing}", lanes, len(group))


def column_ticks(times: Sequence[float], px_per_s: float, per_column: int = 1) -> list[int]:
    """The pixel columns (from the plot's left edge) that get a tick: at most ``per_column`` each."""
    seen: Counter[int] = Counter()
    cols: list[int] = []
    for t in times:
        c = int(t * px_per_s)
        if seen[c] < per_column:
            seen[c] += 1
            cols.append(c)
    return cols
