"""The pipeline end to end against the DataWorks sandbox over real loopback HTTP and SQLite."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from migrator.config import Config, JobConfig, PollPolicy, ProviderConfig, SourceConfig, TargetConfig
from migrator.engine.pipeline import Outcome, Pipeline
from migrator.engine.source import open_source
from migrator.engine.target import open_provider
from migrator.model import Workflow
from migrator.providers.dataworks.render import workflow_id
from migrator.sample import generate, write_jsonl
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.server import SandboxHandle, running
from migrator.store import Move, Record, State, Store
from tests.engine.support import Harness, provider_config


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxHandle]:
    settings = SandboxSettings(data_path=tmp_path / "sandbox.db", job_delay=(0.05, 0.3))
    async with running("dataworks", settings) as handle:
        yield handle


def job_for(paths: list[Path]) -> JobConfig:
    return JobConfig(
        name="t",
        source=SourceConfig(paths=tuple(paths)),
        target=TargetConfig(provider="dw"),
        path=Path("t.toml"),
    )


async def run(tmp_path: Path, cfg: ProviderConfig, paths: list[Path]) -> Outcome:
    state = tmp_path / "state.db"
    job = job_for(paths)
    async with (
        await Store.open(state) as store,
        open_provider(cfg, state) as (provider, effective),
        open_source(job.source, Config(providers={}), state) as source,
    ):
        return await Pipeline(job, effective, provider, store, source).run()


async def inspect(handle: SandboxHandle, what: str) -> Any:
    async with aiohttp.ClientSession() as s, s.get(f"{handle.endpoint}/_sandbox/{what}") as resp:
        return await resp.json()


def imports(calls: dict[str, dict[str, int]]) -> int:
    return sum(calls.get("ImportWorkflowDefinition", {}).values())


async def test_migrates_every_workflow_exactly_once_and_a_rerun_costs_no_writes(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    inv = tmp_path / "inv.jsonl"
    workflows = list(generate(40, seed=3))
    write_jsonl(inv, workflows)
    outcome = await run(tmp_path, provider_config(sandbox), [inv])
    assert outcome.exit_code == 0
    assert outcome.counts["done"] == 40
    objects = await inspect(sandbox, "objects")
    defs = objects["workflow_definitions"]
    assert sorted(d["id"] for d in defs) == sorted(workflow_id(w.key) for w in workflows)
    assert all(d["imports"] == 1 for d in defs)
    before = imports(await inspect(sandbox, "calls"))

    again = await run(tmp_path, provider_config(sandbox), [inv])
    assert again.exit_code == 0
    assert again.counts["done"] == 40
    assert imports(await inspect(sandbox, "calls")) == before, "a finished item must not be sent again"
    async with await Store.open(tmp_path / "state.db") as store:
        events = await store.events("t")
        item = await store.item("t", workflows[0].key)
    assert item is not None
    assert (item.remote_job_id is not None, item.submitted_hash == item.content_hash) == (True, True)
    per_item = [e for e in events if e[2] == workflows[0].key]
    assert [(e[3], e[4]) for e in per_item] == [
        (None, "pending"),
        ("pending", "rendered"),
        ("rendered", "submitting"),
        ("submitting", "submitted"),
        ("submitted", "polling"),
        ("polling", "done"),
    ]


async def test_bad_input_is_invalid_with_reasons_and_the_rest_migrates(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    inv = tmp_path / "inv.jsonl"
    good = [json.dumps(w.to_record()) for w in generate(5, seed=9)]
    lines = [
        good[0],
        "{this is not json",
        json.dumps(
            {
                "name": "cyclic",
                "tasks": [{"name": "a"}, {"name": "b"}],
                "edges": [{"upstream": "a", "downstream": "b"}, {"upstream": "b", "downstream": "a"}],
            }
        ),
        json.dumps(
            {"name": "dangling", "tasks": [{"name": "a"}], "edges": [{"upstream": "a", "downstream": "x"}]}
        ),
        json.dumps({"name": "no_tasks"}),
        json.dumps({"name": "yearly", "tasks": [{"name": "a"}], "schedule": {"cron": "0 0 0 1 1 ? 2030"}}),
        good[0],
        *good[1:],
    ]
    inv.write_text("\n".join(lines) + "\n")
    outcome = await run(tmp_path, provider_config(sandbox), [inv])
    assert outcome.exit_code == 1
    assert outcome.counts["done"] == 5
    assert outcome.counts["invalid"] == 6
    async with await Store.open(tmp_path / "state.db") as store:
        invalid = {
            i.key: (i.error_code, i.error_message) for i in await store.in_states("t", [State.INVALID])
        }
    assert invalid[f"{inv}:2"][0] == "InvalidInput"
    assert "malformed JSON" in str(invalid[f"{inv}:2"][1])
    assert "tasks form a cycle: a -> b -> a" in str(invalid["inventory:cyclic"][1])
    assert "names unknown task 'x'" in str(invalid["inventory:dangling"][1])
    assert invalid["inventory:no_tasks"][1] == f"{inv}:5: workflow 'no_tasks': tasks: Field required"
    assert invalid["inventory:yearly"][0] == "Untranslatable"
    assert invalid[f"{inv}:7"][0] == "DuplicateKey"
    assert f"already read at {inv}:1" in str(invalid[f"{inv}:7"][1])
    assert len((await inspect(sandbox, "objects"))["workflow_definitions"]) == 5


async def test_a_job_that_never_finishes_fails_at_its_deadline(tmp_path: Path) -> None:
    settings = SandboxSettings(job_delay=(3600, 3600))
    async with running("dataworks", settings) as handle:
        inv = tmp_path / "inv.jsonl"
        write_jsonl(inv, generate(2, seed=1))
        cfg = provider_config(handle, poll=PollPolicy(initial=0.05, factor=1, max=0.05, deadline=0.4))
        outcome = await run(tmp_path, cfg, [inv])
    assert outcome.counts["failed"] == 2
    async with await Store.open(tmp_path / "state.db") as store:
        failed = await store.in_states("t", [State.FAILED])
    assert {f.error_code for f in failed} == {"AsyncJobTimeout"}
    assert all("still running after 0.4s" in (f.error_message or "") for f in failed)
    assert all(f.polls >= 2 for f in failed)


async def test_rows_left_submitting_are_reconciled_before_anything_is_sent(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    inv = tmp_path / "inv.jsonl"
    workflows = list(generate(3, seed=5))
    write_jsonl(inv, workflows)
    assert (await run(tmp_path, provider_config(sandbox), [inv])).exit_code == 0
    landed, lost, updating = workflows
    # Simulate crashes right after the intent was committed: one first import had landed, one had
    # not, and one was an update of a definition an earlier run made (submitted before). Recorded
    # by the run that read them (run 1), as a crashed run leaves them.
    async with await Store.open(tmp_path / "state.db") as store:
        for line, wf in enumerate((landed, lost, updating), start=1):
            tid = "1234567890123456789" if wf is lost else workflow_id(wf.key)
            first = {} if wf is updating else {"submitted_hash": None}
            record = Record(wf.key, wf.name, f"{inv}:{line}", "dw", State.RENDERED, "old", tid)
            await store.apply("t", 1, [record])
            await store.apply("t", 1, [Move(wf.key, frozenset({State.RENDERED}), State.SUBMITTING, first)])
    before = imports(await inspect(sandbox, "calls"))
    outcome = await run(tmp_path, provider_config(sandbox), [inv])
    assert outcome.counts["done"] == 3
    assert imports(await inspect(sandbox, "calls")) == before + 2, (
        "the lost import is sent again, and the update (its definition exists either way)"
    )
    async with await Store.open(tmp_path / "state.db") as store:
        details = [e[7] for e in await store.events("t") if e[3] == "submitting"]
        assert (await store.item("t", landed.key)).submitted_hash == "old"  # type: ignore[union-attr]
    assert any("reconciled: found at the target" in (d or "") for d in details)
    assert any("reconciled: not found at the target" in (d or "") for d in details)
    assert any("an update was under way" in (d or "") for d in details)


@pytest.mark.parametrize("faults", ["", "server_error = 0.5"], ids=["answered", "unanswered"])
def test_an_enos_workflow_whose_name_another_has_fails_and_takes_over_no_flow(
    tmp_path: Path, faults: str
) -> None:
    """EnOS names flows uniquely per owner and the client finds flows by name. Two workflows of
    one name (other folders, other keys): the second must fail saying so, not adopt the first
    one's flow and end ``done`` with its id, one of them silently lost; also when its import is
    left unanswered (a 5xx), which the client settles by looking the name up."""
    base = next(generate(1, seed=41)).to_record()
    first = Workflow.model_validate(dict(base, folder="team_a", source={"system": "inventory"}, upstream=[]))
    second = Workflow.model_validate(
        dict(
            base,
            folder="team_b",
            source={"system": "inventory"},
            upstream=[],
            tasks=[dict(t, content=t["content"] + "\n# team b") for t in base["tasks"]],
        )
    )
    assert first.key != second.key
    h = Harness(tmp_path, "enos", [first], "max_attempts = 20\nretry_budget = 100000", concurrency=1)
    h.write("")
    assert h.run().returncode == 0
    write_jsonl(tmp_path / "inv.jsonl", [first, second])
    h.write(faults)
    result = h.run()
    assert result.returncode == 1, result.stderr[-3000:]
    assert dict(h.rows("SELECT key, state FROM items")) == {first.key: "done", second.key: "failed"}
    (failed,) = h.rows("SELECT error_code, error_message, target_id FROM items WHERE state = 'failed'")
    assert failed[0] == "NameTaken"
    assert f"the name {first.name!r} is taken at the target by flow" in failed[1]
    assert f"(this job's item {first.key})" in failed[1]
    assert failed[2] is None
    objects, calls = h.sandbox()
    assert [f["flowName"] for f in objects["flows"]] == [first.name]
    assert calls["flows.import"] == {"0": 1}, "the second workflow's import is never sent"
