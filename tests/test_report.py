"""Reports come from the store only and keep the JSON contract of DESIGN.md."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from migrator import report
from migrator.errors import StoreError
from migrator.report.build import BUCKET_WIDTHS, bucket_width
from migrator.store import Move, Record, State, Store
from tests.report.dom import read_chart


async def test_report_contract_and_table(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        first = await store.start_run("j", "migrate", "dw")
        await store.finish_run(first, "interrupted")
        run = await store.start_run("j", "migrate", "dw")
        await store.apply(
            "j",
            run,
            [
                Record(
                    "a",
                    "a",
                    "inv:1",
                    "dw",
                    State.RENDERED,
                    "h",
                    "1",
                    ("environment: task 'x': carried as exports",),
                ),
                Record(
                    "b",
                    "b",
                    "inv:2",
                    "dw",
                    State.INVALID,
                    error_code="InvalidInput",
                    error_message="inv:2: workflow 'b': tasks form a cycle: p -> q -> p",
                ),
                Record(
                    "c",
                    "c",
                    "inv:3",
                    "dw",
                    State.RENDERED,
                    "h",
                    "3",
                    ("environment: task 'y': carried", "owners: one owner kept"),
                ),
            ],
        )
        await store.apply(
            "j",
            run,
            [
                Move(
                    "c",
                    frozenset({State.RENDERED}),
                    State.FAILED,
                    {"error_code": "InvalidParameter", "error_message": "bad (request r1)"},
                )
            ],
        )
        await store.finish_run(run, "completed")
        data = await report.build(store, "j", every_warning=True)
        earlier = await report.build(store, "j", first)
        with pytest.raises(StoreError, match="has no run 99"):
            await report.build(store, "j", 99)
        with pytest.raises(StoreError, match="no run of job 'other'"):
            await report.build(store, "other")
    assert data["job"] == "j"
    assert data["run"]["id"] == run
    assert earlier["run"]["outcome"] == "interrupted"
    assert set(data["counts"]) == {s.value for s in State}
    assert (data["counts"]["rendered"], data["counts"]["invalid"], data["counts"]["failed"]) == (1, 1, 1)
    assert {(f["key"], f["state"], f["code"]) for f in data["failures"]} == {
        ("b", "invalid", "InvalidInput"),
        ("c", "failed", "InvalidParameter"),
    }
    assert any("tasks form a cycle" in f["message"] for f in data["failures"])
    assert data["warnings_by_rule"] == {"environment": 2, "owners": 1}
    assert data["warnings"] == [
        {"key": "a", "rule": "environment", "message": "task 'x': carried as exports"},
        {"key": "c", "rule": "environment", "message": "task 'y': carried"},
        {"key": "c", "rule": "owners", "message": "one owner kept"},
    ]
    assert data["warnings_total"] == earlier["warnings_total"] == 3
    assert "warnings" not in earlier  # only the JSON report lists every warning
    assert [r["id"] for r in data["runs"]] == [first, run]
    out = io.StringIO()
    report.print_table(data, Console(file=out, width=200))
    text = out.getvalue()
    assert "failed and invalid items" in text
    assert "InvalidParameter" in text
    assert "translation warnings by rule" in text
    # the sections added to the contract
    assert data["run"]["duration_s"] is not None
    assert data["failures_by_code"] == [
        {"code": code, "count": 1, "examples": [{"key": key, "name": key, "state": state, "message": msg}]}
        for code, key, state, msg in (
            ("InvalidInput", "b", "invalid", "inv:2: workflow 'b': tasks form a cycle: p -> q -> p"),
            ("InvalidParameter", "c", "failed", "bad (request r1)"),
        )
    ]
    assert [(r["rule"], r["count"], r["items"]) for r in data["warning_rules"]] == [
        ("environment", 2, 2),
        ("owners", 1, 1),
    ]
    assert data["warning_rules"][0]["examples"] == [
        {"key": "a", "message": "task 'x': carried as exports"},
        {"key": "c", "message": "task 'y': carried"},
    ]
    assert data["counts_by_target"]["dw"]["failed"] == 1
    assert (data["retried_total"], data["retried_items"]) == (0, [])


async def test_report_sections_read_across_store_pages(tmp_path: Path) -> None:
    """Warnings and items are read a page at a time; a page boundary loses and repeats nothing."""
    async with await Store.open(tmp_path / "s.db") as store:
        run = await store.start_run("j", "migrate", "dw")
        records = [
            Record(f"k{n:02}", f"k{n:02}", f"inv:{n}", "dw", State.RENDERED, "h", str(n),
                   (f"rule{n % 3}: m{n}",) if n % 2 else ())
            for n in range(25)
        ]  # fmt: skip
        await store.apply("j", run, records)
        await store.apply(
            "j",
            run,
            [Move(f"k{n:02}", frozenset({State.RENDERED}), State.PENDING, {"retries": n}) for n in (3, 7, 9)],
        )
        warned = [key async for key, _ in store.each_warned("j", page=4)]
        listed = [i.key async for i in store.each_in_states("j", [State.RENDERED], page=4)]
        data = await report.build(store, "j", every_warning=True)
    assert warned == [f"k{n:02}" for n in range(1, 25, 2)]
    assert listed == [f"k{n:02}" for n in range(25) if n not in (3, 7, 9)]
    assert data["warnings_total"] == len(data["warnings"]) == 12
    assert data["warnings_by_rule"] == {"rule1": 4, "rule0": 4, "rule2": 4}
    assert [(r["rule"], r["items"], len(r["examples"])) for r in data["warning_rules"]] == [
        ("rule1", 4, 3),
        ("rule0", 4, 3),
        ("rule2", 4, 3),
    ]
    assert data["retried_total"] == 3
    assert [(i["key"], i["retries"]) for i in data["retried_items"]] == [("k09", 9), ("k07", 7), ("k03", 3)]


class Clock:
    """The store's clock, set by hand: event times, and so the throughput buckets, are exact."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _pending(key: str, target: str = "dw") -> Record:
    return Record(key, key, f"inv:{key}", target, State.PENDING)


async def _move(
    store: Store, clock: Clock, run: int | None, at: float, key: str, frm: State, to: State
) -> None:
    clock.now = at
    await store.apply("j", run, [Move(key, frozenset({frm}), to, detail="test")])


async def test_throughput_history_and_targets_come_from_the_event_log(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    async with await Store.open(tmp_path / "s.db", clock=clock) as store:
        first = await store.start_run("j", "migrate", "dw")
        await store.apply("j", first, [_pending(k) for k in "abcd"] + [_pending("e", "enos")])
        await _move(store, clock, first, 1000.25, "a", State.PENDING, State.DONE)
        await _move(store, clock, first, 1000.35, "b", State.PENDING, State.FAILED)
        await _move(store, clock, first, 1003.05, "c", State.PENDING, State.DONE)
        clock.now = 1004.0
        await store.finish_run(first, "completed")
        await _move(store, clock, None, 1500.0, "b", State.FAILED, State.PENDING)  # `migrator retry`
        clock.now = 2000.0
        second = await store.start_run("j", "sync", "dw")
        await _move(store, clock, second, 2000.5, "d", State.PENDING, State.DONE)
        await _move(store, clock, second, 2001.5, "b", State.PENDING, State.DONE)
        await _move(store, clock, second, 2001.7, "e", State.PENDING, State.PARKED)
        await _move(store, clock, second, 2010.0, "c", State.DONE, State.ORPHANED)
        # --prune: a same-state event with a detail, which settles nothing new
        await _move(store, clock, second, 2020.0, "c", State.ORPHANED, State.ORPHANED)
        clock.now = 2100.0
        await store.finish_run(second, "completed")
        latest = await report.build(store, "j")
        earlier = await report.build(store, "j", first)
        clock.now = 3000.0
        third = await store.start_run("j", "migrate", "dw")
        await _move(store, clock, third, 3000.75, "e", State.PARKED, State.DONE)
        running = await report.build(store, "j")

    # run 2 took 100 s: 1 s buckets would be 100 of them, 2 s ones are 50
    tp = latest["throughput"]
    assert (tp["bucket_s"], len(tp["buckets"])) == (2, 50)
    assert [b["offset_s"] for b in tp["buckets"][:3]] == [0, 2, 4]
    assert {i: b["settled"] for i, b in enumerate(tp["buckets"]) if b["settled"]} == {0: 2, 5: 1}
    assert (tp["buckets"][0]["done"], tp["buckets"][5]["orphaned"]) == (2, 1)
    assert latest["run"]["duration_s"] == 100.0
    # run 1 took 4 s: 40 buckets of 0.1 s; its own events only
    tp = earlier["throughput"]
    assert (tp["bucket_s"], len(tp["buckets"])) == (0.1, 40)
    assert {i: (b["done"], b["failed"]) for i, b in enumerate(tp["buckets"]) if b["settled"]} == {
        2: (1, 0),
        3: (0, 1),
        30: (1, 0),
    }
    assert earlier["run"]["id"] == first
    assert earlier["run"]["duration_s"] == 4.0
    # every run's history: what it settled or parked
    settled = {r["id"]: {s: n for s, n in r["settled"].items() if n} for r in latest["runs"]}
    assert settled == {first: {"done": 2, "failed": 1}, second: {"done": 2, "orphaned": 1, "parked": 1}}
    assert [r["mode"] for r in latest["runs"]] == ["migrate", "sync"]
    # totals per target, every state present
    assert {t: {s: n for s, n in c.items() if n} for t, c in latest["counts_by_target"].items()} == {
        "dw": {"done": 3, "orphaned": 1},
        "enos": {"parked": 1},
    }
    assert set(latest["counts_by_target"]["enos"]) == {s.value for s in State}
    # a run still going: no duration yet, its chart ends at its latest event
    assert (running["run"]["outcome"], running["run"]["duration_s"]) == ("running", None)
    assert len(running["throughput"]["buckets"]) == 8
    assert sum(b["done"] for b in running["throughput"]["buckets"]) == 1


@pytest.mark.parametrize(
    ("span", "width"),
    [(0, 0.1), (4.5, 0.1), (6.01, 0.2), (3600, 60), (3601, 120), (5 * 86400, 7200), (100 * 86400, 86400)],
)
def test_bucket_width_is_a_round_number_of_seconds(span: float, width: float) -> None:
    assert bucket_width(span) == width


def test_bucket_width_is_the_narrowest_giving_at_most_60_buckets() -> None:
    span = 0.01
    while span < 60 * 86400:
        width = bucket_width(span)
        assert span / width <= 60, span
        narrower = [w for w in BUCKET_WIDTHS if w < width]
        assert not narrower or span / narrower[-1] > 60, span
        span *= 1.17


HOSTILE_KEY = '<script>alert("key")</script>'
HOSTILE_NAME = '=HYPERLINK("http://x")|<marquee>'
HOSTILE_MESSAGE = "bad <img src=x onerror=alert(1)> | pipe\nsecond line, with a comma"


async def _hostile_report(tmp_path: Path) -> tuple[dict[str, Any], str]:
    async with await Store.open(tmp_path / "s.db") as store:
        run = await store.start_run("j", "migrate", "dw")
        await store.apply(
            "j",
            run,
            [
                Record(
                    HOSTILE_KEY,
                    HOSTILE_NAME,
                    "inv:1",
                    "dw",
                    State.INVALID,
                    warnings=("<rule>: <i>x</i>",),
                    error_code="Bad<Code>",
                    error_message=HOSTILE_MESSAGE,
                ),
                Record("ok", "ok", "inv:2", "dw", State.RENDERED, "h"),
            ],
        )
        await store.finish_run(run, "completed")
        sheet = io.StringIO()
        await report.write_csv(store.each_in_states("j", list(State)), store.each_warned("j"), sheet)
        return await report.build(store, "j"), sheet.getvalue()


async def test_html_escapes_user_data_and_draws_one_bar_group_per_bucket(tmp_path: Path) -> None:
    data, _ = await _hostile_report(tmp_path)
    page = report.to_html(data)
    for raw in ("<script>", "<img", "<marquee>", "<i>", "<rule>", "<Code>"):
        assert raw not in page, raw
    assert "&lt;script&gt;alert(&quot;key&quot;)&lt;/script&gt;" in page
    assert "http" not in page.split("<style>")[0]  # no stylesheet, font or script fetched
    chart = read_chart(page)
    assert len(chart.buckets) == len(data["throughput"]["buckets"])
    assert sum(int(b["data-invalid"]) for b in chart.buckets) == data["counts"]["invalid"] == 1
    drawn = [i for i, rects in enumerate(chart.rects) if rects]
    assert [i for i, b in enumerate(data["throughput"]["buckets"]) if b["settled"]] == drawn
    assert "1 settled (1 invalid)" in chart.titles[drawn[0]]
    text = " ".join(chart.text)
    assert HOSTILE_KEY in text  # escaped in the source, shown as written
    assert "Bad<Code>" in text


async def test_markdown_keeps_one_row_per_cell_and_escapes_user_data(tmp_path: Path) -> None:
    data, _ = await _hostile_report(tmp_path)
    text = report.to_markdown(data)
    assert "<script>" not in text
    assert "<img" not in text
    failures = text.split("## Failures by error code", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in failures.splitlines() if line.startswith("| ")]
    assert len(rows) == 3  # head, rule, one code
    assert "Bad&lt;Code&gt;" in rows[2]
    assert "\\| pipe second line" in rows[2]
    assert rows[2].count(" | ") == 2  # three cells: the message's pipe is escaped
    for section in (
        "Items by target",
        "Throughput",
        "Retries and throttles",
        "Translation warnings",
        "Run history",
    ):
        assert f"## {section}" in text


async def test_csv_is_one_row_per_item_and_defuses_formulas(tmp_path: Path) -> None:
    _, sheet = await _hostile_report(tmp_path)
    rows = list(csv.reader(io.StringIO(sheet)))
    assert rows[0] == [
        "key",
        "name",
        "state",
        "target",
        "target_id",
        "error_code",
        "error_message",
        "warnings",
    ]
    by_key = {r[0]: r for r in rows[1:]}
    assert len(rows) == 3
    assert set(by_key) == {HOSTILE_KEY, "ok"}
    bad = by_key[HOSTILE_KEY]
    assert bad[1] == "'" + HOSTILE_NAME  # shown as text, not run as a formula
    assert (bad[2], bad[5], bad[6], bad[7]) == ("invalid", "Bad<Code>", HOSTILE_MESSAGE, "1")
    assert by_key["ok"][2:] == ["rendered", "dw", "", "", "", "0"]


async def test_csv_gives_each_item_its_own_warning_count(tmp_path: Path) -> None:
    # The counts come from a second stream merged by key: items with none, several in a row
    # with some, and a last item with some must each get their own.
    warned = {"k03": 1, "k04": 2, "k05": 3, "k09": 1, "k11": 4}
    async with await Store.open(tmp_path / "s.db") as store:
        run = await store.start_run("j", "migrate", "dw")
        records = [
            Record(
                key, key, "inv", "dw", State.RENDERED, "h", warnings=tuple(f"r: {n}" for n in range(count))
            )
            for key, count in ((f"k{i:02d}", warned.get(f"k{i:02d}", 0)) for i in range(12))
        ]
        await store.apply("j", run, records[::-1])
        sheet = io.StringIO()
        rows = store.each_in_states("j", list(State), page=5)
        await report.write_csv(rows, store.each_warned("j", page=2), sheet)
    counts = {r[0]: int(r[7]) for r in list(csv.reader(io.StringIO(sheet.getvalue())))[1:]}
    assert counts == {f"k{i:02d}": warned.get(f"k{i:02d}", 0) for i in range(12)}
