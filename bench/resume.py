"""Resume benchmark: seconds from ``migrator run`` to its first submit, with a large state database.

It builds the state database an interrupted run over a ``--rows`` workflow inventory leaves
(the real schema, created by :class:`migrator.store.Store`; rows written with ``executemany``):
one interrupted run, every item ``done`` with its six transitions in the event log, except
``--pending`` of them (a share) still ``pending``. ``--layout spread`` puts a pending item every
``1 / pending`` lines (as ``migrator retry`` leaves failures put back); ``--layout end`` puts them
all at the end of the inventory (as a run stopped part-way leaves it, a quota say: it has read
and recorded the rest without sending it). Content hashes are those of the inventory lines (a
migration does not compare them; a sync would). As a real run does, it records where each
item's line starts and the read frontier: the whole file read by run 1, the epoch
(``tests/engine/test_frontier.py`` checks that a real interrupted run leaves the same).

Then it times ``migrator run`` (a child process) against a ``migrator sandbox`` process until
the sandbox has counted its first write call (``GET /_sandbox/calls``, looked at every 10 ms),
and interrupts the run. ``engine_seconds`` leaves out the process start-up (until the run's
``started_at`` in the store).

Goal (issue 8): under 3 s with 1,000,000 rows in the store.

    python bench/resume.py                        # 1,000,000 rows, 1 % pending, spread
    python bench/resume.py --layout end --rows 200000
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
from harness import DEFAULT_WORK, JobDir, emit, inventory, load, migrator, served

from migrator.store import Store

JOB = "bench"
TARGET = "dataworks"
#: The start of every sample line (write_jsonl): read without parsing 7 kB of JSON per line.
_HEAD = re.compile(rb'\{"name":"([^"\\]*)","source":\{"system":"([^"\\]*)","id":"([^"\\]*)"')
#: The transitions a migrated DataWorks item went through (from, to).
_DONE_EVENTS = (
    (None, "pending"),
    ("pending", "rendered"),
    ("rendered", "submitting"),
    ("submitting", "submitted"),
    ("submitted", "polling"),
    ("polling", "done"),
)


def _lines(inv: Path) -> Iterator[tuple[int, str, str, str, int]]:
    """(line number, key, name, content hash, byte offset) of every inventory line."""
    offset = 0
    with inv.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            head = _HEAD.match(line)
            if head is not None:
                name, system, ident = (g.decode() for g in head.groups())
            else:
                record = json.loads(line)
                name, system, ident = record["name"], record["source"]["system"], record["source"]["id"]
            yield number, f"{system}:{ident}", name, hashlib.sha256(line).hexdigest(), offset
            offset += len(line)


def build_store(state: Path, inv: Path, rows: int, pending: float, layout: str) -> dict[str, int]:
    """The state database an interrupted run leaves; returns its items by state."""
    anyio.run(_create, state)
    every = max(1, round(1 / pending)) if pending > 0 else 0
    first_pending = rows - round(rows * pending)
    conn = sqlite3.connect(state, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    started = time.time() - 3600
    conn.execute(
        "INSERT INTO runs (id, job, mode, target, pid, started_at, ended_at, outcome, calls, retries, "
        "throttled) VALUES (1, ?, 'migrate', ?, 1, ?, ?, 'interrupted', 0, 0, 0)",
        (JOB, TARGET, started, started + 3000),
    )
    items: list[tuple[Any, ...]] = []
    events: list[tuple[Any, ...]] = []
    counts = {"done": 0, "pending": 0}
    read = (0, 0)  # the frontier: line number, and the offset after it
    for number, key, name, digest, offset in _lines(inv):
        if number > rows:
            break
        read = (number, offset)
        is_pending = every and (number % every == 0 if layout == "spread" else number > first_pending)
        at = started + number * 0.003
        origin = f"{inv}:{number}"
        if is_pending:
            state, target_id, job_id, submitted = "pending", None, None, None
            events.append((1, JOB, key, None, "pending", at, None, origin))
        else:
            state, target_id, job_id, submitted = "done", str(10**15 + number), str(10**18 + number), digest
            events += [(1, JOB, key, a, b, at, None, origin if a is None else None) for a, b in _DONE_EVENTS]
        counts[state] += 1
        polls = 1 if state == "done" else 0
        items.append(
            (JOB, key, name, origin, TARGET, digest, submitted, state, int(state == "done"), target_id,
             job_id, None, None, polls, None, None, 1, at, at, 1, None, 0, offset)
        )  # fmt: skip
        if len(items) == 10_000:
            _flush(conn, items, events)
    _flush(conn, items, events)
    line, offset = read
    with inv.open("rb") as fh:  # the end of the last line recorded
        fh.seek(offset)
        end = offset + len(fh.readline()) if line else 0
    st = inv.stat()
    conn.execute(
        "INSERT INTO frontiers (job, seq, name, path, size, mtime_ns, inode, epoch, byte_offset, line) "
        "VALUES (?, 0, ?, ?, ?, ?, ?, 1, ?, ?)",
        (JOB, str(inv), str(inv.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, end, line),
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return counts


async def _create(state: Path) -> None:
    async with await Store.open(state):
        pass


def _flush(conn: sqlite3.Connection, items: list[tuple[Any, ...]], events: list[tuple[Any, ...]]) -> None:
    conn.executemany(
        "INSERT INTO items (job, key, name, origin, target, content_hash, submitted_hash, state, attempts, "
        "target_id, remote_job_id, next_poll_at, deadline_at, polls, error_code, error_message, run_id, "
        "created_at, updated_at, seen_run, not_before, retries, byte_offset) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        items,
    )
    conn.executemany(
        "INSERT INTO events (run_id, job, key, from_state, to_state, at, code, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        events,
    )
    items.clear()
    events.clear()


def writes(endpoint: str) -> int:
    with urllib.request.urlopen(f"{endpoint}/_sandbox/calls", timeout=5) as resp:
        calls: dict[str, dict[str, int]] = json.load(resp)
    return sum(sum(by.values()) for action, by in calls.items() if action == "ImportWorkflowDefinition")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pending", type=float, default=0.01, help="share of the items left pending")
    parser.add_argument("--layout", choices=("spread", "end"), default="spread")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--work", type=os.path.abspath, default=str(DEFAULT_WORK / "resume"))
    args = parser.parse_args(argv)
    work = Path(args.work)
    inv = inventory(work.parent, args.rows)
    figures: dict[str, Any] = {"bench": "resume", "rows": args.rows, "pending": args.pending}
    figures["layout"] = args.layout
    with served("--job-delay", "0.2,1.5") as info:
        job = JobDir(work, TARGET, inv, served=info[TARGET]).write()
        built = time.monotonic()
        figures["store"] = build_store(job.state, inv, args.rows, args.pending, args.layout)
        figures["store_mb"] = round(job.state.stat().st_size / 2**20, 1)
        figures["build_seconds"] = round(time.monotonic() - built, 1)
        figures["load_before"] = load()
        endpoint = info[TARGET]["endpoint"]
        start = time.monotonic()
        wall_start = time.time()
        proc = subprocess.Popen(
            migrator("run", job.job, "--config", job.config, "-q"), env=job.env(),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        first: float | None = None
        while proc.poll() is None and time.monotonic() - start < args.timeout:
            if writes(endpoint):
                first = time.monotonic() - start
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        if first is None:
            raise RuntimeError(f"no submit within {args.timeout}s: {err.decode()[-3000:]}")
        started_at = job.rows("SELECT started_at FROM runs ORDER BY id DESC LIMIT 1")[0][0]
    figures.update(
        {
            "seconds_to_first_submit": round(first, 2),
            "engine_seconds": round(first - (started_at - wall_start), 2),
            "load_after": load(),
            "goal_seconds": 3,
        }
    )
    emit(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
