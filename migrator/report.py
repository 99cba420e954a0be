"""Progress reports, read from the store only (never from a live process).

``build`` gives the JSON contract of DESIGN.md (``job``, ``run``, ``counts`` with every state,
``failures``, ``warnings``); the renderers turn it into a table or JSON.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from migrator.errors import StoreError
from migrator.log import moment
from migrator.store import Run, State, Store

FAILED_STATES = (State.FAILED.value, State.INVALID.value)


async def build(store: Store, job: str, run: int | None = None) -> dict[str, Any]:
    runs = await store.runs(job)
    if not runs:
        raise StoreError(f"no run of job {job!r} in {store.path}")
    chosen = runs[-1] if run is None else next((r for r in runs if r.id == run), None)
    if chosen is None:
        raise StoreError(f"job {job!r} has no run {run} (runs: {', '.join(str(r.id) for r in runs)})")
    counts = await store.counts(job)
    failures = []
    parked: list[dict[str, Any]] = []
    orphaned: list[dict[str, Any]] = []
    warnings: list[dict[str, str]] = []
    rules: Counter[str] = Counter()
    for item in await store.in_states(job, [State(s) for s in State]):
        if item.state.value in FAILED_STATES:
            failures.append(
                {
                    "key": item.key,
                    "name": item.name,
                    "state": item.state.value,
                    "code": item.error_code or "",
                    "message": item.error_message or "",
                    "attempts": item.attempts,
                    "retries": item.retries,
                }
            )
        elif item.state is State.PARKED:
            parked.append({"key": item.key, "name": item.name, "until": item.not_before})
        elif item.state is State.ORPHANED:
            orphaned.append(
                {
                    "key": item.key,
                    "name": item.name,
                    "target_id": item.target_id,  # None once --prune deleted it
                    "code": item.error_code or "",
                    "message": item.error_message or "",
                }
            )
        for warning in item.warnings:
            rule = warning.split(":", 1)[0]
            rules[rule] += 1
            warnings.append({"key": item.key, "rule": rule, "message": warning.split(":", 1)[-1].strip()})
    return {
        "job": job,
        "run": {
            "id": chosen.id,
            "mode": chosen.mode,
            "target": chosen.target,
            "started_at": chosen.started_at,
            "ended_at": chosen.ended_at,
            **_run_facts(chosen),
        },
        "runs": [{"id": r.id, "started_at": r.started_at, **_run_facts(r)} for r in runs],
        "total": sum(counts.values()),
        "counts": counts,
        "failures": failures,
        "parked": parked,
        "orphaned": orphaned,
        "parked_until": await store.parked_until(job),
        "warnings": warnings,
        "warnings_by_rule": dict(rules.most_common()),
    }


def _run_facts(run: Run) -> dict[str, Any]:
    """How a run ended and what it asked of its provider (``stopped``: why its circuit opened)."""
    return {
        "ended_at": run.ended_at,
        "outcome": run.outcome or "running",
        "calls": run.calls,
        "retries": run.retries,
        "throttled": run.throttled,
        "stopped": run.stopped,
    }


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False)


def _pairs(title: str, name: str, value: str, rows: dict[str, int]) -> Table:
    table = Table(title=title, min_width=len(title) + 4)
    table.add_column(name)
    table.add_column(value, justify="right")
    for key, n in rows.items():
        table.add_row(key, str(n))
    return table


def print_table(report: dict[str, Any], console: Console) -> None:
    run = report["run"]
    console.print(
        f"[bold]{report['job']}[/bold]  run {run['id']} ({run['mode']} -> {run['target']}): "
        f"{run['outcome']}, {report['total']} items; {run['calls'] or 0} calls, "
        f"{run['retries'] or 0} retries, {run['throttled'] or 0} throttled"
    )
    if run["stopped"]:
        console.print(f"[bold red]provider stopped:[/bold red] {run['stopped']}", soft_wrap=True)
    until = report["parked_until"]
    if until is not None and until > time.time():
        console.print(
            f"quota used up: {len(report['parked'])} items parked until {moment(until)}, when it resets"
        )
    console.print(_pairs("items by state", "state", "items", report["counts"]))
    standing = [o for o in report["orphaned"] if o["target_id"]]
    if standing:
        names = ", ".join(o["name"] for o in standing[:20]) + (", ..." if len(standing) > 20 else "")
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
            fails.add_row(f["key"], f["state"], f["code"], f["message"])
        console.print(fails)
        if len(report["failures"]) > 50:
            console.print(f"... and {len(report['failures']) - 50} more (use --format json)")
