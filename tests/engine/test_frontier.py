"""The read frontier (engine/frontier.py): a resumed migration reads again only what it must.

Against the DataWorks sandbox over loopback HTTP, with real SQLite files. A real interrupted run
(SIGKILLed through the command line) leaves its frontier and each item's offset, and the next run
resumes from them to the same final store and target as a full scan; a changed file, a sync, a
fallen-back resume and an old state database all read in full; keys read before the frontier are
duplicates after it, and items with work left before it are read again and submitted.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal

import aiohttp
import anyio
import pytest

from migrator.config import Config, JobConfig, SourceConfig, TargetConfig
from migrator.engine.pipeline import Outcome, Pipeline
from migrator.engine.source import open_source
from migrator.engine.target import open_provider
from migrator.model import Workflow
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.faults import Faults
from migrator.sandbox.server import SandboxHandle, running
from migrator.store import Move, State, Store
from migrator.store.schema import MIGRATIONS
from tests.engine.support import ROOT, Harness, provider_config

JOB = "t"


def record(i: int, name: str | None = None) -> dict[str, Any]:
    """A small workflow: its key is ``t:w<i>``."""
    return {"name": name or f"w{i:04}", "source": {"system": "t", "id": f"w{i:04}"}, "tasks": [{"name": "a"}]}


def write(inv: Path, lines: list[str]) -> list[int]:
    """Write the inventory; returns where each line starts (line n at [n - 1]) and the end."""
    inv.write_text("".join(f"{line}\n" for line in lines))
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line.encode()) + 1)
    return starts


def numbered(tmp_path: Path, count: int) -> tuple[Path, list[int]]:
    """An inventory of workflows w0001 to ``count`` in ``tmp_path``, and where each line starts."""
    inv = tmp_path / "inv.jsonl"
    return inv, write(inv, [json.dumps(record(i)) for i in range(1, count + 1)])


class Counted:
    """An observer that counts what the pipeline reports, and interrupts the run (as Ctrl-C
    does) once ``stop_after`` items are done."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.read_n = 0
        self.earlier: Counter[State] = Counter()
        self.now: Counter[State] = Counter()
        self.stop_after = stop_after
        self.scope = anyio.CancelScope()

    def read(self, n: int, *, finished: bool = False) -> None:
        self.read_n += n

    def settled(self, state: State, n: int = 1, *, earlier: bool = False) -> None:
        (self.earlier if earlier else self.now)[state] += n
        if self.stop_after is not None and self.now[State.DONE] >= self.stop_after:
            self.scope.cancel()


async def migrate(
    tmp_path: Path,
    handle: SandboxHandle,
    inv: Path,
    mode: Literal["migrate", "sync"] = "migrate",
    stop_after: int | None = None,
) -> tuple[Pipeline, Counted, Outcome | None]:
    cfg = provider_config(handle, concurrency=4)
    source = SourceConfig(paths=(inv,))
    job = JobConfig(
        name=JOB, mode=mode, source=source, target=TargetConfig(provider="dw"), path=Path("t.toml")
    )
    state = tmp_path / "state.db"
    observer = Counted(stop_after)
    outcome: Outcome | None = None
    async with (
        await Store.open(state) as store,
        open_provider(cfg, state) as (provider, effective),
        open_source(job.source, Config(providers={}), state) as entries,
    ):
        pipeline = Pipeline(job, effective, provider, store, entries, observer)
        with observer.scope:
            outcome = await pipeline.run()
    return pipeline, observer, outcome


def settings(tmp_path: Path, faults: Faults | None = None) -> SandboxSettings:
    """The sandbox keeps its data in one file per test, so that it can be restarted on it."""
    return SandboxSettings(data_path=tmp_path / "sb.db", job_delay=(0.02, 0.1), faults=faults or Faults())


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxHandle]:
    async with running("dataworks", settings(tmp_path)) as h:
        yield h


def rows(tmp_path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def imports(calls: dict[str, dict[str, int]]) -> int:
    return sum(calls.get("ImportWorkflowDefinition", {}).values())


async def sandbox_answer(handle: SandboxHandle, what: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(f"{handle.endpoint}/_sandbox/{what}") as resp:
        return await resp.json()


async def calls(handle: SandboxHandle) -> int:
    return imports(await sandbox_answer(handle, "calls"))


# --- a real interrupted run, through the command line -------------------------------------------


def logged(result: subprocess.CompletedProcess[str], event: str) -> list[dict[str, Any]]:
    """The run's JSON log lines with this event."""
    found = []
    for line in result.stderr.splitlines():
        if line.startswith("{") and (doc := json.loads(line)).get("event") == event:
            found.append(doc)
    return found


def final(h: Harness) -> dict[str, tuple[Any, ...]]:
    return {k: (s, t, e) for k, s, t, e in h.rows("SELECT key, state, target_id, error_code FROM items")}


def sent(h: Harness) -> int:
    try:
        return int(h.rows("SELECT COUNT(*) FROM items WHERE state IN ('submitted', 'polling', 'done')")[0][0])
    except sqlite3.Error:  # not created yet
        return 0


def test_a_killed_run_leaves_its_frontier_and_the_next_resumes_there_to_what_a_full_scan_makes(
    tmp_path: Path,
) -> None:
    count = 1000
    workflows = [Workflow.model_validate(record(i)) for i in range(1, count + 1)]
    h = Harness(tmp_path, "dataworks", workflows, "", concurrency=2)
    h.write("latency = { median = 0.02 }")
    inv = tmp_path / "inv.jsonl"
    starts = [0]
    for raw in inv.read_bytes().splitlines(keepends=True):
        starts.append(starts[-1] + len(raw))

    command = [sys.executable, "-m", "migrator", "run", str(h.job), "--config", str(h.config)]
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while first.poll() is None and time.monotonic() < deadline and sent(h) < 10:
            time.sleep(0.02)
    finally:
        first.kill()  # SIGKILL: nothing of the run's own shutdown happens
        first.wait(30)

    # What the killed run left: the file as it read it, from run 1, the epoch, recorded up to the
    # end of a line; a row for exactly every line before it, each at its line's offset.
    (frontier,) = h.rows("SELECT name, path, size, mtime_ns, inode, epoch, line, byte_offset FROM frontiers")
    st = inv.stat()
    assert frontier[:6] == (str(inv), str(inv.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, 1)
    line = frontier[6]
    assert 0 < line < count, "killed while reading: the frontier is inside the file"
    assert frontier[7] == starts[line]
    recorded = {k: (o, b) for k, o, b in h.rows("SELECT key, origin, byte_offset FROM items")}
    assert recorded == {workflows[n - 1].key: (f"{inv}:{n}", starts[n - 1]) for n in range(1, line + 1)}

    # The same state, resumed by a full scan (no frontier), as the reference.
    h.write("")  # no latency from now on
    ref = tmp_path / "ref"
    ref.mkdir()
    for f in [*tmp_path.glob("state.*"), h.job, h.config]:
        shutil.copy(f, ref / f.name)
    full = Harness(ref, "dataworks", workflows, "")
    with sqlite3.connect(full.state) as conn:  # commits
        conn.execute("DELETE FROM frontiers")
    conn.close()

    resumed = h.run()
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    (start,) = logged(resumed, "resuming from the read frontier")
    (read,) = logged(resumed, "source read")
    assert (start["epoch"], read["epoch"], read["fallback"]) == (1, 1, None)
    assert read["scanned"] == count - line, "read on from the frontier"
    assert read["skipped"] == start["skipped"] > 0
    assert read["skipped"] + read["reread"] == line, "each line before the frontier skipped or read again"

    scanned = full.run()
    assert scanned.returncode == 0, scanned.stderr[-3000:]
    assert not logged(scanned, "resuming from the read frontier")
    assert logged(scanned, "source read")[0]["scanned"] == count

    assert final(h) == final(full)
    assert set(final(h)) == {w.key for w in workflows}
    assert {s for s, _, _ in final(h).values()} == {"done"}
    made = [sorted(d["id"] for d in one.assert_nothing_twice()["workflow_definitions"]) for one in (h, full)]
    assert made[0] == made[1]


# --- in process ----------------------------------------------------------------------------------


async def test_items_with_work_left_before_the_frontier_are_read_again_and_submitted(tmp_path: Path) -> None:
    count = 60
    inv, _ = numbered(tmp_path, count)
    async with running("dataworks", settings(tmp_path, Faults(job_fail=0.3, seed=5))) as handle:
        _, _, outcome = await migrate(tmp_path, handle, inv)
    assert outcome is not None
    failed = outcome.counts["failed"]
    assert 0 < failed < count
    async with await Store.open(tmp_path / "state.db") as store:
        assert await store.requeue(JOB, None) == failed  # migrator retry --failed

    async with running("dataworks", settings(tmp_path)) as h:
        before = await calls(h)
        pipeline, observer, outcome = await migrate(tmp_path, h, inv)
        assert await calls(h) == before + failed, "each retried item imported once more, nothing else"
    assert outcome is not None
    assert outcome.counts["done"] == count
    assert pipeline.frontier is not None
    stats = pipeline.frontier.stats
    assert (stats.epoch, stats.skipped, stats.reread, stats.scanned) == (1, count - failed, failed, 0)
    # Progress counts as a full scan's: every line read, what was done counted as settled before.
    assert (observer.read_n, pipeline.read_count) == (count, count)
    assert observer.earlier == Counter({State.DONE: count - failed})
    assert observer.now == Counter({State.DONE: failed})


async def test_a_key_read_before_the_frontier_is_a_duplicate_after_it(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    count = 800
    inv = tmp_path / "inv.jsonl"
    lines = [json.dumps(record(i)) for i in range(1, count)]
    lines[2] = "{not json"  # line 3: invalid, read again by the resume
    lines.append(json.dumps(record(2, name="again")))  # line 800: the key of line 2
    write(inv, lines)
    await migrate(tmp_path, sandbox, inv, stop_after=1)  # interrupted, as by Ctrl-C
    ((line,),) = rows(tmp_path, "SELECT line FROM frontiers")
    assert 3 < line < count, "line 2 and 3 recorded, line 800 not yet"

    pipeline, observer, outcome = await migrate(tmp_path, sandbox, inv)
    assert pipeline.frontier is not None
    stats = pipeline.frontier.stats
    assert (stats.epoch, stats.scanned, stats.fallback) == (1, count - line, None)
    assert outcome is not None
    assert (outcome.counts["done"], outcome.counts["invalid"]) == (count - 2, 2)
    invalid = dict(rows(tmp_path, "SELECT key, error_message FROM items WHERE state = 'invalid'"))
    # As a full scan words them (the messages are those of the code before the frontier).
    malformed = "malformed JSON (Expecting property name enclosed in double quotes at column 2)"
    assert invalid == {
        f"{inv}:3": f"{inv}:3: {malformed}",
        f"{inv}:{count}": f"{inv}:{count}: key 't:w0002' already read at {inv}:2",
    }
    assert rows(tmp_path, "SELECT name, origin FROM items WHERE key = 't:w0002'") == [("w0002", f"{inv}:2")]
    assert observer.read_n == count
    objects = await sandbox_answer(sandbox, "objects")
    names = Counter(d["name"] for d in objects["workflow_definitions"])
    assert len(names) == count - 2
    assert max(names.values()) == 1
    assert "again" not in names


async def test_a_changed_file_is_read_in_full_as_a_new_epoch(tmp_path: Path, sandbox: SandboxHandle) -> None:
    count = 30
    inv, _ = numbered(tmp_path, count)
    await migrate(tmp_path, sandbox, inv)
    before = await calls(sandbox)

    st = inv.stat()
    os.utime(inv, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same size, later mtime
    pipeline, _, outcome = await migrate(tmp_path, sandbox, inv)
    assert pipeline.frontier is not None
    stats = pipeline.frontier.stats
    assert (stats.epoch, stats.skipped, stats.scanned) == (2, 0, count)
    assert rows(tmp_path, "SELECT epoch, line FROM frontiers") == [(2, count)]

    with inv.open("a") as fh:  # grown: a new workflow at the end
        fh.write(json.dumps(record(count + 1)) + "\n")
    pipeline, _, outcome = await migrate(tmp_path, sandbox, inv)
    assert pipeline.frontier is not None
    stats = pipeline.frontier.stats
    assert (stats.epoch, stats.skipped, stats.scanned) == (3, 0, count + 1)
    # Rows read in earlier epochs are no duplicates; only the new workflow is sent.
    assert outcome is not None
    assert outcome.counts["done"] == count + 1
    assert outcome.counts["invalid"] == 0
    assert await calls(sandbox) == before + 1

    pipeline, _, _ = await migrate(tmp_path, sandbox, inv)
    assert pipeline.frontier is not None
    stats = pipeline.frontier.stats
    assert (stats.epoch, stats.skipped, stats.reread, stats.scanned) == (3, count + 1, 0, 0)


async def test_a_sync_reads_everything_and_the_next_migration_starts_a_new_epoch(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    count = 20
    inv, _ = numbered(tmp_path, count)
    await migrate(tmp_path, sandbox, inv)
    assert rows(tmp_path, "SELECT epoch, line FROM frontiers") == [(1, count)]

    pipeline, observer, outcome = await migrate(tmp_path, sandbox, inv, mode="sync")
    assert pipeline.frontier is None
    assert (observer.read_n, observer.earlier[State.SKIPPED]) == (count, count)
    assert outcome is not None
    assert outcome.counts["skipped"] == count
    assert rows(tmp_path, "SELECT COUNT(*) FROM frontiers") == [(0,)]

    pipeline, _, _ = await migrate(tmp_path, sandbox, inv)
    assert pipeline.frontier is not None
    assert (pipeline.frontier.stats.epoch, pipeline.frontier.stats.scanned) == (3, count)


async def test_a_line_that_is_not_its_item_any_more_falls_back_to_a_full_scan(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    count = 30
    inv, starts = numbered(tmp_path, count)
    await migrate(tmp_path, sandbox, inv)
    async with await Store.open(tmp_path / "state.db") as store:  # two items put back to pending
        for key in ("t:w0005", "t:w0020"):
            await store.apply(JOB, None, [Move(key, frozenset({State.DONE}), State.PENDING)])
    # Line 20 rewritten in place with another workflow of the same length, the mtime put back:
    # the file looks unchanged, but w0020's line now holds x0020.
    st = inv.stat()
    with inv.open("r+b") as fh:
        fh.seek(starts[19])
        fh.write(json.dumps(record(20)).replace("w0020", "x0020").encode())
    os.utime(inv, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert inv.stat().st_size == st.st_size
    before = await calls(sandbox)

    pipeline, observer, outcome = await migrate(tmp_path, sandbox, inv)
    assert pipeline.frontier is not None
    stats = pipeline.frontier.stats
    assert stats.fallback == f"{inv}:20 is not item 't:w0020' any more"
    assert (stats.epoch, stats.skipped, stats.reread, stats.scanned) == (2, 0, 1, count)
    # As a full scan of the file as it is: w0005 (read again before the fallback, then met by the
    # scan) sent once, x0020 created, w0020 (no longer in the source) left pending.
    assert await calls(sandbox) == before + 2
    states = dict(rows(tmp_path, "SELECT key, state FROM items"))
    assert (states["t:w0005"], states["t:x0020"], states["t:w0020"]) == ("done", "done", "pending")
    assert outcome is not None
    assert outcome.counts["invalid"] == 0
    assert observer.read_n == count + 1, "w0005 is counted again by the scan"
    assert rows(tmp_path, "SELECT epoch, line FROM frontiers") == [(2, count)]


async def test_an_old_state_database_is_upgraded_read_in_full_once_then_resumed(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    count = 20
    inv, _ = numbered(tmp_path, count)
    await migrate(tmp_path, sandbox, inv)
    # Back to schema 3, as the previous version left its state databases, one item not yet sent.
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    conn.executescript(
        "DROP TABLE warnings; DROP TABLE frontiers; DROP INDEX items_by_seen; DROP INDEX parts_by_target;"
        "ALTER TABLE items DROP COLUMN byte_offset;"
        "UPDATE items SET state = 'pending' WHERE key = 't:w0007'; PRAGMA user_version = 3;"
    )
    conn.close()
    assert len(MIGRATIONS) == 6

    pipeline, _, outcome = await migrate(tmp_path, sandbox, inv)
    async with await Store.open(tmp_path / "state.db") as store:
        assert await store.schema_version() == 6
    assert pipeline.frontier is not None
    assert (pipeline.frontier.stats.epoch, pipeline.frontier.stats.scanned) == (2, count)
    assert outcome is not None
    assert outcome.counts["done"] == count

    pipeline, _, _ = await migrate(tmp_path, sandbox, inv)
    assert pipeline.frontier is not None
    stats = pipeline.frontier.stats
    assert (stats.epoch, stats.skipped, stats.scanned) == (2, count, 0)
