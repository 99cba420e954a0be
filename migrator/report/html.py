"""The report as one self-contained HTML page (inline CSS and SVG: no script, no network).

Made to be mailed or attached to a ticket and read by people who never ran the tool, so it leads
with the totals and the run's story, then the details. Every value from the store (item keys,
names, messages, codes) is escaped: they come from user data and provider answers.
"""

from __future__ import annotations

from html import escape
from typing import Any

from migrator.report.chart import COLORS, STACK, svg
from migrator.report.text import duration, ended, number, offset, per, when

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f5f7; color: #212121;
  font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", sans-serif; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 24px 48px; }
header h1 { font-size: 24px; margin: 0 0 4px; font-weight: 600; }
header p { margin: 0; color: #616161; }
.badge { display: inline-block; padding: 1px 10px; border-radius: 10px; font-size: 12px;
  font-weight: 600; color: #fff; vertical-align: middle; margin-left: 8px; }
.ok { background: #2e7d32; } .warn { background: #ef6c00; } .bad { background: #c62828; }
.alert { background: #fdecea; border-left: 4px solid #c62828; border-radius: 4px; padding: 10px 14px;
  margin: 16px 0 0; }
.alert.hold { background: #fff8e1; border-left-color: #f9a825; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(100px, 1fr)); gap: 12px;
  margin: 20px 0; }
.card { background: #fff; border-radius: 8px; padding: 12px 14px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.card .n { font-size: 22px; font-weight: 600; white-space: nowrap; }
.card .l { color: #616161; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
section { background: #fff; border-radius: 8px; padding: 16px 20px; margin: 16px 0;
  box-shadow: 0 1px 2px rgba(0,0,0,.08); }
section h2 { font-size: 16px; margin: 0 0 10px; font-weight: 600; }
.note { color: #616161; margin: 6px 0 0; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #eeeeee; vertical-align: top; }
th { font-size: 12px; color: #616161; font-weight: 600; text-transform: uppercase; letter-spacing: .03em; }
.nw { white-space: nowrap; }
.scroll { overflow-x: auto; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.chosen td { background: #e8f1fb; }
td code { white-space: nowrap; }
code, .key { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; }
.msg { color: #424242; overflow-wrap: anywhere; }
ul.ex { margin: 0; padding-left: 16px; } ul.ex li { margin: 2px 0; }
.bar { display: flex; height: 12px; border-radius: 6px; overflow: hidden; background: #eeeeee;
  min-width: 160px; }
.bar span { display: block; height: 100%; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; margin: 8px 0 0; color: #424242; font-size: 12px; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px;
  vertical-align: -1px; }
svg.chart { width: 100%; height: auto; display: block; }
footer { color: #9e9e9e; font-size: 12px; margin-top: 24px; }
"""


def render(report: dict[str, Any]) -> str:
    run = report["run"]
    body = [
        _header(report),
        _alerts(report),
        _cards(report),
        _targets(report),
        _throughput(report),
        _failures(report),
        _retries(report),
        _warnings(report),
        _orphaned(report),
        _history(report),
        "<footer>Read from the migrator state database by <code>migrator report --format html</code>. "
        f"Item totals are the job's current state; chart, duration and costs are run {run['id']}'s."
        "</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Migration report: {escape(report['job'])} run {run['id']}</title>"
        f"<style>{CSS}</style></head><body><main>" + "".join(p for p in body if p) + "</main></body></html>\n"
    )


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _table(
    head: list[str], rows: list[list[str]], numeric: set[int] | None = None, marked: list[bool] | None = None
) -> str:
    """A table of already-escaped cells; columns in ``numeric`` are right-aligned, ``marked`` rows
    highlighted."""
    right = numeric or set()

    def cells(tag: str, values: list[str]) -> str:
        return "".join(f"<{tag}{' class=n' if i in right else ''}>{v}</{tag}>" for i, v in enumerate(values))

    lines = [
        f"<tr{' class=chosen' if mark else ''}>{cells('td', row)}</tr>"
        for row, mark in zip(rows, marked or [False] * len(rows), strict=True)
    ]
    return (
        f'<div class="scroll"><table><thead><tr>{cells("th", head)}</tr></thead>'
        f"<tbody>{''.join(lines)}</tbody></table></div>"
    )


def _header(report: dict[str, Any]) -> str:
    run = report["run"]
    counts = report["counts"]
    if run["outcome"] == "running":
        badge = '<span class="badge warn">running</span>'
    elif run["stopped"] or run["outcome"] != "completed":
        badge = f'<span class="badge bad">{_e(run["outcome"])}</span>'
    elif counts["failed"] or counts["invalid"]:
        badge = '<span class="badge warn">completed with failures</span>'
    else:
        badge = '<span class="badge ok">completed</span>'
    return (
        f"<header><h1>Migration report: {_e(report['job'])}{badge}</h1>"
        f"<p>Run {run['id']} &middot; {_e(run['mode'])} to <b>{_e(run['target'])}</b> &middot; "
        f"started {_e(when(run['started_at']))} &middot; "
        f"ended {_e(ended(run['started_at'], run['ended_at']))} &middot; "
        f"took {_e(duration(run['duration_s']))}</p></header>"
    )


def _alerts(report: dict[str, Any]) -> str:
    """What stopped the run or holds items back: said first, as it is what someone must act on."""
    run, alerts = report["run"], []
    if run["stopped"]:
        alerts.append(("alert", f"<b>The provider stopped this run:</b> {_e(run['stopped'])}"))
    if report["parked"]:
        alerts.append(
            (
                "alert hold",
                f"<b>{number(len(report['parked']))} items are parked</b> until the provider's quota "
                f"resets ({_e(when(report['parked_until']))}); the next run after that takes them.",
            )
        )
    return "".join(f'<div class="{cls}">{text}</div>' for cls, text in alerts)


def _cards(report: dict[str, Any]) -> str:
    run, counts = report["run"], report["counts"]
    cards = [
        ("items", number(report["total"]), None),
        ("done", number(counts["done"]), COLORS["done"]),
        ("failed", number(counts["failed"]), COLORS["failed"] if counts["failed"] else None),
        ("invalid", number(counts["invalid"]), COLORS["invalid"] if counts["invalid"] else None),
        ("warnings", number(report["warnings_total"]), None),
        ("duration", duration(run["duration_s"]), None),
        ("calls", number(run["calls"]), None),
        ("retries", number(run["retries"]), None),
        ("throttled", number(run["throttled"]), None),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="n"{f" style=color:{c}" if c else ""}>{_e(n)}</div>'
            f'<div class="l">{_e(label)}</div></div>'
            for label, n, c in cards
        )
        + "</div>"
    )


def _bar(counts: dict[str, int]) -> str:
    total = sum(counts.values()) or 1
    return (
        '<div class="bar">'
        + "".join(
            f'<span title="{_e(f"{n} {state}")}" '
            f'style="width:{100 * n / total:.2f}%;background:{COLORS[state]}"></span>'
            for state, n in counts.items()
            if n
        )
        + "</div>"
    )


def _legend(states: list[str]) -> str:
    return (
        '<div class="legend">'
        + "".join(
            f'<span><span class="dot" style="background:{COLORS[s]}"></span>{_e(s)}</span>' for s in states
        )
        + "</div>"
    )


def _targets(report: dict[str, Any]) -> str:
    by_target: dict[str, dict[str, int]] = report["counts_by_target"]
    states = [s for s in report["counts"] if any(c[s] for c in by_target.values())]
    rows = [
        [f"<b>{_e(t)}</b>", _bar(c), *(number(c[s]) for s in states), number(sum(c.values()))]
        for t, c in by_target.items()
    ]
    numeric = set(range(2, len(states) + 3))
    return (
        "<section><h2>Items by target and state</h2>"
        + _table(["target", "", *states, "total"], rows, numeric)
        + _legend(states)
        + "</section>"
    )


def _throughput(report: dict[str, Any]) -> str:
    tp = report["throughput"]
    settled = sum(b["settled"] for b in tp["buckets"])
    span = tp["until"] - tp["since"]
    if settled:
        peak = max(tp["buckets"], key=lambda b: b["settled"])
        rate = f"{settled / span:.1f}" if span > 0 else "-"
        start = "the start" if peak["offset_s"] == 0 else offset(peak["offset_s"])
        note = (
            f"{number(settled)} items settled in this run, {rate} per second on average; the busiest "
            f"{_e(per(tp['bucket_s']))} (from {_e(start)}) settled {number(peak['settled'])}."
        )
    else:
        note = "No item was settled in this run."
    return (
        f"<section><h2>Throughput: items settled per {_e(per(tp['bucket_s']))}</h2>"
        + svg(tp)
        + _legend([s for s in STACK if any(b[s] for b in tp["buckets"])] or ["done"])
        + f'<p class="note">{note}</p></section>'
    )


def _examples(examples: list[dict[str, Any]]) -> str:
    return (
        '<ul class="ex">'
        + "".join(
            f'<li><span class="key">{_e(x["key"])}</span> <span class="msg">{_e(x["message"])}</span></li>'
            for x in examples
        )
        + "</ul>"
    )


def _failures(report: dict[str, Any]) -> str:
    groups = report["failures_by_code"]
    if not groups:
        return "<section><h2>Failures by error code</h2><p>No failed or invalid items.</p></section>"
    rows = [
        [f"<code>{_e(g['code'] or '(no code)')}</code>", number(g["count"]), _examples(g["examples"])]
        for g in groups
    ]
    return (
        f"<section><h2>Failures by error code ({number(len(report['failures']))} items)</h2>"
        + _table(["error code", "items", "examples"], rows, {1})
        + '<p class="note"><code>migrator retry JOB</code> puts retryable failures back to pending; '
        "<code>--format csv</code> lists every item.</p></section>"
    )


def _retries(report: dict[str, Any]) -> str:
    run = report["run"]
    lines = [
        f"<p>This run made {number(run['calls'])} calls to the provider: {number(run['retries'])} were "
        f"retries and {number(run['throttled'])} were throttled (rate limited and sent again).</p>"
    ]
    if report["retried_items"]:
        rows = [
            [f'<span class="key">{_e(i["key"])}</span>', _e(i["name"]), _e(i["state"]), number(i["retries"])]
            for i in report["retried_items"]
        ]
        lines.append(
            f"<p>{number(report['retried_total'])} items needed retries over all runs; the most retried:</p>"
            + _table(["key", "name", "state", "retries"], rows, {3})
        )
    else:
        lines.append('<p class="note">No item needed a retry.</p>')
    return "<section><h2>Retries and throttles</h2>" + "".join(lines) + "</section>"


def _warnings(report: dict[str, Any]) -> str:
    rules = report["warning_rules"]
    if not rules:
        return "<section><h2>Translation warnings</h2><p>No translation warnings.</p></section>"
    rows = [
        [
            f"<code>{_e(r['rule'])}</code>",
            number(r["count"]),
            number(r["items"]),
            _examples(r["examples"][:1]),
        ]
        for r in rules
    ]
    return (
        f"<section><h2>Translation warnings by rule ({number(report['warnings_total'])})</h2>"
        + _table(["rule", "warnings", "items", "example"], rows, {1, 2})
        + '<p class="note">What the target cannot express exactly; '
        "<code>migrator plan</code> lists every one before a run.</p></section>"
    )


def _orphaned(report: dict[str, Any]) -> str:
    orphaned = report["orphaned"]
    if not orphaned:
        return ""
    rows = [
        [f'<span class="key">{_e(o["key"])}</span>', _e(o["name"]), _e(o["target_id"] or "deleted (--prune)")]
        for o in orphaned[:50]
    ]
    more = f'<p class="note">and {number(len(orphaned) - 50)} more.</p>' if len(orphaned) > 50 else ""
    return (
        f"<section><h2>Gone from the source ({number(len(orphaned))})</h2>"
        + _table(["key", "name", "at the target"], rows)
        + more
        + "</section>"
    )


def _history(report: dict[str, Any]) -> str:
    def settled(counts: dict[str, int]) -> str:
        shown = [f'<span class="nw">{number(n)} {_e(state)}</span>' for state, n in counts.items() if n]
        return ", ".join(shown) or "none"

    def at(epoch: float | None) -> str:
        return f'<span class="nw">{_e(when(epoch))}</span>'

    rows = [
        [
            str(r["id"]),
            _e(r["mode"]),
            _e(r["target"]),
            at(r["started_at"]),
            f'<span class="nw">{_e(ended(r["started_at"], r["ended_at"]))}</span>',
            f'<span class="nw">{_e(duration(r["duration_s"]))}</span>',
            _e(r["outcome"]),
            number(r["calls"]),
            number(r["retries"]),
            number(r["throttled"]),
            settled(r["settled"]),
        ]
        for r in report["runs"]
    ]
    chosen = [r["id"] == report["run"]["id"] for r in report["runs"]]
    head = ["run", "mode", "target", "started", "ended", "took", "outcome", "calls", "retries", "throttled"]
    return (
        "<section><h2>Run history</h2>"
        + _table([*head, "items settled"], rows, {0, 7, 8, 9}, chosen)
        + '<p class="note">Items each run settled or parked, from the event log; '
        "the highlighted run is the one this report is about.</p></section>"
    )
