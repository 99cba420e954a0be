"""Updating an EnOS flow: by save where it can (flow and task ids kept), else by replacing it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from migrator.config import Config, JobConfig, ProviderConfig, SourceConfig, TargetConfig
from migrator.engine.pipeline import Pipeline
from migrator.engine.source import open_source
from migrator.engine.target import open_provider
from migrator.errors import ProviderError
from migrator.model import Workflow
from migrator.providers.base import Rendered, UpstreamTarget
from migrator.providers.enos.client import Enos
from migrator.providers.enos.read import workflow_from_enos
from migrator.providers.enos.render import render
from migrator.store import Part, State, Store

UP = {
    "name": "ods_orders",
    "source": {"system": "t", "id": "up"},
    "schedule": {"cron": "0 0 1 * * ?"},
    "tasks": [{"name": "load", "content": "echo load"}],
}
DOWN = {
    "name": "dwd_orders",
    "source": {"system": "t", "id": "down"},
    "owners": ["li.na"],
    "upstream": ["t:up"],
    "schedule": {"cron": "0 30 2 * * ?", "start": "2025-01-01T00:00:00+08:00"},
    "parameters": {"a": "1"},
    "tasks": [{"name": "a", "content": "echo a"}, {"name": "b", "content": "echo b"}, {"name": "c"}],
    "edges": [{"upstream": "a", "downstream": "b"}, {"upstream": "b", "downstream": "c"}],
}


class MemoryParts:
    """The parts of one item, in memory (the pipeline's PartLog writes them to the store)."""

    key = "t:item"

    def __init__(self, flow_id: str | None) -> None:
        self.parts = {} if flow_id is None else {"flow": Part("flow", State.DONE, flow_id)}

    async def owner(self, target_id: str) -> str | None:
        return None

    def get(self, part: str) -> Part | None:
        return self.parts.get(part)

    async def begin(self, part: str) -> None:
        self.parts[part] = Part(part, State.SUBMITTING, None)

    async def done(self, part: str, target_id: str) -> None:
        self.parts[part] = Part(part, State.DONE, target_id)

    def known(self) -> dict[str, Part]:
        return self.parts

    async def gone(self, part: str) -> None:
        self.parts[part] = Part(part, State.ORPHANED, None)


@asynccontextmanager
async def migrated(tmp_path: Path, *records: dict[str, Any]) -> AsyncIterator[tuple[Store, Enos]]:
    """``records`` migrated into an embedded EnOS sandbox; its store and client stay open."""
    inv = tmp_path / "inv.jsonl"
    inv.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = ProviderConfig(name="enos", kind="enos", sandbox=True)
    job = JobConfig(
        name="u", source=SourceConfig(paths=(inv,)), target=TargetConfig(provider="enos"), path=Path("u.toml")
    )
    state = tmp_path / "state.db"
    async with (
        await Store.open(state) as store,
        open_provider(cfg, state) as (provider, effective),
        open_source(job.source, Config(providers={}), state) as source,
    ):
        outcome = await Pipeline(job, effective, provider, store, source).run()
        assert outcome.exit_code == 0, outcome.counts
        assert isinstance(provider, Enos)
        yield store, provider


async def test_update_saves_in_place_keeping_ids_and_replaces_a_flow_whose_tasks_changed(
    tmp_path: Path,
) -> None:
    async with migrated(tmp_path, UP, DOWN) as (store, provider):
        ids = {i.key: i.target_id for i in await store.in_states("u", list(State))}
        before = json.loads((await provider._call("flows", "get", query={"flowId": ids["t:down"]}))["graph"])

        changed = Workflow.model_validate(
            {
                **DOWN,
                "owners": ["zhou.tao"],
                "parameters": {"a": "2"},
                "schedule": {"cron": "0 15 4 * * ?", "start": "2025-02-01T00:00:00+08:00", "paused": True},
                "edges": [{"upstream": "a", "downstream": "c"}, {"upstream": "b", "downstream": "c"}],
            }
        )
        upstream = {"t:up": UpstreamTarget("t:up", "ods_orders", str(ids["t:up"]))}
        plan = render(changed, upstream=upstream)
        parts = MemoryParts(str(ids["t:down"]))
        saved = await provider.submit(Rendered(None, plan), parts, update=True)
        assert saved.target_id == str(ids["t:down"]), "a change save can express keeps the flow id"
        after = await provider._call("flows", "get", query={"flowId": ids["t:down"]})
        struct = await provider._call("flows", "export", query={"flowId": ids["t:down"]})
        expected = workflow_from_enos({**plan.body["flowJson"], "active": 0}, flow_id=str(ids["t:down"]))
        got = workflow_from_enos({**struct, "active": after["active"]}, flow_id=str(ids["t:down"]))
        assert got.to_record() == expected.to_record()
        graph = json.loads(after["graph"])
        assert {t["taskName"]: t["taskId"] for t in graph["tasks"]} == {
            t["taskName"]: t["taskId"] for t in before["tasks"]
        }, "the target's task ids are kept"

        grown = changed.model_copy(
            update={
                "tasks": (
                    *changed.tasks[:2],
                    changed.tasks[2].model_copy(update={"content": "echo C"}),
                    changed.tasks[0].model_copy(update={"name": "d"}),
                )
            }
        )
        replaced = await provider.submit(Rendered(None, render(grown, upstream=upstream)), parts, update=True)
        assert replaced.target_id != str(ids["t:down"]), "new and changed tasks need the flow imported again"
        assert parts.parts["flow"] == Part("flow", State.DONE, replaced.target_id)
        struct = await provider._call("flows", "export", query={"flowId": replaced.target_id})
        assert [t["name"] for t in struct["tasks"]] == ["a", "b", "c", "d"]
        assert next(t for t in struct["tasks"] if t["name"] == "c") == next(
            t for t in render(grown, upstream=upstream).body["flowJson"]["tasks"] if t["name"] == "c"
        )
        assert await provider.find("dwd_orders") == replaced.target_id, "one flow of that name"

        # The upstream is relied on by the downstream: replacing it is refused, saying why.
        up_changed = Workflow.model_validate({**UP, "tasks": [{"name": "load", "content": "echo v2"}]})
        with pytest.raises(ProviderError, match=r"relied on.*tasks changed") as refused:
            await provider.submit(
                Rendered(None, render(up_changed, upstream={})), MemoryParts(str(ids["t:up"])), update=True
            )
        assert refused.value.code == "62104"


async def test_an_import_refused_its_name_adopts_no_flow_when_sent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another flow takes the name between the look-up and the import (a rename saved in the
    meantime), so EnOS refuses the import. The import's intent was left ``submitting``, and
    when the item was sent again the flow found by its name was adopted as the one that import
    made: another workflow's flow, updated (here, replaced) with this one's tasks. A refused
    import leaves no intent: sent again, it is refused the name and the holder is untouched."""
    async with migrated(tmp_path, UP) as (_, provider):
        holder = await provider.find("ods_orders")
        assert holder is not None
        before = await provider._call("flows", "export", query={"flowId": holder})
        rival = Workflow.model_validate(
            {**UP, "source": {"system": "t", "id": "rival"}, "tasks": [{"name": "x", "content": "echo x"}]}
        )
        plan = Rendered(None, render(rival, upstream={}))
        parts = MemoryParts(None)
        honest = provider.find
        looked: list[str] = []

        async def late(name: str) -> str | None:  # the first look-up is made before the rename lands
            looked.append(name)
            return None if len(looked) == 1 else await honest(name)

        monkeypatch.setattr(provider, "find", late)
        for _ in range(2):
            with pytest.raises(ProviderError) as refused:
                await provider.submit(plan, parts)
            assert refused.value.code == "NameTaken"
            assert f"by flow {holder}" in refused.value.message
            assert parts.parts["flow"].state is State.ORPHANED, "no intent left to adopt a flow by"
        assert await honest("ods_orders") == holder
        assert await provider._call("flows", "export", query={"flowId": holder}) == before
