"""The lanes of the timeline as HTML rows holding one small SVG each.

Every lane's SVG spans the same axis in 1000 units and is stretched to the track's
width (``preserveAspectRatio="none"``), so zooming is a CSS width change and never a
re-render: 10,000 tests stay 10,000 rectangles drawn once. Every string from a report
is escaped here, attributes included.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from html import escape

from shoal.report import TestResult
from shoal.timeline.layout import Lane, RunLayout, Span

WIDTH = 1000.0  # SVG units across the axis
LANE_HEIGHT = 22
# A test this short would be drawn narrower than a hair at any zoom; it still gets a
# sliver so it can be seen and hovered once zoomed in.
_MIN_WIDTH = 0.02
_BACKGROUND = ("startup", "idle", "waiting", "teardown", "after")


def esc(text: object) -> str:
    return escape(str(text), quote=True)


@dataclass(frozen=True)
class Axis:
    """Epoch seconds ``start``..``end`` onto 0..WIDTH."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-9)

    def x(self, t: float) -> float:
        return (t - self.start) / self.seconds * WIDTH

    def width(self, a: float, b: float) -> float:
        return max((b - a) / self.seconds * WIDTH, 0.0)

    def min_gap_s(self) -> float:
        """Gaps narrower than this are not worth an element of their own (0.1 unit)."""
        return self.seconds * 0.1 / WIDTH


def axis_row(axis: Axis) -> str:
    """The time axis: ticks are drawn by the page's script, which knows the zoom."""
    return (
        f'<div class="lane axis"><div class="label">seconds</div>'
        f'<div class="track"><div class="ticks" data-span="{axis.seconds:.6f}"></div></div></div>'
    )


Anchors = Mapping[tuple[str, str, float], str]  # (worker, node id, start) -> element id


def anchor_key(test: TestResult) -> tuple[str, str, float]:
    return (test.worker, test.nodeid, test.start)


def run_lanes(run: RunLayout, axis: Axis, anchors: Anchors) -> str:
    """The rows of one run: a phase strip, then one lane per worker.

    Tests in ``anchors`` get that element id, so tables elsewhere on the page can
    point at their block.
    """
    rows = [_phase_strip(run, axis)]
    rows += [_lane(lane, axis, anchors) for lane in run.lanes]
    return "\n".join(rows)


def _lane(lane: Lane, axis: Axis, anchors: Anchors) -> str:
    span = (lane.tests[-1].stop - lane.tests[0].start) if lane.tests else 0.0
    busy = lane.busy_s / span if span > 0 else 0.0
    parts = [
        f'<svg viewBox="0 0 {WIDTH:.0f} {LANE_HEIGHT}" preserveAspectRatio="none" '
        f'height="{LANE_HEIGHT}">'
    ]
    parts += [_span(s, axis, 0, LANE_HEIGHT) for s in lane.spans if s.kind in _BACKGROUND]
    for i, test in enumerate(lane.tests):
        element_id = anchors.get(anchor_key(test))
        anchor = f' id="{esc(element_id)}"' if element_id else ""
        parts.append(_block(test, axis, alternate=i % 2 == 1, anchor=anchor))
    parts += [_span(s, axis, 1, 6) for s in lane.spans_of("provisioning")]
    parts.append("</svg>")
    label = (
        f'<div class="label"><b>{esc(lane.worker)}</b> '
        f'<span class="count">{len(lane.tests)} tests</span> '
        f'<span class="busy" title="busy share from its first test to its last">'
        f"{busy:.0%} busy</span></div>"
    )
    return (
        f'<div class="lane worker" data-worker="{esc(lane.worker)}" data-tests="{len(lane.tests)}">'
        f'{label}<div class="track">{"".join(parts)}</div></div>'
    )


def _block(test: TestResult, axis: Axis, *, alternate: bool, anchor: str) -> str:
    x = axis.x(test.start)
    width = max(axis.width(test.start, test.stop), _MIN_WIDTH)
    classes = f"t {test.outcome}{' alt' if alternate else ''}"
    times = (
        f"{test.setup_s:.4f} {test.duration_s:.4f} {test.teardown_s:.4f} "
        f"{test.start - axis.start:.4f}"
    )
    return (
        f'<rect{anchor} class="{classes}" x="{x:.3f}" y="1" width="{width:.3f}" '
        f'height="{LANE_HEIGHT - 2}" data-n="{esc(test.nodeid)}" data-t="{times}"/>'
    )


def _span(span: Span, axis: Axis, y: int, height: int) -> str:
    tip = f"{span.label} ({span.seconds:.3f}s)"
    return (
        f'<rect class="s {span.kind}" x="{axis.x(span.start):.3f}" y="{y}" '
        f'width="{axis.width(span.start, span.end):.3f}" height="{height}" data-tip="{esc(tip)}"/>'
    )


def _phase_strip(run: RunLayout, axis: Axis) -> str:
    """The run as a whole: when it ran short-handed (the tail), tore down, and exited."""
    distance = run.report.distance
    spans: list[Span] = []
    if run.last_test_end is not None and distance is not None and distance.tail_s > 0:
        spans.append(
            Span(
                "waiting",
                run.last_test_end - distance.tail_s,
                run.last_test_end,
                "tail: the first worker out of tests → the last test's end",
            )
        )
    if run.last_test_end is not None:
        spans.append(Span("teardown", run.last_test_end, run.finished, "teardown"))
    if run.exited is not None and run.exited > run.finished:
        spans.append(Span("after", run.finished, run.exited, "after the report: exit"))
    marks = "".join(_span(s, axis, 2, 6) for s in spans)
    return (
        f'<div class="lane phases"><div class="label">run</div><div class="track">'
        f'<svg viewBox="0 0 {WIDTH:.0f} 10" preserveAspectRatio="none" height="10">'
        f"{marks}</svg></div></div>"
    )
