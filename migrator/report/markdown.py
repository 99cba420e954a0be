"""The report as Markdown: the HTML page's sections as tables, for a wiki page or a ticket.

Cells are escaped for Markdown tables (``|``, line breaks, emphasis and link marks) and for the
HTML a Markdown viewer lets through (``<``, ``>``, ``&``): item names and messages are user data.
They are never put in code spans, where a viewer would show those escapes literally.
"""

from __future__ import annotations

from html import escape
from typing import Any

from migrator.report.chart import STACK
from migrator.report.text import duration, ended, number, offset, per, when

BAR_WIDTH = 40  # characters of the longest bar in the throughput table


def _c(value: Any) -> str:
    text = escape("" if value is None else str(value), quote=False)
    for char in "\\`*[]|":
        text = text.replace(char, "\\" + char)
    return text.replace("\r", " ").replace("\n", " ")


def _table(head: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> list[str]:
    right = numeric or set()
    rule = ["---:" if i in right else "---" for i in range(len(head))]
    return [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(rule) + " |",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def render(report: dict[str, Any]) -> str:
    run, counts = report["run"], report["counts"]
    out = [
        f"# Migration report: {_c(report['job'])}",
        "",
        f"Run {run['id']}: {_c(run['mode'])} to **{_c(run['target'])}**, {_c(run['outcome'])}; "
        f"started {_c(when(run['started_at']))}, ended {_c(when(run['ended_at']))}, "
        f"took {_c(duration(run['duration_s']))}.",
        "",
        f"{number(report['total'])} items: {number(counts['done'])} done, {number(counts['failed'])} "
        f"failed, {number(counts['invalid'])} invalid; {number(report['warnings_total'])} translation "
        f"warnings. {number(run['calls'])} provider calls, {number(run['retries'])} retries, "
        f"{number(run['throttled'])} throttled.",
        "",
    ]
    if run["stopped"]:
        out += [f"**Provider stopped:** {_c(run['stopped'])}", ""]
    by_target: dict[str, dict[str, int]] = report["counts_by_target"]
    states = [s for s in counts if any(c[s] for c in by_target.values())]
    out += ["## Items by target and state", ""]
    out += _table(
        ["target", *states, "total"],
        [[_c(t), *(number(c[s]) for s in states), number(sum(c.values()))] for t, c in by_target.items()],
        set(range(1, len(states) + 2)),
    )
    out += _throughput(report["throughput"])
    out += _failures(report)
    out += _retries(report)
    out += _warnings(report)
    out += _history(report)
    return "\n".join(out)


def _throughput(tp: dict[str, Any]) -> list[str]:
    peak = max((b["settled"] for b in tp["buckets"]), default=0) or 1
    rows = [
        [
            _c(offset(b["offset_s"])),
            number(b["settled"]),
            _c(", ".join(f"{b[s]} {s}" for s in STACK if b[s])),
            "`" + "#" * round(BAR_WIDTH * b["settled"] / peak) + "`" if b["settled"] else "",
        ]
        for b in tp["buckets"]
    ]
    title = f"## Throughput: items settled per {_c(per(tp['bucket_s']))}"
    return [title, "", *_table(["from", "settled", "by state", ""], rows, {1})]


def _examples(examples: list[dict[str, Any]]) -> str:
    return "<br>".join(f"{_c(x['key'])}: {_c(x['message'])}" for x in examples)


def _failures(report: dict[str, Any]) -> list[str]:
    out = ["## Failures by error code", ""]
    if not report["failures_by_code"]:
        return [*out, "No failed or invalid items.", ""]
    rows = [
        [_c(g["code"] or "(no code)"), number(g["count"]), _examples(g["examples"])]
        for g in report["failures_by_code"]
    ]
    return out + _table(["error code", "items", "examples"], rows, {1})


def _retries(report: dict[str, Any]) -> list[str]:
    run = report["run"]
    out = [
        "## Retries and throttles",
        "",
        f"This run made {number(run['calls'])} calls to the provider: {number(run['retries'])} were "
        f"retries and {number(run['throttled'])} were throttled.",
        "",
    ]
    if report["parked"]:
        out += [
            f"{number(len(report['parked']))} items are parked until {_c(when(report['parked_until']))}.",
            "",
        ]
    if not report["retried_items"]:
        return [*out, "No item needed a retry.", ""]
    rows = [
        [_c(i["key"]), _c(i["name"]), _c(i["state"]), number(i["retries"])] for i in report["retried_items"]
    ]
    return [
        *out,
        f"{number(report['retried_total'])} items needed retries over all runs; the most retried:",
        "",
        *_table(["key", "name", "state", "retries"], rows, {3}),
    ]


def _warnings(report: dict[str, Any]) -> list[str]:
    out = ["## Translation warnings by rule", ""]
    if not report["warning_rules"]:
        return [*out, "No translation warnings.", ""]
    rows = [
        [_c(r["rule"]), number(r["count"]), number(r["items"]), _examples(r["examples"][:1])]
        for r in report["warning_rules"]
    ]
    return out + _table(["rule", "warnings", "items", "example"], rows, {1, 2})


def _history(report: dict[str, Any]) -> list[str]:
    rows = [
        [
            f"**{r['id']}**" if r["id"] == report["run"]["id"] else str(r["id"]),
            _c(r["mode"]),
            _c(r["target"]),
            _c(when(r["started_at"])),
            _c(ended(r["started_at"], r["ended_at"])),
            _c(duration(r["duration_s"])),
            _c(r["outcome"]),
            number(r["calls"]),
            number(r["retries"]),
            number(r["throttled"]),
            _c(", ".join(f"{n} {s}" for s, n in r["settled"].items() if n) or "none"),
        ]
        for r in report["runs"]
    ]
    head = ["run", "mode", "target", "started", "ended", "took", "outcome", "calls", "retries", "throttled"]
    return ["## Run history", "", *_table([*head, "items settled"], rows, {7, 8, 9})]
