"""EnOS end to end through the command line: tokens, non-idempotent imports, links, round trips."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

from migrator.engine.target import sandbox_data_path
from migrator.model import Dependency, Workflow
from migrator.providers.base import UpstreamTarget
from migrator.providers.dataworks.render import node_id, workflow_id
from migrator.providers.enos.read import workflow_from_enos
from migrator.providers.enos.render import render
from migrator.sample import generate, write_jsonl
from migrator.sandbox.server import inspect
from migrator.translate.cron import Dialect, parse
from migrator.translate.kinds import TYPES
from migrator.translate.schedule import quartz_from_enos

ROOT = Path(__file__).resolve().parents[3]


def migrator(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "migrator", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)


def setup(tmp_path: Path, name: str, source: str, target: str, options: str = "") -> tuple[Path, Path]:
    job = tmp_path / f"{name}.toml"
    job.write_text(f'[job]\nname = "{name}"\n[source]\n{source}\n[target]\nprovider = "{target}"\n'
                   'submitter = "db_etl"\n')  # fmt: skip
    config = tmp_path / f"{name}.config.toml"
    config.write_text(f'[state]\npath = "{name}.db"\n[providers.{target}]\nsandbox = true\n{options}')
    return job, config


def rows(state: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(state, timeout=10)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_expiring_tokens_and_lost_import_answers_cost_no_item_and_no_duplicate(tmp_path: Path) -> None:
    inv = tmp_path / "inv.jsonl"
    workflows = list(generate(40, seed=31))
    write_jsonl(inv, workflows)
    options = ("concurrency = 8\n[providers.enos.sandbox_options]\ntoken_ttl = 0.6\n"
               "faults = {import_lost_answer = 0.3, latency = {median = 0.15}}\n")  # fmt: skip
    job, config = setup(tmp_path, "tok", f'paths = ["{inv}"]', "enos", options)
    result = migrator("run", job, "--config", config)
    assert result.returncode == 0, result.stderr[-3000:]
    objects, calls = anyio.run(inspect, "enos", sandbox_data_path(tmp_path / "tok.db", "enos"))
    names = Counter(f["flowName"] for f in objects["flows"])
    assert sorted(names) == sorted(w.name for w in workflows)
    assert max(names.values()) == 1, "a lost import answer must not make a second flow"
    flat = {f"{path}:{outcome}": n for path, outcomes in calls.items() for outcome, n in outcomes.items()}
    assert any(k.endswith(":62109") for k in flat), f"no import answer was lost: {flat}"
    assert sum(n for k, n in flat.items() if k.startswith("token.")) > 3, f"tokens were not renewed: {flat}"


def test_sigkill_right_after_an_import_was_sent_then_rerun_leaves_one_flow_per_name(tmp_path: Path) -> None:
    inv = tmp_path / "inv.jsonl"
    workflows = list(generate(40, seed=37))
    write_jsonl(inv, workflows)
    options = "concurrency = 4\n[providers.enos.sandbox_options.faults]\nlatency = {median = 0.2}\n"
    job, config = setup(tmp_path, "kill", f'paths = ["{inv}"]', "enos", options)
    state = tmp_path / "kill.db"
    command = [sys.executable, "-m", "migrator", "run", str(job), "--config", str(config)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    sent = 0
    while time.monotonic() < deadline and proc.poll() is None and not sent:
        with contextlib.suppress(sqlite3.Error):
            sent = rows(state, "SELECT COUNT(*) FROM parts WHERE part = 'flow' AND state = 'submitting'")[0][
                0
            ]
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before an import was in flight"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    result = migrator("run", job, "--config", config)
    assert result.returncode == 0, result.stderr[-3000:]
    objects, _ = anyio.run(inspect, "enos", sandbox_data_path(state, "enos"))
    names = Counter(f["flowName"] for f in objects["flows"])
    assert sorted(names) == sorted(w.name for w in workflows)
    assert max(names.values()) == 1


def test_migrate_to_enos_then_export_equals_the_mapping_round_trip(tmp_path: Path) -> None:
    workflows = list(generate(40, seed=41))
    inv = tmp_path / "inv.jsonl"
    write_jsonl(inv, workflows)
    job, config = setup(tmp_path, "rt", f'paths = ["{inv}"]', "enos")
    assert (run := migrator("run", job, "--config", config)).returncode == 0, run.stderr[-3000:]
    out = tmp_path / "out.jsonl"
    assert (exp := migrator("export", "enos", "-o", out, "--config", config)).returncode == 0, exp.stderr
    ids = dict(rows(tmp_path / "rt.db", "SELECT key, target_id FROM items"))
    by_key = {w.key: w for w in workflows}
    back = {
        w["source"]["id"]: Workflow.model_validate(w) for w in map(json.loads, out.read_text().splitlines())
    }
    assert sorted(back) == sorted(ids.values())
    for wf in workflows:
        upstream = {u: UpstreamTarget(u, by_key[u].name, ids[u]) for u in wf.upstream_workflows()}
        plan = render(wf, upstream=upstream, submitter="db_etl")
        expected = workflow_from_enos({**plan.body["flowJson"], "active": 0 if plan.paused else 1},
                                      folder=plan.folder, flow_id=ids[wf.key])  # fmt: skip
        assert back[ids[wf.key]].to_record() == expected.to_record(), wf.key


def with_task_links(workflows: list[Workflow]) -> list[Workflow]:
    """Sharpen some dependencies to task links gating one named task, as EnOS can say."""
    by_key = {w.key: w for w in workflows}
    out = []
    for n, wf in enumerate(workflows):
        sharpened = wf
        if wf.upstream and n % 2 == 0:
            up = by_key[wf.upstream[0].workflow]
            dep = Dependency(workflow=up.key, task=up.tasks[-1].name, gates=(wf.tasks[-1].name,))
            sharpened = wf.model_copy(update={"upstream": (dep, *wf.upstream[1:])})
        out.append(sharpened)
    return out


def test_an_enos_export_of_200_flows_lands_in_dataworks_and_emr_with_edges_links_and_schedules(
    tmp_path: Path,
) -> None:
    workflows = with_task_links(list(generate(210, seed=43)))
    assert sum(1 for w in workflows if any(d.task for d in w.upstream)) >= 5
    inv = tmp_path / "inv.jsonl"
    write_jsonl(inv, workflows)
    job, config = setup(tmp_path, "seed", f'paths = ["{inv}"]', "enos")
    assert (run := migrator("run", job, "--config", config)).returncode == 0, run.stderr[-3000:]
    dump = tmp_path / "dump"
    assert (snap := migrator("export", "enos", "--raw", dump, "--config", config)).returncode == 0, (
        snap.stderr
    )
    enos_ids = dict(rows(tmp_path / "seed.db", "SELECT key, target_id FROM items"))

    job, config = setup(tmp_path, "dw", f'kind = "enos-export"\npaths = ["{dump}"]', "dataworks")
    assert (run := migrator("run", job, "--config", config)).returncode == 0, run.stderr[-3000:]
    dw_keys = dict(rows(tmp_path / "dw.db", "SELECT name, key FROM items"))
    specs = anyio.run(inspect, "dataworks", sandbox_data_path(tmp_path / "dw.db", "dataworks"))[0]
    stored = {d["id"]: d["spec"]["spec"]["workflows"][0] for d in specs["workflow_definitions"]}
    assert len(stored) == 210
    names = {w.key: w.name for w in workflows}
    for wf in workflows:
        key = dw_keys[wf.name]
        spec = stored[workflow_id(key)]
        depends = {d["nodeId"]: {x["output"] for x in d["depends"]} for d in spec["dependencies"]}
        expected: dict[str, set[str]] = {
            t.name: {node_id(key, u) for u in wf.upstream_of(t.name)} for t in wf.tasks
        }
        for dep in wf.upstream:
            up_key = dw_keys[names[dep.workflow]]
            output = workflow_id(up_key) if dep.task is None else node_id(up_key, dep.task)
            for gated in dep.gates or wf.entry_tasks():
                expected[gated].add(output)
        for task in wf.tasks:
            assert depends.get(node_id(key, task.name), set()) == expected[task.name], (wf.name, task.name)
        if wf.schedule is not None:
            assert parse(spec["trigger"]["cron"], Dialect.DATAWORKS) == parse(wf.schedule.cron)
            assert {n["recurrence"] for n in spec["nodes"]} == {"Pause" if wf.schedule.paused else "Normal"}

    job, config = setup(tmp_path, "emr", f'kind = "enos-export"\npaths = ["{dump}"]', "emr")
    assert (run := migrator("run", job, "--config", config)).returncode == 0, run.stderr[-3000:]
    flows = {
        f["name"]: f
        for f in anyio.run(inspect, "emr", sandbox_data_path(tmp_path / "emr.db", "emr"))[0]["flows"]
    }
    emr_ids = dict(rows(tmp_path / "emr.db", "SELECT name, target_id FROM items"))
    assert len(flows) == 210
    for wf in workflows:
        flow = flows[wf.name]
        parents = {emr_ids[names[u]] for u in wf.upstream_workflows()}
        assert set(flow.get("parent_flows") or []) == parents, wf.name
        if wf.schedule is not None:
            assert flow["cron"] == wf.schedule.cron
    assert len(enos_ids) == 210


def test_an_emr_dump_lands_in_enos_with_cycles_edges_links_and_types(tmp_path: Path) -> None:
    workflows = list(generate(60, seed=47))
    inv = tmp_path / "inv.jsonl"
    write_jsonl(inv, workflows)
    job, config = setup(tmp_path, "toemr", f'paths = ["{inv}"]', "emr")
    assert (run := migrator("run", job, "--config", config)).returncode == 0, run.stderr[-3000:]
    dump = tmp_path / "dump"
    assert (snap := migrator("export", "emr", "--raw", dump, "--config", config)).returncode == 0, snap.stderr
    job, config = setup(tmp_path, "toenos", f'kind = "emr-export"\npaths = ["{dump}"]', "enos")
    assert (run := migrator("run", job, "--config", config)).returncode == 0, run.stderr[-3000:]
    flows = {
        f["flowName"]: f
        for f in anyio.run(inspect, "enos", sandbox_data_path(tmp_path / "toenos.db", "enos"))[0]["flows"]
    }
    warned = {
        name: json.loads(w or "[]")
        for name, w in rows(
            tmp_path / "toenos.db",
            "SELECT name, warnings.warnings FROM items LEFT JOIN warnings USING (job, key)",
        )
    }
    for wf in workflows:
        struct = flows[wf.name]["flowJson"]
        if wf.schedule is not None:
            assert quartz_from_enos(struct["cron"], struct["cycle"]) == wf.schedule.cron, wf.name
            assert len(struct["cron"].split()) == 7
        assert {(r["sourceTaskName"], r["targetTaskName"]) for r in struct["relations"]} == {
            (e.upstream, e.downstream) for e in wf.edges
        }
        links = {link["sourceFlowName"] for link in struct["flowLinks"]}
        assert links == {next(w.name for w in workflows if w.key == u) for u in wf.upstream_workflows()}
        # EnOS runs COMMAND, PYTHON and DATA_INTEGRATION tasks; what came from EMR is shell or an EMR
        # job type, so every task is a COMMAND, and each one that was not shell says so in a warning.
        assert {t["type"] for t in struct["tasks"]} == {"COMMAND"}
        not_shell = {t.name for t in wf.tasks if t.kind in TYPES["emr"] and t.kind.value != "shell"}
        flagged = {
            t for t in not_shell if any(w.startswith("job-kind") and repr(t) in w for w in warned[wf.name])
        }
        assert flagged == not_shell, wf.name
