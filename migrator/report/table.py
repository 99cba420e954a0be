"""The report as terminal tables (rich): what a person reads right after a run."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from migrator.log import moment
from migrator.report.text import duration


def _pairs(title: str, name: str, value: str, rows: dict[str, int]) -> Table:
    table = Table(title=title, min_width=len(title) + 4)
    table.add_column(name)
    table.add_column(value, justify="right")
    for key, n in rows.items():
        table.add_row(escape(key), str(n))
    return table


def print_table(report: dict[str, Any], console: Console) -> None:
    run = report["run"]
    console.print(
        f"[bold]{escape(report['job'])}[/bold]  run {run['id']} ({run['mode']} -> {run['target']}): "
        f"{run['outcome']} in {duration(run['duration_s'])}, {report['total']} items; "
        f"{run['calls'] or 0} calls, {run['retries'] or 0} retries, {run['throttled'] or 0} throttled"
    )
    if run["stopped"]:
        console.print(f"[bold red]provider stopped:[/bold red] {escape(run['stopped'])}", soft_wrap=True)
    until = report["parked_until"]
    if until is not None and until > time.time():
        console.print(
            f"quota used up: {len(report['parked'])} items parked until {moment(until)}, when it resets"
        )
    console.print(_pairs("items by state", "state", "items", report["counts"]))
    standing = [o for o in report["orphaned"] if o["target_id"]]
    if standing:
        names = ", ".join(escape(o["name"]) for o in standing[:20]) + (", ..." if len(standing) > 20 else "")
        console.print(
            f"orphaned: {len(standing)} gone from the source, still at the target "
            f"(migrator run JOB --prune deletes them): {names}",
            soft_wrap=True,
        )
    if report["warnings_by_rule"]:
        console.print(_pairs("translation warnings by rule", "rule", "count", report["warnings_by_rule"]))
    if report["failures"]:
        fails = Table(title="failed and invalid items")
        for col in ("key", "state", "code", "message"):
            fails.add_column(col, overflow="fold")
        for f in report["failures"][:50]:
            fails.add_row(*(escape(f[k]) for k in ("key", "state", "code", "message")))
        console.print(fails)
        if len(report["failures"]) > 50:
            console.print(f"... and {len(report['failures']) - 50} more (use --format json)")
