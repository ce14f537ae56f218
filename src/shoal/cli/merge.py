"""``shoal report --merge``: the reports of a suite's shards as one run of the fleet."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shoal.report import OUTCOMES, Outcome, RunReport, TestResult
from shoal.shard import Chosen, Fleet, ShardRun, choose, fleet
from shoal.words import plural

SLOWEST = 10


def show_merged(paths: Sequence[Path], as_json: bool) -> None:
    """Print the merge of the reports under ``paths`` (files or directories)."""
    from shoal.timeline import gather

    runs, skipped = gather(paths)
    for problem in skipped:
        click.echo(f"skipped: {problem}", err=True)
    runs.sort(key=lambda run: run.started)
    chosen = choose(runs, [run.namespace for run in runs])
    measured = fleet(chosen.runs, chosen.labels)
    if as_json:
        click.echo(json.dumps(as_dict(chosen, measured), indent=2))
    else:
        render(Console(), chosen, measured)


def outcome_counts(runs: Sequence[RunReport]) -> dict[Outcome, int]:
    counts = {outcome: 0 for outcome in OUTCOMES}
    for run in runs:
        for outcome, n in run.outcome_counts().items():
            counts[outcome] += n
    return {outcome: n for outcome, n in counts.items() if n}


def slowest(chosen: Chosen[RunReport]) -> list[tuple[str, TestResult]]:
    tests = [
        (label, t) for run, label in zip(chosen.runs, chosen.labels, strict=True) for t in run.tests
    ]
    return sorted(tests, key=lambda pair: pair[1].total_s, reverse=True)[:SLOWEST]


def as_dict(chosen: Chosen[RunReport], measured: Fleet | None) -> dict[str, Any]:
    figures = {s.label: _without_label(s) for s in measured.shards} if measured else {}
    shards = []
    for run, label in zip(chosen.runs, chosen.labels, strict=True):
        shard: dict[str, Any] = {
            "namespace": run.namespace,
            "started": run.started.isoformat(),
            "exit_status": run.exit_status,
            "outcomes": run.outcome_counts(),
        }
        shards.append({"shard": label, **shard, **figures.get(label, {})})
    whole = None
    if measured is not None:
        whole = {k: v for k, v in asdict(measured).items() if k != "shards"}
        whole["imbalance"] = measured.imbalance
    return {
        "shards": shards,
        "outcomes": outcome_counts(chosen.runs),
        "fleet": whole,
        "slowest": [
            {"shard": label, "nodeid": t.nodeid, "outcome": t.outcome, "total_s": t.total_s}
            for label, t in slowest(chosen)
        ],
        "missing": list(chosen.missing),
        "left_out": chosen.left_out,
    }


def render(console: Console, chosen: Chosen[RunReport], measured: Fleet | None) -> None:
    runs = chosen.runs
    counts = outcome_counts(runs)
    head = f"{plural(len(runs), 'shard')} merged: "
    head += ", ".join(f"{n} {outcome}" for outcome, n in counts.items()) or "no tests"
    console.print(head, soft_wrap=True)
    if chosen.left_out:
        console.print(
            f"({plural(chosen.left_out, 'older report')} left out: the newest of each shard "
            "of the newest fleet size)",
            style="dim",
            soft_wrap=True,
        )
    for label in chosen.missing:
        console.print(f"shard {label}: no report; the figures cover the others", style="yellow")
    if measured is None:
        return
    table = Table(title="shards", title_justify="left")
    for column in ("shard", "tests", "workers", "test time", "wall", "exit"):
        table.add_column(column, justify="left" if column == "shard" else "right")
    for run, shard in zip(runs, measured.shards, strict=True):
        table.add_row(
            shard.label,
            str(shard.tests),
            str(shard.slots),
            f"{shard.work_s:.2f}s",
            f"{shard.wall_s:.2f}s",
            str(run.exit_status),
        )
    console.print(table)
    console.print(
        f"fleet distance to the limit D={measured.d:.2f}: longest shard {measured.wall_s:.2f}s, "
        f"bound {measured.bound_s:.2f}s = max(longest test {measured.longest_s:.2f}s, "
        f"test time {measured.work_s:.2f}s / {measured.slots} worker slots)",
        soft_wrap=True,
    )
    console.print(
        f"longest shard / mean shard wall {measured.imbalance:.2f} (1.00: they finished together)",
        soft_wrap=True,
    )
    if measured.duplicates:
        console.print(
            f"{plural(len(measured.duplicates), 'test')} ran in more than one shard (the "
            "shards saw different history or collections): " + ", ".join(measured.duplicates[:5]),
            style="red",
            soft_wrap=True,
        )
    top = slowest(chosen)
    table = Table(title=f"{len(top)} slowest tests", title_justify="left")
    table.add_column("test", overflow="fold")
    for column in ("shard", "outcome", "time"):
        table.add_column(column, justify="right" if column == "time" else "left")
    for label, test in top:
        table.add_row(Text(test.nodeid), label, test.outcome, f"{test.total_s:.2f}s")
    console.print(table)


def _without_label(shard: ShardRun) -> dict[str, Any]:
    return {k: v for k, v in asdict(shard).items() if k != "label"}
