"""Reports come from the store only and keep the JSON contract of DESIGN.md."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from migrator import report
from migrator.errors import StoreError
from migrator.store import Move, Record, State, Store


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
        data = await report.build(store, "j")
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
    assert [r["id"] for r in data["runs"]] == [first, run]
    out = io.StringIO()
    report.print_table(data, Console(file=out, width=200))
    text = out.getvalue()
    assert "failed and invalid items" in text
    assert "InvalidParameter" in text
    assert "translation warnings by rule" in text
