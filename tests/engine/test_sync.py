"""Nightly sync, through the command line, against each real sandbox.

A job in ``mode = "sync"`` migrates a hundred workflows; then 5% of them change in the source,
some are added and some removed, and the same command runs again. The test proves what an
unattended nightly job promises: exactly the changed workflows are updated at the target (their
ids kept where the target can update in place), the new ones are created, the removed ones are
reported as ``orphaned`` and left alone until ``--prune`` deletes them (saying so first), and
every unchanged workflow costs no write call and its object at the target is untouched.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from collections import Counter
from datetime import UTC
from pathlib import Path
from typing import Any

import anyio
import pytest

from migrator.engine.target import sandbox_data_path
from migrator.model import Workflow
from migrator.providers.dataworks import sandbox as dataworks_sandbox
from migrator.providers.dataworks.client import READS as DATAWORKS_READS
from migrator.providers.dataworks.render import workflow_id
from migrator.providers.emr import sandbox as emr_sandbox
from migrator.providers.emr.client import READS as EMR_READS
from migrator.providers.enos.client import READS as ENOS_READS
from migrator.sample import generate, write_jsonl
from migrator.sandbox.server import inspect
from migrator.sandbox.storage import SandboxStore
from tests.engine.support import Harness, migrator

ROOT = Path(__file__).resolve().parents[2]
COUNT = 100
KINDS = ("dataworks", "emr", "enos")


def _is_write(kind: str, action: str) -> bool:
    if kind == "emr":
        return not action.startswith(EMR_READS)
    if kind == "enos":
        return action not in ENOS_READS and not action.startswith("token.")
    return action not in DATAWORKS_READS


class Job:
    """One sync job into one embedded sandbox, run as a user runs it."""

    def __init__(self, tmp: Path, kind: str, *, concurrency: int = 16) -> None:
        self.tmp, self.kind = tmp, kind
        self.inventory = tmp / "inv.jsonl"
        self.job = tmp / "nightly.toml"
        self.config = tmp / "config.toml"
        self.state = tmp / "state.db"
        self.job.write_text(
            f'[job]\nname = "nightly"\nmode = "sync"\n[source]\npaths = ["{self.inventory}"]\n'
            f'[target]\nprovider = "{kind}"\nfolder = "mig"\nsubmitter = "etl"\n'
        )
        self.config.write_text(
            f'[state]\npath = "state.db"\n[providers.{kind}]\nsandbox = true\nconcurrency = {concurrency}\n'
            f"[providers.{kind}.poll]\ninitial = 0.1\nfactor = 1.5\nmax = 0.3\n"
            f"[providers.{kind}.sandbox_options]\njob_delay = [0.05, 0.2]\n"
        )

    def source(self, workflows: list[Workflow]) -> None:
        write_jsonl(self.inventory, workflows)

    def run(self, *extra: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "migrator", "run", str(self.job), "--config", str(self.config)]
        return subprocess.run(
            [*command, *extra], capture_output=True, text=True, timeout=300, cwd=ROOT, check=False
        )

    def states(self) -> dict[str, str]:
        conn = sqlite3.connect(self.state)
        try:
            return dict(conn.execute("SELECT key, state FROM items").fetchall())
        finally:
            conn.close()

    def target_ids(self) -> dict[str, str | None]:
        conn = sqlite3.connect(self.state)
        try:
            return dict(conn.execute("SELECT key, target_id FROM items").fetchall())
        finally:
            conn.close()

    def sandbox(self) -> tuple[dict[str, Any], Counter[str]]:
        """The target's objects by workflow name, and its successful write calls so far."""
        objects, calls = anyio.run(inspect, self.kind, sandbox_data_path(self.state, self.kind))
        writes: Counter[str] = Counter()
        for action, outcomes in calls.items():
            if _is_write(self.kind, action):
                writes[action] += sum(n for outcome, n in outcomes.items() if outcome in ("ok", "0"))
        if self.kind == "dataworks":
            by_name = {d["name"]: d for d in objects["workflow_definitions"]}
        elif self.kind == "emr":
            jobs = {j["id"]: j for j in objects["jobs"]}
            by_name = {
                f["name"]: {"flow": f, "jobs": [jobs[i] for i in sorted(_graph_jobs(f["graph"]))]}
                for f in objects["flows"]
            }
        else:
            by_name = {f["flowName"]: f for f in objects["flows"]}
        return by_name, writes


def _graph_jobs(graph: str | dict[str, Any]) -> set[str]:
    nodes = (json.loads(graph or "{}") if isinstance(graph, str) else graph).get("nodes", [])
    return {n["attribute"]["jobId"] for n in nodes if n.get("attribute", {}).get("jobId")}


def _dependants(workflows: list[Workflow]) -> set[str]:
    """Keys of workflows another workflow of the inventory depends on (by key or by name)."""
    by_name = {w.name: w.key for w in workflows}
    refs = {ref for w in workflows for ref in w.upstream_workflows()}
    return {by_name.get(ref, ref) for ref in refs}


def _changed(wf: Workflow, how: str) -> Workflow:
    record = wf.to_record()
    if how == "task":
        record["tasks"][0]["content"] = (record["tasks"][0].get("content") or "") + "\n# fixed upstream"
    else:
        record["description"] = "changed by the nightly sync test"
    return Workflow.model_validate(record)


def _unlinked(count: int) -> tuple[list[Workflow], list[Workflow]]:
    """``count`` sample workflows with no upstream that none depends on (their names can change
    hands without touching a link), and the other sample workflows."""
    workflows = list(generate(30, seed=23))
    referenced = {d.workflow for w in workflows for d in w.upstream}
    picked = [w for w in workflows if not {w.key, w.name} & referenced and not w.upstream][:count]
    return picked, [w for w in workflows if w not in picked]


def _edited(wf: Workflow, **changes: Any) -> Workflow:
    return Workflow.model_validate({**wf.to_record(), **changes})


@pytest.mark.parametrize("kind", KINDS)
def test_sync_updates_exactly_the_changed_creates_the_new_reports_the_removed(
    tmp_path: Path, kind: str
) -> None:
    job = Job(tmp_path, kind)
    first = list(generate(COUNT, seed=23))
    job.source(first)
    migrated = job.run()
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    assert set(job.states().values()) == {"done"}
    before, writes_before = job.sandbox()
    ids_before = job.target_ids()

    # 5% change: task content in some (EnOS can only re-import a flow for that, so those are
    # workflows nothing depends on), settings only in others; 3 removed, 4 added.
    relied_on = _dependants(first)
    free = [w for w in first if w.key not in relied_on]
    by_task = free[:3]
    by_settings = [w for w in first if w.key in relied_on][:2] or free[3:5]
    removed = free[5:8]
    changed = {w.key: _changed(w, "task") for w in by_task} | {
        w.key: _changed(w, "settings") for w in by_settings
    }
    assert len(changed) == COUNT * 5 // 100
    added = [
        Workflow.model_validate({**w.to_record(), "name": f"{w.name}_added"})
        for w in generate(4, seed=24, system="enos" if kind != "enos" else "emr")
    ]
    gone = {w.key for w in removed}
    second = [changed.get(w.key, w) for w in first if w.key not in gone] + added
    job.source(second)

    synced = job.run()
    assert synced.returncode == 0, synced.stderr[-3000:]
    states = job.states()
    expected = {w.key: "skipped" for w in first} | dict.fromkeys(changed, "done")
    expected |= dict.fromkeys(gone, "orphaned") | {w.key: "done" for w in added}
    assert states == expected
    assert f"orphaned: {len(removed)} gone from the source but still at the target" in synced.stderr
    for w in removed:
        assert w.name in synced.stderr

    after, writes_after = job.sandbox()
    writes = writes_after - writes_before
    names_changed = {w.name for w in changed.values()}
    # Every unchanged workflow, and every removed one, is exactly as it was at the target.
    for name, obj in before.items():
        if name not in names_changed:
            assert after[name] == obj, f"{name} was written although unchanged"
    assert set(after) == set(before) | {w.name for w in added}
    for w in changed.values():
        assert after[w.name] != before[w.name], f"{w.name} changed in the source but not at the target"

    # The write calls are exactly those of the changed and the new workflows.
    tasks_new = sum(len(w.tasks) for w in added)
    if kind == "dataworks":
        assert writes == Counter({"ImportWorkflowDefinition": len(changed) + len(added)})
        assert {after[w.name]["imports"] for w in changed.values()} == {2}
        assert job.target_ids() == ids_before | {w.key: workflow_id(w.key) for w in added}
    elif kind == "emr":
        scheduled_new = sum(1 for w in added if w.schedule is not None and not w.schedule.paused)
        assert writes["CreateFlowForWeb"] == len(added)
        assert writes["CreateFlowJob"] == tasks_new
        assert writes["ModifyFlowJob"] == len(by_task), "only the job whose task changed"
        # A changed task is its job's update alone: the flow over it is sent only when it changed.
        assert writes["ModifyFlowForWeb"] == len(by_settings) + scheduled_new
        assert set(writes) <= {"CreateFlowForWeb", "CreateFlowJob", "ModifyFlowJob", "ModifyFlowForWeb",
                               "CreateFlowCategory"}  # fmt: skip
        ids = job.target_ids()
        assert all(ids[k] == ids_before[k] for k in changed), "flows are modified in place, ids kept"
    else:
        assert writes["flows.save"] == len(by_settings)
        assert writes["flows.delete"] == len(by_task), "a flow whose tasks changed is replaced"
        assert writes["flows.import"] == len(by_task) + len(added)
        switched = writes["flows.enable"] + writes["flows.disable"]
        assert switched == len(changed) + len(added)
        ids = job.target_ids()
        assert all(ids[w.key] == ids_before[w.key] for w in by_settings), "save keeps the flow id"

    # --prune deletes the orphans at the target, after listing them; a rerun then costs nothing.
    pruned = job.run("--prune")
    assert pruned.returncode == 0, pruned.stderr[-3000:]
    listing = next(line for line in pruned.stderr.splitlines() if "pruning: deleting orphaned" in line)
    assert all(w.name in listing for w in removed), listing
    assert f"pruned: {len(removed)} deleted at the target" in pruned.stderr
    final, _ = job.sandbox()
    assert set(final) == set(after) - {w.name for w in removed}
    assert job.states() == expected | {w.key: "skipped" for w in [*changed.values(), *added]}
    assert all(job.target_ids()[k] is None for k in gone)
    quiet = job.run()
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert "(run 4, 0 calls," in quiet.stderr
    assert job.sandbox()[0] == final


def test_prune_is_refused_outside_sync_mode(tmp_path: Path) -> None:
    job = Job(tmp_path, "dataworks")
    job.job.write_text(job.job.read_text().replace('mode = "sync"', 'mode = "migrate"'))
    job.source(list(generate(3, seed=5)))
    refused = job.run("--prune")
    assert refused.returncode == 2
    assert '--prune needs mode = "sync"' in refused.stderr
    assert not job.state.exists() or not job.states()


def test_a_changed_target_setting_updates_what_it_shapes_though_no_source_record_changed(
    tmp_path: Path,
) -> None:
    """The folder (like a kind override or an owner mapping) is part of the translation: a sync
    after it changes updates every workflow, then settles again at zero calls."""
    job = Job(tmp_path, "dataworks")
    workflows = list(generate(8, seed=5))
    job.source(workflows)
    assert job.run().returncode == 0
    _, first = job.sandbox()
    job.job.write_text(job.job.read_text().replace('folder = "mig"', 'folder = "moved"'))
    assert (moved := job.run()).returncode == 0, moved.stderr[-3000:]
    by_name, second = job.sandbox()
    assert second["ImportWorkflowDefinition"] - first["ImportWorkflowDefinition"] == len(workflows)
    paths = [d["spec"]["spec"]["workflows"][0]["script"]["path"] for d in by_name.values()]
    assert all(p.startswith("moved/") for p in paths), paths
    assert job.run().returncode == 0
    assert job.sandbox()[1] == second


def test_a_store_from_before_target_digests_is_carried_over_without_a_call(tmp_path: Path) -> None:
    """Earlier versions stored the workflow's own hash: the first sync after the upgrade must not
    update every workflow (hours of quota); it takes the old hash as unchanged and re-digests."""
    job = Job(tmp_path, "dataworks")
    workflows = list(generate(6, seed=5))
    job.source(workflows)
    assert job.run().returncode == 0
    _, before = job.sandbox()
    conn = sqlite3.connect(job.state)
    with conn:
        for wf in workflows:
            legacy = wf.content_hash()
            conn.execute(
                "UPDATE items SET submitted_hash = ?, content_hash = ? WHERE key = ?",
                (legacy, legacy, wf.key),
            )
    conn.close()
    assert (upgraded := job.run()).returncode == 0, upgraded.stderr[-3000:]
    assert job.sandbox()[1] == before, "no write call"
    conn = sqlite3.connect(job.state)
    hashes = dict(conn.execute("SELECT key, submitted_hash FROM items").fetchall())
    conn.close()
    assert all(hashes[w.key] not in (None, w.content_hash()) for w in workflows), "re-digested"
    job.job.write_text(job.job.read_text().replace('folder = "mig"', 'folder = "moved"'))
    assert job.run().returncode == 0
    assert job.sandbox()[1]["ImportWorkflowDefinition"] == before["ImportWorkflowDefinition"] + len(workflows)


def test_an_empty_source_orphans_nothing(tmp_path: Path) -> None:
    job = Job(tmp_path, "dataworks")
    job.source(list(generate(5, seed=5)))
    assert job.run().returncode == 0
    job.inventory.write_text("")
    emptied = job.run("--prune")
    assert emptied.returncode == 0, emptied.stderr[-3000:]
    assert "source is empty: nothing orphaned" in emptied.stderr
    assert set(job.states().values()) == {"done"}
    assert len(job.sandbox()[0]) == 5


@pytest.mark.parametrize("path", sorted((ROOT / "jobs").glob("nightly-*.toml")), ids=lambda p: p.name)
def test_the_example_nightly_jobs_sync_and_a_second_night_costs_no_call(tmp_path: Path, path: Path) -> None:
    """Each example runs as shipped (embedded sandboxes when no config is given); the second
    night finds nothing changed and sends nothing."""
    state = tmp_path / "state.db"
    command = [sys.executable, "-m", "migrator", "run", str(path), "--state", str(state)]

    def night() -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False)

    first = night()
    assert first.returncode == 0, first.stderr[-3000:]
    second = night()
    assert second.returncode == 0, second.stderr[-3000:]
    assert "(run 2, 0 calls," in second.stderr
    conn = sqlite3.connect(state)
    try:
        modes = {m for (m,) in conn.execute("SELECT mode FROM runs")}
        left = {s for (s,) in conn.execute("SELECT DISTINCT state FROM items")}
    finally:
        conn.close()
    assert modes == {"sync"}
    assert left <= {"skipped"}


@pytest.mark.parametrize("changed", [False, True], ids=["unchanged", "changed"])
def test_a_prune_stopped_part_way_leaves_a_workflow_that_comes_back_to_be_made_again(
    tmp_path: Path, changed: bool
) -> None:
    """EMR deletes a flow, then its jobs: a quota that runs out between the two leaves the flow
    gone, the jobs there and the item orphaned. When the workflow comes back to the source, it
    must be made again at the target, not skipped as "unchanged since last submitted"; and
    changed, the jobs left there must carry the change, not be taken as they are."""
    a, b = [w for w in generate(30, seed=41) if not w.upstream][:2]
    h = Harness(tmp_path, "emr", [a, b], "park_after = 1")
    inv = tmp_path / "inv.jsonl"

    def source(workflows: list[Workflow], faults: str) -> None:
        write_jsonl(inv, workflows)
        h.write(faults)
        h.job.write_text(h.job.read_text().replace("[job]\n", '[job]\nmode = "sync"\n'))

    source([a, b], "")
    assert h.run().returncode == 0
    source([a], "daily_cap = 1")  # b leaves the source; one call of quota: the flow's delete
    pruning = migrator("run", h.job, "--config", h.config, "--prune")
    assert pruning.returncode == 3, pruning.stderr[-3000:]
    objects, _ = h.sandbox()
    assert b.name not in {f["name"] for f in objects["flows"]}, "the cap must stop the prune after the flow"
    assert objects["jobs"], "and before the jobs"
    assert h.rows("SELECT state FROM items WHERE key = ?", (b.key,)) == [("orphaned",)]

    mark = "EDITED-WHILE-GONE"
    if changed:
        record = b.to_record()
        for task in record["tasks"]:
            task["content"] += f"\n# {mark}\n"
        b = Workflow.model_validate(record)
    source([a, b], "")  # b is back
    assert migrator("retry", "f", "--parked", "--config", h.config).returncode == 0
    back = h.run()
    assert back.returncode == 0, back.stderr[-3000:]
    assert h.rows("SELECT state FROM items WHERE key = ?", (b.key,)) == [("done",)]
    objects, _ = h.sandbox()
    assert [f["name"] for f in objects["flows"] if f["name"] == b.name] == [b.name]
    jobs = [j for j in objects["jobs"] if j["name"].startswith(f"{b.name}.")]
    assert len(jobs) == len(b.tasks)
    assert all((mark in json.dumps(j, ensure_ascii=False)) == changed for j in jobs), "a job kept old content"
    h.workflows = [a, b]
    h.assert_nothing_twice()


def test_a_landed_workflow_whose_record_is_refused_now_is_reported_and_kept_at_the_target(
    tmp_path: Path,
) -> None:
    """A nightly sync reads a record it took before and now refuses (edited badly, or refused by a
    check a later release added): the item says why and the run says it, where it was passed over
    as unchanged; the target keeps the version last submitted; fixed, the record is sent again."""
    (wf,) = [w for w in generate(5, seed=41) if not w.upstream][:1]
    h = Harness(tmp_path, "dataworks", [wf], "")
    inv = tmp_path / "inv.jsonl"
    h.write("")
    h.job.write_text(h.job.read_text().replace("[job]\n", '[job]\nmode = "sync"\n'))
    assert h.run().returncode == 0
    record = wf.to_record()
    inv.write_text(json.dumps({**record, "schedule": {**record["schedule"], "cron": "0 61 1 * * ?"}}) + "\n")
    refused = h.run()
    assert refused.returncode == 1, refused.stderr[-3000:]
    ((state, message, target_id),) = h.rows("SELECT state, error_message, target_id FROM items")
    assert state == "invalid"
    assert message == (
        f"{inv}:1: workflow {wf.name!r}: schedule.cron: minutes 61 is out of range 0-59; "
        "the target keeps the version last submitted"
    )
    assert target_id is not None
    objects, _ = h.sandbox()
    assert [d["name"] for d in objects["workflow_definitions"]] == [wf.name]
    changed = {**record, "description": "fixed"}
    inv.write_text(json.dumps(changed) + "\n")
    fixed = h.run()
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert h.rows("SELECT state, target_id FROM items") == [("done", target_id)]
    h.workflows = [Workflow.model_validate(changed)]
    h.assert_nothing_twice()


def test_an_emr_update_gives_a_task_of_a_new_kind_a_new_job_and_moves_the_flow(tmp_path: Path) -> None:
    """A job's Type is create-only in EMR, and the flow's folder was not in what an update
    compared: a task whose kind changed kept a job of the old type (its code run by the old
    engine), and a workflow moved to another folder stayed in the old one; both were ``done``.

    The task gets a new job of its new type, the old job is deleted once the flow no longer
    points at it, and the flow moves: the target reads back as a fresh migration of the new
    version. A schedule the source dropped, which a Modify cannot remove, fails the item with
    the flow stopped, naming what it kept."""
    workflows = list(generate(30, seed=23))
    wf = next(
        w
        for w in workflows
        if w.schedule and not w.schedule.paused and any(t.kind == "hive_sql" for t in w.tasks)
    )
    (tmp_path / "a").mkdir()
    job = Job(tmp_path / "a", "emr")
    job.source(workflows)
    assert job.run().returncode == 0
    objects, _ = job.sandbox()
    before = {j["name"]: j for j in objects[wf.name]["jobs"]}

    record = wf.to_record()
    changed = next(t for t in record["tasks"] if t["kind"] == "hive_sql")
    changed["kind"] = "spark_sql"
    moved = next(w for w in workflows if w.key != wf.key)  # only moved: its flow is the same
    changes = {wf.key: record, moved.key: moved.to_record() | {"folder": "moved/here"}}
    second = [Workflow.model_validate(changes[w.key]) if w.key in changes else w for w in workflows]
    job.source(second)
    synced = job.run()
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert job.states()[wf.key] == job.states()[moved.key] == "done"
    (tmp_path / "b").mkdir()
    fresh = Job(tmp_path / "b", "emr")
    fresh.source(second)
    assert fresh.run().returncode == 0
    exported = _exported(job, tmp_path / "a.jsonl")
    assert {n: exported[n] for n in (wf.name, moved.name)} == {
        n: r for n, r in _exported(fresh, tmp_path / "b.jsonl").items() if n in (wf.name, moved.name)
    }
    assert exported[moved.name]["folder"] == "mig/moved/here"
    objects, _ = job.sandbox()
    after = {j["name"]: j for j in objects[wf.name]["jobs"]}
    assert after.keys() == before.keys()
    renewed = {n for n in after if after[n]["id"] != before[n]["id"]}
    assert renewed == {f"{wf.name}.{changed['name']}"}
    assert [after[n]["type"] for n in renewed] == ["SPARK_SQL"]
    mine = {j["id"] for j in before.values()} | {j["id"] for j in after.values()}
    raw, _ = anyio.run(inspect, "emr", sandbox_data_path(job.state, "emr"))
    live = {j["id"] for j in raw["jobs"]}
    assert mine & live == {j["id"] for j in after.values()}  # the old job is deleted

    record["schedule"] = None
    job.source([Workflow.model_validate(record) if w.key == wf.key else w for w in workflows])
    refused = job.run()
    assert refused.returncode == 1, refused.stderr[-3000:]
    conn = sqlite3.connect(job.state)
    try:
        query = "SELECT state, error_code, error_message FROM items WHERE key = ?"
        state, code, message = conn.execute(query, (wf.key,)).fetchone()
    finally:
        conn.close()
    assert (state, code) == ("failed", "NotCleared"), message
    flow = job.sandbox()[0][wf.name]["flow"]
    assert f"flow {flow['id']}: schedule {flow['cron']} (stopped)" in message
    assert flow["status"] == "STOP_SCHEDULE"


def test_an_enos_update_moves_the_flow_and_adds_or_drops_its_schedule(tmp_path: Path) -> None:
    """EnOS's ``save`` has no folder and refuses another scheduling type: a workflow moved with
    its tasks unchanged stayed in the old folder, ``done``; a schedule added or dropped failed
    every night (62102). Each is now imported again, as a task change is, and the target reads
    back as a fresh migration of the new version."""
    workflows = list(generate(30, seed=23))
    referenced = {d.workflow for w in workflows for d in w.upstream}
    # No other flow links to them: EnOS refuses to delete a flow that others link to (62104).
    scheduled = [w for w in workflows if w.schedule and not {w.key, w.name} & referenced]
    moved, dropped, added = scheduled[0], scheduled[1], scheduled[2]
    records = {w.key: w.to_record() for w in (moved, dropped, added)}
    records[added.key]["schedule"] = None  # the first version has none
    first = [Workflow.model_validate(records.get(w.key, w.to_record())) for w in workflows]
    (tmp_path / "a").mkdir()
    job = Job(tmp_path / "a", "enos")
    job.source(first)
    assert job.run().returncode == 0

    records[moved.key]["folder"] = "moved/here"
    records[dropped.key]["schedule"] = None
    records[added.key]["schedule"] = added.to_record()["schedule"]
    second = [Workflow.model_validate(records.get(w.key, w.to_record())) for w in workflows]
    job.source(second)
    synced = job.run()
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert {job.states()[w.key] for w in (moved, dropped, added)} == {"done"}
    (tmp_path / "b").mkdir()
    fresh = Job(tmp_path / "b", "enos")
    fresh.source(second)
    assert fresh.run().returncode == 0
    names = {moved.name, dropped.name, added.name}
    exported = {n: r for n, r in _exported(job, tmp_path / "a.jsonl").items() if n in names}
    assert exported == {n: r for n, r in _exported(fresh, tmp_path / "b.jsonl").items() if n in names}
    assert exported[moved.name]["folder"] == "mig/moved/here"
    assert exported[dropped.name]["schedule"] is None
    assert exported[added.name]["schedule"] is not None


def _exported(job: Job, out: Path) -> dict[str, dict[str, Any]]:
    """The target read back as a user would (``migrator export``): records by name, with the
    target's own ids (source ids, upstream references) put as the names they stand for."""
    command = [sys.executable, "-m", "migrator", "export", job.kind, "-o", str(out)]
    command += ["--config", str(job.config)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    names = {f"{r['source']['system']}:{r['source']['id']}": r["name"] for r in records}
    return {
        r["name"]: {**r, "source": None, "upstream": sorted(names.get(u, u) for u in r["upstream"])}
        for r in records
    }


def test_an_emr_update_leaves_nothing_at_the_target_that_the_source_dropped(tmp_path: Path) -> None:
    """EMR's Modify changes only the fields it is sent. An update that left out what the new
    version no longer has kept the old version's timeout, environment, run settings, variables,
    alerts, parent flows, schedule end and resources at the target, and the item was ``done``.

    Settings with a value meaning "none" are sent it, so the target reads back as a fresh
    migration of the new version. Parent flows, a schedule end and resources cannot be removed
    by Modify in the sandbox (the documents do not say they can): the item fails, naming each
    object and what it kept, every night until they are removed by hand; then it lands."""
    workflows = list(generate(30, seed=23))
    wf = next(
        w
        for w in workflows
        if w.upstream and w.schedule and w.schedule.end and any(t.resources for t in w.tasks)
    )
    (tmp_path / "a").mkdir()
    job = Job(tmp_path / "a", "emr")
    job.source(workflows)
    assert job.run().returncode == 0

    # A new version without the settings that have a "none": it lands, and reads back as new.
    record = wf.to_record()
    record |= {"parameters": {}, "alerts": {}}
    for task in record["tasks"]:
        task |= {"environment": {}, "timeout": None, "parameters": {}, "variables": [], "max_retries": 0}
        task["run"] = dict.fromkeys(task["run"])
    assert any(t.environment or t.timeout or t.variables for t in wf.tasks)
    second = [Workflow.model_validate(record) if w.key == wf.key else w for w in workflows]
    job.source(second)
    synced = job.run()
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert job.states()[wf.key] == "done"
    (tmp_path / "b").mkdir()
    fresh = Job(tmp_path / "b", "emr")
    fresh.source(second)
    assert fresh.run().returncode == 0
    assert _exported(job, tmp_path / "a.jsonl")[wf.name] == _exported(fresh, tmp_path / "b.jsonl")[wf.name]

    # Then without its upstream, schedule end and resources, which Modify cannot remove.
    record["upstream"] = []
    record["schedule"]["end"] = None
    for task in record["tasks"]:
        task["resources"] = []
    job.source([Workflow.model_validate(record) if w.key == wf.key else w for w in workflows])
    objects, _ = job.sandbox()
    flow = objects[wf.name]["flow"]
    with_resources = [j for j in objects[wf.name]["jobs"] if j["resources"]]
    parents = {o["flow"]["id"]: n for n, o in objects.items() if o["flow"]["id"] in flow["parent_flows"]}
    assert parents
    assert with_resources

    def item() -> tuple[str, str | None, str | None]:
        conn = sqlite3.connect(job.state)
        try:
            query = "SELECT state, error_code, error_message FROM items WHERE key = ?"
            return conn.execute(query, (wf.key,)).fetchone()  # type: ignore[no-any-return]
        finally:
            conn.close()

    def retry() -> None:
        command = [sys.executable, "-m", "migrator", "retry", str(job.job), "--failed"]
        command += ["--config", str(job.config)]
        assert subprocess.run(command, capture_output=True, timeout=60, cwd=ROOT, check=False).returncode == 0

    for _ in ("the night it changed", "retried before it was mended: every part is checked anew"):
        refused = job.run()
        assert refused.returncode == 1, refused.stderr[-3000:]
        state, code, message = item()
        assert (state, code) == ("failed", "NotCleared"), message
        assert message is not None
        for j in with_resources:
            assert f"job {j['id']} ({j['name']}): resources {j['resources'][0]['path']}" in message
        for flow_id, name in parents.items():
            assert f"flow {flow['id']}: parent flows {flow_id} ({name})" in message
        assert f"schedule end {wf.schedule.end.astimezone(UTC).isoformat()}" in message
        assert "Remove them in the EMR console" in message
        retry()

    # Removed by hand in the console, and retried: it lands, and the next night costs nothing.
    store = SandboxStore(sandbox_data_path(job.state, "emr"))
    with store.transaction():
        store.put("flows", flow["id"], {**flow, "parent_flows": [], "end_schedule": None},
                  name=flow["name"], parent=flow["project_id"])  # fmt: skip
        for j in with_resources:
            store.put("flow_jobs", j["id"], {**j, "resources": []}, name=j["name"], parent=j["project_id"])
    store.close()
    mended = job.run()
    assert mended.returncode == 0, mended.stderr[-3000:]
    assert item() == ("done", None, None)
    quiet = job.run()
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert ", 0 calls," in quiet.stderr


def test_an_enos_name_freed_in_the_same_night_is_taken_once_the_rest_has_settled(tmp_path: Path) -> None:
    """EnOS names are unique: a workflow renamed to the name another one gives up the same night,
    or a new workflow taking a renamed one's old name, failed when it happened to be sent first
    (always, one at a time), and stayed failed on later nights. Such a refusal now waits until
    the run's other submits have settled, then is sent again, round after round while a round
    frees a name (a chain of renames frees one a round). Two workflows that swap names
    cannot both go first: they fail, each naming the other item, and the target keeps both
    flows as they were. Nor does a workflow whose new name stays taken lose its flow: one whose
    tasks changed too was deleted to be imported again, and then refused the name."""
    (a, b, c, d, e, f, g), rest = _unlinked(7)
    # One at a time, in inventory order: the one that needs a name is always sent first.
    job = Job(tmp_path, "enos", concurrency=1)
    new = _edited(a, source={"system": "test", "id": "new"})
    job.source([a, b, c, d, e, f, g, *rest])
    assert job.run().returncode == 0
    before, _ = job.sandbox()

    def renamed(wf: Workflow, name: str) -> Workflow:
        return _edited(wf, name=name)

    night = [
        renamed(g, b.name),  # takes b's name, which b gives up once c has given up its own
        renamed(b, c.name),  # takes c's name, which c gives up below
        renamed(c, f"{c.name}_v2"),
        new,  # takes a's name, which a gives up below
        renamed(a, f"{a.name}_v2"),
        renamed(d, e.name),  # d and e swap names
        renamed(e, d.name),
        renamed(_changed(f, "task"), d.name),  # d keeps its name: f stays as it was
        *rest,
    ]
    job.source(night)
    synced = job.run()
    assert synced.returncode == 1, synced.stderr[-3000:]
    states = job.states()
    assert {k: states[k] for k in (a.key, b.key, c.key, g.key, new.key)} == dict.fromkeys(
        (a.key, b.key, c.key, g.key, new.key), "done"
    )
    assert states[d.key] == states[e.key] == states[f.key] == "failed"
    conn = sqlite3.connect(job.state)
    try:
        errors = dict(conn.execute("SELECT key, error_message FROM items WHERE state = 'failed'"))
    finally:
        conn.close()
    assert e.key in errors[d.key], errors
    assert d.key in errors[e.key], errors
    assert d.key in errors[f.key], errors
    after, _ = job.sandbox()
    ids = job.target_ids()
    assert str(after[b.name]["flowId"]) == ids[g.key] == str(before[g.name]["flowId"])
    assert str(after[c.name]["flowId"]) == ids[b.key] == str(before[b.name]["flowId"])
    assert str(after[f"{c.name}_v2"]["flowId"]) == ids[c.key] == str(before[c.name]["flowId"])
    assert str(after[f"{a.name}_v2"]["flowId"]) == ids[a.key] == str(before[a.name]["flowId"])
    assert str(after[a.name]["flowId"]) == ids[new.key] not in {str(f["flowId"]) for f in before.values()}
    # The swap changed nothing at the target: each flow still has its own name and content.
    for wf in (d, e, f):
        assert after[wf.name] == before[wf.name]


def test_an_enos_name_a_pruned_workflow_gives_up_is_taken_in_the_same_run(tmp_path: Path) -> None:
    """A workflow removed from the source and a new one of its name, the same night: the new one
    was refused the name its orphan's flow held, and ``--prune`` deleted that flow only after,
    so the new one stayed failed, night after night. With ``--prune``, a refused name now waits
    for the prune, and the new workflow lands in the same run."""
    (gone,), rest = _unlinked(1)
    new = _edited(gone, source={"system": "test", "id": "new"})
    job = Job(tmp_path, "enos", concurrency=1)
    job.source([gone, *rest])
    assert job.run().returncode == 0
    before, _ = job.sandbox()
    job.source([new, *rest])
    synced = job.run("--prune")
    assert synced.returncode == 0, synced.stderr[-3000:]
    states = job.states()
    assert (states[gone.key], states[new.key]) == ("orphaned", "done")
    after, _ = job.sandbox()
    assert str(after[gone.name]["flowId"]) == job.target_ids()[new.key] != str(before[gone.name]["flowId"])
    # The run's summary still names what it pruned, though the prune came before the run's end.
    assert f"pruned: 1 deleted at the target: {gone.name}" in synced.stderr


@pytest.mark.parametrize("kind", ["enos", "dataworks"])
def test_a_name_refused_is_sent_again_the_next_night_once_it_is_free(tmp_path: Path, kind: str) -> None:
    """A workflow moved from one job's inventory to another's, the same night: the other job is
    refused the name the first job's object still holds (EnOS: the flow name, naming that job's
    item; DataWorks: the workflow's path, at poll time). Its source does not change again, and
    it was left failed for good; it is now sent again each night, and lands once the first job's
    ``--prune`` has freed the name."""
    (moved,), rest = _unlinked(1)
    first = Job(tmp_path, kind)
    first.source([moved, *rest])
    assert first.run().returncode == 0
    other = tmp_path / "other.toml"
    other_inventory = tmp_path / "other.jsonl"
    text = first.job.read_text().replace('name = "nightly"', 'name = "other"')
    other.write_text(text.replace(str(first.inventory), str(other_inventory)))
    arrived = _edited(moved, source={"system": "other", "id": "1"})
    write_jsonl(other_inventory, [arrived])

    def run_other() -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "migrator", "run", str(other), "--config", str(first.config)]
        return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, check=False)

    assert run_other().returncode == 1
    conn = sqlite3.connect(first.state)
    try:
        (code, message), *_ = conn.execute("SELECT error_code, error_message FROM items WHERE job = 'other'")
    finally:
        conn.close()
    assert code == "NameTaken"
    if kind == "enos":
        assert f"nightly/{moved.key}" in message
    else:
        path = f"target folder already exists: mig/[^;]*/{re.escape(moved.name)};"
        assert re.search(path, message), message
    first.source(rest)
    assert first.run("--prune").returncode == 0
    assert run_other().returncode == 0
    assert first.states()[arrived.key] == "done"
    objects, _ = first.sandbox()
    assert str(objects[moved.name]["flowId" if kind == "enos" else "id"]) == first.target_ids()[arrived.key]


def test_the_prune_before_a_round_of_taken_names_deletes_only_the_orphans_of_those_names(
    tmp_path: Path,
) -> None:
    """``--prune`` runs before the deferred rounds so that a removed workflow's flow gives its
    name up; it deleted every orphan then, among them one a deferred new workflow linked to (its
    rendering counted on it): that workflow was refused (62102) and failed. And an orphan a
    deferred update stopped linking to was refused (62104) before the update landed, and left
    at the target. Only the orphans of the deferred names are pruned early; the rest at the end."""
    (up, t_up, t, d), rest = _unlinked(4)
    # t waits for the whole source to be read (its upstream is gone tonight), so d goes first
    t = _edited(t, upstream=[t_up.key])
    renamed = _edited(t, name=f"{t.name}_v2")  # gives its name to d
    for linking in (True, False):  # d links to up (gone tonight) from tonight on, or until tonight
        (tmp_path / str(linking)).mkdir()
        job = Job(tmp_path / str(linking), "enos", concurrency=1)
        before = [] if linking else [_edited(d, upstream=[up.key])]
        job.source([up, t_up, t, *before, *rest])
        assert job.run().returncode == 0
        tonight = _edited(d, name=t.name, upstream=[up.key] if linking else [])
        job.source([tonight, renamed, *rest])
        synced = job.run("--prune")
        states = job.states()
        assert (states[d.key], states[up.key]) == ("done", "orphaned"), synced.stderr[-3000:]
        flows, _ = job.sandbox()
        if linking:  # still linked: EnOS refuses to delete it (62104), and it stays
            assert up.name in flows
        else:
            assert up.name not in flows
            assert f"pruned: 1 deleted at the target: {up.name}" in synced.stderr


def test_the_prune_before_a_round_spares_an_orphan_a_deferred_workflow_links_to(tmp_path: Path) -> None:
    """Before a round of deferred submits, the orphans of the names they want are pruned. One
    of them, removed tonight, was also the upstream a deferred new workflow had been rendered
    against; pruned, its name went to another deferred workflow, and the first one's link, which
    names its upstream, bound to that newcomer: ``done``, depending on a workflow it never
    referred to. An orphan a deferred or held workflow refers to is now spared until the end."""
    (up, gone, t, d1, d2), rest = _unlinked(5)
    job = Job(tmp_path, "enos", concurrency=1)
    job.source([up, gone, t, *rest])
    assert job.run().returncode == 0
    before, _ = job.sandbox()
    # up and gone leave the source; d1 wants up's name, t gone's; d2 wants t's and depends on up
    night = [
        _edited(d1, name=up.name),
        _edited(t, name=gone.name),
        _edited(d2, name=t.name, upstream=[up.key]),
    ]
    job.source([*night, *rest])
    synced = job.run("--prune")
    assert synced.returncode == 1, synced.stderr[-3000:]
    states = job.states()
    assert (states[t.key], states[d2.key], states[d1.key]) == ("done", "done", "failed")
    flows, _ = job.sandbox()
    up_flow = str(before[up.name]["flowId"])
    assert str(flows[up.name]["flowId"]) == up_flow, "up stays: d2 links to it"
    assert str(flows[gone.name]["flowId"]) == job.target_ids()[t.key]
    store = SandboxStore(sandbox_data_path(job.state, "enos"))
    try:
        d2_flow = store.get("flows", job.target_ids()[d2.key] or "")
    finally:
        store.close()
    assert d2_flow is not None
    assert [str(link["flowId"]) for link in d2_flow["links"]] == [up_flow]


def test_the_prune_before_a_round_spares_an_orphan_a_deferred_workflow_links_to_by_mapping(
    tmp_path: Path,
) -> None:
    """A deferred workflow rendered against an upstream mapped by ``[target.mappings] upstreams``
    to the flow a removed workflow left: the flow was pruned before the round, as the upstream's
    key was not an orphan's, and the workflow's link bound to a new flow of that name."""
    (up, holder, new, d), rest = _unlinked(4)
    job = Job(tmp_path, "enos", concurrency=1)
    job.source([up, holder, *rest])
    assert job.run().returncode == 0
    up_flow = str(job.sandbox()[0][up.name]["flowId"])
    job.job.write_text(job.job.read_text() + f'[target.mappings]\nupstreams = {{ "ext:up" = "{up.name}" }}\n')
    taking = _edited(new, name=up.name)
    linking = _edited(d, name=holder.name, upstream=["ext:up"])
    job.source([taking, linking, *rest])
    synced = job.run("--prune")
    flows, _ = job.sandbox()
    assert str(flows[up.name]["flowId"]) == up_flow, synced.stderr[-3000:]
    assert (job.states()[linking.key], job.states()[taking.key]) == ("done", "failed")


def test_a_workflow_that_comes_back_under_a_new_id_takes_its_name_and_its_dependant_with_it(
    tmp_path: Path,
) -> None:
    """A workflow given a new source id keeps its name: its old item is orphaned and its flow
    holds the name the new one wants, while a new dependant refers to it by that name (which
    resolves to the new item). The flow is pruned before the round, as the dependant's reference
    is not to it, and both land in the same run."""
    (old, again, dependant), rest = _unlinked(3)
    job = Job(tmp_path, "enos", concurrency=1)
    job.source([old, *rest])
    assert job.run().returncode == 0
    back = _edited(again, name=old.name)
    depending = _edited(dependant, upstream=[old.name])
    job.source([back, depending, *rest])
    synced = job.run("--prune")
    assert synced.returncode == 0, synced.stderr[-3000:]
    states = job.states()
    assert (states[back.key], states[depending.key], states[old.key]) == ("done", "done", "orphaned")
    assert str(job.sandbox()[0][old.name]["flowId"]) == job.target_ids()[back.key]


def test_a_mapping_key_that_names_an_orphan_does_not_spare_it(tmp_path: Path) -> None:
    """A deferred workflow refers to ``L``, which ``[target.mappings] upstreams`` sends to
    another flow; an orphan is called ``L`` too. The mapping's key was taken for an item's
    name, so the orphan was spared from the prune before the round, and a new workflow that
    wants its name failed for a night though nothing links to it."""
    (orphan, mapped_to, taker, stuck), rest = _unlinked(4)
    job = Job(tmp_path, "enos", concurrency=1)
    job.source([orphan, mapped_to, *rest])
    assert job.run().returncode == 0
    mapping = f'[target.mappings]\nupstreams = {{ "{orphan.name}" = "{mapped_to.name}" }}\n'
    job.job.write_text(job.job.read_text() + mapping)
    taking = _edited(taker, name=orphan.name)
    # refers to the mapping, and wants a name the source's own workflow keeps: deferred for good
    referring = _edited(stuck, name=mapped_to.name, upstream=[orphan.name])
    job.source([taking, referring, mapped_to, *rest])
    synced = job.run("--prune")
    states = job.states()
    assert (states[taking.key], states[referring.key]) == ("done", "failed"), synced.stderr[-3000:]


def test_the_prune_before_a_round_finds_the_orphan_that_holds_the_name_by_its_flow(tmp_path: Path) -> None:
    """An orphan whose flow still carries an older name than its item (a rename refused the
    night before): the prune before the round looked orphans up by item name, missed it, and the
    workflow that wants the flow's name landed a night late. The refusal names the flow that
    holds the name, and that flow's orphan is pruned before the round."""
    (old, keeper, new), rest = _unlinked(3)
    job = Job(tmp_path, "enos")
    job.source([old, keeper, *rest])
    assert job.run().returncode == 0
    job.source([_edited(old, name=keeper.name), keeper, *rest])
    assert job.run().returncode == 1  # keeper holds the name: old's flow keeps its own
    taking = _edited(new, name=old.name)
    job.source([taking, keeper, *rest])
    synced = job.run("--prune")
    assert synced.returncode == 0, synced.stderr[-3000:]
    assert (job.states()[taking.key], job.states()[old.key]) == ("done", "orphaned")


def test_a_dataworks_prune_keeps_an_upstream_a_workflow_still_depends_on_and_says_so(tmp_path: Path) -> None:
    """DataWorks deletes no workflow another depends on. The sandbox deleted it, and a prune left
    the dependant at the target linked to nothing, exit 0. Now the prune is refused, the summary
    says so each night, and where to read why, and the dependant keeps its link; once nothing
    depends on it, the next prune deletes it."""
    workflows = list(generate(30, seed=23))
    by_ref = {ref: w for w in workflows for ref in (w.key, w.name)}
    dependant = next(w for w in workflows if w.upstream and w.upstream_workflows()[0] in by_ref)
    upstream = by_ref[dependant.upstream_workflows()[0]]
    job = Job(tmp_path, "dataworks")
    job.source(workflows)
    assert job.run().returncode == 0
    upstream_id = job.target_ids()[upstream.key]
    job.source([w for w in workflows if w is not upstream])
    for _night in ("the night it was removed", "the next night, still depended on"):
        kept = job.run("--prune")
        assert kept.returncode == 0, kept.stderr[-3000:]
        said = "not pruned: 1 gone from the source that the target refused to delete (another workflow"
        assert said in kept.stderr
        assert f"depends on it, say): {upstream.name}. Each says why" in kept.stderr
        assert "--prune deletes them" not in kept.stderr
    conn = sqlite3.connect(job.state)
    try:
        (code,) = conn.execute("SELECT error_code FROM items WHERE key = ?", (upstream.key,)).fetchone()
    finally:
        conn.close()
    assert code == "InvalidWorkflowDefinition.HasDescendants"
    objects, _ = job.sandbox()
    assert objects[upstream.name]["id"] == upstream_id
    job.source([w for w in workflows if w is not upstream and w is not dependant])
    gone = job.run("--prune")
    assert gone.returncode == 0, gone.stderr[-3000:]
    assert "pruned: 2 deleted at the target: " in gone.stderr
    objects, _ = job.sandbox()
    assert upstream.name not in objects
    assert dependant.name not in objects


def _deleted_by_hand(job: Job, name: str) -> None:
    """Delete a workflow at the target as a user would in its console (EMR: the flow, not its jobs)."""
    store = SandboxStore(sandbox_data_path(job.state, job.kind))
    try:
        with store.transaction():
            if job.kind == "emr":
                [flow] = [f for f in store.named(emr_sandbox.FLOWS, name) if not f.get("deleted")]
                gone = {**flow, "deleted": True}
                store.put(emr_sandbox.FLOWS, flow["id"], gone, name=name, parent=flow["project_id"])
                store.delete_children(flow["id"], emr_sandbox.TOKENS)
            else:
                [found] = store.named(dataworks_sandbox.WORKFLOWS, name)
                store.delete(dataworks_sandbox.WORKFLOWS, found["id"])
                store.delete_children(found["id"], *dataworks_sandbox.HELD)
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["emr", "dataworks"])
@pytest.mark.parametrize("then", ["changed", "removed"])
def test_a_workflow_deleted_by_hand_is_made_again_when_it_changes_and_its_prune_counts_as_done(
    tmp_path: Path, kind: str, then: str
) -> None:
    """The not-found answers of both Alibaba products, end to end. A not-found missed makes a prune
    of what is already gone refused for ever, or fails the update of a workflow deleted in the
    console; a refusal taken for not-found marks a prune done though the object stays."""
    (wf,), rest = _unlinked(1)
    job = Job(tmp_path, kind)
    job.source([wf, *rest])
    assert job.run().returncode == 0
    _deleted_by_hand(job, wf.name)
    if then == "changed":
        job.source([_changed(wf, "settings"), *rest])  # on EMR, a change of the flow itself
        again = job.run()
        assert again.returncode == 0, again.stderr[-3000:]
        assert job.states()[wf.key] == "done"
        objects, _ = job.sandbox()
        assert wf.name in objects
    else:
        job.source(rest)
        pruned = job.run("--prune")
        assert pruned.returncode == 0, pruned.stderr[-3000:]
        assert f"pruned: 1 deleted at the target: {wf.name}" in pruned.stderr
        assert job.target_ids()[wf.key] is None
