"""A job file's kinds and mappings, through the engine into the DataWorks sandbox over HTTP.

A workflow whose owner the mapping does not cover is refused at render time (``invalid``, the
reason naming the workflow and the field) and nothing of it is sent; the mapped one lands with
the target's values.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from migrator.config import Config, JobConfig, PollPolicy, ProviderConfig, SourceConfig, TargetConfig
from migrator.engine.pipeline import Pipeline
from migrator.engine.source import open_source
from migrator.engine.target import open_provider
from migrator.model import TaskKind
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.server import SandboxHandle, running
from migrator.store import State, Store
from migrator.translate.mapping import Mappings


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxHandle]:
    async with running(
        "dataworks", SandboxSettings(data_path=tmp_path / "sb.db", job_delay=(0.05, 0.1))
    ) as h:
        yield h


def record(name: str, owner: str) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"system": "emr", "id": name},
        "folder": "etl",
        "owners": [owner],
        "tasks": [{"name": "a", "kind": "pig", "content": "pig -f a.pig", "run": {"cluster": "C-OLD"}}],
    }


async def test_mapped_values_land_and_an_unmapped_owner_is_invalid_before_any_call(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    inventory = tmp_path / "inv.jsonl"
    inventory.write_text(
        "".join(json.dumps(r) + "\n" for r in (record("ok", "alice"), record("stray", "mallory")))
    )
    cfg = ProviderConfig(
        name="dw",
        kind="dataworks",
        endpoint=sandbox.endpoint,
        project_id="10001",
        access_key_id=SecretStr(sandbox.credentials["access_key_id"]),
        access_key_secret=SecretStr(sandbox.credentials["access_key_secret"]),
        poll=PollPolicy(initial=0.05, factor=1.5, max=0.2, deadline=30),
    )
    target = TargetConfig(
        provider="dw",
        kinds={TaskKind.PIG: "EMR_SPARK_SHELL"},
        mappings=Mappings(
            owners={"alice": "110755000425"}, clusters={"C-OLD": "S_rg_1"}, folders={"etl": "dw"}
        ),
    )
    job = JobConfig(
        name="mapped", source=SourceConfig(paths=(inventory,)), target=target, path=Path("m.toml")
    )
    state = tmp_path / "state.db"
    async with (
        await Store.open(state) as store,
        open_provider(cfg, state) as (provider, effective),
        open_source(job.source, Config(providers={}), state) as source,
    ):
        outcome = await Pipeline(job, effective, provider, store, source).run()
        found = {i.name: i for i in await store.in_states("mapped", list(State))}
    assert outcome.exit_code == 1
    assert found["ok"].state is State.DONE
    stray = found["stray"]
    assert (stray.state, stray.error_code) == (State.INVALID, "Untranslatable")
    assert (
        stray.error_message == "workflow 'stray': owners: 'mallory' has no entry in [target.mappings] owners"
    )
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{sandbox.endpoint}/_sandbox/objects") as resp:
            definitions = (await resp.json())["workflow_definitions"]
        async with s.get(f"{sandbox.endpoint}/_sandbox/calls") as resp:
            calls = await resp.json()
    assert sum(calls["ImportWorkflowDefinition"].values()) == 1, "nothing was sent for the invalid workflow"
    (landed,) = definitions
    flow = landed["spec"]["spec"]["workflows"][0]
    (node,) = flow["nodes"]
    assert (flow["owner"], flow["script"]["path"]) == ("110755000425", "dw/ok")
    assert node["script"]["runtime"]["command"] == "EMR_SPARK_SHELL"
    assert node["runtimeResource"] == {"resourceGroup": "S_rg_1"}
