"""What a sandbox holds, in one small SQLite file: objects, async jobs, nonces, call counts and
the calls each account made in the current quota day.

Keeping it on disk is what lets a killed and restarted sandbox behave like the real service: what
was created is still there, an async job started before the kill still finishes, and a replayed
request is still refused. Sandboxes run in the engine's event loop, so the store is synchronous
sqlite3 with tiny statements; WAL and a busy timeout keep two processes on one file safe.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from migrator import jsontext

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS objects (
        kind TEXT NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL DEFAULT '', parent TEXT,
        body TEXT NOT NULL, PRIMARY KEY (kind, id))""",
    "CREATE INDEX IF NOT EXISTS objects_parent ON objects (kind, parent)",
    # Covers the name and id filters, so a substring search reads the index, not every body.
    "CREATE INDEX IF NOT EXISTS objects_lookup ON objects (kind, name, id)",
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, type TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT NOT NULL,
        error TEXT NOT NULL, created_ms INTEGER NOT NULL, due_ms INTEGER NOT NULL, payload TEXT NOT NULL,
        input TEXT)""",
    "CREATE INDEX IF NOT EXISTS jobs_due ON jobs (status, due_ms)",
    """CREATE TABLE IF NOT EXISTS nonces (
        scope TEXT NOT NULL, nonce TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (scope, nonce))""",
    "CREATE INDEX IF NOT EXISTS nonces_expires ON nonces (expires)",
    """CREATE TABLE IF NOT EXISTS calls (
        action TEXT NOT NULL, outcome TEXT NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (action, outcome))""",
    """CREATE TABLE IF NOT EXISTS quota_days (
        account TEXT NOT NULL, day INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (account, day))""",
)

RUNNING = "Running"
#: A JSON value is bound as orjson's UTF-8 bytes and stored as the TEXT it is, by SQLite: bound
#: as ``str``, a 12 kB spec with Chinese in it was decoded into a two-byte-per-character string
#: only for sqlite3 to encode it back to UTF-8 (3 % of the sandbox's instructions a workflow).
_TEXT = "CAST(? AS TEXT)"


@dataclass(frozen=True, slots=True)
class Job:
    """An async job: it reaches ``outcome`` (with ``error``) once the clock passes ``due_ms``.

    The outcome is fixed when the job is created and the due time is stored, so a restarted
    sandbox finishes the job at the same moment the first one would have.
    """

    id: str
    type: str
    status: str
    outcome: str
    error: str
    created_ms: int
    due_ms: int
    payload: dict[str, Any]
    input: str | None = None
    """The job's bulky input (a 12 kB FlowSpec) as the text it came in, in a column of its own:
    inside ``payload`` it was escaped into JSON, parsed back and escaped again, three passes over
    it per import (5 % of the sandbox's instructions). Dropped when the job finishes."""


class SandboxStore:
    """A sandbox's state, in ``path`` or in memory when ``path`` is None."""

    def __init__(self, path: Path | None) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, with explicit BEGIN IMMEDIATE where several statements
        # must land together. check_same_thread=False: the app may be built in one thread and
        # served from the event loop of another; all use is still serialised by that one loop.
        self._db = sqlite3.connect(
            ":memory:" if path is None else str(path),
            timeout=10.0,
            isolation_level=None,
            check_same_thread=False,
        )
        self._depth = 0
        self._db.execute("PRAGMA journal_mode=WAL")
        # OFF: a killed process loses nothing committed (WAL frames are in the OS's page cache);
        # only a machine that loses power could, and a sandbox need not outlive that. NORMAL made
        # every checkpoint fsync in the event loop's thread, which stalled the engine with it
        # when embedded: 545 against 690 calls/s, DataWorks, four alternated pairs.
        self._db.execute("PRAGMA synchronous=OFF")
        with self.transaction():
            for statement in _SCHEMA:
                self._db.execute(statement)
            self._add_job_input()

    def _add_job_input(self) -> None:
        """A file from before jobs had an ``input`` column: add it, and move the spec a running
        import kept in its payload there, so that the job still finishes as it would have."""
        if any(row[1] == "input" for row in self._db.execute("PRAGMA table_info(jobs)")):
            return
        self._db.execute("ALTER TABLE jobs ADD COLUMN input TEXT")
        for id, payload in self._db.execute("SELECT id, payload FROM jobs").fetchall():
            body = _loads(payload)
            if "spec" in body:
                spec = body.pop("spec")
                self._db.execute(
                    f"UPDATE jobs SET payload = {_TEXT}, input = ? WHERE id = ?",
                    (jsontext.data(body), spec, id),
                )

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group statements atomically (nested uses join the outer transaction)."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._db.execute("ROLLBACK")
            raise
        self._depth = 0
        self._db.execute("COMMIT")

    # --- objects ---------------------------------------------------------------------------------

    def put(
        self, kind: str, id: str, body: dict[str, Any], *, name: str = "", parent: str | None = None
    ) -> None:
        """Insert or replace one object; a replaced object keeps its place in listings."""
        self._upsert([(kind, id, name, parent, jsontext.data(body))])

    def put_children(self, kind: str, parent: str, bodies: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Insert or replace many unnamed objects of one parent, by id, in one call."""
        self._upsert((kind, id, "", parent, jsontext.data(body)) for id, body in bodies)

    def _upsert(self, rows: Iterable[tuple[str, str, str, str | None, bytes]]) -> None:
        self._db.executemany(
            f"INSERT INTO objects (kind, id, name, parent, body) VALUES (?, ?, ?, ?, {_TEXT}) "
            "ON CONFLICT (kind, id) DO UPDATE SET name = excluded.name, parent = excluded.parent, "
            "body = excluded.body",
            rows,
        )

    def get(self, kind: str, id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT body FROM objects WHERE kind = ? AND id = ?", (kind, id)).fetchone()
        return None if row is None else _loads(row[0])

    def parents(self, kind: str, ids: Iterable[str]) -> dict[str, str]:
        """The parents of the given objects of a kind (unknown objects, and orphans, left out):
        one query for a whole FlowSpec's outputs, where one each was most of an import's work."""
        return self._column(kind, "parent", ids)

    def delete(self, kind: str, id: str) -> None:
        self._db.execute("DELETE FROM objects WHERE kind = ? AND id = ?", (kind, id))

    def delete_children(self, parent: str, *kinds: str) -> None:
        """Every object of the given kinds under ``parent``, in one statement."""
        marks = ", ".join("?" * len(kinds))
        self._db.execute(f"DELETE FROM objects WHERE kind IN ({marks}) AND parent = ?", (*kinds, parent))

    def count(self, kind: str, *, name_contains: str = "") -> int:
        row = self._db.execute(
            "SELECT count(*) FROM objects INDEXED BY objects_lookup "
            "WHERE kind = ? AND instr(lower(name), lower(?)) > 0",
            (kind, name_contains),
        ).fetchone()
        return int(row[0])

    def objects(
        self,
        kind: str,
        *,
        name_contains: str = "",
        or_id_contains: bool = False,
        offset: int = 0,
        limit: int = -1,
    ) -> list[dict[str, Any]]:
        """Objects of a kind in creation order, optionally filtered by a case-insensitive name part.

        The filter runs in SQL so a lookup by name costs one indexed scan of the columns, not a
        JSON decode of every stored object: a sandbox holding thousands of flows must answer the
        per-import name lookups of a migration in constant time, or it, not the engine, is what
        a large test measures. ``or_id_contains`` also matches the part against the id.
        """
        match = "instr(lower(name), lower(?1)) > 0"
        if or_id_contains:
            match = f"({match} OR instr(id, ?1) > 0)"
        # Matching rows are found in the (kind, name, id) index; only their bodies are read. A
        # scan of the table itself reads every stored body's pages: in a sandbox file, a fifth of
        # an EnOS migration's time went to getMyFlow.
        rows = self._db.execute(
            "SELECT body FROM objects WHERE rowid IN "
            f"(SELECT rowid FROM objects INDEXED BY objects_lookup WHERE kind = ?2 AND {match}) "
            "ORDER BY rowid LIMIT ?3 OFFSET ?4",
            (name_contains, kind, limit, offset),
        ).fetchall()
        return [_loads(r[0]) for r in rows]

    def named(self, kind: str, name: str) -> list[dict[str, Any]]:
        """Objects of a kind called exactly ``name``, oldest first: an indexed lookup, where the
        substring match of :meth:`objects` must scan every name (a fifth of an EnOS import)."""
        rows = self._db.execute(
            "SELECT body FROM objects WHERE kind = ? AND name = ? ORDER BY rowid", (kind, name)
        ).fetchall()
        return [_loads(r[0]) for r in rows]

    def names(self, kind: str, ids: Iterable[str]) -> dict[str, str]:
        """The names of the given objects of a kind, read from the column (no body decoded)."""
        return self._column(kind, "name", ids)

    def _column(self, kind: str, column: str, ids: Iterable[str]) -> dict[str, str]:
        """One column of the given objects, by id, in one query (NULLs left out: filtered here,
        as ``IS NOT NULL`` in the query steers SQLite onto the parent index, a scan)."""
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        marks = ", ".join("?" * len(wanted))
        rows = self._db.execute(
            f"SELECT id, {column} FROM objects WHERE kind = ? AND id IN ({marks})", (kind, *wanted)
        ).fetchall()
        return {str(r[0]): str(r[1]) for r in rows if r[1] is not None}

    # --- async jobs ------------------------------------------------------------------------------

    def add_job(self, job: Job) -> None:
        self._db.execute(
            "INSERT INTO jobs (id, type, status, outcome, error, created_ms, due_ms, payload, input) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, {_TEXT}, ?)",
            (job.id, job.type, job.status, job.outcome, job.error, job.created_ms, job.due_ms,
             jsontext.data(job.payload), job.input),
        )  # fmt: skip

    def get_job(self, id: str) -> Job | None:
        row = self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (id,)).fetchone()
        return None if row is None else _job(row)

    def list_jobs(self) -> list[Job]:
        return [_job(r) for r in self._db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY rowid")]

    def due_jobs(self, now_ms: int) -> list[str]:
        """Ids of running jobs whose time has come, earliest first."""
        rows = self._db.execute(
            "SELECT id FROM jobs WHERE status = ? AND due_ms <= ? ORDER BY due_ms, rowid", (RUNNING, now_ms)
        ).fetchall()
        return [r[0] for r in rows]

    def finish_job(self, id: str, now_ms: int, apply: Callable[[Job], dict[str, Any]]) -> Job | None:
        """Move a due running job to its outcome and run ``apply`` in the same transaction; the
        job as it now stands (None if there is no such job).

        Exactly once, even with two processes on one file: the check and the update happen under
        one write lock. ``apply`` returns the payload to keep; the job's ``input`` is dropped.
        """
        with self.transaction():
            job = self.get_job(id)
            if job is None or job.status != RUNNING or job.due_ms > now_ms:
                return job
            kept = apply(job)
            self._db.execute(
                f"UPDATE jobs SET status = outcome, payload = {_TEXT}, input = NULL WHERE id = ?",
                (jsontext.data(kept), id),
            )
            return replace(job, status=job.outcome, payload=kept, input=None)

    # --- replay protection -----------------------------------------------------------------------

    def use_nonce(self, scope: str, nonce: str, *, expires: float, now: float) -> bool:
        """Remember a nonce until ``expires``; False if it is already remembered (a replay)."""
        cur = self._db.execute(
            "INSERT INTO nonces (scope, nonce, expires) VALUES (?, ?, ?) "
            "ON CONFLICT (scope, nonce) DO UPDATE SET expires = excluded.expires WHERE nonces.expires < ?",
            (scope, nonce, expires, now),
        )
        return cur.rowcount == 1

    def forget_nonces(self, now: float) -> None:
        self._db.execute("DELETE FROM nonces WHERE expires < ?", (now,))

    # --- call counters ---------------------------------------------------------------------------

    def count_call(self, action: str, outcome: str) -> None:
        self._db.execute(
            "INSERT INTO calls (action, outcome, n) VALUES (?, ?, 1) "
            "ON CONFLICT (action, outcome) DO UPDATE SET n = n + 1",
            (action, outcome),
        )

    def calls(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for action, outcome, n in self._db.execute(
            "SELECT action, outcome, n FROM calls ORDER BY action, outcome"
        ):
            counts.setdefault(action, {})[outcome] = n
        return counts

    # --- daily quotas ----------------------------------------------------------------------------

    def quota_used(self, account: str, day: int) -> int:
        """Calls ``account`` made in quota day ``day``."""
        row = self._db.execute(
            "SELECT n FROM quota_days WHERE account = ? AND day = ?", (account, day)
        ).fetchone()
        return 0 if row is None else int(row[0])

    def use_quota(self, account: str, day: int, cap: int) -> bool:
        """Count one call in ``day`` if fewer than ``cap`` were made; False if the cap is used up.

        One conditional statement, so two processes on one file cannot both take the last call;
        earlier days are forgotten on the way.
        """
        if cap <= 0:
            return False
        with self.transaction():
            self._db.execute("DELETE FROM quota_days WHERE account = ? AND day < ?", (account, day))
            cur = self._db.execute(
                "INSERT INTO quota_days (account, day, n) VALUES (?, ?, 1) "
                "ON CONFLICT (account, day) DO UPDATE SET n = n + 1 WHERE quota_days.n < ?",
                (account, day, cap),
            )
            return cur.rowcount == 1


_JOB_COLUMNS = "id, type, status, outcome, error, created_ms, due_ms, payload, input"


def _job(row: tuple[Any, ...]) -> Job:
    return Job(row[0], row[1], row[2], row[3], row[4], row[5], row[6], _loads(row[7]), row[8])


def _loads(text: str) -> dict[str, Any]:
    value: dict[str, Any] = jsontext.load(text)
    return value
