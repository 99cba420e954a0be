"""EMR end to end through the command line: migrate, export back, and EMR dumps into DataWorks."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from migrator.engine.target import sandbox_data_path
from migrator.model import TaskKind, Workflow
from migrator.providers.dataworks.render import node_id, workflow_id
from migrator.providers.emr.render import MAX_RETRY, MAX_RETRY_INTERVAL
from migrator.sample import generate, write_jsonl
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.server import running
from migrator.translate.cron import Dialect, parse
from migrator.translate.kinds import TYPES

ROOT = Path(__file__).resolve().parents[3]
#: The issue's EMR -> DataWorks job types; kinds EMR lacks went to EMR as SHELL placeholders.
EMR_TO_DATAWORKS = {
    TaskKind.SHELL: "EMR_SHELL",
    TaskKind.HIVE_SQL: "EMR_HIVE",
    TaskKind.HIVE: "EMR_HIVE_CLI",
    TaskKind.SPARK: "EMR_SPARK",
    TaskKind.SPARK_SQL: "EMR_SPARK_SQL",
    TaskKind.SPARK_STREAMING: "EMR_SPARK_STREAMING",
    TaskKind.MR: "EMR_MR",
    TaskKind.SQOOP: "EMR_SCOOP",
    TaskKind.PIG: "DIDE_SHELL",  # no DataWorks equivalent: a placeholder keeping the content
}


def migrator(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "migrator", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)


def job_file(tmp_path: Path, name: str, source: str, target: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[job]\nname = "{name}"\n[source]\n{source}\n[target]\nprovider = "{target}"\n')
    return path


def target_ids(state: Path, job: str) -> dict[str, str]:
    conn = sqlite3.connect(state)
    try:
        return dict(conn.execute("SELECT key, target_id FROM items WHERE job = ?", (job,)).fetchall())
    finally:
        conn.close()


def expected_after_emr(wf: Workflow, flow_ids: dict[str, str]) -> dict[str, Any]:
    """The original as EMR can hold it: README's table applied (what is not carried, dropped)."""
    record = wf.to_record()
    record["source"] = {"system": "emr", "id": flow_ids[wf.key]}
    record["owners"] = []
    record["parameters"] = {}
    record["upstream"] = [f"emr:{flow_ids[u]}" for u in wf.upstream_workflows()]
    record["alerts"]["channels"] = []
    for task, original in zip(record["tasks"], wf.tasks, strict=True):
        task["parameters"] = {**wf.parameters, **original.parameters}
        if original.kind not in TYPES["emr"]:
            task["kind"] = TaskKind.SHELL.value
        task["max_retries"] = min(original.max_retries, MAX_RETRY)
        task["retry_interval"] = float(min(round(original.retry_interval), MAX_RETRY_INTERVAL))
        task["run"]["cluster"] = None
        task["run"]["mode"] = original.run.mode or "YARN"  # EMR's default mode, and so it reads back
    return record


def differences(want: Any, got: Any, path: str = "") -> list[str]:
    if isinstance(want, dict) and isinstance(got, dict):
        return [
            d
            for k in sorted(set(want) | set(got))
            for d in differences(want.get(k), got.get(k), f"{path}.{k}")
        ]
    if isinstance(want, list) and isinstance(got, list) and len(want) == len(got):
        return [
            d
            for i, (a, b) in enumerate(zip(want, got, strict=True))
            for d in differences(a, b, f"{path}[{i}]")
        ]
    if isinstance(want, float | int) and isinstance(got, float | int) and not isinstance(want, bool):
        return [] if float(want) == float(got) else [f"{path}: {want!r} != {got!r}"]
    return [] if want == got else [f"{path}: {want!r} != {got!r}"]


def test_migrate_to_emr_then_export_gives_the_same_workflows(tmp_path: Path) -> None:
    bare = Workflow.model_validate(
        {
            "name": "bare",
            "source": {"system": "x", "id": "1"},
            "tasks": [{"name": "a", "content": "echo a"}, {"name": "b"}],
            "edges": [{"upstream": "a", "downstream": "b"}],
        }
    )
    workflows = [*generate(40, seed=17), bare]  # `bare` has no descriptions, which EMR requires
    inv = tmp_path / "inv.jsonl"
    write_jsonl(inv, workflows)
    state = tmp_path / "state.db"
    job = job_file(tmp_path, "to_emr", f'paths = ["{inv}"]', "emr")
    run = migrator("run", job, "--state", state)
    assert run.returncode == 0, run.stderr[-3000:]
    exported = tmp_path / "exported.jsonl"
    result = migrator("export", "emr", "-o", exported, "--state", state)
    assert result.returncode == 0, result.stderr[-3000:]
    assert exported.stat().st_mode & 0o077 == 0, "inventories carry secrets: owner-only"
    flow_ids = target_ids(state, "to_emr")
    back = {w["source"]["id"]: w for w in map(json.loads, exported.read_text().splitlines())}
    assert sorted(back) == sorted(flow_ids.values())
    for wf in workflows:
        got = Workflow.model_validate(back[flow_ids[wf.key]]).to_record()
        assert differences(expected_after_emr(wf, flow_ids), got) == [], wf.key


async def dataworks_specs(data: Path) -> dict[str, dict[str, Any]]:
    async with (
        running("dataworks", SandboxSettings(data_path=data)) as handle,
        aiohttp.ClientSession() as session,
        session.get(f"{handle.endpoint}/_sandbox/objects") as resp,
    ):
        return {
            d["id"]: d["spec"]["spec"]["workflows"][0] for d in (await resp.json())["workflow_definitions"]
        }


def test_an_emr_dump_of_200_flows_lands_in_dataworks_with_every_edge_and_schedule(tmp_path: Path) -> None:
    workflows = list(generate(210, seed=23))
    assert sum(1 for w in workflows if w.upstream) >= 20, "parent-flow dependencies across flows"
    inv = tmp_path / "inv.jsonl"
    write_jsonl(inv, workflows)
    emr_state = tmp_path / "emr.db"
    populate = migrator(
        "run", job_file(tmp_path, "seed_emr", f'paths = ["{inv}"]', "emr"), "--state", emr_state
    )
    assert populate.returncode == 0, populate.stderr[-3000:]
    dump = tmp_path / "dump"
    snap = migrator("export", "emr", "--raw", dump, "--state", emr_state)
    assert snap.returncode == 0, snap.stderr[-3000:]
    flow_ids = target_ids(emr_state, "seed_emr")

    dw_state = tmp_path / "dw.db"
    job = job_file(tmp_path, "emr_to_dw", f'kind = "emr-export"\npaths = ["{dump}"]', "dataworks")
    run = migrator("run", job, "--state", dw_state)
    assert run.returncode == 0, run.stderr[-3000:]
    specs = anyio.run(dataworks_specs, sandbox_data_path(dw_state, "dataworks"))
    assert len(specs) == 210
    for wf in workflows:
        key = f"emr:{flow_ids[wf.key]}"
        spec = specs[workflow_id(key)]
        nodes = {n["name"]: n for n in spec["nodes"]}
        assert sorted(nodes) == sorted(t.name for t in wf.tasks), key
        for task in wf.tasks:
            command = nodes[task.name]["script"]["runtime"]["command"]
            assert command == EMR_TO_DATAWORKS.get(task.kind, "EMR_SHELL"), (key, task.name, task.kind)
        depends = {d["nodeId"]: {x["output"] for x in d["depends"]} for d in spec["dependencies"]}
        parents = {workflow_id(f"emr:{flow_ids[u]}") for u in wf.upstream_workflows()}
        for task in wf.tasks:
            inner = {node_id(key, up) for up in wf.upstream_of(task.name)}
            assert depends.get(node_id(key, task.name), set()) == (inner or parents), (key, task.name)
        if wf.schedule is None:
            assert spec["trigger"]["type"] == "Manual"
            continue
        trigger = spec["trigger"]
        # DataWorks numbers the days of the week from Monday: read back, it is the same schedule.
        assert parse(trigger["cron"], Dialect.DATAWORKS) == parse(wf.schedule.cron), key
        assert wf.schedule.start is not None
        assert trigger["startTime"] == wf.schedule.start.strftime("%Y-%m-%d %H:%M:%S")
        if wf.schedule.end is not None:
            assert trigger["endTime"] == wf.schedule.end.strftime("%Y-%m-%d %H:%M:%S")
        assert {n["recurrence"] for n in spec["nodes"]} == {"Pause" if wf.schedule.paused else "Normal"}
