"""`migrator status`: where a job stands, read from the state database while a run writes it.

The figures (rate over the last minute, ETA, in flight, parked) are checked on a store written
with a fake clock, where they can be computed by hand; then on a real run, asked from another
process mid-run and after it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from migrator.log import moment
from migrator.progress import job_status, status_lines
from migrator.sample import generate
from migrator.store import Move, Record, State, Store
from tests.engine.support import ROOT, Harness, migrator

JOB = "j"
PENDING = frozenset({State.PENDING})


def rec(key: str) -> Record:
    return Record(key, key, f"inv.jsonl:{key}", "dataworks", State.PENDING, "hash")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_rate_is_this_runs_last_minute_and_eta_is_what_is_left_at_that_rate(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    async with await Store.open(tmp_path / "s.db", clock=clock) as store:
        earlier = await store.start_run(JOB, "migrate", "dataworks")
        await store.apply(JOB, earlier, [rec(f"k{i}") for i in range(100)])
        await store.apply(JOB, earlier, [Move(f"k{i}", PENDING, State.DONE) for i in range(10)])
        await store.finish_run(earlier, "interrupted")
        clock.now = 2000.0
        run = await store.start_run(JOB, "migrate", "dataworks")
        clock.now = 2010.0  # more than a minute before "now": done, but not part of the rate
        await store.apply(JOB, run, [Move(f"k{i}", PENDING, State.DONE) for i in range(10, 30)])
        clock.now = 2070.0
        await store.apply(JOB, run, [Move(f"k{i}", PENDING, State.DONE) for i in range(30, 50)])
        clock.now = 2100.0
        await store.apply(JOB, run, [Move(f"k{i}", PENDING, State.FAILED) for i in range(50, 60)])
        # In flight and retried rows are no settlement; another job's settlements are not this one's.
        await store.apply(JOB, run, [Move(f"k{i}", PENDING, State.SUBMITTED) for i in range(60, 63)])
        await store.apply(JOB, run, [Move(f"k{i}", PENDING, State.POLLING) for i in range(63, 70)])
        await store.apply("other", run, [rec("x")])
        await store.apply("other", run, [Move("x", PENDING, State.DONE)])

        status = await job_status(store, JOB, now=2120.0)
    # 30 settled in the last 60 s (20 done at 2070, 10 failed at 2100): 0.5 items/s; 40 left.
    assert status["running"] is True
    assert status["rate"] == 0.5
    assert status["eta_seconds"] == 80.0
    assert status["eta"] == f"1m 20s ({moment(2200.0)})"
    assert (status["settled"], status["total"]) == (60, 100)
    assert status["targets"]["dataworks"]["settled"] == 60
    assert status["in_flight"] == {"submitted": 3, "polling": 7}
    text = "\n".join(status_lines(status))
    assert "j: 60/100 settled (50 done, 10 failed, 0 invalid) -> dataworks" in text
    assert "0.5 items/s over the last 60 s, ETA 1m 20s" in text
    assert "in flight: 10 async jobs (7 polling, 3 submitted)" in text


async def test_a_young_run_is_measured_since_it_started_and_a_still_one_has_no_eta(tmp_path: Path) -> None:
    clock = Clock(5000.0)
    async with await Store.open(tmp_path / "s.db", clock=clock) as store:
        run = await store.start_run(JOB, "migrate", "dataworks")
        await store.apply(JOB, run, [rec(f"k{i}") for i in range(10)])
        clock.now = 5008.0
        await store.apply(JOB, run, [Move(f"k{i}", PENDING, State.DONE) for i in range(4)])
        young = await job_status(store, JOB, now=5010.0)
        still = await job_status(store, JOB, now=5100.0)
    assert young["rate"] == 0.4  # 4 items in the 10 s the run has been going
    assert young["eta_seconds"] == 15.0
    assert still["rate"] == 0.0
    assert (still["eta_seconds"], still["eta"]) == (None, "unknown")


async def test_a_syncs_skipped_items_cost_no_work_and_are_not_in_its_rate(tmp_path: Path) -> None:
    """A nightly sync skips what did not change without a call: counted in the rate, the skips
    made the ETA of the few real updates a fraction of what it is."""
    clock = Clock(3000.0)
    async with await Store.open(tmp_path / "s.db", clock=clock) as store:
        run = await store.start_run(JOB, "sync", "dataworks")
        await store.apply(JOB, run, [rec(f"k{i}") for i in range(100)])
        clock.now = 3010.0
        await store.apply(JOB, run, [Move(f"k{i}", PENDING, State.SKIPPED) for i in range(90)])
        await store.apply(JOB, run, [Move(f"k{i}", PENDING, State.DONE) for i in range(90, 95)])
        status = await job_status(store, JOB, now=3020.0)
    assert status["rate"] == 0.25  # 5 updated in the 20 s the run has been going; 90 skipped
    assert status["eta_seconds"] == 20.0  # 5 left


async def test_after_a_run_status_says_done_or_what_is_left_and_why(tmp_path: Path) -> None:
    gone = await anyio.run_process([sys.executable, "-c", "import os; print(os.getpid())"])
    dead_pid = int(gone.stdout)  # a process that has ended
    async with await Store.open(tmp_path / "s.db") as store:
        run = await store.start_run(JOB, "migrate", "dataworks")
        await store.apply(JOB, run, [rec("a"), rec("b")])
        await store.apply(JOB, run, [Move("a", PENDING, State.DONE), Move("b", PENDING, State.DONE)])
        await store.finish_run(run, "completed")
        done = await job_status(store, JOB)

        until = time.time() + 3600
        await store.apply(JOB, None, [rec("c")])
        await store.apply(JOB, None, [Move("c", PENDING, State.PARKED, {"not_before": until})])
        killed = await store.start_run(JOB, "migrate", "dataworks")
    with sqlite3.connect(tmp_path / "s.db") as conn:  # as a run killed with -9 leaves its row
        conn.execute("UPDATE runs SET pid = ? WHERE id = ?", (dead_pid, killed))
    async with await Store.open(tmp_path / "s.db") as store:
        left = await job_status(store, JOB)
    assert (done["running"], done["rate"], done["eta"]) == (False, None, "done")
    assert "  last run 1: completed; ETA done" in status_lines(done)
    assert (left["running"], left["eta"]) == (False, "not running")
    assert left["parked"] == {"items": 1, "until": until}
    text = "\n".join(status_lines(left))
    assert f"last run 2: ended without finishing (process {dead_pid} is gone); 1 items left" in text
    assert f"quota used up until {moment(until)}: 1 items parked" in text


# --- a real run, watched from another process -----------------------------------------------------


def _status(h: Harness, *extra: str) -> subprocess.CompletedProcess[str]:
    return migrator("status", "--config", h.config, *extra, timeout=30)


def _peek(h: Harness, sql: str) -> list[tuple[Any, ...]]:
    try:
        return h.rows(sql) if h.state.exists() else []
    except sqlite3.OperationalError:  # the run has not created its schema yet
        return []


def test_status_from_another_process_mid_run_shows_rate_eta_and_async_jobs_then_done(tmp_path: Path) -> None:
    """DataWorks imports paced at 10/s, each an async job of 1-2 s polled to the end: the run
    lasts some 7 s, with jobs in flight all along."""
    poll = "initial = 0.2\nfactor = 1.5\nmax = 0.5\ndeadline = 60"
    h = Harness(tmp_path, "dataworks", list(generate(60, seed=3)), "write_qps = 10\n", 8, poll)
    h.write("latency = {median = 0.05}")
    h.config.write_text(h.config.read_text().replace("job_delay = [0.05, 0.3]", "job_delay = [1.0, 2.0]"))
    run = subprocess.Popen(
        [sys.executable, "-m", "migrator", "run", str(h.job), "--config", str(h.config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.poll() is None:
            done = _peek(h, "SELECT COUNT(*) FROM items WHERE state = 'done'")
            if done and done[0][0] >= 10:
                break
            time.sleep(0.1)
        assert run.poll() is None, "the run ended before status could be asked"
        mid = _status(h, "--format", "json")
        text = _status(h)
    finally:
        _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err[-3000:]
    assert mid.returncode == 0, mid.stderr
    (status,) = json.loads(mid.stdout)["jobs"]
    assert status["running"] is True
    assert status["rate"] > 0
    assert status["eta_seconds"] is not None
    assert status["eta_seconds"] > 0
    assert 10 <= status["settled"] < status["total"] == 60
    assert status["in_flight"]["polling"] + status["in_flight"]["submitted"] > 0
    assert text.returncode == 0, text.stderr
    assert "items/s over the last 60 s, ETA " in text.stdout
    assert "async jobs (" in text.stdout

    after = _status(h, "--format", "json")
    (final,) = json.loads(after.stdout)["jobs"]
    assert (final["running"], final["rate"], final["eta"]) == (False, None, "done")
    assert final["counts"]["done"] == 60

    # Off a terminal the run logged JSON lines, with a progress line every few seconds.
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    progress = [line for line in lines if line["event"] == "progress"]
    assert progress[-1]["eta"] == "done"
    assert (progress[-1]["settled"], progress[-1]["total"], progress[-1]["done"]) == (60, 60, 60)
    midway = [p for p in progress[:-1] if 0 < p["settled"] < 60]
    assert midway, progress
    assert all(p["rate"] > 0 and p["eta"] is not None for p in midway)
    assert {"throttled", "retries", "calls", "target", "job"} <= set(progress[-1])
    assert {line["level"] for line in lines} == {"info"}  # no debug lines without --verbose
