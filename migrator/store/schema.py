"""The state database's schema, as an ordered list of forward migrations.

``PRAGMA user_version`` records how many migrations a file has had; opening a file applies the
rest, each in its own transaction, so an old state database is upgraded in place and a newer
one than this build understands is refused rather than damaged.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """The item state machine of DESIGN.md.

    ``parked`` is an item whose call met a used-up quota: it is not sent again before its
    ``not_before`` (the quota's reset time), then it is picked up like a pending one.
    ``skipped`` is a sync's unchanged item (at the target as last submitted; no call made), and
    ``orphaned`` one the source no longer has: reported, and deleted at the target only by
    ``migrator run --prune`` (its ``target_id`` is then cleared).
    """

    PENDING = "pending"
    RENDERED = "rendered"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    POLLING = "polling"
    DONE = "done"
    INVALID = "invalid"
    FAILED = "failed"
    SKIPPED = "skipped"
    PARKED = "parked"
    ORPHANED = "orphaned"


TERMINAL = frozenset({State.DONE, State.INVALID, State.FAILED, State.SKIPPED, State.ORPHANED})

MIGRATIONS: tuple[str, ...] = (
    # 1: runs, items, parts, the append-only event log
    """
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        job         TEXT NOT NULL,
        mode        TEXT NOT NULL,
        target      TEXT NOT NULL,
        pid         INTEGER NOT NULL,
        started_at  REAL NOT NULL,
        ended_at    REAL,
        outcome     TEXT
    );
    CREATE TABLE items (
        job            TEXT NOT NULL,
        key            TEXT NOT NULL,
        name           TEXT NOT NULL,
        origin         TEXT NOT NULL DEFAULT '',
        target         TEXT NOT NULL,
        content_hash   TEXT,
        submitted_hash TEXT,
        state          TEXT NOT NULL,
        attempts       INTEGER NOT NULL DEFAULT 0,
        target_id      TEXT,
        remote_job_id  TEXT,
        next_poll_at   REAL,
        deadline_at    REAL,
        polls          INTEGER NOT NULL DEFAULT 0,
        error_code     TEXT,
        error_message  TEXT,
        warnings       TEXT NOT NULL DEFAULT '[]',
        run_id         INTEGER REFERENCES runs(id),
        created_at     REAL NOT NULL,
        updated_at     REAL NOT NULL,
        seen_run       INTEGER,
        PRIMARY KEY (job, key)
    ) WITHOUT ROWID;
    CREATE INDEX items_by_state ON items(job, state);
    CREATE INDEX items_due ON items(job, next_poll_at) WHERE state = 'polling';
    CREATE INDEX items_by_name ON items(job, name);
    CREATE TABLE parts (
        job        TEXT NOT NULL,
        key        TEXT NOT NULL,
        part       TEXT NOT NULL,
        state      TEXT NOT NULL,
        target_id  TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (job, key, part)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id      INTEGER,
        job         TEXT NOT NULL,
        key         TEXT NOT NULL,
        from_state  TEXT,
        to_state    TEXT NOT NULL,
        at          REAL NOT NULL,
        code        TEXT,
        detail      TEXT,
        part        TEXT
    );
    CREATE INDEX events_by_item ON events(job, key);
    CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
    """,
    # 2: flow control: parked items, retries per item, what each run cost and why it stopped
    """
    ALTER TABLE items ADD COLUMN not_before REAL;
    ALTER TABLE items ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN calls INTEGER;
    ALTER TABLE runs ADD COLUMN retries INTEGER;
    ALTER TABLE runs ADD COLUMN throttled INTEGER;
    ALTER TABLE runs ADD COLUMN stopped TEXT;
    ALTER TABLE runs ADD COLUMN parked_until REAL;
    """,
    # 3: sync: the content each part was last made or updated with, so an update skips the same
    """
    ALTER TABLE parts ADD COLUMN content_hash TEXT;
    """,
    # 4: the read frontier (engine/frontier.py): where each item's JSON Lines record starts, and
    # per job and file how far every line has been recorded since the epoch run began reading the
    # file as it is (path, size, mtime, inode); items by the run that last read them, to count
    # what a resumed run does not read again
    """
    ALTER TABLE items ADD COLUMN byte_offset INTEGER;
    CREATE INDEX items_by_seen ON items(job, seen_run);
    CREATE TABLE frontiers (
        job         TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        name        TEXT NOT NULL,
        path        TEXT NOT NULL,
        size        INTEGER NOT NULL,
        mtime_ns    INTEGER NOT NULL,
        inode       INTEGER NOT NULL,
        epoch       INTEGER NOT NULL REFERENCES runs(id),
        byte_offset INTEGER NOT NULL DEFAULT 0,
        line        INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (job, seq)
    ) WITHOUT ROWID;
    """,
    # 5: translation warnings in a table of their own, written once when an item is rendered.
    # In the item row (a kilobyte on average) they were rewritten with it at every one of its
    # four or five later transitions: a third of the state thread's work in a run. The items column
    # stays, emptied: dropping a column needs SQLite 3.35, and RHEL 9's Python links 3.34.
    """
    CREATE TABLE warnings (
        job      TEXT NOT NULL,
        key      TEXT NOT NULL,
        warnings TEXT NOT NULL,
        PRIMARY KEY (job, key)
    ) WITHOUT ROWID;
    INSERT INTO warnings (job, key, warnings) SELECT job, key, warnings FROM items WHERE warnings != '[]';
    UPDATE items SET warnings = '[]' WHERE warnings != '[]';
    """,
    # 6: parts by their id at the target, so that an object found by name after an unanswered
    # create is taken only if no other item's part is that object (providers/emr/client.py)
    """
    CREATE INDEX parts_by_target ON parts(target_id);
    """,
)
