"""The parts of the timeline page around the lanes: the D bar, the tables, what was left.

Each function returns an HTML fragment; every string from a report goes through
:func:`~shoal.timeline.lanes.esc`.
"""

from __future__ import annotations

from collections.abc import Sequence

from shoal.report import RunReport, Spread, TestResult, provisioning_stats
from shoal.schedule import Distance
from shoal.timeline.lanes import Anchors, anchor_key, esc

# The parts of the excess in the order a run spends them, with what each one means.
PARTS: tuple[tuple[str, str, str], ...] = (
    ("startup", "start-up", "session start → each worker's first test (mean over workers)"),
    ("idle", "idle", "gaps between a worker's tests (mean over workers)"),
    (
        "imbalance",
        "imbalance",
        "workers out of tests, waiting for the last one, beyond what the longest test forces",
    ),
    ("teardown", "teardown", "the last test's end → session end: worker teardown, the report"),
)


def outcomes(run: RunReport) -> str:
    counts = run.outcome_counts()
    if not counts:
        return '<span class="outcomes">no tests</span>'
    chips = "".join(
        f'<span class="chip {outcome}">{count} {outcome}</span>'
        for outcome, count in counts.items()
    )
    return f'<span class="outcomes">{chips}</span>'


def run_heading(run: RunReport, offset_s: float | None = None) -> str:
    """One line about a run: namespace, when, how long, outcomes, D."""
    when = f"started {run.started:%Y-%m-%d %H:%M:%S} UTC"
    if offset_s is not None:
        when += f" (+{offset_s:.2f}s)"
    d = f' <span class="d">D {run.distance.d:.2f}</span>' if run.distance is not None else ""
    return (
        f'<h3><span class="ns">{esc(run.namespace)}</span> <span class="when">{esc(when)}</span> '
        f'<span class="wall">wall {run.duration_s:.2f}s</span> '
        f'<span class="exit">exit {run.exit_status}</span> {outcomes(run)}{d}</h3>'
    )


def distance_bar(distance: Distance) -> str:
    """The wall time as a bar: the bound, then the four parts of the excess; the tail below.

    Widths are shares of the wall time. A part can be slightly negative (imbalance,
    when the worker holding the longest test started early): it is drawn as nothing
    and its figure still shown.
    """
    wall = max(distance.wall_s, 1e-9)
    pieces = [("bound", "bound", distance.bound_s)]
    pieces += [(key, name, getattr(distance, f"{key}_s")) for key, name, _ in PARTS]
    segments = []
    for key, name, seconds in pieces:
        share = max(seconds, 0.0) / wall
        text = f"{name} {seconds:.2f}s" if share >= 0.09 else ""
        segments.append(
            f'<div class="seg {key}" style="width:{share * 100:.3f}%" '
            f'title="{esc(name)}: {seconds:.3f}s ({share:.1%} of the wall time)">{esc(text)}</div>'
        )
    tail = max(distance.tail_s, 0.0) / wall
    tail_text = f"tail {distance.tail_s:.2f}s" if tail >= 0.09 else ""
    return (
        f'<div class="dbar">{"".join(segments)}</div>'
        f'<div class="dbar tailbar"><div class="seg tail" style="width:{tail * 100:.3f}%" '
        f'title="tail: {distance.tail_s:.3f}s">{tail_text}</div>'
        f'<span class="what">{"" if tail_text else f"tail {distance.tail_s:.2f}s: "}'
        "the run short-handed, from the first worker out of tests</span></div>"
    )


def distance_section(distance: Distance | None) -> str:
    if distance is None:
        return (
            '<section class="distance"><h2>Distance to the limit</h2>'
            "<p>This report has no scheduling figures (no test ran, or an older shoal wrote it)."
            "</p></section>"
        )
    excess = distance.excess_s
    rows = [
        f'<tr><td><i class="key bound"></i>bound</td><td>{distance.bound_s:.3f}s</td><td></td>'
        f"<td>max(longest test {distance.longest_s:.3f}s, test time {distance.work_s:.3f}s / "
        f"{distance.workers} workers)</td></tr>"
    ]
    for key, name, meaning in PARTS:
        seconds = getattr(distance, f"{key}_s")
        share = f"{seconds / excess:.0%}" if excess > 0 else ""
        rows.append(
            f'<tr><td><i class="key {key}"></i>{name}</td><td>{seconds:.3f}s</td>'
            f"<td>{share}</td><td>{esc(meaning)}</td></tr>"
        )
    rows.append(
        f'<tr><td><i class="key tail"></i>tail</td><td>{distance.tail_s:.3f}s</td><td></td>'
        "<td>the first worker out of tests → the last test's end (how long the run ran "
        "short-handed; overlaps imbalance)</td></tr>"
    )
    return (
        '<section class="distance"><h2>Distance to the limit '
        f'<span class="dvalue">D = {distance.d:.2f}</span></h2>'
        f"<p>wall {distance.wall_s:.3f}s against a bound of {distance.bound_s:.3f}s: "
        f"{excess:.3f}s of excess, split into where it went.</p>"
        f"{distance_bar(distance)}"
        '<table class="parts"><thead><tr><th>part</th><th>seconds</th><th>of the excess</th>'
        f"<th>what it is</th></tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def slowest(
    runs: Sequence[tuple[int, RunReport]], count: int = 15
) -> tuple[list[tuple[int, TestResult]], Anchors]:
    """The ``count`` slowest tests across ``runs`` and the element ids their blocks get."""
    ranked = sorted(
        ((index, test) for index, run in runs for test in run.tests),
        key=lambda item: item[1].total_s,
        reverse=True,
    )[:count]
    anchors = {anchor_key(test): f"slow-{rank}" for rank, (_, test) in enumerate(ranked)}
    return ranked, anchors


def slowest_table(ranked: Sequence[tuple[int, TestResult]], anchors: Anchors, merged: bool) -> str:
    if not ranked:
        return ""
    run_head = "<th>run</th>" if merged else ""
    rows = []
    for index, test in ranked:
        run_cell = f"<td>{index + 1}</td>" if merged else ""
        rows.append(
            f'<tr data-ref="{esc(anchors[anchor_key(test)])}">{run_cell}'
            f'<td class="node">{esc(test.nodeid)}</td>'
            f'<td><span class="chip {test.outcome}">{test.outcome}</span></td>'
            f"<td>{esc(test.worker)}</td><td>{test.setup_s:.3f}s</td><td>{test.duration_s:.3f}s</td>"
            f"<td>{test.teardown_s:.3f}s</td><td><b>{test.total_s:.3f}s</b></td></tr>"
        )
    return (
        f'<section class="slowest"><h2>{len(ranked)} slowest tests</h2>'
        "<p class=hint>Click a row to find the test on the timeline.</p>"
        f"<table><thead><tr>{run_head}<th>test</th><th>outcome</th><th>worker</th><th>setup</th>"
        f"<th>call</th><th>teardown</th><th>total</th></tr></thead><tbody>{''.join(rows)}"
        "</tbody></table></section>"
    )


def provisioning_section(runs: Sequence[tuple[int, RunReport]], merged: bool) -> str:
    summary_rows, worker_rows = [], []
    run_head = "<th>run</th>" if merged else ""
    for index, run in runs:
        run_cell = f"<td>{index + 1}</td>" if merged else ""
        for stats in provisioning_stats(run.provisioning):
            claimed = sum(1 for p in run.provisioning if p.database == stats.database and p.claimed)
            summary_rows.append(
                f"<tr>{run_cell}<td>{esc(stats.database)}</td><td>{stats.schemas}</td>"
                f"<td>{claimed}</td><td>{_spread(stats.total)}</td><td>{_spread(stats.slot_wait)}</td>"
                f"<td>{_spread(stats.create)}</td><td>{_spread(stats.setup)}</td></tr>"
            )
        for p in run.provisioning:
            worker_rows.append(
                f"<tr>{run_cell}<td>{esc(p.database)}</td><td>{esc(p.worker)}</td>"
                f"<td>{'claimed' if p.claimed else 'built'}</td><td>{p.slot_wait_s:.3f}s</td>"
                f"<td>{p.create_s:.3f}s</td><td>{p.setup_s:.3f}s</td><td><b>{p.total_s:.3f}s</b></td></tr>"
            )
    if not summary_rows:
        return (
            '<section class="provisioning"><h2>Provisioning</h2>'
            "<p>No schema was provisioned in this run.</p></section>"
        )
    return (
        '<section class="provisioning"><h2>Provisioning per database</h2>'
        f"<table><thead><tr>{run_head}<th>database</th><th>schemas</th><th>from the pool</th>"
        "<th>total p50/max</th><th>slot wait</th><th>create</th><th>setup</th></tr></thead>"
        f"<tbody>{''.join(summary_rows)}</tbody></table>"
        "<details><summary>per worker</summary>"
        f"<table><thead><tr>{run_head}<th>database</th><th>worker</th><th>schema</th>"
        "<th>slot wait</th><th>create</th><th>setup</th><th>total</th></tr></thead>"
        f"<tbody>{''.join(worker_rows)}</tbody></table></details></section>"
    )


def left_behind(runs: Sequence[tuple[int, RunReport]], merged: bool) -> str:
    """Schemas kept for inspection and problems (a failed drop), when the report has them."""
    items = []
    for index, run in runs:
        prefix = f"run {index + 1}: " if merged else ""
        items += [f'<li class="kept">{esc(prefix)}kept: {esc(line)}</li>' for line in run.kept]
        items += [f'<li class="problem">{esc(prefix)}{esc(line)}</li>' for line in run.problems]
    if not items:
        return ""
    return f'<section class="left"><h2>Left behind</h2><ul>{"".join(items)}</ul></section>'


def _spread(spread: Spread) -> str:
    return f"{spread.p50:.3f}/{spread.max:.3f}s"
