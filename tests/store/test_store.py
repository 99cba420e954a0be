"""The checkpoint store: migrations, guarded transitions, group commit, append-only events."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from migrator.errors import StoreError
from migrator.store import Change, Mark, Move, Reached, Record, Seen, State, Store
from migrator.store.schema import MIGRATIONS

JOB = "j"


def rec(key: str, state: State = State.RENDERED) -> Record:
    return Record(key, key, f"inv.jsonl:{key}", "dataworks", state, "hash", "tid")


async def test_schema_is_migrated_and_reopened(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        assert await store.schema_version() == len(MIGRATIONS)
        run = await store.start_run(JOB, "migrate", "dataworks")
        await store.apply(JOB, run, [rec("a")])
    async with await Store.open(path) as store:
        item = await store.item(JOB, "a")
        assert item is not None
        assert (item.state, item.target_id, item.seen_run) == (State.RENDERED, "tid", run)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_warnings_are_kept_apart_replaced_by_each_record_and_moved_out_of_old_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        run = await store.start_run(JOB, "migrate", "dataworks")
        warned = Record(
            "a", "a", "inv:1", "dataworks", State.RENDERED, "h", "tid", ("rule: one", "rule: two")
        )
        await store.apply(JOB, run, [warned, rec("b")])
        await store.apply(JOB, run, [Move("a", frozenset({State.RENDERED}), State.SUBMITTING)])
        assert [w async for w in store.each_warned(JOB)] == [("a", ("rule: one", "rule: two"))]
        # rendered again (a sync's changed workflow) without warnings: the old ones go
        await store.apply(JOB, run, [Move("a", frozenset({State.SUBMITTING}), State.DONE)])
        await store.apply(JOB, run, [rec("a", State.PENDING)])
        assert [w async for w in store.each_warned(JOB)] == []
    # A state database from before migration 5 kept them in the item row (and had no later index).
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.executescript(
            "DROP TABLE warnings; DROP INDEX parts_by_target; PRAGMA user_version = 4;"
            """UPDATE items SET warnings = '["rule: old"]' WHERE key = 'b';"""
        )
    async with await Store.open(path) as store:
        assert [w async for w in store.each_warned(JOB)] == [("b", ("rule: old",))]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT DISTINCT warnings FROM items").fetchall() == [("[]",)]


async def test_newer_schema_is_refused_and_garbage_is_a_clear_error(tmp_path: Path) -> None:
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StoreError, match="newer than this migrator"):
        await Store.open(newer)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="unusable"):
        await Store.open(garbage)
    with pytest.raises(StoreError, match="does not exist"):
        await Store.open(tmp_path / "absent.db", create=False)


async def test_guarded_moves_and_event_log(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        run = await store.start_run(JOB, "migrate", "dataworks")
        await store.apply(JOB, run, [rec("a")])
        await store.apply(
            JOB, run, [Move("a", frozenset({State.RENDERED}), State.SUBMITTING, {"attempts": 1})]
        )
        with pytest.raises(StoreError, match="is submitting, not rendered"):
            await store.apply(JOB, run, [Move("a", frozenset({State.RENDERED}), State.SUBMITTING)])
        # both moves of one apply land together, or neither does
        with pytest.raises(StoreError):
            await store.apply(
                JOB,
                run,
                [
                    Move("a", frozenset({State.SUBMITTING}), State.SUBMITTED, {"remote_job_id": "J1"}),
                    Move("a", frozenset({State.DONE}), State.POLLING),
                ],
            )
        item = await store.item(JOB, "a")
        assert item is not None
        assert (item.state, item.remote_job_id) == (State.SUBMITTING, None)
        with pytest.raises(StoreError, match="cannot be set"):
            await store.apply(JOB, run, [Move("a", frozenset({State.SUBMITTING}), State.DONE, {"key": "x"})])
        transitions = [(e[3], e[4]) for e in await store.events(JOB, "a")]
        assert transitions == [(None, "pending"), ("pending", "rendered"), ("rendered", "submitting")]


async def test_moves_of_one_item_in_a_row_land_as_one_with_an_event_each(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        run = await store.start_run(JOB, "migrate", "dataworks")
        await store.apply(JOB, run, [rec("a"), rec("b")])
        submitting = frozenset({State.RENDERED})
        await store.apply(JOB, run, [Move(k, submitting, State.SUBMITTING) for k in ("a", "b")])
        submitted = {"remote_job_id": "J1", "error_code": "Old", "polls": 7}
        await store.apply(
            JOB,
            run,
            [
                Move("a", frozenset({State.SUBMITTING}), State.SUBMITTED, submitted, detail="sent"),
                Move("a", frozenset({State.SUBMITTED}), State.POLLING, {"polls": 0, "error_code": None}),
                Move("a", frozenset({State.POLLING}), State.POLLING),  # a re-poll: no event
                Move("b", frozenset({State.SUBMITTING}), State.SUBMITTED),
            ],
        )
        a, b = await store.item(JOB, "a"), await store.item(JOB, "b")
        assert a is not None
        assert b is not None
        assert (a.state, a.remote_job_id, a.polls, a.error_code) == (State.POLLING, "J1", 0, None)
        assert b.state is State.SUBMITTED
        steps = [(e[3], e[4], e[7]) for e in await store.events(JOB, "a")][-2:]
        assert steps == [("submitting", "submitted", "sent"), ("submitted", "polling", None)]
        # a chain whose first step is refused changes nothing
        with pytest.raises(StoreError, match="is polling, not submitting"):
            await store.apply(
                JOB,
                run,
                [
                    Move("a", frozenset({State.SUBMITTING}), State.SUBMITTED),
                    Move("a", frozenset({State.SUBMITTED}), State.DONE),
                ],
            )
        again = await store.item(JOB, "a")
        assert again is not None
        assert again.state is State.POLLING
        assert len(await store.events(JOB, "a")) == 5


async def test_event_log_is_append_only(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    async with await Store.open(path) as store:
        await store.apply(JOB, None, [rec("a")])
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM events")


async def test_concurrent_writers_are_group_committed_and_one_failure_is_isolated(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        run = await store.start_run(JOB, "migrate", "dataworks")
        errors: list[BaseException] = []

        async def write(i: int) -> None:
            try:
                if i == 7:  # a bad move among good writes
                    await store.apply(JOB, run, [Move("nope", frozenset({State.RENDERED}), State.DONE)])
                else:
                    await store.apply(JOB, run, [rec(f"k{i}")])
            except StoreError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(write, i)
        assert len(errors) == 1
        assert "'nope' is missing" in str(errors[0])
        counts = await store.counts(JOB)
        assert counts["rendered"] == 99
        assert set(counts) == {s.value for s in State}


async def _concurrently(store: Store, run: int, batches: list[list[Change]]) -> dict[int, str]:
    """Apply each batch from its own task, all at once: "ok", or the StoreError's message, each."""
    outcomes: dict[int, str] = {}

    async def write(i: int, changes: list[Change]) -> None:
        try:
            await store.apply(JOB, run, changes)
            outcomes[i] = "ok"
        except StoreError as exc:
            outcomes[i] = str(exc)

    async with anyio.create_task_group() as tg:
        for i, changes in enumerate(batches):
            tg.start_soon(write, i, changes)
    return outcomes


async def test_a_refused_change_undoes_its_callers_other_changes_and_no_one_elses(tmp_path: Path) -> None:
    """A batch is applied at once, and again caller by caller only when a change is refused: the
    refused caller's earlier changes are undone, the others' kept, each event from the state left."""
    async with await Store.open(tmp_path / "s.db") as store:
        run = await store.start_run(JOB, "migrate", "dataworks")
        await store.apply(JOB, run, [rec(f"k{i}") for i in range(6)])
        sent = frozenset({State.RENDERED})
        either = frozenset({State.RENDERED, State.PENDING})
        batches: list[list[Change]] = [
            [Move(f"k{i}", sent if i % 2 else either, State.SUBMITTING, {"attempts": 1})] for i in range(6)
        ]
        batches[3].append(Move("k0", sent, State.DONE))  # k3's second move finds k0 submitting
        outcomes = await _concurrently(store, run, batches)
        assert outcomes.pop(3) == "item 'k0' is submitting, not rendered; refusing done"
        assert set(outcomes.values()) == {"ok"}
        states = {k: (await store.item(JOB, k)).state for k in (f"k{i}" for i in range(6))}  # type: ignore[union-attr]
        assert states == {f"k{i}": State.RENDERED if i == 3 else State.SUBMITTING for i in range(6)}
        moved = [(e[2], e[3], e[4]) for e in await store.events(JOB) if e[4] == "submitting"]
        assert sorted(moved) == [(f"k{i}", "rendered", "submitting") for i in (0, 1, 2, 4, 5)]
        with pytest.raises(StoreError, match="'k1' is submitting, not pending/rendered"):
            await store.apply(JOB, run, [Move("k1", either, State.DONE)])


async def test_a_batch_lost_to_an_unexpected_error_fails_every_caller_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only the caller that happened to commit hears that the transaction was rolled back:
    no one is told their changes are durable when they are not, and later callers still commit."""
    from migrator.store import store as store_module

    async with await Store.open(tmp_path / "s.db") as store:
        run = await store.start_run(JOB, "migrate", "dataworks")
        await store.apply(JOB, run, [rec(f"k{i}") for i in range(4)])
        apply = store_module._Writer._apply

        def breaks_on_k2(self: Any, waiter: Any) -> None:
            if any(change.key == "k2" for change in waiter.changes):
                raise ValueError("a value SQLite cannot bind")
            apply(self, waiter)

        monkeypatch.setattr(store_module._Writer, "_apply", breaks_on_k2)
        moves: list[list[Change]] = [
            [Move(f"k{i}", frozenset({State.RENDERED}), State.SUBMITTING)] for i in range(4)
        ]
        outcomes = await _concurrently(store, run, moves)
        states = {(await store.item(JOB, f"k{i}")).state for i in range(4)}  # type: ignore[union-attr]
        kept = {i for i, outcome in outcomes.items() if outcome == "ok"}
        assert outcomes[2].endswith("a value SQLite cannot bind")
        assert (State.SUBMITTING in states) == bool(kept), "an 'ok' caller's change is in the store"
        for i in range(4):
            want = State.SUBMITTING if i in kept else State.RENDERED
            assert (await store.item(JOB, f"k{i}")).state is want  # type: ignore[union-attr]
        monkeypatch.setattr(store_module._Writer, "_apply", apply)
        await store.apply(JOB, run, [Move("k2", frozenset({State.RENDERED}), State.SUBMITTING)])


async def test_seen_marks_without_event_and_repolls_are_quiet(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        await store.apply(JOB, None, [rec("a", State.POLLING)])
        run = await store.start_run(JOB, "migrate", "dataworks")
        before = len(await store.events(JOB))
        await store.apply(JOB, run, [Seen("a")])
        await store.apply(
            JOB,
            run,
            [Move("a", frozenset({State.POLLING}), State.POLLING, {"polls": 1, "next_poll_at": 5.0})],
        )
        assert len(await store.events(JOB)) == before
        item = await store.item(JOB, "a")
        assert item is not None
        assert (item.seen_run, item.polls, item.next_poll_at) == (run, 1, 5.0)
        assert [i.key for i in await store.due_polls(JOB, 5.0, 10)] == ["a"]
        assert await store.due_polls(JOB, 4.9, 10) == []
        assert await store.next_poll_at(JOB) == 5.0


async def test_each_in_states_reads_every_matching_item_once_across_pages(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        run = await store.start_run("j", "migrate", "t")
        states = [State.PENDING, State.INVALID, State.PENDING, State.INVALID, State.PENDING]
        await store.apply(
            "j", run, [Record(f"k{n}", f"n{n}", "o", "t", state) for n, state in enumerate(states)]
        )
        await store.apply("other", run, [Record("k9", "n9", "o", "t", State.PENDING)])
        found = [i.key async for i in store.each_in_states("j", [State.PENDING], page=2)]
        assert found == ["k0", "k2", "k4"]
        assert [i.key async for i in store.each_in_states("j", list(State), page=1)] == [
            f"k{n}" for n in range(5)
        ]


async def test_the_read_frontier_moves_with_its_rows_only_and_never_back(tmp_path: Path) -> None:
    async with await Store.open(tmp_path / "s.db") as store:
        run = await store.start_run(JOB, "migrate", "dataworks")
        await store.begin_epoch(JOB, run, [Mark(0, "inv.jsonl", "/abs/inv.jsonl", 900, 7, 3)])
        await store.apply(JOB, run, [rec("a"), Reached("inv.jsonl", 100, 1)])
        # A batch whose changes fail leaves the frontier where it was: never ahead of its rows.
        broken = Move("nobody", frozenset({State.PENDING}), State.RENDERED)
        with pytest.raises(StoreError):
            await store.apply(JOB, run, [rec("b"), broken, Reached("inv.jsonl", 200, 2)])
        await store.apply(JOB, run, [Reached("inv.jsonl", 50, 1)])  # behind: no move
        (mark,) = await store.frontier(JOB)
        assert (mark.epoch, mark.offset, mark.line, await store.item(JOB, "b")) == (run, 100, 1, None)
        await store.apply(JOB, run, [Seen("a", "inv.jsonl:9", 800)])
        assert await store.read_since(JOB, run) == {s.value: int(s is State.RENDERED) for s in State}
        assert await store.read_since(JOB, run + 1) == {s.value: 0 for s in State}
        rows = await store.unread(JOB, State.RENDERED, run, run + 1, "", 10)
        assert rows == [("a", "inv.jsonl:9", 800, None)]
        assert await store.unread(JOB, State.RENDERED, run, run, "", 10) == [], "read by this run"
        await store.forget_frontier(JOB)
        assert await store.frontier(JOB) == []
