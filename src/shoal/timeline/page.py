"""The whole timeline document: one self-contained HTML file, no network.

The style sheet and the script are package files inlined into the page, so the file
can be attached to a CI run and opened anywhere, offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

from shoal.report import RunReport
from shoal.timeline import sections
from shoal.timeline.lanes import Axis, axis_row, esc, run_lanes
from shoal.timeline.layout import RunLayout, layout


def _asset(name: str) -> str:
    return resources.files("shoal.timeline").joinpath(name).read_text(encoding="utf-8")


def render(runs: Sequence[RunReport]) -> str:
    """The timeline of one run, or of several side by side on one time axis."""
    if not runs:
        raise ValueError("a timeline needs at least one run report")
    ordered = sorted(runs, key=lambda r: (r.started, r.namespace))
    merged = len(ordered) > 1
    start = min(r.started.timestamp() for r in ordered)
    end = max(max(r.finished, r.exited or r.finished).timestamp() for r in ordered)
    axis = Axis(start, end)  # first, because the lanes leave out gaps too thin to see on it
    layouts = [layout(r, min_gap_s=axis.min_gap_s()) for r in ordered]
    indexed = list(enumerate(ordered))
    ranked, anchors = sections.slowest(indexed)

    groups = []
    for index, run_layout in enumerate(layouts):
        offset = run_layout.start - start if merged else None
        groups.append(
            f'<section class="run" data-run="{index + 1}" '
            f'data-namespace="{esc(run_layout.report.namespace)}">'
            f"{sections.run_heading(run_layout.report, offset)}"
            f"{_args(run_layout)}{run_lanes(run_layout, axis, anchors)}</section>"
        )
    title = f"shoal: {len(ordered)} runs" if merged else f"shoal run {ordered[0].namespace}"
    body = [
        f"<header><h1>{esc(title)}</h1>{_intro(ordered, axis, merged)}</header>",
        _legend(),
        '<div class="zoom">zoom <button data-zoom="1">fit</button><button data-zoom="4">4×</button>'
        '<button data-zoom="16">16×</button><button data-zoom="64">64×</button>'
        '<span class="hint">hover a block for its test; click to keep it below</span></div>',
        f'<div class="chart" id="chart">{axis_row(axis)}{"".join(groups)}</div>',
        '<div id="details" class="details">Click a test on the timeline.</div>',
    ]
    if merged:
        body.append(_runs_table(ordered, start))
    else:
        body.append(sections.distance_section(ordered[0].distance))
    body += [
        sections.slowest_table(ranked, anchors, merged),
        sections.provisioning_section(indexed, merged),
        sections.left_behind(indexed, merged),
    ]
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{_asset('page.css')}</style></head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + f'\n<div id="tip" class="tip" hidden></div><script>{_asset("page.js")}</script>'
        "\n</body></html>\n"
    )


def _intro(runs: Sequence[RunReport], axis: Axis, merged: bool) -> str:
    if merged:
        tests = sum(len(r.tests) for r in runs)
        return (
            f"<p>{len(runs)} runs, {tests} tests, on one time axis of {axis.seconds:.2f}s "
            f"from {runs[0].started:%Y-%m-%d %H:%M:%S} UTC.</p>"
        )
    run = runs[0]
    workers = run.worker_count if run.worker_count is not None else len(run.workers)
    versions = run.versions
    return (
        f"<p>{sections.outcomes(run)} in {run.duration_s:.2f}s on {workers} "
        f"worker{'s' if workers != 1 else ''}, exit status {run.exit_status}, started "
        f"{run.started:%Y-%m-%d %H:%M:%S} UTC.</p>"
        f'<p class="versions">shoal {esc(versions.shoal)}, pytest {esc(versions.pytest)}, '
        f"xdist {esc(versions.xdist or '—')}, Python {esc(versions.python)}</p>"
    )


def _args(run_layout: RunLayout) -> str:
    return f'<p class="args">pytest {esc(" ".join(run_layout.report.args))}</p>'


def _legend() -> str:
    keys = [
        ("t passed", "passed"),
        ("t failed", "failed"),
        ("t error", "error"),
        ("t skipped", "skipped / xfailed"),
        ("s provisioning", "provisioning"),
        ("s startup", "start-up"),
        ("s idle", "idle"),
        ("s waiting", "out of tests"),
        ("s teardown", "teardown"),
        ("s after", "after the report"),
    ]
    items = "".join(f'<span><i class="key {cls}"></i>{name}</span>' for cls, name in keys)
    return f'<div class="legend">{items}</div>'


def _runs_table(runs: Sequence[RunReport], start: float) -> str:
    rows = []
    for index, run in enumerate(runs):
        d = f"{run.distance.d:.2f}" if run.distance is not None else "—"
        bar = sections.distance_bar(run.distance) if run.distance is not None else ""
        rows.append(
            f"<tr><td>{index + 1}</td><td>{esc(run.namespace)}</td>"
            f"<td>+{run.started.timestamp() - start:.2f}s</td><td>{run.duration_s:.2f}s</td>"
            f"<td>{sections.outcomes(run)}</td><td>{run.exit_status}</td><td>{d}</td>"
            f'<td class="mini">{bar}</td></tr>'
        )
    return (
        '<section class="runs"><h2>Runs</h2><table><thead><tr><th>run</th><th>namespace</th>'
        "<th>start</th><th>wall</th><th>outcomes</th><th>exit</th><th>D</th>"
        f"<th>wall time: bound and excess</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        "</section>"
    )
