"""The command line as a user runs it: subprocesses, real SQLite files, the embedded sandbox."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from migrator.engine.target import sandbox_data_path
from migrator.providers.dataworks.render import workflow_id
from migrator.sample import generate, write_jsonl
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.server import running

ROOT = Path(__file__).resolve().parent.parent


def migrator(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrator", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


async def sandbox_view(data: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reopen an embedded sandbox's data file and read its inspection endpoints, once every async
    job it holds has finished (an import whose answer a killed run lost may still be running)."""
    async with running("dataworks", SandboxSettings(data_path=data)) as handle, aiohttp.ClientSession() as s:
        with anyio.fail_after(30):
            while True:
                async with s.get(f"{handle.endpoint}/_sandbox/objects") as resp:
                    objects = await resp.json()
                if all(job["status"] != "Running" for job in objects["async_jobs"]):
                    break
                await anyio.sleep(0.2)
        async with s.get(f"{handle.endpoint}/_sandbox/calls") as resp:
            calls = await resp.json()
    return objects, calls


async def test_demo_job_migrates_everything_and_reports_json(tmp_path: Path) -> None:
    state = tmp_path / "demo.db"
    result = migrator("run", "jobs/demo.toml", "--state", state)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "demo: all done - 60 items: 60 done" in result.stderr.replace("\n", " ")
    report = json.loads(migrator("report", "--format", "json", "--state", state).stdout)
    assert report["job"] == "demo"
    assert report["counts"]["done"] == 60
    assert sum(report["counts"].values()) == 60
    assert {
        "pending",
        "rendered",
        "submitting",
        "submitted",
        "polling",
        "done",
        "invalid",
        "failed",
        "skipped",
    } <= set(report["counts"])
    assert report["failures"] == []
    assert report["run"]["outcome"] == "completed"
    objects, _ = await sandbox_view(sandbox_data_path(state, "dataworks"))
    keys = [
        json.loads(line)["source"] for line in (ROOT / "jobs/inventory/demo.jsonl").read_text().splitlines()
    ]
    expected = sorted(workflow_id(f"{k['system']}:{k['id']}") for k in keys)
    assert sorted(d["id"] for d in objects["workflow_definitions"]) == expected
    status = migrator("status", "--state", state)
    assert status.returncode == 0
    assert "demo: 60/60 settled (60 done" in status.stdout
    sheet = migrator("report", "--format", "csv", "--state", state)
    written = migrator("report", "--format", "csv", "--state", state, "-o", tmp_path / "r.csv")
    assert (sheet.returncode, written.returncode) == (0, 0)
    assert (tmp_path / "r.csv").read_text(encoding="utf-8") == sheet.stdout
    rows = list(csv.DictReader(io.StringIO(sheet.stdout)))
    assert len(rows) == 60
    assert {r["state"] for r in rows} == {"done"}
    assert sorted(r["target_id"] for r in rows) == expected
    no_run = migrator("report", "--format", "csv", "--run", "9", "--state", state)
    assert (no_run.returncode, no_run.stdout) == (2, "")
    assert "job 'demo' has no run 9 (runs: 1)" in no_run.stderr


def test_usage_errors_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    missing = migrator("run", tmp_path / "nope.toml")
    assert missing.returncode == 2
    assert "nope.toml: file not found" in missing.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text('[job]\nname = "x"\n[source]\npaths = ["a.jsonl"]\n[target]\n')
    result = migrator("run", bad)
    assert result.returncode == 2
    assert "target.provider: Field required" in result.stderr
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"garbage" * 1000)
    result = migrator("status", "--state", corrupt)
    assert result.returncode == 2
    assert "unusable" in result.stderr
    assert "Traceback" not in result.stderr


def test_schema_prints_the_record_schema() -> None:
    result = migrator("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert "tasks" in schema["required"]


def _rows(state: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read the state database as another terminal would. Not read-only: after a SIGKILL only a
    connection that may write can recover the WAL, and a read-only one can miss what it holds."""
    conn = sqlite3.connect(state, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def _peek(state: Path, sql: str) -> list[tuple[Any, ...]]:
    """Like _rows, but for watching a run that may not have created its schema yet."""
    try:
        return _rows(state, sql) if state.exists() else []
    except sqlite3.OperationalError:
        return []


def test_sigkill_while_polling_then_resume_polls_stored_jobs_and_imports_nothing_twice(
    tmp_path: Path,
) -> None:
    inv = tmp_path / "inv.jsonl"
    workflows = list(generate(120, seed=11))
    write_jsonl(inv, workflows)
    job = tmp_path / "job.toml"
    job.write_text(f'[job]\nname = "kill"\n[source]\npaths = ["{inv}"]\n[target]\nprovider = "dataworks"\n')
    config = tmp_path / "config.toml"
    config.write_text(
        '[state]\npath = "state.db"\n'
        "[providers.dataworks]\nsandbox = true\nconcurrency = 16\n"
        "[providers.dataworks.poll]\ninitial = 0.5\nfactor = 1.5\nmax = 1.0\n"
        "[providers.dataworks.sandbox_options]\njob_delay = [2.0, 4.0]\n"
    )
    state = tmp_path / "state.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrator", "run", str(job), "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    polled: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline and proc.poll() is None:
        polled = _peek(state, "SELECT key, remote_job_id FROM items WHERE state = 'polling' AND polls >= 1")
        if len(polled) >= 20:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed: " + (
        proc.stderr.read() if proc.stderr else ""
    )
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    in_flight = dict(_rows(state, "SELECT key, remote_job_id FROM items WHERE state = 'polling'"))
    submitting = {k for (k,) in _rows(state, "SELECT key FROM items WHERE state = 'submitting'")}
    assert len(in_flight) >= 20

    result = migrator("run", job, "--config", config)
    assert result.returncode == 0, result.stderr[-3000:]

    final = dict(_rows(state, "SELECT key, remote_job_id FROM items WHERE state = 'done'"))
    assert len(final) == 120, "every item ends done"
    for key, job_id in in_flight.items():
        assert final[key] == job_id, f"{key} was re-imported instead of polled from its stored job id"
    second_run = _rows(state, "SELECT MAX(id) FROM runs")[0][0]
    finished_by_second = {
        k
        for (k,) in _rows(
            state,
            f"SELECT key FROM events WHERE run_id = {second_run} "
            "AND from_state = 'polling' AND to_state = 'done'",
        )
    }
    assert set(in_flight) <= finished_by_second

    objects, calls = anyio.run(sandbox_view, sandbox_data_path(state, "dataworks"))
    defs = {d["id"]: d for d in objects["workflow_definitions"]}
    assert sorted(defs) == sorted(workflow_id(w.key) for w in workflows), (
        "exactly one definition per workflow"
    )
    for wf in workflows:
        imported = defs[workflow_id(wf.key)]["imports"]
        # Only an import whose answer was lost mid-call (row left in `submitting`) may be sent again,
        # and then it is an update of the same definition, never a second one.
        assert imported == 1 or (wf.key in submitting and imported == 2), (wf.key, imported)
    # Every import call the sandbox accepted is accounted for by a definition above: none went elsewhere.
    # The converse holds but for one import at most: the sandbox runs inside the killed process, and it
    # stores an accepted import (one commit) before it counts the call (a second commit). The kill can
    # fall between the two, and with no await in between, only for the request handled at that instant.
    uncounted = sum(d["imports"] for d in defs.values()) - calls["ImportWorkflowDefinition"]["ok"]
    assert uncounted in {0, 1}, calls["ImportWorkflowDefinition"]
    assert set(calls) >= {"ImportWorkflowDefinition", "GetJobStatus"}


def test_secrets_reach_no_log_store_report_or_target(tmp_path: Path) -> None:
    inventory = ROOT / "jobs/inventory/demo.jsonl"
    secrets = {
        v["value"]
        for line in inventory.read_text().splitlines()
        for t in json.loads(line)["tasks"]
        for v in t["variables"]
        if v["secret"]
    }
    assert len(secrets) >= 5
    state = tmp_path / "s.db"
    run = migrator("run", "jobs/demo.toml", "--state", state, "--verbose")
    assert run.returncode == 0, run.stderr[-2000:]
    report = migrator("report", "--format", "json", "--state", state).stdout
    places = {"logs": run.stderr + run.stdout, "report": report}
    for path in tmp_path.iterdir():  # the store, its WAL, and the embedded sandbox's data
        places[path.name] = path.read_bytes().decode("utf-8", "replace")
    assert any(name.startswith("s.sandbox-") for name in places)
    for name, text in places.items():
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"secret values found in {name}"


def test_unreachable_provider_leaves_items_unsettled_then_a_standalone_sandbox_takes_them(
    tmp_path: Path, free_ports: Callable[[int], int]
) -> None:
    inv = tmp_path / "inv.jsonl"
    workflows = list(generate(25, seed=21))
    write_jsonl(inv, workflows)
    base = free_ports(3)  # `migrator sandbox --port N` serves emr, enos, dataworks on N, N+1, N+2
    config = tmp_path / "config.toml"

    def write_config() -> None:
        config.write_text(
            f'[providers.dw]\nkind = "dataworks"\nendpoint = "http://127.0.0.1:{base + 2}"\n'
            'project_id = "10001"\n'
            "max_attempts = 2\ntimeout = 5\n[providers.dw.poll]\ninitial = 0.1\nmax = 0.3\n"
            '[providers.dw.credentials]\naccess_key_id = "$DW_AK"\naccess_key_secret = "$DW_SK"\n'
        )

    job = tmp_path / "job.toml"
    job.write_text(f'[job]\nname = "real"\n[source]\npaths = ["{inv}"]\n[target]\nprovider = "dw"\n')
    env = {**os.environ, "DW_AK": "sandbox-access-key-id", "DW_SK": "sandbox-access-key-secret"}

    def run_job(state: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "migrator",
                "run",
                str(job),
                "--config",
                str(config),
                "--state",
                str(state),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={**env, **extra},
            check=False,
        )

    # Nothing listens on the port: every connection is refused before a byte is sent, so no call
    # can have landed. The fifth call given up on opens the circuit, and every item goes back to
    # `pending` with the reason; none is left `submitting` for a lookup that could find nothing.
    write_config()
    state = tmp_path / "state.db"
    down = run_job(state)
    assert down.returncode == 3, down.stderr[-2000:]
    assert "25 items unsettled" in down.stderr
    assert "5 calls in a row unanswered" in down.stderr
    states = dict(_rows(state, "SELECT state, COUNT(*) FROM items GROUP BY state"))
    assert states == {"pending": 25}
    assert _rows(state, "SELECT COUNT(*) FROM items WHERE error_code = 'Unreachable'") == [(5,)]

    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "migrator",
            "sandbox",
            "--port",
            str(base),
            "--data",
            str(tmp_path / "sb.db"),
            "--job-delay",
            "0.05,0.2",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = json.loads(server.stdout.readline())
        assert line["dataworks"]["endpoint"] == f"http://127.0.0.1:{base + 2}"
        assert line["dataworks"]["credentials"] == {
            "access_key_id": "sandbox-access-key-id",
            "access_key_secret": "sandbox-access-key-secret",
        }
        assert line["dataworks"]["project_id"] == "10001"

        up = run_job(state)
        assert up.returncode == 0, up.stderr[-2000:]
        assert _rows(state, "SELECT COUNT(*) FROM items WHERE state = 'done'") == [(25,)]
        reconciled = _rows(state, "SELECT COUNT(*) FROM events WHERE detail LIKE 'reconciled%'")
        assert reconciled == [(0,)], "nothing could have landed: nothing to look up"
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    objects, _ = anyio.run(sandbox_view, tmp_path / "sb.dataworks.db")
    assert sorted(d["id"] for d in objects["workflow_definitions"]) == sorted(
        workflow_id(w.key) for w in workflows
    )
    assert all(d["imports"] == 1 for d in objects["workflow_definitions"])


def test_sigint_stops_cleanly_with_exit_3_and_the_next_run_finishes(tmp_path: Path) -> None:
    inv = tmp_path / "inv.jsonl"
    write_jsonl(inv, generate(30, seed=4))
    job = tmp_path / "job.toml"
    job.write_text(f'[job]\nname = "int"\n[source]\npaths = ["{inv}"]\n[target]\nprovider = "dataworks"\n')
    config = tmp_path / "config.toml"
    config.write_text(
        '[state]\npath = "state.db"\n[providers.dataworks]\nsandbox = true\n'
        "[providers.dataworks.poll]\ninitial = 0.2\nmax = 0.5\n"
        "[providers.dataworks.sandbox_options]\njob_delay = [2.0, 3.0]\n"
    )
    state = tmp_path / "state.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrator", "run", str(job), "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _peek(state, "SELECT COUNT(*) FROM items WHERE state = 'polling'") >= [(10,)]:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err[-3000:]
    assert "interrupted" in err, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert _rows(state, "SELECT outcome FROM runs") == [("interrupted",)], err[-3000:]
    result = migrator("run", job, "--config", config)
    assert result.returncode == 0, result.stderr[-2000:]
    assert _rows(state, "SELECT COUNT(*) FROM items WHERE state = 'done'") == [(30,)]


def test_a_report_file_is_written_whole_or_left_as_it_was(tmp_path: Path) -> None:
    from migrator.cli import _text_out

    out = tmp_path / "report.csv"
    out.write_text("the earlier report\n")

    def fail_partway() -> None:
        with _text_out(out) as fh:
            fh.write("half of a new one")
            raise RuntimeError("the store could not be read")

    with pytest.raises(RuntimeError):
        fail_partway()
    assert out.read_text() == "the earlier report\n"
    with _text_out(out) as fh:
        fh.write("a new report\n")
    assert out.read_text() == "a new report\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.csv"]  # no temporary file left behind
