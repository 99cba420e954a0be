"""``migrator plan``: what a run would do, with every lossy translation, and not one write.

The golden files hold, per workflow name, what the plan says of each workflow whose translation
loses something (its warnings, grouped by rule) or that a run would refuse. They are the
provider issues' 200-flow inventories: an EMR dump into DataWorks and an EnOS dump into EMR,
read from the raw export files of a sandbox the test fills first. ``MIGRATOR_UPDATE_GOLDEN=1``
rewrites them; a change there is a change of translation and is reviewed as one.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from migrator.engine.target import sandbox_data_path
from migrator.model import Workflow
from migrator.sample import generate, write_jsonl
from migrator.sandbox.server import inspect
from migrator.store import Move, Record, State, Store
from tests.engine.support import ROOT, migrator

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MIGRATOR_UPDATE_GOLDEN") == "1"


def _job(tmp: Path, name: str, source: str, target: str, mode: str = "migrate") -> tuple[Path, Path]:
    job = tmp / f"{name}.toml"
    job.write_text(
        f'[job]\nname = "{name}"\nmode = "{mode}"\n[source]\n{source}\n[target]\nprovider = "{target}"\n'
        'folder = "mig"\nsubmitter = "etl"\n'
    )
    config = tmp / f"{name}.config.toml"
    config.write_text(f'[state]\npath = "{name}.db"\n[providers.{target}]\nsandbox = true\n')
    return job, config


def _calls(kind: str, data: Path) -> int:
    """Every call the sandbox has answered (reads too), by its own count."""
    if not data.exists():
        return 0
    _, calls = anyio.run(inspect, kind, data)
    return sum(sum(by_outcome.values()) for by_outcome in calls.values())


def _dump(tmp: Path, kind: str, workflows: list[Workflow]) -> Path:
    """Fill a ``kind`` sandbox with ``workflows`` and export its raw files, as a user's dump."""
    inv = tmp / "seed.jsonl"
    write_jsonl(inv, workflows)
    job, config = _job(tmp, "seed", f'paths = ["{inv}"]', kind)
    assert (run := migrator("run", job, "--config", config)).returncode == 0, run.stderr[-3000:]
    dump = tmp / "dump"
    snap = migrator("export", kind, "--raw", dump, "--config", config)
    assert snap.returncode == 0, snap.stderr[-3000:]
    return dump


def _lossy(plan: dict[str, Any]) -> dict[str, Any]:
    """The golden view: per workflow name, its refusal or its warnings by rule (lossless ones left out)."""
    out: dict[str, Any] = {}
    for item in plan["items"]:
        if item["code"] is None and not item["warnings"]:
            continue
        rules: dict[str, list[str]] = {}
        for warning in item["warnings"]:
            rules.setdefault(warning["rule"], []).append(warning["message"])
        entry: dict[str, Any] = {"action": item["action"], "rules": rules}
        if item["code"] is not None:
            entry["refused"] = {"code": item["code"], "detail": item["detail"]}
        out[item["name"]] = entry
    return dict(sorted(out.items()))


def _check_golden(name: str, lossy: dict[str, Any]) -> None:
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(lossy, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    expected = json.loads(path.read_text())
    assert sorted(lossy) == sorted(expected), "the set of lossy workflows changed"
    for workflow, entry in expected.items():
        assert lossy[workflow] == entry, workflow


@pytest.mark.parametrize(
    ("source", "target", "seed", "golden"),
    [("emr", "dataworks", 23, "plan-emr-dump-to-dataworks"), ("enos", "emr", 43, "plan-enos-dump-to-emr")],
)
def test_a_plan_of_a_200_flow_dump_lists_the_golden_lossy_items_and_sends_nothing(
    tmp_path: Path, source: str, target: str, seed: int, golden: str
) -> None:
    workflows = list(generate(210, seed=seed))
    dump = _dump(tmp_path, source, workflows)
    job, config = _job(tmp_path, "plan", f'kind = "{source}-export"\npaths = ["{dump}"]', target)
    state = tmp_path / "plan.db"
    data = sandbox_data_path(state, target)

    result = migrator("plan", job, "--config", config, "--format", "json")
    assert result.returncode in (0, 1), result.stderr[-3000:]
    plan = json.loads(result.stdout)
    summary = plan["summary"]
    assert summary["read"] == len(plan["items"]) == 210
    assert sum(summary["actions"].values()) == 210
    assert summary["actions"]["create"] + summary["actions"]["invalid"] == 210
    assert result.returncode == (1 if summary["actions"]["invalid"] else 0)
    # Every warning of the listing is counted under its rule in the summary, and nothing else is.
    per_rule: dict[str, set[str]] = {}
    for item in plan["items"]:
        for warning in item["warnings"]:
            per_rule.setdefault(warning["rule"], set()).add(item["key"])
    assert {r: len(keys) for r, keys in per_rule.items()} == {
        r: v["items"] for r, v in summary["warnings"].items()
    }
    _check_golden(golden, _lossy(plan))

    assert not state.exists(), "a plan writes no state database"
    assert _calls(target, data) == 0, "a plan sends nothing to the target"

    # A run then does what the plan said, and warns of exactly what the plan warned of.
    run = migrator("run", job, "--config", config)
    assert run.returncode == result.returncode, run.stderr[-3000:]
    conn = sqlite3.connect(state)
    try:
        joined = "SELECT name, warnings.warnings FROM items LEFT JOIN warnings USING (job, key)"
        warned = {name: json.loads(w or "[]") for name, w in conn.execute(joined)}
    finally:
        conn.close()
    planned = {i["name"]: [f"{w['rule']}: {w['message']}" for w in i["warnings"]] for i in plan["items"]}
    assert warned == planned


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_sync_plan_lists_the_changed_new_and_removed_and_changes_no_byte(tmp_path: Path) -> None:
    workflows = list(generate(30, seed=5))
    inv = tmp_path / "inv.jsonl"
    write_jsonl(inv, workflows)
    job, config = _job(tmp_path, "nightly", f'paths = ["{inv}"]', "dataworks", mode="sync")
    assert (run := migrator("run", job, "--config", config)).returncode == 0, run.stderr[-3000:]
    changed = {workflows[3].key, workflows[7].key}
    kept = [
        w.model_copy(update={"description": w.description + " (v2)"}) if w.key in changed else w
        for w in workflows
        if w.key != workflows[11].key
    ]
    added = list(generate(33, seed=99))[-2:]
    write_jsonl(inv, [*kept, *added])
    state = tmp_path / "nightly.db"
    data = sandbox_data_path(state, "dataworks")
    before = (_digest(state), _calls("dataworks", data))

    result = migrator("plan", job, "--config", config, "--format", "csv")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    by_action: dict[str, set[str]] = {}
    for row in rows:
        by_action.setdefault(row["action"], set()).add(row["key"])
    assert by_action == {
        "update": changed,
        "create": {w.key for w in added},
        "skip": {w.key for w in kept} - changed,
        "orphaned": {workflows[11].key},
    }
    assert (_digest(state), _calls("dataworks", data)) == before, "the plan wrote or called nothing"


def test_a_plan_refuses_cycles_and_what_waits_behind_an_invalid_upstream(tmp_path: Path) -> None:
    def wf(name: str, upstream: list[str], cron: str = "0 0 2 * * ?") -> dict[str, Any]:
        return {
            "source": {"system": "emr", "id": name},
            "name": name,
            "schedule": {"cron": cron},
            "tasks": [{"name": "t", "kind": "shell", "content": "echo"}],
            "upstream": upstream,
        }

    records = [
        wf("a", ["emr:b"]),
        wf("b", ["emr:a"]),
        wf("after_cycle", ["emr:a"]),
        wf("later", ["emr:first"]),  # its upstream comes later in the file
        wf("first", []),
        wf("broken", [], cron="0 0 2 * * ? 2030"),  # DataWorks has no year field
        wf("behind", ["broken"]),
        wf("outside", ["emr:not-in-this-job"]),
    ]
    inv = tmp_path / "inv.jsonl"
    inv.write_text("".join(json.dumps(r) + "\n" for r in records))
    job, config = _job(tmp_path, "deps", f'paths = ["{inv}"]', "dataworks")
    result = migrator("plan", job, "--config", config, "--format", "json")
    assert result.returncode == 1, result.stderr[-3000:]
    items = {i["name"]: i for i in json.loads(result.stdout)["items"]}
    assert list(items) == [r["name"] for r in records], "in the inventory's order"
    assert {n: (i["action"], i["code"]) for n, i in items.items()} == {
        "a": ("invalid", "DependencyCycle"),
        "b": ("invalid", "DependencyCycle"),
        "after_cycle": ("invalid", "DependencyCycle"),
        "later": ("create", None),
        "first": ("create", None),
        "broken": ("invalid", "Untranslatable"),
        "behind": ("blocked", "UpstreamFailed"),
        "outside": ("create", None),
    }
    assert items["a"]["detail"].endswith("emr:a -> emr:b -> emr:a")
    assert items["b"]["detail"].endswith("emr:b -> emr:a -> emr:b")
    assert items["after_cycle"]["detail"].endswith("emr:a -> emr:b -> emr:a"), "as a run names it"
    assert "'broken'" in items["behind"]["detail"]
    assert any(w["rule"] == "upstream-workflows" for w in items["outside"]["warnings"]), items["outside"]
    table = migrator("plan", job, "--config", config)
    assert table.returncode == 1
    assert "DependencyCycle" in table.stdout
    assert "Untranslatable" in table.stdout


def test_ctrl_c_stops_a_long_plan_at_once_and_it_left_nothing(tmp_path: Path) -> None:
    inv = tmp_path / "inv.jsonl"
    write_jsonl(inv, generate(20000, seed=3))
    job, config = _job(tmp_path, "big", f'paths = ["{inv}"]', "dataworks")
    command = [sys.executable, "-m", "migrator", "plan", str(job), "--config", str(config)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    assert proc.poll() is None, "still planning"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 3, err[-3000:]
    assert "interrupted: a plan writes nothing" in err
    assert not (tmp_path / "big.db").exists()


def test_a_plan_piped_into_head_ends_quietly(tmp_path: Path) -> None:
    """`migrator plan JOB --format csv | head` is how a plan is skimmed: no traceback when head
    closes the pipe."""
    inv = tmp_path / "inv.jsonl"
    write_jsonl(inv, generate(300, seed=3))
    job, config = _job(tmp_path, "skim", f'paths = ["{inv}"]', "dataworks")
    plan = f"{sys.executable} -m migrator plan {job} --config {config} --format csv"
    piped = subprocess.run(
        ["sh", "-c", f"{plan} | head -2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert piped.stdout.splitlines()[0].startswith("key,name,action"), piped.stdout
    assert len(piped.stdout.splitlines()) == 2
    assert "Traceback" not in piped.stderr, piped.stderr[-3000:]
    assert "BrokenPipeError" not in piped.stderr, piped.stderr[-3000:]


def test_a_plan_blocks_what_waits_on_a_failed_or_unsettled_upstream_and_skips_what_is_parked(
    tmp_path: Path,
) -> None:
    """What the store says of upstreams and parked items is what the run's gate acts on."""
    records = [
        {"name": n, "source": {"system": "t", "id": n}, "tasks": [{"name": "a"}], "upstream": ups}
        for n, ups in (("failed_up", []), ("behind_failed", ["t:failed_up"]), ("behind_stuck", ["t:stuck"]),
                       ("parked", []))
    ]  # fmt: skip
    inv = tmp_path / "inv.jsonl"
    inv.write_text("".join(json.dumps(r) + "\n" for r in records))
    job, config = _job(tmp_path, "deps", f'paths = ["{inv}"]', "dataworks")

    async def seed() -> None:
        async with await Store.open(tmp_path / "deps.db") as store:
            run = await store.start_run("deps", "migrate", "dataworks")
            await store.apply("deps", run, [
                Record("t:failed_up", "failed_up", "x", "dataworks", State.FAILED, error_code="Boom"),
                Record("t:stuck", "stuck", "x", "dataworks", State.SUBMITTING),  # not in this source
                Record("t:parked", "parked", "x", "dataworks", State.PENDING),
                Move("t:parked", frozenset({State.PENDING}), State.PARKED, {"not_before": time.time() + 99}),
            ])  # fmt: skip
            await store.finish_run(run, "stopped")

    anyio.run(seed)
    result = migrator("plan", job, "--config", config, "--format", "json")
    assert result.returncode == 1, result.stderr[-3000:]
    items = {i["name"]: i for i in json.loads(result.stdout)["items"]}
    assert (items["failed_up"]["action"], items["parked"]["action"]) == ("skip", "skip")
    assert "parked until" in items["parked"]["detail"]
    assert (items["behind_failed"]["action"], items["behind_failed"]["code"]) == ("blocked", "UpstreamFailed")
    assert "'t:failed_up' is failed" in items["behind_failed"]["detail"]
    assert (items["behind_stuck"]["action"], items["behind_stuck"]["code"]) == ("blocked", "UpstreamFailed")
    assert "'t:stuck' is submitting" in items["behind_stuck"]["detail"]


def test_user_text_in_a_plan_is_shown_not_interpreted(tmp_path: Path) -> None:
    """Names are user data: rich markup in them is printed as written, a formula stays text."""
    name = "=HYPERLINK(1)[/x]"
    record = {"name": name, "source": {"system": "t", "id": "w"}, "tasks": [{"name": "a"}],
              "schedule": {"cron": "0 0 2 * * ? 2030"}}  # fmt: skip
    inv = tmp_path / "inv.jsonl"
    inv.write_text(json.dumps(record) + "\n")
    job, config = _job(tmp_path, "text", f'paths = ["{inv}"]', "dataworks")
    table = migrator("plan", job, "--config", config)
    assert table.returncode == 1, table.stderr[-3000:]
    assert "[/x]" in table.stdout
    sheet = migrator("plan", job, "--config", config, "--format", "csv")
    (row,) = list(csv.DictReader(io.StringIO(sheet.stdout)))
    assert row["name"] == "'" + name


def test_a_plan_decides_more_workflows_with_upstreams_than_a_page_holds(tmp_path: Path) -> None:
    """Deferred lines are read back a page at a time (each holds its whole record): 450 in a chain
    span three pages, and every one is decided with its upstream, none skipped or repeated."""
    records = [
        {
            "source": {"system": "emr", "id": f"w{i:03d}"},
            "name": f"w{i:03d}",
            "schedule": {"cron": "0 0 2 * * ?"},
            "tasks": [{"name": "t", "kind": "shell", "content": "echo"}],
            "upstream": [f"emr:w{i - 1:03d}"] if i else [],
        }
        for i in range(451)
    ]
    inv = tmp_path / "inv.jsonl"
    inv.write_text("".join(json.dumps(r) + "\n" for r in records))
    job, config = _job(tmp_path, "chain", f'paths = ["{inv}"]', "dataworks")
    result = migrator("plan", job, "--config", config, "--format", "json")
    assert result.returncode == 0, result.stderr[-3000:]
    items = json.loads(result.stdout)["items"]
    assert [i["name"] for i in items] == [r["name"] for r in records]
    assert {i["action"] for i in items} == {"create"}
    assert not any(w["rule"] == "upstream-workflows" for i in items for w in i["warnings"])
