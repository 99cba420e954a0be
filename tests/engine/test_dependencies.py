"""Cross-workflow dependencies: upstreams reach the target first, whatever the inventory order."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any, Literal

import aiohttp
import anyio
import pytest

from migrator.config import Config, JobConfig, SourceConfig, TargetConfig
from migrator.engine.gate import Gate
from migrator.engine.pipeline import KEPT_AT_TARGET, Digester, Outcome, Pipeline, compare
from migrator.engine.plan import planning
from migrator.engine.source import open_source
from migrator.engine.target import open_provider
from migrator.inventory import Entry
from migrator.model import Workflow
from migrator.providers.dataworks.render import node_id, workflow_id
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.server import SandboxHandle, running
from migrator.store import Item, Move, RunCost, State, Store
from migrator.translate.mapping import Mappings
from tests.engine.support import provider_config


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxHandle]:
    async with running(
        "dataworks", SandboxSettings(data_path=tmp_path / "sb.db", job_delay=(0.05, 0.15))
    ) as h:
        yield h


def wf(name: str, upstream: tuple[str, ...] = (), tasks: tuple[str, ...] = ("a", "b")) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"system": "t", "id": name},
        "upstream": list(upstream),
        "tasks": [{"name": t} for t in tasks],
        "edges": [{"upstream": x, "downstream": y} for x, y in itertools.pairwise(tasks)],
    }


async def migrate(
    tmp_path: Path,
    handle: SandboxHandle,
    records: list[dict[str, Any]],
    name: str = "deps",
    target: TargetConfig | None = None,
    store_class: type[Store] = Store,
    pause_before: str | None = None,
    mode: Literal["migrate", "sync"] = "migrate",
) -> Outcome:
    """Migrate ``records`` into the sandbox; ``pause_before`` names a record the source reads only
    after a pause, so that what came before it is translated and sent first."""
    inv = tmp_path / f"{name}.jsonl"
    inv.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = provider_config(handle, concurrency=4)
    job = JobConfig(
        name=name,
        mode=mode,
        source=SourceConfig(paths=(inv,)),
        target=target or TargetConfig(provider="dw"),
        path=Path("deps.toml"),
    )
    state = tmp_path / "state.db"
    async with (
        await store_class.open(state) as store,
        open_provider(cfg, state) as (provider, effective),
        open_source(job.source, Config(providers={}), state) as source,
    ):

        async def paced() -> AsyncIterator[Entry]:
            async for entry in source():
                if entry.name == pause_before:
                    await anyio.sleep(1)
                yield entry

        return await Pipeline(job, effective, provider, store, paced).run()


async def plan(
    tmp_path: Path, handle: SandboxHandle, records: list[dict[str, Any]], name: str = "deps"
) -> dict[str, tuple[str, str]]:
    """What a sync of ``records`` would do: each key's action and detail."""
    inv = tmp_path / f"{name}-plan.jsonl"
    inv.write_text("".join(json.dumps(r) + "\n" for r in records))
    job = JobConfig(
        name=name,
        mode="sync",
        source=SourceConfig(paths=(inv,)),
        target=TargetConfig(provider="dw"),
        path=Path("deps.toml"),
    )
    state = tmp_path / "state.db"
    async with (
        await Store.open(state) as store,
        open_provider(provider_config(handle), state) as (provider, _),
        open_source(job.source, Config(providers={}), state) as source,
        planning(job, provider, store, source) as planned,
    ):
        return {p.key: (p.action, p.detail) for p in planned.items()}


def depends_on(spec: dict[str, Any]) -> set[str]:
    """The outputs a DataWorks workflow's nodes depend on."""
    return {x["output"] for dep in spec["dependencies"] for x in dep["depends"]}


async def events_of(tmp_path: Path, key: str, job: str = "deps") -> list[tuple[Any, ...]]:
    async with await Store.open(tmp_path / "state.db") as store:
        return await store.events(job, key)


async def calls(handle: SandboxHandle) -> int:
    """Every call the sandbox has answered."""
    async with aiohttp.ClientSession() as s, s.get(f"{handle.endpoint}/_sandbox/calls") as resp:
        return sum(n for by_outcome in (await resp.json()).values() for n in by_outcome.values())


async def specs(handle: SandboxHandle) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{handle.endpoint}/_sandbox/objects") as resp:
        return {
            d["name"]: d["spec"]["spec"]["workflows"][0] for d in (await resp.json())["workflow_definitions"]
        }


async def items(tmp_path: Path, job: str = "deps") -> dict[str, Any]:
    async with await Store.open(tmp_path / "state.db") as store:
        return {i.key: i for i in await store.in_states(job, list(State))}


async def warnings(tmp_path: Path, job: str = "deps") -> dict[str, tuple[str, ...]]:
    async with await Store.open(tmp_path / "state.db") as store:
        return {key: found async for key, found in store.each_warned(job)}


async def test_downstream_listed_first_still_lands_after_its_upstreams(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    # ads depends on dws (by key) and on ods (by name); listed in reverse order
    records = [
        wf(
            "ads",
            (
                "t:dws",
                "ods",
            ),
        ),
        wf("dws", ("t:dwd",)),
        wf("dwd", ("ods",)),
        wf("ods"),
    ]
    outcome = await migrate(tmp_path, sandbox, records)
    assert outcome.exit_code == 0, outcome.counts
    stored = await specs(sandbox)
    deps = {d["nodeId"]: {x["output"] for x in d["depends"]} for d in stored["ads"]["dependencies"]}
    entry = node_id("t:ads", "a")
    assert deps[entry] == {workflow_id("t:dws"), workflow_id("t:ods")}
    assert deps[node_id("t:ads", "b")] == {node_id("t:ads", "a")}, "inner edges stay inner"
    async with await Store.open(tmp_path / "state.db") as store:
        done_order = [e[2] for e in await store.events("deps") if e[4] == "done"]
    assert (
        done_order.index("t:ods")
        < done_order.index("t:dwd")
        < done_order.index("t:dws")
        < done_order.index("t:ads")
    )


async def test_cycles_external_references_and_broken_upstreams(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    records = [
        wf("x", ("t:y",)),
        wf("y", ("t:z",)),
        wf("z", ("t:x",)),
        wf("after_cycle", ("t:x",)),
        wf("outside", ("t:not_in_this_job",)),
        # waits on a workflow that waits outside the job: a chain, not a cycle
        wf("behind_outside", ("t:outside_too",)),
        wf("outside_too", ("t:not_in_this_job_either",)),
        {"name": "broken", "source": {"system": "t", "id": "broken"}, "tasks": []},
        wf("behind_broken", ("t:broken",)),
    ]
    outcome = await migrate(tmp_path, sandbox, records)
    found = await items(tmp_path)
    assert outcome.exit_code == 1
    for key in ("t:x", "t:y", "t:z", "t:after_cycle"):
        assert (found[key].state, found[key].error_code) == (State.INVALID, "DependencyCycle"), key
    assert "t:x -> t:y -> t:z -> t:x" in (found["t:x"].error_message or "")
    assert found["t:outside"].state is State.DONE
    assert found["t:outside_too"].state is State.DONE
    assert found["t:behind_outside"].state is State.DONE, found["t:behind_outside"].error_message
    warned = await warnings(tmp_path)
    assert any("'t:not_in_this_job'" in w and w.startswith("upstream-workflows") for w in warned["t:outside"])
    assert found["t:broken"].state is State.INVALID
    assert (found["t:behind_broken"].state, found["t:behind_broken"].error_code) == (
        State.FAILED,
        "UpstreamFailed",
    )
    stored = await specs(sandbox)
    assert set(stored) == {"outside", "outside_too", "behind_outside"}
    deps = {
        d["nodeId"]: {x["output"] for x in d["depends"]} for d in stored["behind_outside"]["dependencies"]
    }
    assert workflow_id("t:outside_too") in deps[node_id("t:behind_outside", "a")]


async def test_an_upstream_outside_the_job_is_carried_through_the_upstreams_mapping(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    assert (await migrate(tmp_path, sandbox, [wf("up")], name="first")).exit_code == 0
    mapped = Mappings(upstreams={"t:up": workflow_id("t:up")})
    records = [
        wf("down", ("t:up",)),
        {**wf("down_on_task"), "upstream": [{"workflow": "t:up", "task": "b"}]},
    ]
    target = TargetConfig(provider="dw", mappings=mapped)
    outcome = await migrate(tmp_path, sandbox, records, name="second", target=target)
    assert outcome.exit_code == 0, outcome.counts
    stored = await specs(sandbox)
    for name in ("down", "down_on_task"):
        deps = {d["nodeId"]: {x["output"] for x in d["depends"]} for d in stored[name]["dependencies"]}
        assert deps[node_id(f"t:{name}", "a")] == {workflow_id("t:up")}, name
    warned = await warnings(tmp_path, "second")
    assert "t:down" not in warned
    (warning,) = warned["t:down_on_task"]
    assert warning.startswith("upstream-workflows: the dependency on task 'b' of 't:up'"), warning


class _SlowJudge(Store):
    """The downstream's upstream lookup is slow: its upstream settles while it is being judged."""

    async def items(self, job: str, keys: Iterable[str]) -> dict[str, Item]:
        keys = list(keys)
        found = await super().items(job, keys)
        if keys == ["t:a"]:
            await anyio.sleep(3)  # the answer is stale by the time the gate acts on it
        return found


async def test_an_upstream_that_settles_while_its_downstream_is_judged_still_releases_it(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    """The wake comes before the downstream is held, so nothing wakes it: a lost wake once left it
    `pending` at the end of a run that otherwise completed (exit 3, "stopped with 1 unsettled")."""
    # a is sent before b is read; b's judge reads a in flight, and a is done by the time it acts.
    records = [wf("a"), wf("b", ("t:a",))]
    outcome = await migrate(tmp_path, sandbox, records, store_class=_SlowJudge, pause_before="b")
    assert outcome.exit_code == 0, outcome.counts
    assert (await items(tmp_path))["t:b"].state is State.DONE


async def test_a_stopped_run_holds_no_downstream_in_memory(
    tmp_path: Path, sandbox: SandboxHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a quota stop the reader still records the rest of the inventory as `pending`; a
    workflow waiting on an upstream must not be held (with its whole record) until the run ends."""
    held: list[str] = []
    original = Gate.hold

    def hold(gate: Gate, entry: Entry, row: Item | None, waits_on: Iterable[str]) -> None:
        held.append(entry.key)
        original(gate, entry, row, waits_on)

    monkeypatch.setattr(Gate, "hold", hold)
    async with await Store.open(tmp_path / "state.db") as store:
        earlier = await store.start_run("deps", "migrate", "dw")
        until = time.time() + 3600
        await store.finish_run(earlier, "stopped", RunCost(stopped="daily quota", parked_until=until))
    records = [wf("up"), *(wf(f"down{n}", ("t:up",)) for n in range(5))]
    outcome = await migrate(tmp_path, sandbox, records)
    assert outcome.stopped is not None
    assert {s: n for s, n in outcome.counts.items() if n} == {"pending": 6}
    assert held == []
    assert await specs(sandbox) == {}


async def test_a_name_two_workflows_have_fails_its_dependant_saying_so_and_an_orphan_does_not_count(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    """A reference by name that two workflows answer was taken as not found: the dependant went
    ahead with no dependency and a warning that the upstream is outside the job. An orphaned
    item of that name (the old item of a workflow given a new source id) does not count."""
    # In two folders: DataWorks keeps one workflow to a path.
    twins = [dict(wf("U"), source={"system": "t", "id": f"u{i}"}, folder=f"f{i}") for i in (1, 2)]
    outcome = await migrate(tmp_path, sandbox, [wf("D", ("U",)), *twins])
    found = await items(tmp_path)
    assert outcome.exit_code == 1
    assert (found["t:D"].state, found["t:D"].error_code) == (State.FAILED, "UpstreamFailed")
    assert (
        found["t:D"].error_message == "upstream 'U' names 2 workflows ('t:u1', 't:u2'): refer to one by key"
    )

    # u1 leaves the source (orphaned by a sync); a new dependant E of "U" resolves to u2.
    again = await migrate(tmp_path, sandbox, [twins[1]], mode="sync")
    assert again.exit_code == 0
    assert (await items(tmp_path))["t:u1"].state is State.ORPHANED
    last = await migrate(tmp_path, sandbox, [twins[1], wf("E", ("U",))], mode="sync")
    assert last.exit_code == 0
    deps = {
        d["nodeId"]: {x["output"] for x in d["depends"]} for d in (await specs(sandbox))["E"]["dependencies"]
    }
    assert deps[node_id("t:E", "a")] == {workflow_id("t:u2")}


async def test_a_sync_judges_a_workflow_failed_behind_its_upstream_again(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    """D failed because its upstream U was invalid; the next night U is fixed but D is not
    changed: D is judged again and lands, where it stayed failed for good."""
    broken = {"name": "U", "source": {"system": "t", "id": "U"}, "tasks": []}
    first = await migrate(tmp_path, sandbox, [broken, wf("D", ("t:U",))], mode="sync")
    assert first.exit_code == 1
    assert (await items(tmp_path))["t:D"].error_code == "UpstreamFailed"
    fixed = await migrate(tmp_path, sandbox, [wf("U"), wf("D", ("t:U",))], mode="sync")
    assert fixed.exit_code == 0
    assert {k: i.state for k, i in (await items(tmp_path)).items()} == {"t:U": State.DONE, "t:D": State.DONE}
    assert set(await specs(sandbox)) == {"U", "D"}


async def test_a_sync_sends_a_dependant_only_once_it_has_read_its_upstream_again(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    """U's task b is renamed c, and D, listed before U, now depends on U.c. Judged on U's state
    from the last run (done), D was imported before U's update and refused ("no node declares
    the output"), then stayed failed; and a D behind an upstream invalid last run was failed,
    though the source had fixed it. D now waits until this run has read U."""

    def d(task: str) -> dict[str, Any]:
        return {**wf("D"), "upstream": [{"workflow": "t:U", "task": task}]}

    first = await migrate(tmp_path, sandbox, [d("b"), wf("U", tasks=("a", "b"))], mode="sync")
    assert first.exit_code == 0
    renamed = await migrate(
        tmp_path, sandbox, [d("c"), wf("U", tasks=("a", "c"))], mode="sync", pause_before="U"
    )
    found = await items(tmp_path)
    assert renamed.exit_code == 0, {k: (i.state, i.error_message) for k, i in found.items()}
    deps = {x["output"] for dep in (await specs(sandbox))["D"]["dependencies"] for x in dep["depends"]}
    assert node_id("t:U", "c") in deps

    broken = {"name": "V", "source": {"system": "t", "id": "V"}, "tasks": []}
    await migrate(tmp_path, sandbox, [broken], name="fixed", mode="sync")
    behind = {**wf("E"), "upstream": ["t:V"]}
    fixed = await migrate(tmp_path, sandbox, [behind, wf("V")], name="fixed", mode="sync", pause_before="V")
    assert fixed.exit_code == 0
    assert {k: i.state for k, i in (await items(tmp_path, "fixed")).items()} == {
        "t:V": State.DONE,
        "t:E": State.DONE,
    }


async def test_a_repeated_line_does_not_make_its_name_ambiguous(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    """A repeated inventory line is an invalid item keyed by its origin, with the workflow's
    name: a dependant naming that workflow must still find the one workflow."""
    outcome = await migrate(tmp_path, sandbox, [wf("U"), wf("U"), wf("D", ("U",))])
    found = await items(tmp_path)
    assert outcome.exit_code == 1  # the repeated line
    assert found["t:D"].state is State.DONE, found["t:D"].error_message
    assert found["t:U"].state is State.DONE


async def test_a_dependant_of_a_broken_upstream_stays_failed_quietly_until_it_is_fixed(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    """Judged again each night, a workflow failed behind its upstream recorded a pending and a
    failure every night while the upstream stayed broken; and once that upstream left the source
    without ever landing, it waited as pending for good (exit 3 every night)."""
    broken = {"name": "U", "source": {"system": "t", "id": "U"}, "tasks": []}
    first = await migrate(tmp_path, sandbox, [broken, wf("D", ("t:U",))], mode="sync")
    assert first.exit_code == 1

    async def events() -> int:
        async with await Store.open(tmp_path / "state.db") as store:
            return sum(1 for e in await store.events("deps") if e[2] == "t:D")

    before = await events()
    for _ in range(2):  # still broken; then gone from the source (orphaned, never landed)
        night = await migrate(tmp_path, sandbox, [broken, wf("D", ("t:U",))], mode="sync")
        assert night.exit_code == 1
    for _ in range(2):
        night = await migrate(tmp_path, sandbox, [wf("D", ("t:U",))], mode="sync")
        assert night.exit_code == 1
    found = await items(tmp_path)
    assert found["t:U"].state is State.ORPHANED
    assert (found["t:D"].state, found["t:D"].error_code) == (State.FAILED, "UpstreamFailed")
    assert await events() == before, "nothing recorded while its upstream still blocks it"


async def test_a_sync_gives_an_unchanged_dependant_the_upstream_that_arrived_since(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    """D names t:U, which is not in the source on the first night: D lands without the
    dependency, with a warning. U arrives the next night; D's record is unchanged, and a sync
    digesting only the record skipped D every night after, never giving it the dependency."""
    first = await migrate(tmp_path, sandbox, [wf("D", ("t:U",))], mode="sync")
    assert first.exit_code == 0
    assert workflow_id("t:U") not in depends_on((await specs(sandbox))["D"])

    both = [wf("D", ("t:U",)), wf("U")]
    assert await plan(tmp_path, sandbox, both) == {
        "t:D": ("update", "its upstreams resolve to other workflows now: updated at the target"),
        "t:U": ("create", "new"),
    }
    second = await migrate(tmp_path, sandbox, both, mode="sync")
    assert second.exit_code == 0
    assert workflow_id("t:U") in depends_on((await specs(sandbox))["D"])
    assert (await items(tmp_path))["t:D"].state is State.DONE

    before = await calls(sandbox)
    assert await plan(tmp_path, sandbox, both) == {
        "t:D": ("skip", "unchanged since last submitted"),
        "t:U": ("skip", "unchanged since last submitted"),
    }
    third = await migrate(tmp_path, sandbox, both, mode="sync")
    assert third.exit_code == 0
    assert {k: i.state for k, i in (await items(tmp_path)).items()} == {
        "t:D": State.SKIPPED,
        "t:U": State.SKIPPED,
    }
    assert await calls(sandbox) == before, "an unchanged night sends nothing"


async def test_a_sync_moves_a_dependant_to_an_upstream_given_a_new_source_id_the_same_night(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    """U comes back under a new source id with the same name; D names it and is unchanged. D
    kept depending on the old, orphaned U. And while the run reads, the old U (not read yet)
    and the new one both answer the name: D waits until the read says which is gone."""

    def u(sid: str, folder: str) -> dict[str, Any]:
        return {**wf("U"), "source": {"system": "t", "id": sid}, "folder": folder}

    # In another folder: DataWorks keeps one workflow to a path, and the orphan keeps its own.
    first = await migrate(tmp_path, sandbox, [u("u1", "old"), wf("D", ("U",))], mode="sync")
    assert first.exit_code == 0
    second = await migrate(
        tmp_path, sandbox, [wf("D", ("U",)), u("u2", "new")], mode="sync", pause_before="U"
    )
    found = await items(tmp_path)
    assert second.exit_code == 0, {k: (i.state, i.error_message) for k, i in found.items()}
    assert (found["t:u1"].state, found["t:u2"].state, found["t:D"].state) == (
        State.ORPHANED,
        State.DONE,
        State.DONE,
    )
    outputs = depends_on((await specs(sandbox))["D"])
    assert workflow_id("t:u2") in outputs
    assert workflow_id("t:u1") not in outputs


async def test_an_unchanged_dependant_of_an_upstream_broken_tonight_stays_as_it_is(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    """U's record goes bad; D (unchanged) is at the target, depending on the U last submitted,
    which the target keeps. D is not failed behind U: it is skipped, saying why it was not
    compared (once), and the fault is reported on U."""
    first = await migrate(tmp_path, sandbox, [wf("U"), wf("D", ("t:U",))], mode="sync")
    assert first.exit_code == 0
    broken = {"name": "U", "source": {"system": "t", "id": "U"}, "tasks": []}
    night = await migrate(tmp_path, sandbox, [broken, wf("D", ("t:U",))], mode="sync")
    assert night.exit_code == 1
    found = await items(tmp_path)
    assert found["t:U"].state is State.INVALID
    assert (found["t:D"].state, found["t:D"].error_code) == (State.SKIPPED, None)
    events = await events_of(tmp_path, "t:D")
    assert "its upstreams not compared: upstream workflow 't:U' is invalid" in str(events[-1][7])
    again = await migrate(tmp_path, sandbox, [broken, wf("D", ("t:U",))], mode="sync")
    assert again.exit_code == 1
    assert await events_of(tmp_path, "t:D") == events, "said once, not each night U stays broken"
    assert (await items(tmp_path))["t:D"].state is State.SKIPPED


async def test_a_dependant_submitted_by_an_earlier_release_is_updated_once(
    tmp_path: Path, sandbox: SandboxHandle
) -> None:
    """A release before this one digested the record alone: what its upstreams resolved to then
    is not known, so a dependant is updated once, saying why, then skipped as before."""
    records = [wf("U"), wf("D", ("t:U",))]
    assert (await migrate(tmp_path, sandbox, records, mode="sync")).exit_code == 0
    with sqlite3.connect(tmp_path / "state.db") as db:  # as the earlier release left it
        db.execute("UPDATE items SET submitted_hash = substr(submitted_hash, 1, 64) WHERE key = 't:D'")
    db.close()
    assert (await migrate(tmp_path, sandbox, records, mode="sync")).exit_code == 0
    events = await events_of(tmp_path, "t:D")
    assert any("a release that did not digest what its upstreams resolved to" in str(e[7]) for e in events)
    assert (await items(tmp_path))["t:D"].state is State.DONE
    before = await calls(sandbox)
    assert (await migrate(tmp_path, sandbox, records, mode="sync")).exit_code == 0
    assert (await items(tmp_path))["t:D"].state is State.SKIPPED
    assert await calls(sandbox) == before


def test_an_orphan_back_in_the_source_leaves_orphaned_before_its_upstreams_are_compared() -> None:
    """D, orphaned one night, is back unchanged: it was compared only once its upstreams
    resolved, and stayed `orphaned` while it waited (say, on an upstream parked by the quota),
    so the night's --prune deleted a workflow that was in the source."""
    workflow = Workflow.model_validate(wf("D", ("t:U",)))
    digest = Digester(TargetConfig(provider="dw"))
    row = Item(
        "deps", "t:D", "D", "inv:1", "dw", f"{digest(workflow)}+r", f"{digest(workflow)}+r",
        State.ORPHANED, 1, "T1", None, None, None, 0, None, None, 1, 0.0, 0.0, 1,
    )  # fmt: skip
    compared = compare(row, workflow, digest)
    assert compared is not None
    assert compared.resolve
    moves = [c for c in compared.changes if isinstance(c, Move)]
    assert [(m.expect, m.to) for m in moves] == [(frozenset({State.ORPHANED}), State.SKIPPED)]


def _u(sid: str, name: str = "U", upstream: tuple[str, ...] = ()) -> dict[str, Any]:
    """U under source id ``sid``, in a folder of its own: DataWorks keeps one workflow to a path,
    and the orphan of an id given up keeps its path."""
    return {**wf(name, upstream), "source": {"system": "t", "id": sid}, "folder": sid}


@pytest.mark.parametrize(
    ("nights", "planned"),
    [
        pytest.param(
            [[wf("A", ("t:B",)), wf("B")], [wf("A", ("t:B",)), wf("B", ("t:A",))]],
            {"t:A": "skip", "t:B": "invalid"},
            id="a-changed-workflow-closes-a-cycle-through-an-unchanged-dependant-of-its-own",
        ),
        pytest.param(
            [
                [_u("U"), wf("D", ("U",)), wf("E", ("t:U",))],
                [_u("U", "V"), wf("D", ("U",)), wf("E", ("t:U",))],
            ],
            {"t:U": "update", "t:D": "update", "t:E": "update"},
            id="an-upstream-renamed",
        ),
        pytest.param(
            [[_u("u1"), wf("D", ("U",))], [_u("u2"), wf("D", ("U",))], [wf("D", ("U",))]],
            {"t:D": "skip", "t:u1": "orphaned", "t:u2": "orphaned"},
            id="an-upstream-re-keyed-then-gone",
        ),
    ],
)
async def test_a_sync_plan_says_what_the_run_then_does_with_dependants(
    tmp_path: Path, sandbox: SandboxHandle, nights: list[list[dict[str, Any]]], planned: dict[str, str]
) -> None:
    """The plan resolved references on its own terms: it took an unchanged workflow compared with
    its upstreams as deferred (a cycle where the run updated), a renamed upstream's old name as
    still answering, and a name two orphans share as outside the job (an update every night that
    the run never made).

    A changed workflow that now depends on an unchanged dependant of its own closes a cycle: the
    run took that dependant as it stood at the target and landed the cycle on DataWorks (EMR
    refused it). Now both refuse it, and the target keeps the version last submitted."""
    for records in nights[:-1]:
        assert (await migrate(tmp_path, sandbox, records, mode="sync")).exit_code == 0
    said = {key: action for key, (action, _) in (await plan(tmp_path, sandbox, nights[-1])).items()}
    assert said == planned
    before = await calls(sandbox)
    outcome = await migrate(tmp_path, sandbox, nights[-1], mode="sync")
    assert outcome.exit_code == (1 if "invalid" in planned.values() else 0)
    found = await items(tmp_path)
    done = {State.DONE: "update", State.SKIPPED: "skip", State.ORPHANED: "orphaned", State.INVALID: "invalid"}
    assert {key: done[found[key].state] for key in planned} == planned
    for key in (k for k, action in planned.items() if action == "invalid"):
        assert found[key].error_code == "DependencyCycle"
        assert str(found[key].error_message).endswith(KEPT_AT_TARGET)
    assert (await calls(sandbox) == before) == ("update" not in planned.values())
