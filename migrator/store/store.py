"""The SQLite checkpoint store: every item's state, every transition, every run.

Crash safety rests on two rules (DESIGN.md): the intent to submit is committed before the
remote call, and the remote result is committed in the transaction that leaves ``submitting``.
:meth:`Store.apply` returns only once its changes are durable. Concurrent callers are
group-committed (one transaction, one fsync, for whoever is waiting), each caller's changes in
its own savepoint so that one bad change fails only its caller.

``synchronous=FULL`` in WAL mode: a committed intent survives a power cut, not just a killed
process, because a lost intent would let a non-idempotent create be repeated. Group commit keeps
the cost of that fsync to one per batch.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

import aiosqlite
import anyio

from migrator.errors import StoreError
from migrator.store.schema import MIGRATIONS, TERMINAL, State

Clock = Callable[[], float]
_T = TypeVar("_T")

_ITEM_COLUMNS = (
    "job, key, name, origin, target, content_hash, submitted_hash, state, attempts, target_id, "
    "remote_job_id, next_poll_at, deadline_at, polls, error_code, error_message, run_id, "
    "created_at, updated_at, seen_run, not_before, retries"
)
_MOVABLE = frozenset(
    {
        "content_hash",
        "submitted_hash",
        "attempts",
        "target_id",
        "remote_job_id",
        "next_poll_at",
        "deadline_at",
        "polls",
        "error_code",
        "error_message",
        "not_before",
        "retries",
    }
)


@dataclass(frozen=True, slots=True)
class Item:
    """One workflow's row in the store (its translation warnings are kept apart: they are written
    once, where the row changes at every transition; see :meth:`Store.each_warned`)."""

    job: str
    key: str
    name: str
    origin: str
    target: str
    content_hash: str | None
    submitted_hash: str | None
    state: State
    attempts: int
    target_id: str | None
    remote_job_id: str | None
    next_poll_at: float | None
    deadline_at: float | None
    polls: int
    error_code: str | None
    error_message: str | None
    run_id: int | None
    created_at: float
    updated_at: float
    seen_run: int | None
    not_before: float | None = None
    retries: int = 0

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Item:
        values = list(row)
        values[7] = State(values[7])
        return cls(*values)


@dataclass(frozen=True, slots=True)
class Record:
    """The reader's view of an item: create it, or refresh what the source says about it."""

    key: str
    name: str
    origin: str
    target: str
    state: State
    content_hash: str | None = None
    target_id: str | None = None
    warnings: tuple[str, ...] = ()
    error_code: str | None = None
    error_message: str | None = None
    offset: int | None = None
    """Where the item's JSON Lines record starts in its file (None: unknown, or unchanged)."""


@dataclass(frozen=True, slots=True)
class Move:
    """A guarded transition: the item must be in one of ``expect`` or the change is refused."""

    key: str
    expect: frozenset[State]
    to: State
    fields: dict[str, Any] = field(default_factory=dict)
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Seen:
    """The source still has this item (no state change, no event): marks it seen by this run,
    and where its record is now (None: unchanged)."""

    key: str
    origin: str | None = None
    offset: int | None = None


@dataclass(frozen=True, slots=True)
class Reached:
    """The read frontier of a file (by name) moves on: every line before ``offset`` is recorded.

    Applied with the changes of the lines it covers, so that a crash never leaves a frontier
    ahead of its rows. It never moves back.
    """

    file: str
    offset: int
    line: int


@dataclass(frozen=True, slots=True)
class Mark:
    """A file of a job's source as the read frontier knows it: what it was when its epoch run
    began reading it (resolved path, size, modification time, inode) and how far it is recorded.
    ``name`` is the path as the source names it, and as the origins of its items begin."""

    seq: int
    name: str
    path: str
    size: int
    mtime_ns: int
    inode: int
    epoch: int = 0
    offset: int = 0
    line: int = 0


@dataclass(frozen=True, slots=True)
class PartMove:
    """One part of a multi-part item (an EMR job of a flow): intent first, then its remote id."""

    key: str
    part: str
    to: State
    target_id: str | None = None
    content_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Part:
    """A part as last made or updated: ``content_hash`` is the content it was sent with."""

    part: str
    state: State
    target_id: str | None
    content_hash: str | None = None
    since: float | None = None
    """When it reached ``state`` (by the store's clock): for a part left ``submitting``, when its
    create was begun, so an object of its name made well before is known not to be its."""


Change = Record | Move | Seen | PartMove | Reached


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    job: str
    mode: str
    target: str
    pid: int
    started_at: float
    ended_at: float | None
    outcome: str | None
    calls: int | None = None
    retries: int | None = None
    throttled: int | None = None
    stopped: str | None = None
    parked_until: float | None = None


@dataclass(frozen=True, slots=True)
class RunCost:
    """What a run asked of its provider, why it stopped early if it did, and until when a used-up
    quota holds the provider (whichever call met it: a submit, a poll or a lookup)."""

    calls: int = 0
    retries: int = 0
    throttled: int = 0
    stopped: str | None = None
    parked_until: float | None = None


@dataclass(slots=True)
class _Waiter:
    job: str
    run_id: int | None
    changes: Sequence[Change]
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None


class Store:
    """An open state database. Use ``async with await Store.open(path) as store``."""

    def __init__(self, path: Path, conn: aiosqlite.Connection, clock: Clock) -> None:
        self.path = path
        self._conn = conn
        self._clock = clock
        self._pending: list[_Waiter] = []
        self._committing = False

    def now(self) -> float:
        """The store's clock, which stamps what it records."""
        return self._clock()

    # --- lifecycle ---------------------------------------------------------------------------

    @classmethod
    async def open(
        cls, path: Path, *, clock: Clock = time.time, create: bool = True, read_only: bool = False
    ) -> Store:
        """Open (by default create and migrate) the state database.

        ``read_only`` is for ``migrator plan``, which promises to write nothing: the file is
        opened with SQLite's ``mode=ro``, never migrated, and must already be at this version.
        """
        if (read_only or not create) and not await anyio.Path(path).exists():
            raise StoreError(f"state database {path} does not exist (has this job been run?)")
        try:
            if read_only:
                where = (await anyio.Path(path).resolve()).as_uri()
                conn = await aiosqlite.connect(f"{where}?mode=ro", uri=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open state database {path}: {exc}") from None
        store = cls(path, conn, clock)
        try:
            if read_only:
                await store._check_version()
            else:
                await store._prepare()
        except sqlite3.DatabaseError as exc:
            await conn.close()
            raise StoreError(f"state database {path} is unusable: {exc}") from None
        except StoreError:
            await conn.close()
            raise
        return store

    async def _check_version(self) -> None:
        await self._conn.execute("PRAGMA busy_timeout = 10000")
        version = await self.schema_version()
        _known(version)
        if version != len(MIGRATIONS):
            raise StoreError(
                f"state database {self.path} has schema version {version}, this migrator writes "
                f"{len(MIGRATIONS)}: run `migrator status` once to upgrade it"
            )

    async def _prepare(self) -> None:
        await self._conn.execute("PRAGMA busy_timeout = 10000")
        mode = await self._fetchone("PRAGMA journal_mode = WAL")
        if mode is None or str(mode[0]).lower() != "wal":
            raise sqlite3.DatabaseError("could not switch to WAL journal mode")
        await self._conn.execute("PRAGMA synchronous = FULL")
        await self._conn.execute("PRAGMA foreign_keys = ON")
        await self._in_thread(_migrate, None)

    async def close(self) -> None:
        """Shielded: a run being cancelled must still let queued commits finish and the file close."""
        with anyio.CancelScope(shield=True):
            await self._conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def schema_version(self) -> int:
        row = await self._fetchone("PRAGMA user_version")
        return int(row[0]) if row else 0

    # --- runs --------------------------------------------------------------------------------

    async def start_run(self, job: str, mode: str, target: str) -> int:
        cursor = await self._conn.execute(
            "INSERT INTO runs (job, mode, target, pid, started_at) VALUES (?, ?, ?, ?, ?)",
            (job, mode, target, os.getpid(), self._clock()),
        )
        run_id = cursor.lastrowid
        assert run_id is not None
        return run_id

    async def finish_run(self, run_id: int, outcome: str, cost: RunCost | None = None) -> None:
        cost = cost or RunCost()
        await self._conn.execute(
            "UPDATE runs SET ended_at = ?, outcome = ?, calls = ?, retries = ?, throttled = ?, "
            "stopped = ?, parked_until = ? WHERE id = ?",
            (
                self._clock(),
                outcome,
                cost.calls,
                cost.retries,
                cost.throttled,
                cost.stopped,
                cost.parked_until,
                run_id,
            ),
        )

    async def runs(self, job: str) -> list[Run]:
        rows = await self._fetchall(
            "SELECT id, job, mode, target, pid, started_at, ended_at, outcome, calls, retries, "
            "throttled, stopped, parked_until FROM runs WHERE job = ? ORDER BY id",
            (job,),
        )
        return [Run(*r) for r in rows]

    async def jobs(self) -> list[str]:
        rows = await self._fetchall(
            "SELECT DISTINCT job FROM items UNION SELECT DISTINCT job FROM runs ORDER BY 1"
        )
        return [str(r[0]) for r in rows]

    # --- items: reads ------------------------------------------------------------------------

    async def items(self, job: str, keys: Iterable[str]) -> dict[str, Item]:
        wanted = list(keys)
        found: dict[str, Item] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self._fetchall(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE job = ? AND key IN ({marks})", (job, *chunk)
            )
            found.update((r[1], Item.from_row(r)) for r in rows)
        return found

    async def item(self, job: str, key: str) -> Item | None:
        return (await self.items(job, [key])).get(key)

    async def by_name(self, job: str, names: Iterable[str]) -> dict[str, list[Item]]:
        """Items by workflow name (a name may be shared), for resolving references by name."""
        found: dict[str, list[Item]] = {}
        wanted = list(names)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = await self._fetchall(
                f"SELECT {_ITEM_COLUMNS} FROM items WHERE job = ? AND name IN ({marks})", (job, *chunk)
            )
            for row in rows:
                found.setdefault(row[2], []).append(Item.from_row(row))
        return found

    async def part_owner(self, target_id: str, job: str, key: str) -> str | None:
        """The item (``job/key`` where not ``job``'s) other than ``key`` with a part made as
        ``target_id``, if any; parts gone at the target count, since ids are never reused."""
        row = await self._fetchone(
            "SELECT job, key FROM parts WHERE target_id = ? AND NOT (job = ? AND key = ?) LIMIT 1",
            (target_id, job, key),
        )
        if row is None:
            return None
        return str(row[1]) if row[0] == job else f"{row[0]}/{row[1]}"

    async def parts(self, job: str, key: str) -> dict[str, Part]:
        rows = await self._fetchall(
            "SELECT part, state, target_id, content_hash, updated_at FROM parts WHERE job = ? AND key = ?",
            (job, key),
        )
        return {r[0]: Part(r[0], State(r[1]), r[2], r[3], r[4]) for r in rows}

    # `INDEXED BY items_by_state`: without statistics SQLite prefers the primary key's (job)
    # prefix and visits every row of the job, half a second for a million, at every run's start.
    async def in_states(self, job: str, states: Iterable[State], limit: int = -1) -> list[Item]:
        wanted = [s.value for s in states]
        marks = ",".join("?" * len(wanted))
        rows = await self._fetchall(
            f"SELECT {_ITEM_COLUMNS} FROM items INDEXED BY items_by_state "
            f"WHERE job = ? AND state IN ({marks}) "
            "ORDER BY created_at, key "
            "LIMIT ?",
            (job, *wanted, limit),
        )
        return [Item.from_row(r) for r in rows]

    async def each_in_states(
        self, job: str, states: Iterable[State], page: int = 1000
    ) -> AsyncIterator[Item]:
        """Every item in one of ``states``, in key order, read a page at a time: a job's whole
        store in memory at once is gigabytes for a million workflows."""
        wanted = [s.value for s in states]
        where = f"state IN ({','.join('?' * len(wanted))})"
        async for row in self._pages(job, _ITEM_COLUMNS, where, wanted, page):
            yield Item.from_row(row)

    async def each_warned(
        self, job: str, page: int = 1000
    ) -> AsyncGenerator[tuple[str, tuple[str, ...]], None]:
        """``(key, warnings)`` of every item with a translation warning, in key order, paged."""
        async for row in self._pages(job, "job, key, warnings", "1", (), page, table="warnings"):
            yield str(row[1]), tuple(json.loads(row[2]))

    async def _pages(
        self, job: str, columns: str, where: str, args: Sequence[Any], page: int, table: str = "items"
    ) -> AsyncIterator[tuple[Any, ...]]:
        """Rows of ``table`` (``columns`` starting ``job, key``) matching ``where``, a page at a
        time in key order: each page resumes after the last key, so memory holds one page."""
        after = ""
        while rows := await self._fetchall(
            f"SELECT {columns} FROM {table} WHERE job = ? AND key > ? AND {where} ORDER BY key LIMIT ?",
            (job, after, *args, page),
        ):
            for row in rows:
                yield tuple(row)
            after = str(rows[-1][1])

    async def most_retried(self, job: str, limit: int) -> tuple[int, list[Item]]:
        """How many items were retried at all, and the ``limit`` retried most (ties by key)."""
        row = await self._fetchone("SELECT COUNT(*) FROM items WHERE job = ? AND retries > 0", (job,))
        rows = await self._fetchall(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE job = ? AND retries > 0 "
            "ORDER BY retries DESC, key LIMIT ?",
            (job, limit),
        )
        return (int(row[0]) if row else 0), [Item.from_row(r) for r in rows]

    async def unseen(self, job: str, run_id: int, besides: Iterable[State]) -> list[Item]:
        """Items run ``run_id`` did not read from its source, except those in ``besides``."""
        left = [s.value for s in besides]
        rows = await self._fetchall(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE job = ? AND (seen_run IS NULL OR seen_run != ?) "
            f"AND state NOT IN ({','.join('?' * len(left))}) ORDER BY created_at, key",
            (job, run_id, *left),
        )
        return [Item.from_row(r) for r in rows]

    async def due_polls(self, job: str, now: float, limit: int) -> list[Item]:
        rows = await self._fetchall(
            f"SELECT {_ITEM_COLUMNS} FROM items WHERE job = ? AND state = 'polling' AND next_poll_at <= ? "
            "ORDER BY next_poll_at LIMIT ?",
            (job, now, limit),
        )
        return [Item.from_row(r) for r in rows]

    async def next_poll_at(self, job: str) -> float | None:
        row = await self._fetchone(
            "SELECT MIN(next_poll_at) FROM items WHERE job = ? AND state = 'polling'", (job,)
        )
        return None if row is None or row[0] is None else float(row[0])

    async def requeue(self, job: str, codes: Sequence[str] | None) -> int:
        """Failed items (those failed with one of ``codes``, or all) back to ``pending``."""
        sql = f"SELECT {_ITEM_COLUMNS} FROM items INDEXED BY items_by_state WHERE job = ? AND state = ?"
        args: tuple[Any, ...] = (job, State.FAILED.value)
        if codes is not None:
            sql += f" AND error_code IN ({','.join('?' * len(codes))})"
            args += tuple(codes)
        items = [Item.from_row(r) for r in await self._fetchall(sql, args)]
        cleared = {
            "error_code": None,
            "error_message": None,
            "remote_job_id": None,
            "next_poll_at": None,
            "deadline_at": None,
            "polls": 0,
        }
        moves = [
            Move(
                i.key, frozenset({State.FAILED}), State.PENDING, cleared, detail=f"retry: was {i.error_code}"
            )
            for i in items
        ]
        return await self.apply_in_batches(job, None, moves)

    async def unpark(self, job: str) -> int:
        """Forget a used-up quota (the account got more): parked items back to ``pending``."""
        items = await self.in_states(job, [State.PARKED])
        moves = [
            Move(
                i.key, frozenset({State.PARKED}), State.PENDING, {"not_before": None}, detail="retry --parked"
            )
            for i in items
        ]
        moved = await self.apply_in_batches(job, None, moves)
        await self._conn.execute("UPDATE runs SET parked_until = NULL WHERE job = ?", (job,))
        return moved

    async def apply_in_batches(self, job: str, run_id: int | None, moves: Sequence[Move]) -> int:
        """Many moves (a command's between runs, a sync's orphans), in transactions of bounded size."""
        for start in range(0, len(moves), 500):
            await self.apply(job, run_id, moves[start : start + 500])
        return len(moves)

    async def parked_until(self, job: str) -> float | None:
        """Until when the job's provider has no quota left: the latest reset time a run met, or
        that a parked item waits for (None if none was ever met; compare with the clock)."""
        row = await self._fetchone(
            "SELECT MAX(t) FROM (SELECT MAX(parked_until) AS t FROM runs WHERE job = ? "
            "UNION ALL SELECT MAX(not_before) FROM items INDEXED BY items_by_state "
            "WHERE job = ? AND state = 'parked')",
            (job, job),
        )
        return None if row is None or row[0] is None else float(row[0])

    async def counts(self, job: str) -> dict[str, int]:
        """Items by state, every state present (zeros included)."""
        counts = {s.value: 0 for s in State}
        for state, n in await self._fetchall(
            "SELECT state, COUNT(*) FROM items WHERE job = ? GROUP BY state", (job,)
        ):
            counts[str(state)] = int(n)
        return counts

    async def counts_by_target(self, job: str) -> dict[str, dict[str, int]]:
        """Items by target and state (every state present for each target that has items)."""
        found: dict[str, dict[str, int]] = {}
        for target, state, n in await self._fetchall(
            "SELECT target, state, COUNT(*) FROM items WHERE job = ? GROUP BY target, state ORDER BY target",
            (job,),
        ):
            found.setdefault(str(target), {s.value: 0 for s in State})[str(state)] = int(n)
        return found

    async def settled_by_run(self, job: str, states: Iterable[State]) -> dict[int, dict[str, int]]:
        """How many items each run moved into each of ``states`` (from the event log), by run id."""
        wanted = [s.value for s in states]
        found: dict[int, dict[str, int]] = {}
        for run_id, state, n in await self._fetchall(
            "SELECT run_id, to_state, COUNT(DISTINCT key) FROM events WHERE job = ? AND run_id IS NOT NULL "
            "AND part IS NULL AND from_state IS NOT to_state "
            f"AND to_state IN ({','.join('?' * len(wanted))}) GROUP BY run_id, to_state",
            (job, *wanted),
        ):
            found.setdefault(int(run_id), {})[str(state)] = int(n)
        return found

    async def settled_over_time(
        self, job: str, run_id: int, states: Iterable[State], since: float, width: float
    ) -> dict[int, dict[str, int]]:
        """Items run ``run_id`` moved into each of ``states``, by time bucket: bucket ``n`` holds
        the transitions made ``since + n * width`` up to ``width`` seconds later."""
        wanted = [s.value for s in states]
        found: dict[int, dict[str, int]] = {}
        for bucket, state, n in await self._fetchall(
            "SELECT CAST((at - ?) / ? AS INTEGER), to_state, COUNT(*) FROM events "
            "WHERE job = ? AND run_id = ? AND part IS NULL AND from_state IS NOT to_state "
            f"AND to_state IN ({','.join('?' * len(wanted))}) GROUP BY 1, 2",
            (since, width, job, run_id, *wanted),
        ):
            found.setdefault(int(bucket), {})[str(state)] = int(n)
        return found

    async def settled_since(self, job: str, run_id: int, since: float) -> int:
        """Items run ``run_id`` settled by work at or after ``since`` (for a rate): moved into a
        final state other than ``skipped``, which a sync reaches without a call (the live display
        leaves those out too, or a nightly sync's ETA came out a fraction of the real one).

        The event log is appended in time order, so the first event at or after ``since`` is
        found by bisecting the ids, and only the events after it are read: ``migrator status``
        asked every few seconds of a store with millions of events reads the last minute's only.
        """
        # Two subqueries: SQLite answers a lone MIN or MAX from the rowid, but scans for both at once.
        row = await self._fetchone("SELECT (SELECT MIN(id) FROM events), (SELECT MAX(id) FROM events)")
        if row is None or row[0] is None:
            return 0
        low, high = int(row[0]), int(row[1]) + 1
        while low < high:
            mid = (low + high) // 2
            found = await self._fetchone("SELECT at FROM events WHERE id >= ? ORDER BY id LIMIT 1", (mid,))
            if found is None or float(found[0]) >= since:
                high = mid
            else:
                low = mid + 1
        final = [s.value for s in TERMINAL if s is not State.SKIPPED]
        # `+job`: walk the ids from the boundary, not the (job, key) index over every event of the job.
        count = await self._fetchone(
            "SELECT COUNT(*) FROM events WHERE id >= ? AND +job = ? AND run_id = ? AND part IS NULL "
            f"AND from_state IS NOT to_state AND to_state IN ({','.join('?' * len(final))})",
            (low, job, run_id, *final),
        )
        return int(count[0]) if count else 0

    async def last_event_at(self, job: str, run_id: int) -> float | None:
        """When run ``run_id`` last changed an item (how far a run still going has got)."""
        row = await self._fetchone("SELECT MAX(at) FROM events WHERE job = ? AND run_id = ?", (job, run_id))
        return None if row is None or row[0] is None else float(row[0])

    async def events(self, job: str, key: str | None = None) -> list[tuple[Any, ...]]:
        sql = "SELECT id, run_id, key, from_state, to_state, at, code, detail FROM events WHERE job = ?"
        args: tuple[Any, ...] = (job,)
        if key is not None:
            sql += " AND key = ?"
            args += (key,)
        return [tuple(r) for r in await self._fetchall(sql + " ORDER BY id", args)]

    # --- items: writes -----------------------------------------------------------------------

    async def apply(self, job: str, run_id: int | None, changes: Sequence[Change]) -> None:
        """Make ``changes`` durable (one savepoint, group-committed with concurrent callers).

        Raises :class:`StoreError` if a :class:`Move` finds its item in an unexpected state; the
        caller's other changes are then rolled back too, and nobody else's are affected.
        """
        if not changes:
            return  # nothing to make durable: no trip to the connection's thread
        waiter = _Waiter(job, run_id, changes)
        self._pending.append(waiter)
        if self._committing:
            await waiter.done.wait()
        else:
            self._committing = True
            try:
                with anyio.CancelScope(shield=True):
                    while self._pending:
                        batch, self._pending = self._pending, []
                        await self._commit(batch)
            finally:
                self._committing = False
        if waiter.error is not None:
            raise waiter.error

    async def _commit(self, batch: list[_Waiter]) -> None:
        """Write a whole group commit in one trip to the connection's thread.

        A transition is three or four statements; sent one trip each, the hand-offs between the
        event loop and the SQLite thread cost more than the statements and capped the engine at
        a few hundred calls a second. Run as one function, a batch costs one hand-off.
        """
        try:
            await self._in_thread(_Writer.commit, (self._clock, batch))
        except Exception as exc:
            # The transaction was rolled back whole (a refused change never gets here: it fails
            # its own caller inside the batch). Every caller must hear it, not only the one that
            # happened to commit, and the callers queued meanwhile still get their own commit.
            failure = StoreError(f"cannot write state database {self.path}: {exc}")
            for waiter in batch:
                waiter.error = waiter.error or failure
        finally:
            for waiter in batch:
                waiter.done.set()

    # --- the read frontier (engine/frontier.py) ----------------------------------------------

    async def frontier(self, job: str) -> list[Mark]:
        """The job's source files as its read frontier knows them, in reading order."""
        rows = await self._fetchall(
            "SELECT seq, name, path, size, mtime_ns, inode, epoch, byte_offset, line FROM frontiers "
            "WHERE job = ? ORDER BY seq",
            (job,),
        )
        return [Mark(*r) for r in rows]

    async def begin_epoch(self, job: str, run_id: int, marks: Sequence[Mark]) -> None:
        """Run ``run_id`` reads these files from their first line: nothing of them is recorded yet."""
        rows = [(job, m.seq, m.name, m.path, m.size, m.mtime_ns, m.inode, run_id) for m in marks]

        def begin(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
            with _immediate(db):
                db.execute("DELETE FROM frontiers WHERE job = ?", (job,))
                db.executemany(
                    "INSERT INTO frontiers (job, seq, name, path, size, mtime_ns, inode, epoch) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )

        await self._in_thread(begin, rows)

    async def forget_frontier(self, job: str) -> None:
        """A run reads the source without keeping a frontier: the next one starts a new epoch."""
        await self._conn.execute("DELETE FROM frontiers WHERE job = ?", (job,))

    async def read_since(self, job: str, epoch: int) -> dict[str, int]:
        """Items by state that runs since ``epoch`` read (every state present, zeros included).

        All of them less those that were not: the latter are few (left by an older version of a
        file) and found through the ``(job, seen_run)`` index, where counting the former would
        visit every row (a second for a million). Named, as the planner prefers the state index
        for the grouping, and each branch is one range of the index where ``IS NULL OR <`` is not.
        """
        counts = await self.counts(job)
        for state, n in await self._fetchall(
            "SELECT state, COUNT(*) FROM ("
            "SELECT state FROM items INDEXED BY items_by_seen WHERE job = ?1 AND seen_run IS NULL "
            "UNION ALL "
            "SELECT state FROM items INDEXED BY items_by_seen WHERE job = ?1 AND seen_run < ?2"
            ") GROUP BY state",
            (job, epoch),
        ):
            counts[str(state)] -= int(n)
        return counts

    async def unread(
        self, job: str, state: State, since: int, run_id: int, after: str, limit: int
    ) -> list[tuple[str, str, int | None, str | None]]:
        """Items in ``state`` read by runs since ``since`` but not yet by ``run_id``, by key after
        ``after``: (key, origin, byte offset, error code)."""
        # `+seen_run`: walk the (job, state) index in key order, not the seen_run one.
        rows = await self._fetchall(
            "SELECT key, origin, byte_offset, error_code FROM items WHERE job = ? AND state = ? "
            "AND key > ? AND +seen_run >= ? AND +seen_run < ? ORDER BY key LIMIT ?",
            (job, state.value, after, since, run_id, limit),
        )
        return [(str(r[0]), str(r[1]), r[2], r[3]) for r in rows]

    # --- plumbing ----------------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[[sqlite3.Connection, _T], None], arg: _T) -> None:
        """Run ``fn(connection, arg)`` on the connection's thread, in one hand-off.

        aiosqlite queues single statements; this uses its queue (``_execute``, stable since
        0.17) for a whole function, so that a group commit does not pay one hand-off per
        statement. SQLite is only ever touched from that one thread.
        """
        conn = self._conn
        await conn._execute(lambda: fn(conn._conn, arg))  # type: ignore[no-untyped-call]

    # Reads: one trip to the connection's thread per query (execute and fetch together), as each
    # trip costs a thread hand-off and an event-loop wake-up. Writes go through _in_thread.

    async def _fetchone(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Row | None:
        rows = list(await self._conn.execute_fetchall(sql, args))
        return rows[0] if rows else None

    async def _fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return list(await self._conn.execute_fetchall(sql, args))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read state database {self.path}: {exc}") from None


def _known(version: int) -> None:
    if version > len(MIGRATIONS):
        raise sqlite3.DatabaseError(
            f"schema version {version} is newer than this migrator understands ({len(MIGRATIONS)})"
        )


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements, keeping ``BEGIN .. END;`` trigger bodies whole."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines():
        current.append(line)
        joined = "\n".join(current)
        if line.rstrip().endswith(";") and sqlite3.complete_statement(joined):
            statements.append(joined)
            current = []
    if "\n".join(current).strip():
        statements.append("\n".join(current))
    return statements


@contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on an autocommit connection: ``BEGIN IMMEDIATE`` .. ``COMMIT``, or
    ``ROLLBACK`` if anything (a cancellation included) goes wrong."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _migrate(db: sqlite3.Connection, _: None) -> None:
    """Bring the schema up to date, one migration per write transaction.

    Each reads the version inside its own transaction: another process (a run creating the file
    while ``migrator status`` opens it) may have applied it already.
    """
    while True:
        with _immediate(db):
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            _known(version)
            if version == len(MIGRATIONS):
                return
            for statement in (s.strip() for s in _split_sql(MIGRATIONS[version]) if s.strip()):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {version + 1}")


class _Writer:
    """The store's write path as plain SQLite calls, run on the connection's own thread.

    Every caller's changes get a savepoint, so a refused :class:`Move` (the item is not in a
    state it expects) or a constraint error undoes that caller's changes only.
    """

    def __init__(self, db: sqlite3.Connection, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    @staticmethod
    def commit(db: sqlite3.Connection, batch: tuple[Clock, list[_Waiter]]) -> None:
        """Apply every waiter's changes in one transaction.

        All at once first; only if a change is refused is the transaction rolled back and the
        batch applied again with a savepoint per waiter, so that the refusal fails its own
        caller alone. Refusals are rare: a savepoint around the whole batch, to undo it without
        leaving the transaction, made SQLite copy every page the batch touched to a statement
        journal first, a temporary file of about 150 kB per workflow.
        """
        clock, waiters = batch
        writer = _Writer(db, clock)
        try:
            with _immediate(db):
                for waiter in waiters:
                    writer._apply(waiter)
            return
        except (StoreError, sqlite3.IntegrityError):
            pass  # rolled back: applied again below, one savepoint each
        with _immediate(db):
            for n, waiter in enumerate(waiters):
                db.execute(f"SAVEPOINT w{n}")
                try:
                    writer._apply(waiter)
                except (StoreError, sqlite3.IntegrityError) as exc:
                    db.execute(f"ROLLBACK TO w{n}")
                    waiter.error = exc
                db.execute(f"RELEASE w{n}")

    def _apply(self, waiter: _Waiter) -> None:
        changes, at = waiter.changes, 0
        while at < len(changes):
            change = changes[at]
            if not isinstance(change, Move):
                self._apply_one(waiter.job, waiter.run_id, change)
                at += 1
                continue
            # Moves of one item, each from where the last one left it (submitted, then polling or
            # done), are one update of its row, with an event for each step.
            chain = [change]
            while at + len(chain) < len(changes):
                after = changes[at + len(chain)]
                if not (isinstance(after, Move) and after.key == change.key and chain[-1].to in after.expect):
                    break
                chain.append(after)
            self._move(waiter.job, waiter.run_id, chain, self._clock())
            at += len(chain)

    def _item_state(self, job: str, key: str) -> str | None:
        return self._state("SELECT state FROM items WHERE job = ? AND key = ?", (job, key))

    def _execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        self._db.execute(sql, args)

    def _state(self, sql: str, args: Sequence[Any]) -> str | None:
        row = self._db.execute(sql, args).fetchone()
        return None if row is None else str(row[0])

    def _apply_one(self, job: str, run_id: int | None, change: Seen | Reached | Record | PartMove) -> None:
        now = self._clock()
        if isinstance(change, PartMove):
            self._part(job, run_id, change, now)
            return
        if isinstance(change, Seen):
            self._execute(
                "UPDATE items SET seen_run = ?, origin = COALESCE(?, origin), "
                "byte_offset = COALESCE(?, byte_offset) WHERE job = ? AND key = ?",
                (run_id, change.origin, change.offset, job, change.key),
            )
            return
        if isinstance(change, Reached):
            self._execute(
                "UPDATE frontiers SET byte_offset = ?, line = ? "
                "WHERE job = ? AND name = ? AND byte_offset < ?",
                (change.offset, change.line, job, change.file, change.offset),
            )
            return
        self._record(job, run_id, change, now)

    def _move(self, job: str, run_id: int | None, chain: list[Move], now: float) -> None:
        """Moves of one item in a row: the first one's guard, the fields of all (later ones win)."""
        change, last = chain[0], chain[-1]
        sets = ["state = ?", "updated_at = ?", "run_id = ?"]
        args: list[Any] = [last.to.value, now, run_id]
        for name, value in {k: v for move in chain for k, v in move.fields.items()}.items():
            if name not in _MOVABLE:
                raise StoreError(f"field {name!r} cannot be set by a transition")
            sets.append(f"{name} = ?")
            args.append(value)
        update = f"UPDATE items SET {', '.join(sets)} WHERE job = ? AND key = ?"
        if len(change.expect) == 1:
            # The usual guard, one expected state: checked by the update itself, not read first.
            (expected,) = change.expect
            have: str | None = expected.value
            moved = self._db.execute(update + " AND state = ?", (*args, job, change.key, have)).rowcount
            if not moved:
                have = self._item_state(job, change.key)  # for the message
        else:
            have = self._item_state(job, change.key)
            moved = have is not None and State(have) in change.expect
            if moved:
                self._execute(update, (*args, job, change.key))
        if not moved:
            want = "/".join(sorted(s.value for s in change.expect))
            raise StoreError(
                f"item {change.key!r} is {have or 'missing'}, not {want}; refusing {change.to.value}"
            )
        for move in chain:
            if not (have == move.to.value and move.detail is None):  # else a re-poll: no transition
                code = move.fields.get("error_code")
                self._event(run_id, job, move.key, have, move.to.value, now, code, move.detail)
            have = move.to.value

    def _record(self, job: str, run_id: int | None, rec: Record, now: float) -> None:
        have = self._item_state(job, rec.key)
        if rec.warnings:
            self._execute(
                "INSERT INTO warnings (job, key, warnings) VALUES (?, ?, ?) "
                "ON CONFLICT (job, key) DO UPDATE SET warnings = excluded.warnings",
                (job, rec.key, json.dumps(list(rec.warnings))),
            )
        elif have is not None:  # a record replaces what an earlier rendering warned of
            self._execute("DELETE FROM warnings WHERE job = ? AND key = ?", (job, rec.key))
        values = (
            rec.name,
            rec.origin,
            rec.target,
            rec.content_hash,
            rec.state.value,
            rec.target_id,
            rec.error_code,
            rec.error_message,
            run_id,
            now,
            run_id,
            rec.offset,
        )
        if have is None:
            self._execute(
                "INSERT INTO items (name, origin, target, content_hash, state, target_id, error_code, "
                "error_message, run_id, updated_at, seen_run, byte_offset, created_at, job, key) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, now, job, rec.key),
            )
            self._event(run_id, job, rec.key, None, State.PENDING.value, now, None, rec.origin)
            have = State.PENDING.value
        else:
            self._execute(
                "UPDATE items SET name = ?, origin = ?, target = ?, content_hash = ?, state = ?, "
                "target_id = COALESCE(?, target_id), error_code = ?, error_message = ?, "
                "run_id = ?, updated_at = ?, seen_run = ?, byte_offset = COALESCE(?, byte_offset) "
                "WHERE job = ? AND key = ?",
                (*values, job, rec.key),
            )
        if rec.state.value != have:
            self._event(run_id, job, rec.key, have, rec.state.value, now, rec.error_code, rec.error_message)

    def _part(self, job: str, run_id: int | None, change: PartMove, now: float) -> None:
        have = self._state(
            "SELECT state FROM parts WHERE job = ? AND key = ? AND part = ?", (job, change.key, change.part)
        )
        self._execute(
            "INSERT INTO parts (job, key, part, state, target_id, content_hash, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (job, key, part) DO UPDATE SET state = excluded.state, "
            "target_id = COALESCE(excluded.target_id, parts.target_id), "
            "content_hash = excluded.content_hash, updated_at = excluded.updated_at",
            (job, change.key, change.part, change.to.value, change.target_id, change.content_hash, now),
        )
        self._event(
            run_id, job, change.key, have, change.to.value, now, None, change.target_id, part=change.part
        )

    def _event(
        self,
        run_id: int | None,
        job: str,
        key: str,
        frm: str | None,
        to: str,
        at: float,
        code: str | None,
        detail: str | None,
        *,
        part: str | None = None,
    ) -> None:
        self._execute(
            "INSERT INTO events (run_id, job, key, from_state, to_state, at, code, detail, part) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, job, key, frm, to, at, code, detail, part),
        )
