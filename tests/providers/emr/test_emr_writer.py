"""Workflows into the EMR sandbox: jobs, then the flow DAG; resumable part by part after a SIGKILL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest

from migrator.config import Config, JobConfig, PollPolicy, ProviderConfig, SourceConfig, TargetConfig
from migrator.engine.pipeline import Outcome, Pipeline
from migrator.engine.source import open_source
from migrator.engine.target import open_provider, sandbox_data_path
from migrator.model import Workflow
from migrator.sample import generate, write_jsonl
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.server import running
from migrator.store import Store

ROOT = Path(__file__).resolve().parents[3]


async def objects(data: Path) -> dict[str, Any]:
    """Reopen an embedded sandbox's data file and read its inspection endpoint."""
    async with (
        running("emr", SandboxSettings(data_path=data)) as handle,
        aiohttp.ClientSession() as s,
        s.get(f"{handle.endpoint}/_sandbox/objects") as resp,
    ):
        found: dict[str, Any] = await resp.json()
        return found


async def migrate(tmp_path: Path, workflows: list[Workflow], **cfg: Any) -> Outcome:
    inv = tmp_path / "inv.jsonl"
    write_jsonl(inv, workflows)
    provider = ProviderConfig(name="emr", kind="emr", sandbox=True, poll=PollPolicy(initial=0.05), **cfg)
    job = JobConfig(
        name="e",
        source=SourceConfig(paths=(inv,)),
        target=TargetConfig(provider="emr", folder="mig"),
        path=Path("e.toml"),
    )
    state = tmp_path / "state.db"
    async with (
        await Store.open(state) as store,
        open_provider(provider, state) as (prov, effective),
        open_source(job.source, Config(providers={}), state) as source,
    ):
        return await Pipeline(job, effective, prov, store, source).run()


@pytest.fixture
async def migrated(tmp_path: Path) -> tuple[list[Workflow], dict[str, Any], dict[str, str]]:
    workflows = list(generate(40, seed=8))
    outcome = await migrate(tmp_path, workflows)
    assert outcome.exit_code == 0, outcome.counts
    async with await Store.open(tmp_path / "state.db") as store:
        items = await store.items("e", [w.key for w in workflows])
    flow_ids = {key: str(item.target_id) for key, item in items.items()}
    return workflows, await objects(sandbox_data_path(tmp_path / "state.db", "emr")), flow_ids


async def test_each_workflow_is_one_flow_over_its_own_jobs(
    migrated: tuple[list[Workflow], dict[str, Any], dict[str, str]],
) -> None:
    workflows, found, flow_ids = migrated
    flows = {f["id"]: f for f in found["flows"]}
    jobs = {j["id"]: j for j in found["jobs"]}
    assert sorted(flows) == sorted(flow_ids.values())
    assert len(jobs) == sum(len(w.tasks) for w in workflows), "one job per task, none twice"
    categories = {c["id"]: c for c in found["categories"]}
    for wf in workflows:
        flow = flows[flow_ids[wf.key]]
        graph = flow["graph"]
        by_node = {n["id"]: n for n in graph["nodes"]}
        labels = {n["id"]: n.get("label") for n in graph["nodes"] if n["attribute"]["type"] == "JOB"}
        assert sorted(labels.values()) == sorted(t.name for t in wf.tasks)
        inner = {
            (labels[e["source"]], labels[e["target"]])
            for e in graph["edges"]
            if e["source"] in labels and e["target"] in labels
        }
        assert inner == {(e.upstream, e.downstream) for e in wf.edges}
        for node_id, label in labels.items():
            assert jobs[by_node[node_id]["attribute"]["jobId"]]["name"] == f"{wf.name}.{label}"
        assert sorted(flow.get("parent_flows") or []) == sorted(flow_ids[u] for u in wf.upstream_workflows())
        path, cat = [], flow.get("category_id")
        while cat:
            path.append(categories[cat]["name"])
            cat = categories[cat].get("parent_id")
        assert "/".join(reversed(path)) == f"mig/{wf.folder}"
        if wf.schedule is not None:
            assert flow["cron"] == wf.schedule.cron
            assert flow["status"] == ("STOP_SCHEDULE" if wf.schedule.paused else "UNDER_SCHEDULE")


def test_sigkill_while_jobs_are_created_then_rerun_creates_nothing_twice(tmp_path: Path) -> None:
    inv = tmp_path / "inv.jsonl"
    workflows = list(generate(60, seed=13))
    write_jsonl(inv, workflows)
    job = tmp_path / "job.toml"
    job.write_text(f'[job]\nname = "k"\n[source]\npaths = ["{inv}"]\n[target]\nprovider = "emr"\n')
    config = tmp_path / "config.toml"
    config.write_text(
        '[state]\npath = "state.db"\n[providers.emr]\nsandbox = true\nconcurrency = 8\n'
        "[providers.emr.sandbox_options.faults]\nlatency = {median = 0.03}\n"
    )
    state = tmp_path / "state.db"
    command = [sys.executable, "-m", "migrator", "run", str(job), "--config", str(config)]
    kills = 0
    for _ in range(3):  # kill it three times, each time with some jobs made and their flows not
        proc = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if _half_done(state) >= 2:
                break
            time.sleep(0.02)
        if proc.poll() is not None:
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        kills += 1
    assert kills >= 1, "the run finished before it could be killed"
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    found = anyio.run(objects, sandbox_data_path(state, "emr"))
    names = Counter(j["name"] for j in found["jobs"])
    assert max(names.values()) == 1, [n for n, c in names.items() if c > 1]
    assert len(names) == sum(len(w.tasks) for w in workflows)
    flows = Counter(f["name"] for f in found["flows"])
    assert sorted(flows) == sorted(w.name for w in workflows)
    assert max(flows.values()) == 1


def _half_done(state: Path) -> int:
    """Items with some job parts created but no flow yet: the moment to kill."""
    try:
        conn = sqlite3.connect(state, timeout=5)
        try:
            return conn.execute(
                "SELECT COUNT(DISTINCT key) FROM parts p WHERE part LIKE 'job:%' AND state = 'done' "
                "AND NOT EXISTS (SELECT 1 FROM parts f WHERE f.key = p.key AND f.part = 'flow')"
            ).fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0
