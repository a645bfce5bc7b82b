"""The timeline as inline SVG, kept under an element budget however long the run was.

A short run is drawn in full: every grant, possible grant, belief and fault window its own shape
with a tooltip. Past the budget: fault windows lose their per-lane target stripes, then merge when
closer than 1, 2, 4 ... pixels, within about 40 % of the room; grants, possible grants and beliefs
become one path per lane each, merged where under a pixel apart (what is drawn stays exact to the
pixel), and their tooltips move to invisible hover areas over groups of grants, grouped as coarsely
as the rest of the room needs. Write ticks are always one path per lane and kind, at most one tick
per pixel column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lockchaos.harness.report.downsample import column_ticks, merge_faults, merge_spans
from lockchaos.harness.report.markup import esc
from lockchaos.harness.report.style import MIXED_FAULTS, SVG_CSS, fault_colour
from lockchaos.harness.report.timeline import Lane, Mark, Span, TimelineData

MAX_ELEMENTS = 5000
"""Cap on SVG elements: a browser stays responsive, whatever the length of the soak."""
FAULT_SHARE = 0.4
MARK_LANES = 4
"""A finding's marker rings the lanes of up to this many of its clients."""

LEFT, RIGHT = 96, 18
LABEL_ROWS = (12, 24)
MARK_Y = 29
TOP = 44
LANE_H = 30
AXIS_H = 24
MIN_PLOT_W, MAX_PLOT_W, PX_PER_S = 900, 3600, 100
CHAR_W = 5.8  # average width of a 10 px label character
_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900,
          1800, 3600, 7200, 14400, 43200, 86400)
_START_TAG = re.compile(r"<[A-Za-z]")


@dataclass(frozen=True, slots=True)
class Rendered:
    svg: str
    elements: int
    downsampled: bool
    notes: tuple[str, ...]  # what was merged, thinned or left out, for the page to say


def count_elements(markup: str) -> int:
    return len(_START_TAG.findall(markup))


@dataclass(frozen=True, slots=True)
class _Part:
    markup: str
    notes: tuple[str, ...] = ()
    thinned: bool = False

    @property
    def elements(self) -> int:
        return count_elements(self.markup)


def render_timeline(data: TimelineData, budget: int = MAX_ELEMENTS) -> Rendered:
    """The most detailed rendering of ``data`` within ``budget`` SVG elements."""
    layout = _Layout(data)
    fixed = layout.fixed_elements()
    faults = layout.faults(0)
    lanes = layout.lanes(None)
    if fixed + faults.elements + lanes.elements <= budget:
        return layout.assemble(faults, lanes)
    room = budget - fixed
    level = 0
    while faults.elements > room * FAULT_SHARE and 2.0 ** (level - 2) < layout.plot_w:
        level += 1
        faults = layout.faults(level)
    room -= faults.elements
    gap = 1.0
    lanes = layout.lanes(gap)
    while lanes.elements > room and gap < layout.plot_w:
        gap *= 2
        lanes = layout.lanes(gap)
    return layout.assemble(faults, lanes)


class _Layout:
    def __init__(self, data: TimelineData) -> None:
        self.data = data
        self.plot_w = min(MAX_PLOT_W, max(MIN_PLOT_W, round(data.duration * PX_PER_S)))
        self.pps = self.plot_w / data.duration  # pixels per second
        self.width = LEFT + self.plot_w + RIGHT
        self.bottom = TOP + LANE_H * len(data.lanes)
        self.height = self.bottom + AXIS_H
        self.lane_y = {ln.name: TOP + i * LANE_H for i, ln in enumerate(data.lanes)}
        self.backgrounds = '<g class="lane-bgs">' + "".join(
            f'<rect class="lane-bg" x="0" y="{TOP + i * LANE_H}" width="{self.width}" height="{LANE_H}"/>'
            for i in range(0, len(data.lanes), 2)) + "</g>"
        self.axis = self._axis()
        self.marks = '<g class="findings">' + "".join(self._mark(m) for m in data.marks) + "</g>"

    def x(self, t: float) -> float:
        return LEFT + t * self.pps

    def fixed_elements(self) -> int:
        return 2 + count_elements(self.backgrounds + self.axis + self.marks)  # with <svg> and <style>

    def assemble(self, faults: _Part, lanes: _Part) -> Rendered:
        downsampled = faults.thinned or lanes.thinned
        svg = (f'<svg id="timeline" class="timeline{" downsampled" if downsampled else ""}" width="{self.width}" '
               f'height="{self.height}" viewBox="0 0 {self.width} {self.height}" role="img" '
               'aria-label="timeline of lock grants, beliefs, writes, faults and findings">'
               f"<style>{SVG_CSS}</style>"
               + self.backgrounds + faults.markup + self.axis + lanes.markup + self.marks + "</svg>")
        return Rendered(svg, count_elements(svg), downsampled, faults.notes + lanes.notes)

    # --- fault windows ------------------------------------------------------------------------

    def faults(self, level: int) -> _Part:
        """Level 0: every window, with a stripe on each lane it hit; 1: no stripes; n >= 2: windows
        closer than 2**(n-2) pixels merged."""
        gap_s = 2.0 ** (level - 2) / self.pps if level >= 2 else 0.0
        faults = merge_faults(self.data.faults, gap_s) if level >= 2 else list(self.data.faults)
        row_end = [float("-inf")] * len(LABEL_ROWS)
        omitted = 0
        out = ['<g class="faults">']
        for f in faults:
            x0 = self.x(f.start)
            w = max(1.5, self.x(f.end) - x0)
            colour = fault_colour(f.fault) if f.fault else MIXED_FAULTS
            out.append(f'<rect class="fault-window" data-fault="{esc(f.fault or "mixed")}" data-count="{f.count}" '
                       f'x="{x0:.1f}" y="2" width="{w:.1f}" height="{self.bottom - 2}" fill="{colour}">'
                       f"<title>{esc(f.tip)}</title></rect>")
            if level == 0:
                out += [f'<rect class="fault-target" x="{x0:.1f}" y="{self.lane_y[ln]}" width="{w:.1f}" height="3" '
                        f'fill="{colour}"/>' for ln in f.lanes]
            row = next((r for r, end in enumerate(row_end) if end + 6 < x0), None)
            if row is None:
                omitted += 1
                continue
            row_end[row] = x0 + 2 + len(f.label) * CHAR_W
            out.append(f'<text class="fault-label" x="{x0 + 2:.1f}" y="{LABEL_ROWS[row]}">{esc(f.label)}</text>')
        out.append("</g>")
        notes = []
        if len(faults) < len(self.data.faults):
            notes.append(f"{len(self.data.faults)} fault windows drawn as {len(faults)} "
                         f"(windows closer than {gap_s:.3g} s merged)")
        if omitted:
            notes.append(f"{omitted} fault labels left out where they would overlap (hover a shaded window)")
        return _Part("".join(out), tuple(notes), len(faults) < len(self.data.faults))

    # --- lanes --------------------------------------------------------------------------------

    def lanes(self, gap_px: float | None) -> _Part:
        """``None``: every span its own rect with a tooltip. Else every kind of span is one path per lane,
        merged per pixel, and grants closer than ``gap_px`` share one invisible hover area with a tooltip."""
        counts: dict[str, list[int]] = {k: [0, 0] for k in ("grant", "possible grant", "belief", "write")}
        hovers = [0, 0]
        out: list[str] = []
        for lane in self.data.lanes:
            hovers[1] += self._lane(out, lane, self.lane_y[lane.name], gap_px, counts)
            hovers[0] += len(lane.granted)
        notes = []
        for what, (raw, drawn) in counts.items():
            if drawn < raw:
                how = ("at most one tick per pixel column per lane" if what == "write" else
                       "merged where under a pixel apart")
                notes.append(f"{raw} {what}s drawn as {drawn} ({how})")
        if gap_px is not None and hovers[1] < hovers[0]:
            notes.append(f"tooltips group grants under {gap_px / self.pps:.3g} s apart ({hovers[1]} hover areas)")
        thinned = gap_px is not None or any(drawn < raw for raw, drawn in counts.values())
        return _Part("".join(out), tuple(notes), thinned)

    def _lane(self, out: list[str], lane: Lane, y: int, gap_px: float | None, counts: dict[str, list[int]]) -> int:
        """Draw one lane; returns how many grant tooltips it got."""
        lane_id = re.sub(r"[^A-Za-z0-9_-]", "_", lane.name)
        out.append(f'<g class="lane" id="lane-{lane_id}" data-lane="{esc(lane.name)}">'
                   f'<text class="lane-label" x="{LEFT - 8}" y="{y + 19}" text-anchor="end">{esc(lane.name)}'
                   f'<title>{esc("clients: " + ", ".join(lane.clients))}</title></text>')
        pixel = 1 / self.pps
        for kind, what, spans, top, h in (("maybe", "possible grant", lane.maybe, 5, 12),
                                          ("grant", "grant", lane.granted, 5, 12),
                                          ("believed", "belief", lane.believed, 19, 4)):
            counts[what][0] += len(spans)
            if gap_px is None:
                out += [self._rect(kind, s, y + top, h) for s in spans]
                counts[what][1] += len(spans)
                continue
            drawn = merge_spans(spans, pixel, f"{what}s")
            counts[what][1] += len(drawn)
            if drawn:
                d = "".join(f"M{self.x(s.start):.1f} {y + top}h{self._w(s):.1f}v{h}h-{self._w(s):.1f}z" for s in drawn)
                out.append(f'<path class="{kind}" d="{d}"/>')
        ticks = (("writes-accepted", lane.accepted, 24, 5), ("writes-rejected", lane.rejected, 23, 6))
        for cls, times, top, h in ticks:
            cols = column_ticks(sorted(times), self.pps)
            counts["write"][0] += len(times)
            counts["write"][1] += len(cols)
            if cols:
                out.append(f'<path class="{cls}" d="' + "".join(f"M{LEFT + c + 0.5:.1f} {y + top}v{h}" for c in cols)
                           + '"/>')
        tips = len(lane.granted)
        if gap_px is not None:
            hover = merge_spans(lane.granted, gap_px * pixel, "grants")
            out += [self._rect("grant-hover", s, y + 3, LANE_H - 6) for s in hover]
            tips = len(hover)
        out.append("</g>")
        return tips

    def _w(self, s: Span) -> float:
        return max(1.0, (s.end - s.start) * self.pps)

    def _rect(self, kind: str, s: Span, y: int, h: int) -> str:
        return (f'<rect class="{kind}" x="{self.x(s.start):.1f}" y="{y}" width="{self._w(s):.1f}" height="{h}">'
                f"<title>{esc(s.tip)}</title></rect>")

    # --- axis and findings ----------------------------------------------------------------------

    def _axis(self) -> str:
        step = next((s for s in _STEPS if s * self.pps >= 70), _STEPS[-1])
        digits = next((d for d in range(4) if abs(step * 10**d - round(step * 10**d)) < 1e-9), 4)
        ticks = [i * step for i in range(int(self.data.duration / step + 1e-9) + 1)]
        grid = "".join(f"M{self.x(t):.1f} {TOP}V{self.bottom}" for t in ticks)
        labels = "".join(f'<text class="axis-label" x="{self.x(t):.1f}" y="{self.bottom + 15}" '
                         f'text-anchor="middle">{t:.{digits}f}</text>' for t in ticks)
        unit = (f'<text class="axis-label" x="{LEFT + self.plot_w + 4}" y="{self.bottom + 15}">s</text>')
        return f'<g class="axis"><path class="grid" d="{grid}"/>{labels}{unit}</g>'

    def _mark(self, m: Mark) -> str:
        x = self.x(m.time)
        circles = "".join(f'<circle cx="{x:.1f}" cy="{self.lane_y[ln] + 11}" r="4.5"/>'
                          for ln in m.lanes[:MARK_LANES])
        return (f'<a href="#finding-{m.number}" class="finding-marker {m.severity}" data-finding="{m.number}">'
                f"<title>{esc(m.tip)}</title>"
                f'<path d="M{x - 5:.1f} {MARK_Y}h10l-5 10z"/>'
                f'<line x1="{x:.1f}" y1="{MARK_Y + 10}" x2="{x:.1f}" y2="{self.bottom}"/>{circles}</a>')

