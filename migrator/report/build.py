"""The report as data, read from the store only (never from a live process).

``build`` gives the JSON contract of DESIGN.md (``job``, ``run``, ``counts`` with every state,
``failures``, ``warnings``) plus the sections every format draws from: totals per target, the
chosen run's throughput over time, failures by provider error code, retries and throttles,
warnings by translation rule, and every run's history. Renderers only lay this dict out, so the
formats cannot disagree about a number.

Counts come from SQL and lists from the items they list, read a page at a time: the report of a
million-workflow job must not hold its every item. Failures, parked and orphaned items are in
the order the store recorded them; warnings (and each rule's examples) in key order.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from typing import Any

from migrator.errors import StoreError
from migrator.providers.base import split_warning
from migrator.store import TERMINAL, Item, Run, State, Store

FAILED_STATES = (State.FAILED, State.INVALID)
# A run's items that came to rest: what the throughput chart counts and each run's history lists.
SETTLED = tuple(s for s in State if s in TERMINAL)
# The history also says what a run parked (waiting for a quota) though those are not settled.
RUN_OUTCOMES = (*SETTLED, State.PARKED)
EXAMPLES = 3  # item keys and messages shown per error code or warning rule
MOST_RETRIED = 10
MAX_BUCKETS = 60
# Bucket widths a reader can add up in their head (seconds): the first giving <= MAX_BUCKETS wins.
BUCKET_WIDTHS = (
    *(0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30),
    *(60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400),
)


async def build(
    store: Store, job: str, run: int | None = None, *, every_warning: bool = False
) -> dict[str, Any]:
    """The report of ``job``'s run ``run`` (the latest by default); ``every_warning`` adds the
    list of every warning (the JSON contract) to the counts and examples every format shows."""
    runs, chosen = await chosen_run(store, job, run)
    counts = await store.counts(job)
    # Each section reads only the items it lists (the states, the warned, the most retried): a
    # job's every item at once is gigabytes for a million workflows.
    failures = [_failure(i) for i in await store.in_states(job, FAILED_STATES)]
    parked = [
        {"key": i.key, "name": i.name, "until": i.not_before}
        for i in await store.in_states(job, [State.PARKED])
    ]
    orphaned = [
        {
            "key": i.key,
            "name": i.name,
            "target_id": i.target_id,  # None once --prune deleted it
            "code": i.error_code or "",
            "message": i.error_message or "",
        }
        for i in await store.in_states(job, [State.ORPHANED])
    ]
    rules = _Rules(listed=every_warning)
    async for key, found in store.each_warned(job):
        rules.add(key, found)
    retried_total, retried = await store.most_retried(job, MOST_RETRIED)
    settled = await store.settled_by_run(job, RUN_OUTCOMES)
    end = chosen.ended_at or await store.last_event_at(job, chosen.id) or chosen.started_at
    return {
        "job": job,
        "run": {
            "id": chosen.id,
            "mode": chosen.mode,
            "target": chosen.target,
            "started_at": chosen.started_at,
            **_run_facts(chosen),
        },
        "runs": [
            {
                "id": r.id,
                "mode": r.mode,
                "target": r.target,
                "started_at": r.started_at,
                **_run_facts(r),
                "settled": {s.value: settled.get(r.id, {}).get(s.value, 0) for s in RUN_OUTCOMES},
            }
            for r in runs
        ],
        "total": sum(counts.values()),
        "counts": counts,
        "counts_by_target": await store.counts_by_target(job),
        "throughput": await _throughput(store, job, chosen.id, chosen.started_at, end),
        "failures": failures,
        "failures_by_code": _by_code(failures),
        "parked": parked,
        "orphaned": orphaned,
        "parked_until": await store.parked_until(job),
        "retried_items": [
            {"key": i.key, "name": i.name, "state": i.state.value, "retries": i.retries} for i in retried
        ],
        "retried_total": retried_total,
        **({"warnings": rules.listed} if rules.listed is not None else {}),
        "warnings_total": rules.total,
        "warnings_by_rule": rules.counts(),
        "warning_rules": rules.groups(),
    }


async def chosen_run(store: Store, job: str, run: int | None) -> tuple[list[Run], Run]:
    """Every run of ``job`` and the one a report is about (``run``, or the latest)."""
    runs = await store.runs(job)
    if not runs:
        raise StoreError(f"no run of job {job!r} in {store.path}")
    chosen = runs[-1] if run is None else next((r for r in runs if r.id == run), None)
    if chosen is None:
        raise StoreError(f"job {job!r} has no run {run} (runs: {', '.join(str(r.id) for r in runs)})")
    return runs, chosen


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False)


def _failure(item: Item) -> dict[str, Any]:
    return {
        "key": item.key,
        "name": item.name,
        "state": item.state.value,
        "code": item.error_code or "",
        "message": item.error_message or "",
        "attempts": item.attempts,
        "retries": item.retries,
    }


def _run_facts(run: Run) -> dict[str, Any]:
    """How a run ended and what it asked of its provider (``stopped``: why its circuit opened)."""
    return {
        "ended_at": run.ended_at,
        "duration_s": None if run.ended_at is None else round(run.ended_at - run.started_at, 3),
        "outcome": run.outcome or "running",
        "calls": run.calls,
        "retries": run.retries,
        "throttled": run.throttled,
        "stopped": run.stopped,
    }


def _by_code(failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failures grouped by provider error code, most frequent first, with a few examples each."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for f in failures:
        groups.setdefault(f["code"], []).append(f)
    return [
        {
            "code": code,
            "count": len(group),
            "examples": [
                {"key": f["key"], "name": f["name"], "state": f["state"], "message": f["message"]}
                for f in group[:EXAMPLES]
            ],
        }
        for code, group in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    ]


class _Rules:
    """Warnings grouped by translation rule as the store yields them, item by item: how many,
    on how many items, a few examples (one per item, so the examples show the rule's range
    rather than one workflow's tasks). Every warning is kept only if ``listed``."""

    def __init__(self, *, listed: bool) -> None:
        self.listed: list[dict[str, str]] | None = [] if listed else None
        self._count: Counter[str] = Counter()
        self._items: Counter[str] = Counter()
        self._examples: dict[str, list[dict[str, str]]] = {}

    @property
    def total(self) -> int:
        return self._count.total()

    def add(self, key: str, warnings: tuple[str, ...]) -> None:
        first: dict[str, str] = {}
        for rule, message in map(split_warning, warnings):
            self._count[rule] += 1
            first.setdefault(rule, message)
            if self.listed is not None:
                self.listed.append({"key": key, "rule": rule, "message": message})
        for rule, message in first.items():
            self._items[rule] += 1
            examples = self._examples.setdefault(rule, [])
            if len(examples) < EXAMPLES:
                examples.append({"key": key, "message": message})

    def counts(self) -> dict[str, int]:
        return dict(self._count.most_common())

    def groups(self) -> list[dict[str, Any]]:
        return [
            {"rule": rule, "count": n, "items": self._items[rule], "examples": self._examples[rule]}
            for rule, n in self._count.most_common()
        ]


def bucket_width(span: float) -> float:
    """The narrowest readable bucket that cuts ``span`` seconds into at most MAX_BUCKETS."""
    return next((w for w in BUCKET_WIDTHS if span / w <= MAX_BUCKETS), float(BUCKET_WIDTHS[-1]))


async def _throughput(store: Store, job: str, run_id: int, start: float, end: float) -> dict[str, Any]:
    """Items the run settled per time bucket, every bucket from its start to its end present."""
    width = bucket_width(max(end - start, 0.0))
    n = max(1, math.ceil(round((end - start) / width, 6)))
    found = await store.settled_over_time(job, run_id, SETTLED, start, width)
    rows = [{s.value: 0 for s in SETTLED} for _ in range(n)]
    for bucket, by_state in found.items():
        row = rows[min(max(bucket, 0), n - 1)]  # an event at the run's very end closes the last one
        for state, count in by_state.items():
            row[state] += count
    return {
        "since": start,
        "until": end,
        "bucket_s": width,
        "buckets": [
            {"offset_s": round(i * width, 3), "settled": sum(row.values()), **row}
            for i, row in enumerate(rows)
        ],
    }
