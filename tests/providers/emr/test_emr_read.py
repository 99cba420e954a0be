"""Reading EMR back: render.py inverted through the real sandbox, export files, folder paths.

The round trip renders sample workflows, creates them in the EMR sandbox over signed HTTP exactly as
a migration would, describes them and reads them back with :func:`workflow_from_emr`. What comes
back must equal the original up to the losses render.py documents (:data:`render.CARRIED`), and
the only remaining differences must be the fields of :data:`render.NOT_CARRIED`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from migrator import sample
from migrator.config import ProviderConfig
from migrator.inventory import Entry
from migrator.model import Alerts, Dependency, Source, TaskKind, Workflow
from migrator.providers.acs import AcsClient
from migrator.providers.base import UpstreamTarget
from migrator.providers.emr import render as emr_render
from migrator.providers.emr.read import (
    EmrDocumentError,
    folder_path,
    read_export,
    workflow_from_emr,
    write_export,
)
from migrator.providers.emr.render import (
    DEFAULT_TIMEZONE,
    MAX_RETRY,
    MAX_RETRY_INTERVAL,
    NOT_CARRIED,
    UNDER_SCHEDULE,
)
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.server import running
from migrator.translate.kinds import TYPES

VERSION = "2016-04-08"
SEED = 13  # its 30 workflows cover every feature: paused, ended, weekly, parents, alerts, secrets...
#: NOT_CARRIED entries are "field (why)", the field first, tasks' fields as "task.x" (dumped: "tasks.x").
NOT_CARRIED_FIELDS = frozenset(
    "tasks." + field.removeprefix("task.") if field.startswith("task.") else field
    for field in (entry.split()[0] for entry in NOT_CARRIED)
)
PAGE = 100
PLAIN = {"secrets": "plain"}  # dumps with secret variable values, so a changed secret is a difference


class Emr:
    """The sandbox's one project through the migrator's signed client, plus the test's chores."""

    def __init__(self, client: AcsClient, identity: Mapping[str, str]) -> None:
        self.client = client
        self.project, self.region, self.cluster = (
            identity["project_id"],
            identity["region_id"],
            identity["cluster_id"],
        )
        self._folders: dict[str, str] = {}

    async def call(
        self, action: str, query: Mapping[str, str] | None = None, form: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        scoped = {"RegionId": self.region, "ProjectId": self.project, **(query or {})}
        return await self.client.call(action, query=scoped, form=form)

    async def pages(self, action: str, outer: str, inner: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            data = await self.call(action, {"PageNumber": str(len(items) // PAGE + 1), "PageSize": str(PAGE)})
            found = data[outer][inner]
            items += found
            if len(found) < PAGE:
                return items

    async def folder(self, path: str) -> str | None:
        """The FLOW category of ``path``, created level by level (what ParentCategory points at)."""
        parent: str | None = None
        walked = ""
        for name in (p for p in path.split("/") if p):
            walked = f"{walked}/{name}"
            if walked not in self._folders:
                query = {"Name": name, "Type": "FLOW", **({"ParentId": parent} if parent else {})}
                self._folders[walked] = (await self.call("CreateFlowCategory", query))["Id"]
            parent = self._folders[walked]
        return parent

    async def create(self, wf: Workflow, upstream: Mapping[str, str]) -> str:
        """Jobs, then the flow over them, then (unless paused) the schedule: as a migration does."""
        targets = {ref: UpstreamTarget(ref, ref, flow_id) for ref, flow_id in upstream.items()}
        plan = emr_render.render(
            wf, project_id=self.project, region=self.region, cluster_id=self.cluster, upstream=targets
        )
        job_ids = {}
        for job in plan.jobs:
            job_ids[job.task] = (await self.client.call("CreateFlowJob", query=job.query, form=job.form))[
                "Id"
            ]
        category = await self.folder(plan.folder)
        query = {**plan.query, **({"ParentCategory": category} if category else {})}
        form = {**plan.form, "Graph": plan.graph(job_ids)}
        flow_id = str((await self.client.call("CreateFlowForWeb", query=query, form=form))["Id"])
        if plan.scheduled:
            modify = {**query, "Id": flow_id, "Status": UNDER_SCHEDULE, "Periodic": "true"}
            await self.client.call("ModifyFlowForWeb", query=modify, form=form)
        return flow_id

    async def categories(self) -> dict[str, dict[str, Any]]:
        listed = await self.pages("ListFlowCategory", "Categories", "Category")
        return {c["Id"]: await self.call("DescribeFlowCategory", {"Id": c["Id"]}) for c in listed}

    async def describe(self, flow_id: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """DescribeFlow and the DescribeFlowJob of every job its Graph names."""
        flow = await self.call("DescribeFlow", {"Id": flow_id})
        ids = {
            n["attribute"]["jobId"] for n in json.loads(flow["Graph"])["nodes"] if "jobId" in n["attribute"]
        }
        return flow, {i: await self.call("DescribeFlowJob", {"Id": i}) for i in sorted(ids)}


@pytest.fixture
async def emr() -> AsyncIterator[Emr]:
    async with running("emr", SandboxSettings()) as handle, aiohttp.ClientSession() as session:
        cfg = ProviderConfig(
            kind="emr",
            name="emr",
            endpoint=handle.endpoint,
            access_key_id=SecretStr(handle.credentials["access_key_id"]),
            access_key_secret=SecretStr(handle.credentials["access_key_secret"]),
        )
        yield Emr(AcsClient(cfg, session, VERSION), handle.identity)


@dataclass(frozen=True)
class Migrated:
    original: Workflow
    flow_id: str


async def migrate(emr: Emr, count: int, seed: int = SEED) -> list[Migrated]:
    done: list[Migrated] = []
    created: dict[str, str] = {}
    for wf in sample.generate(count, seed=seed):
        created[wf.key] = await emr.create(wf, created)
        done.append(Migrated(wf, created[wf.key]))
    return done


async def read_live(emr: Emr, flow_id: str, categories: Mapping[str, Mapping[str, Any]]) -> Workflow:
    flow, jobs = await emr.describe(flow_id)
    return workflow_from_emr(flow, jobs, folder=folder_path(flow.get("CategoryId"), categories))


def expected_back(wf: Workflow, flow_id: str, created: Mapping[str, str]) -> Workflow:
    """The original with render.py's documented losses applied; NOT_CARRIED fields left as they were."""
    tasks = tuple(
        t.model_copy(
            update={
                "kind": t.kind if t.kind in TYPES["emr"] else TaskKind.SHELL,  # SHELL placeholders
                "max_retries": min(t.max_retries, MAX_RETRY),  # clamped, with a warning
                "retry_interval": float(min(round(t.retry_interval), MAX_RETRY_INTERVAL)),
                "timeout": float(int(t.timeout)) if t.timeout else None,  # whole seconds
                "parameters": {**wf.parameters, **t.parameters},  # workflow parameters merged in
                "run": t.run.model_copy(update={"mode": (t.run.mode or "YARN").upper()}),  # EMR's default
            }
        )
        for t in wf.tasks
    )
    return wf.model_copy(
        update={
            "source": Source(system="emr", id=flow_id),  # EMR assigns the id
            "parameters": {},
            "upstream": tuple(Dependency(workflow=f"emr:{created[key]}") for key in wf.upstream_workflows()),
            "tasks": tasks,
            "edges": tuple(dict.fromkeys(wf.edges)),
        }
    )


def without_not_carried(wf: Workflow) -> Workflow:
    """What EMR can say about NOT_CARRIED fields: nothing (and the schedule is in EMR's zone)."""
    schedule = wf.schedule and wf.schedule.model_copy(update={"timezone": DEFAULT_TIMEZONE})
    alerts = wf.alerts.model_copy(update={"channels": ()})
    tasks = tuple(t.model_copy(update={"run": t.run.model_copy(update={"cluster": None})}) for t in wf.tasks)
    return wf.model_copy(update={"owners": (), "alerts": alerts, "schedule": schedule, "tasks": tasks})


def differences(a: Any, b: Any, path: str = "") -> set[str]:
    """Dotted paths (list indexes dropped) where two model dumps differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return set().union(*(differences(a.get(k), b.get(k), f"{path}.{k}".lstrip(".")) for k in a | b))
    rows = isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b)
    if rows and all(isinstance(x, dict) for x in (*a, *b)):
        return set().union(set(), *(differences(x, y, path) for x, y in zip(a, b, strict=True)))
    return set() if a == b else {path}


def by_key(entries: list[Entry]) -> dict[str, Workflow]:
    assert [e.error for e in entries if e.error] == []
    return {e.key: e.workflow for e in entries if e.workflow is not None}


# --- the round trip ----------------------------------------------------------------------------


async def test_round_trip_through_the_sandbox_loses_only_what_render_says(emr: Emr) -> None:
    migrated = await migrate(emr, 30)
    created = {m.original.key: m.flow_id for m in migrated}
    categories = await emr.categories()
    seen: set[str] = set()
    for m in migrated:
        back = await read_live(emr, m.flow_id, categories)
        expected = expected_back(m.original, m.flow_id, created)
        diff = differences(expected.model_dump(context=PLAIN), back.model_dump(context=PLAIN))
        assert diff <= NOT_CARRIED_FIELDS, (m.original.name, diff - NOT_CARRIED_FIELDS)
        assert back == without_not_carried(expected), m.original.name
        seen |= diff
        if back.schedule is not None and back.schedule.start is not None:
            assert back.schedule.start.utcoffset() == timedelta(hours=8)
            assert str(back.schedule.start.tzinfo) == DEFAULT_TIMEZONE
    # The comparison does see the NOT_CARRIED losses (the sample's timezones are all EMR's own).
    assert seen == NOT_CARRIED_FIELDS - {"schedule.timezone"}
    # ...and the sample exercised what needs inverting, or this test would prove little.
    originals = [m.original for m in migrated]
    assert any(w.schedule and w.schedule.paused for w in originals)
    assert any(w.schedule and w.schedule.end for w in originals)
    assert any(len(w.upstream) > 1 for w in originals)
    assert any(w.parameters for w in originals)
    assert any(t.kind not in TYPES["emr"] for w in originals for t in w.tasks)
    assert any(v.secret for w in originals for t in w.tasks for v in t.variables)
    assert all(w.schedule is None or w.schedule.timezone == DEFAULT_TIMEZONE for w in originals)


async def test_list_flow_items_read_as_describe_flow_less_the_parents(emr: Emr) -> None:
    migrated = await migrate(emr, 8)
    categories = await emr.categories()
    listed = {f["Id"]: f for f in await emr.pages("ListFlow", "Flow", "Flow")}
    assert set(listed) == {m.flow_id for m in migrated}
    for m in migrated:
        flow, jobs = await emr.describe(m.flow_id)
        assert "ParentFlowList" not in listed[m.flow_id]
        assert "Application" not in listed[m.flow_id]
        folder = folder_path(flow.get("CategoryId"), categories)
        from_list = workflow_from_emr(listed[m.flow_id], jobs, folder=folder)
        assert from_list == workflow_from_emr(flow, jobs, folder=folder).model_copy(update={"upstream": ()})


# --- the DAG, one flow at a time ---------------------------------------------------------------------


async def one_flow(emr: Emr) -> tuple[Workflow, dict[str, Any], dict[str, dict[str, Any]]]:
    """A sample flow with at least one edge between jobs, as migrated and as described."""
    for m in await migrate(emr, 6):
        if m.original.edges:
            flow, jobs = await emr.describe(m.flow_id)
            return workflow_from_emr(flow, jobs), flow, jobs
    raise AssertionError("no sample flow with edges")


def graph_of(flow: Mapping[str, Any]) -> dict[str, Any]:
    graph: dict[str, Any] = json.loads(flow["Graph"])
    return graph


async def test_application_stands_in_for_a_missing_graph(emr: Emr) -> None:
    wf, flow, jobs = await one_flow(emr)
    without_graph = {k: v for k, v in flow.items() if k != "Graph"}
    from_application = workflow_from_emr(without_graph, jobs)
    assert set(from_application.edges) == set(wf.edges)  # listed by upstream node, not in Graph order
    assert from_application.model_copy(update={"edges": wf.edges}) == wf
    with pytest.raises(EmrDocumentError, match="Graph: is missing, and so is Application"):
        workflow_from_emr({k: v for k, v in without_graph.items() if k != "Application"}, jobs)


async def test_a_job_in_two_nodes_is_two_tasks_and_unlabelled_nodes_use_the_job_name(emr: Emr) -> None:
    wf, flow, jobs = await one_flow(emr)
    graph = graph_of(flow)
    first = next(n for n in graph["nodes"] if n["attribute"]["type"] == "JOB")
    twin = {**first, "id": "twin0001"}  # the same job, same label, in a second node
    unlabelled = {k: v for k, v in first.items() if k != "label"} | {"id": "nolabel1"}
    graph["nodes"] += [twin, unlabelled]
    graph["edges"] += [
        {"source": first["id"], "target": "twin0001"},
        {"source": "start", "target": "nolabel1"},
    ]
    back = workflow_from_emr({**flow, "Graph": json.dumps(graph)}, jobs)
    name = first["label"]
    assert [t.name for t in back.tasks] == [*(t.name for t in wf.tasks), f"{name}_2", f"{name}_3"]
    assert back.tasks[-2].model_copy(update={"name": name}) == wf.tasks[0]
    assert back.edges[-1].model_dump() == {"upstream": name, "downstream": f"{name}_2"}
    # START -> nolabel1 is no edge between tasks; the job's Name less "<flow>." would be the name,
    # but that is taken, so it is suffixed too.
    assert back.edges[:-1] == wf.edges
    alone = {**graph, "nodes": [unlabelled], "edges": []}
    assert [t.name for t in workflow_from_emr({**flow, "Graph": json.dumps(alone)}, jobs).tasks] == [name]


async def test_malformed_flows_name_the_flow_and_the_field(emr: Emr) -> None:
    _wf, flow, jobs = await one_flow(emr)
    flow_id = flow["Id"]
    graph = graph_of(flow)
    job_nodes = [n for n in graph["nodes"] if n["attribute"]["type"] == "JOB"]
    edge = next(e for e in graph["edges"] if e["source"] != "start" and e["target"] != "end")
    cyclic = {**graph, "edges": [*graph["edges"], {"source": edge["target"], "target": edge["source"]}]}
    some_job = job_nodes[0]["attribute"]["jobId"]
    secret = "s3cr3t-Value"
    scheduled = {**flow, "CronExpr": "0 0 1 * * ?", "StartSchedule": 1_700_000_000_000}

    def job(**fields: Any) -> dict[str, dict[str, Any]]:
        return {**jobs, some_job: {**jobs[some_job], **fields}}

    no_name = json.dumps({"variables": [{"value": secret}]})
    bad_alerts = json.dumps({"items": [{"alertUserGroupIdList": secret}]})
    at = f"jobs[{some_job}]"
    cases: list[tuple[dict[str, Any], dict[str, dict[str, Any]], str]] = [
        ({**flow, "Graph": json.dumps(cyclic)}, jobs, "Graph: the JOB nodes form a cycle"),
        (flow, {k: v for k, v in jobs.items() if k != some_job}, "Graph.nodes[2].attribute.jobId: names job"),
        (flow, job(Type="TRINO_SQL"), f"{at}.Type: is not a job type"),
        (flow, job(ParamConf="{" + secret), f"{at}.ParamConf: is not valid JSON"),
        (flow, job(MaxRetry=secret), f"{at}.MaxRetry: must be a number"),
        (flow, job(CustomVariables=no_name), f"{at}.CustomVariables.variables[0]: must be an object"),
        ({**flow, "Graph": secret}, jobs, "Graph: is not valid JSON"),
        ({**flow, "AlertConf": bad_alerts}, jobs, "AlertConf.items[0].alertUserGroupIdList: must be a list"),
        ({**scheduled, "StartSchedule": secret}, jobs, "StartSchedule: must be a number"),
        ({**scheduled, "EndSchedule": 1}, jobs, "schedule: schedule.start"),
        ({k: v for k, v in flow.items() if k != "Name"}, jobs, "Name: is missing"),
    ]
    for doc, job_docs, message in cases:
        with pytest.raises(EmrDocumentError) as caught:
            workflow_from_emr(doc, job_docs)
        assert caught.value.flow == flow_id
        assert str(caught.value).startswith(f"flow {flow_id}: {message}"), str(caught.value)
        assert secret not in str(caught.value)
    assert issubclass(EmrDocumentError, ValueError)
    with pytest.raises(EmrDocumentError, match=r"^flow \?: Id: is missing$"):
        workflow_from_emr({k: v for k, v in flow.items() if k != "Id"}, jobs)


def test_flow_fields_read_from_either_spelling_and_list_shape() -> None:
    """Gson's camelCase and flat lists (MigrationX) read as the API's PascalCase and wrapped lists."""
    graph = {
        "nodes": [
            {"id": "s", "attribute": {"type": "START"}},
            {"id": "a", "label": "extract", "attribute": {"type": "JOB", "jobId": "FJ-1"}},
            {"id": "b", "attribute": {"type": "JOB", "jobId": "FJ-2"}},
            {"id": "e", "attribute": {"type": "END"}},
        ],
        "edges": [
            {"source": "s", "target": "a"},
            {"source": "a", "target": "b"},
            {"source": "b", "target": "e"},
        ],
    }
    alerts = {
        "items": [
            {"enable": True, "eventId": "EMR-210401001", "alertUserGroupIdList": ["AUG-1"]},
            {"enable": False, "eventId": "EMR-110401002", "alertUserGroupIdList": ["AUG-9"]},
            {
                "eventId": "EMR-110401015",
                "alertUserGroupIdList": ["AUG-2", "AUG-1"],
                "alertDingDingGroupList": ["ADG-1"],
            },
        ]
    }
    api_flow = {
        "Id": "F-1",
        "Name": "daily",
        "CronExpr": "0 0 2 * * ?",
        "StartSchedule": 1_700_000_000_123,
        "Status": "STOP_SCHEDULE",
        "Graph": json.dumps(graph),
        "AlertConf": json.dumps(alerts),
        "ParentFlowList": {"ParentFlow": [{"ParentFlowId": "F-0"}, {"ParentFlowId": "F-0"}]},
    }
    run_conf = {"memory": 2048, "cores": 2, "queue": "etl", "userName": "hadoop", "priority": 3}
    variables = {"variables": [{"name": "pw", "value": "x", "properties": {"password": True}}]}
    api_jobs = {
        "FJ-1": {
            "Id": "FJ-1", "Name": "daily.extract", "Type": "SPARK", "Params": "--class A a.jar",
            "ResourceList": {"Resource": [{"Path": "oss://b/a.jar", "Alias": ""}]}, "mode": "LOCAL",
            "MaxRetry": "2", "RetryInterval": 30, "MaxRunningTimeSec": 0, "FailAct": "CONTINUE",
            "RunConf": json.dumps(run_conf), "CustomVariables": json.dumps(variables),
        },
        "FJ-2": {"Id": "FJ-2", "Name": "daily.load", "Type": "HIVE_SQL", "ParamConf": '{"n": 1}'},
    }  # fmt: skip
    wf = workflow_from_emr(api_flow, api_jobs, folder="/a/b/", system="emr-old")
    assert wf.key == "emr-old:F-1"
    assert wf.folder == "a/b"
    assert wf.upstream_workflows() == ["emr-old:F-0"]
    assert wf.schedule is not None
    assert wf.schedule.paused
    assert wf.schedule.start == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert wf.alerts == Alerts(
        on_failure=True, on_task_failure=True, recipients=("AUG-1", "AUG-2"), dingtalk_groups=("ADG-1",)
    )
    extract, load = wf.tasks
    assert (extract.name, load.name) == ("extract", "load")
    assert [(e.upstream, e.downstream) for e in wf.edges] == [("extract", "load")]
    assert (extract.kind, extract.max_retries, extract.retry_interval) == (TaskKind.SPARK, 2, 30)
    assert extract.timeout is None
    assert extract.failure_action.value == "continue"
    assert extract.run.model_dump() == {
        "queue": "etl", "memory_mb": 2048, "cores": 2.0, "priority": 3, "user": "hadoop", "mode": "LOCAL",
        "cluster": None,
    }  # fmt: skip
    assert [(r.path, r.alias) for r in extract.resources] == [("oss://b/a.jar", None)]
    assert [(v.name, v.plain(), v.secret) for v in extract.variables] == [("pw", "x", True)]
    assert load.parameters == {"n": "1"}

    def gson(value: Any) -> Any:  # by hand, not with the module's own helper
        if isinstance(value, dict):
            return {
                k[0].lower() + k[1:]: gson(v["Resource"] if k == "ResourceList" else v)
                for k, v in value.items()
            }
        return [gson(v) for v in value] if isinstance(value, list) else value

    flat_parents = [{"parentFlowId": "F-0"}]
    java_flow = {
        **gson({k: v for k, v in api_flow.items() if k != "ParentFlowList"}),
        "parentFlowList": flat_parents,
    }
    java_jobs = {k: gson(v) for k, v in api_jobs.items()}
    assert "resourceList" in java_jobs["FJ-1"]
    assert "cronExpr" in java_flow
    assert workflow_from_emr(java_flow, java_jobs, folder="a/b", system="emr-old") == wf


# --- folders ------------------------------------------------------------------------------------


def test_folder_path_walks_parents_and_stops_at_loops_and_unknown_ids() -> None:
    categories = {
        "FC-1": {"Id": "FC-1", "Name": "warehouse"},
        "FC-2": {"Id": "FC-2", "Name": "ods", "ParentId": "FC-1"},
        "FC-3": {"id": "FC-3", "name": "mysql", "parentId": "FC-2"},  # Gson's spelling
        "FC-4": {"Id": "FC-4", "Name": "x", "ParentId": "FC-5"},
        "FC-5": {"Id": "FC-5", "Name": "y", "ParentId": "FC-4"},
        "FC-6": {"Id": "FC-6", "Name": "orphan", "ParentId": "FC-404"},
        "FC-7": {"Id": "FC-7", "Name": "self", "ParentId": "FC-7"},
    }
    assert folder_path("FC-3", categories) == "warehouse/ods/mysql"
    assert folder_path("FC-1", categories) == "warehouse"
    assert folder_path(None, categories) == ""
    assert folder_path("", categories) == ""
    assert folder_path("FC-404", categories) == ""
    assert folder_path("FC-4", categories) == "y/x"
    assert folder_path("FC-5", categories) == "x/y"
    assert folder_path("FC-6", categories) == "orphan"
    assert folder_path("FC-7", categories) == "self"


# --- export files -----------------------------------------------------------------------------------


@dataclass
class Snapshot:
    project: dict[str, Any]
    listed: list[dict[str, Any]]
    flows: dict[str, dict[str, Any]]
    jobs: list[dict[str, Any]]
    categories: dict[str, dict[str, Any]]
    live: dict[str, Workflow]


async def snapshot(emr: Emr, count: int) -> Snapshot:
    """What ``AliyunEmrService.dump`` fetches (ListFlowProject, ListFlow + DescribeFlow, ListFlowJob +
    DescribeFlowJob, DescribeFlowCategory), plus each flow read live for comparison."""
    await migrate(emr, count)
    project = (await emr.call("ListFlowProject"))["Projects"]["Project"][0]
    listed = await emr.pages("ListFlow", "Flow", "Flow")
    flows = {f["Id"]: await emr.call("DescribeFlow", {"Id": f["Id"]}) for f in listed}
    jobs = [
        await emr.call("DescribeFlowJob", {"Id": j["Id"]})
        for j in await emr.pages("ListFlowJob", "JobList", "Job")
    ]
    categories = await emr.categories()
    live = {}
    for flow_id in flows:
        wf = await read_live(emr, flow_id, categories)
        live[wf.key] = wf
    return Snapshot(project, listed, flows, jobs, categories, live)


def dump(snap: Snapshot, directory: Path) -> Path:
    pairs = [(item, snap.flows[item["Id"]]) for item in snap.listed]
    write_export(directory, snap.project, iter(pairs), iter(snap.jobs), categories=snap.categories)
    return directory / snap.project["Name"]


async def test_write_export_writes_migrationx_layout_and_read_export_reads_it_back(
    emr: Emr, tmp_path: Path
) -> None:
    snap = await snapshot(emr, 12)
    project_dir = dump(snap, tmp_path / "dump")
    name = snap.project["Name"]

    info = json.loads((tmp_path / "dump" / ".package_info.txt").read_text())
    assert (info["type"], info["exporter"]) == ("ALIYUN_EMR", "migrator")
    assert json.loads((project_dir / f"{name}.json").read_text())["id"] == snap.project["Id"]
    assert sorted(p.name for p in (project_dir / "job").iterdir()) == sorted(
        f"{j['Id']}.json" for j in snap.jobs
    )
    assert (project_dir / "job" / f"{snap.jobs[0]['Id']}.json").stat().st_mode & 0o777 == 0o600
    flow_files = sorted(p.name for p in (project_dir / "flow").iterdir())
    assert flow_files == sorted(n for f in snap.flows for n in (f"{f}.json", f"{f}.detail.json"))

    # Gson over the Java SDK: camelCase fields, lists not double-wrapped, detail = DescribeFlow + extras.
    job = json.loads((project_dir / "job" / f"{snap.jobs[0]['Id']}.json").read_text())
    assert {"id", "name", "type", "params", "mode", "adhoc", "resourceList"} <= set(job)
    assert isinstance(job["resourceList"], list)
    with_parents = next(f for f in snap.flows.values() if f["ParentFlowList"]["ParentFlow"])
    detail = json.loads((project_dir / "flow" / f"{with_parents['Id']}.detail.json").read_text())
    assert detail["parentFlowList"] == [
        {k[0].lower() + k[1:]: v for k, v in p.items()} for p in with_parents["ParentFlowList"]["ParentFlow"]
    ]
    assert {"graph", "application", "categoryId"} <= set(detail)
    assert detail["project"]["name"] == name
    assert detail["path"] == snap.live[f"emr:{with_parents['Id']}"].folder != ""
    item = json.loads((project_dir / "flow" / f"{with_parents['Id']}.json").read_text())
    assert "parentFlowList" not in item
    assert "application" not in item

    # cronExpr carries DataWorks' day-of-week numbers (Sunday 7), as MigrationX's CronUtil writes it.
    weekly = next(f for f in snap.flows.values() if f.get("CronExpr", "? ?").split()[-1].isdigit())
    stored = json.loads((project_dir / "flow" / f"{weekly['Id']}.detail.json").read_text())["cronExpr"]
    quartz_day = int(weekly["CronExpr"].split()[-1])
    assert int(stored.split()[-1]) == (quartz_day - 2) % 7 + 1
    assert stored.split()[:-1] == weekly["CronExpr"].split()[:-1]

    assert by_key(list(read_export([tmp_path / "dump"]))) == snap.live
    assert by_key(list(read_export([project_dir]))) == snap.live
    assert next(read_export([tmp_path / "dump"], system="emr-old")).key.startswith("emr-old:F-")


async def test_export_directory_is_read_one_flow_at_a_time(emr: Emr, tmp_path: Path) -> None:
    snap = await snapshot(emr, 4)
    project_dir = dump(snap, tmp_path)
    entries = read_export([tmp_path])
    first = next(entries)
    assert first.workflow is not None
    second_id = sorted(snap.flows)[1]
    bad = project_dir / "flow" / f"{second_id}.detail.json"
    bad.write_text('{"id": "' + second_id + '", "graph": ')  # written after the first was read
    second = next(entries)
    assert second.workflow is None
    assert second.key == f"emr:{second_id}"
    assert second.error is not None
    assert str(bad) in second.error
    assert "malformed JSON" in second.error
    assert all(e.workflow is not None for e in entries)


async def test_bad_files_in_an_export_directory_fail_their_flow_only(emr: Emr, tmp_path: Path) -> None:
    snap = await snapshot(emr, 5)
    project_dir = dump(snap, tmp_path)
    flow_ids = sorted(snap.flows)
    victim = graph_of(snap.flows[flow_ids[0]])["nodes"][2]["attribute"]["jobId"]
    secret = "p4ssw0rd-in-content"
    (project_dir / "job" / f"{victim}.json").write_text('{"id": "' + victim + '", "params": "' + secret)
    gone = graph_of(snap.flows[flow_ids[1]])["nodes"][2]["attribute"]["jobId"]
    (project_dir / "job" / f"{gone}.json").unlink()
    (project_dir / "flow" / f"{flow_ids[2]}.json").write_text("[]")

    entries = {e.key: e for e in read_export([tmp_path])}
    assert set(entries) == {f"emr:{f}" for f in flow_ids}
    for flow_id, expected in (
        (flow_ids[0], f"flow {flow_ids[0]}: {project_dir / 'job' / victim}.json: malformed JSON"),
        (flow_ids[1], f"flow {flow_ids[1]}: Graph.nodes[2].attribute.jobId: names job {gone}"),
        (flow_ids[2], f"flow {flow_ids[2]}: {project_dir / 'flow' / flow_ids[2]}.json: not a JSON object"),
    ):
        entry = entries.pop(f"emr:{flow_id}")
        assert entry.error is not None
        assert entry.error.startswith(f"{project_dir / 'flow' / flow_id}.json: {expected}"), entry.error
        assert secret not in entry.error
    assert [e.workflow for e in entries.values()] == [snap.live[k] for k in entries]


def test_a_migrationx_dump_written_by_hand_reads_as_its_flows(tmp_path: Path) -> None:
    """MigrationX's own shape, independent of write_export: Gson field names, flat lists, no Graph
    (an Application only), DataWorks' weekday numbers, a Windows path separator, no project file."""
    flows = tmp_path / "2024_05_01_10_00_00" / "prj" / "flow"
    jobs = tmp_path / "2024_05_01_10_00_00" / "prj" / "job"
    flows.mkdir(parents=True)
    jobs.mkdir()
    application = {
        "nodeDefMap": {
            "n0": {"name": "start", "type": ":start:", "transitions": ["n1"], "dependencies": 0},
            "n1": {"jobId": "FJ-A", "name": "a", "type": ":action:", "transitions": ["n2", "n3"]},
            "n2": {"jobId": "FJ-B", "name": "b", "type": ":action:", "transitions": ["n3"]},
            "n3": {"name": "end", "type": ":end:", "transitions": [], "dependencies": 2},
        }
    }  # fmt: skip
    item = {
        "id": "F-W",
        "name": "weekly",
        "status": "UNDER_SCHEDULE",
        "cronExpr": "0 0 3 ? * 7",
        "periodic": True,
    }
    detail = {
        **item,
        "startSchedule": 1_704_038_400_000,
        "application": json.dumps(application),
        "parentFlowList": [{"parentFlowId": "F-UP", "parentFlowName": "up", "projectName": "prj"}],
        "project": {"id": "FP-1", "name": "prj"},
        "path": "warehouse\\ods",
    }
    (flows / "F-W.json").write_text(json.dumps(item))
    (flows / "F-W.detail.json").write_text(json.dumps(detail))
    (flows / "F-X.json").write_text(
        json.dumps({"id": "F-X", "name": "x", "graph": '{"nodes": [], "edges": []}'})
    )
    (jobs / "FJ-A.json").write_text(
        json.dumps({"id": "FJ-A", "name": "a", "type": "SHELL", "adhoc": "false"})
    )
    (jobs / "FJ-B.json").write_text(
        json.dumps({"id": "FJ-B", "name": "b", "type": "HIVE", "resourceList": [{"path": "oss://x/y.sql"}]})
    )
    (tmp_path / "2024_05_01_10_00_00" / ".package_info.txt").write_text('{"type": "ALIYUN_EMR"}')

    weekly, empty = read_export([tmp_path / "2024_05_01_10_00_00"])
    assert weekly.workflow is not None, weekly.error
    wf = weekly.workflow
    assert (wf.key, wf.folder, wf.upstream_workflows()) == ("emr:F-W", "warehouse/ods", ["emr:F-UP"])
    assert wf.schedule is not None
    assert wf.schedule.cron == "0 0 3 ? * 1"  # DataWorks' 7 (Sunday) is Quartz's 1
    assert not wf.schedule.paused
    assert [(t.name, t.kind) for t in wf.tasks] == [("a", TaskKind.SHELL), ("b", TaskKind.HIVE)]
    assert [(e.upstream, e.downstream) for e in wf.edges] == [("a", "b")]
    assert wf.tasks[1].resources[0].path == "oss://x/y.sql"
    assert empty.error is not None
    assert empty.error.endswith("flow F-X: Graph: has no JOB node")


async def test_json_documents_in_every_file_shape(emr: Emr, tmp_path: Path) -> None:
    snap = await snapshot(emr, 6)
    jobs = {j["Id"]: j for j in snap.jobs}

    def document(flow: dict[str, Any], *, categories: bool = False) -> dict[str, Any]:
        ids = {n["attribute"].get("jobId") for n in graph_of(flow)["nodes"]} - {None}
        doc: dict[str, Any] = {"flow": flow, "jobs": [jobs[i] for i in sorted(ids)]}
        if categories:
            doc["categories"] = list(snap.categories.values())
        else:
            doc["folder"] = snap.live[f"emr:{flow['Id']}"].folder
        return doc

    flows = list(snap.flows.values())
    lines = tmp_path / "flows.jsonl"
    lines.write_text(
        "\n".join(json.dumps(document(f, categories=i % 2 == 1)) for i, f in enumerate(flows)) + "\n\n"
    )
    array = tmp_path / "flows.json"
    array.write_text(json.dumps([document(f) for f in flows]))
    single = tmp_path / "one.json"
    single.write_text("\n  " + json.dumps(document(flows[0])))

    from_lines = list(read_export([lines]))
    assert [e.origin for e in from_lines] == [f"{lines}:{n}" for n in range(1, len(flows) + 1)]
    assert by_key(from_lines) == snap.live
    from_array = list(read_export([array]))
    assert [e.origin for e in from_array] == [f"{array}[{i}]" for i in range(len(flows))]
    assert by_key(from_array) == snap.live
    [one] = read_export([single])
    assert (one.origin, one.workflow) == (str(single), snap.live[f"emr:{flows[0]['Id']}"])
    directory = list(read_export([tmp_path]))  # a directory of documents, files in name order
    assert [e.origin for e in directory] == [f"{array}[{i}]" for i in range(len(flows))] + [
        f"{lines}:{n}" for n in range(1, len(flows) + 1)
    ] + [str(single)]
    [missing] = read_export([tmp_path / "nope.jsonl"])
    assert missing.error == f"{tmp_path / 'nope.jsonl'}: export file not found"


async def test_bad_documents_become_error_entries_and_the_rest_is_read(emr: Emr, tmp_path: Path) -> None:
    snap = await snapshot(emr, 3)
    jobs = {j["Id"]: j for j in snap.jobs}
    flow = next(iter(snap.flows.values()))
    flow_id = flow["Id"]
    job_ids = sorted({n["attribute"].get("jobId") for n in graph_of(flow)["nodes"]} - {None})
    good = {"flow": flow, "jobs": [jobs[i] for i in job_ids], "folder": "x"}
    secret = "hunter2-secret"
    bad_param = {**good, "jobs": [{**jobs[job_ids[0]], "ParamConf": '{"pw": "' + secret}, *good["jobs"][1:]]}
    unknown_job = {**good, "jobs": good["jobs"][1:]}
    lines = [
        json.dumps(good),
        '{"flow": {"Id": "F-1", "Name": "' + secret,
        json.dumps(unknown_job),
        json.dumps(bad_param),
        json.dumps({"flow": "F-1"}),
        json.dumps({**good, "jobs": [{"Name": secret}]}),
        json.dumps(good),
    ]
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join(lines))
    entries = list(read_export([path]))
    assert len(entries) == 7
    assert entries[0].workflow is not None
    assert entries[6].workflow == entries[0].workflow
    errors = [e.error or "" for e in entries[1:6]]
    assert errors[0].startswith(f"{path}:2: malformed JSON")
    node = next(i for i, n in enumerate(graph_of(flow)["nodes"]) if n["attribute"].get("jobId") == job_ids[0])
    assert errors[1] == (
        f"{path}:3: flow {flow_id}: Graph.nodes[{node}].attribute.jobId: names job {job_ids[0]}, "
        "which is not among the flow's jobs"
    )
    assert errors[2].startswith(f"{path}:4: flow {flow_id}: jobs[{job_ids[0]}].ParamConf: is not valid JSON")
    assert errors[3] == f'{path}:5: flow ?: document: must be a JSON object with a "flow" object'
    assert errors[4] == f'{path}:6: flow {flow_id}: jobs[0]: must be an object with an "Id"'
    assert all(secret not in e for e in errors)
    assert [e.key for e in entries[1:6]] == [
        f"{path}:2",
        *[f"emr:{flow_id}"] * 2,
        f"{path}:5",
        f"emr:{flow_id}",
    ]
    assert entries[2].name == flow["Name"]

    array = tmp_path / "export.json"
    array.write_text(
        "[" + json.dumps(good) + ", " + json.dumps(bad_param) + ", " + json.dumps(good) + ', {"flow": '
    )
    first, second, third, broken = read_export([array])
    assert first.workflow is not None
    assert third.workflow is not None
    assert (second.error or "").startswith(f"{array}[1]: flow {flow_id}: jobs[{job_ids[0]}].ParamConf")
    assert (broken.error or "").startswith(f"{array}[3]: malformed JSON after record 2")
    assert secret not in (second.error or "") + (broken.error or "")
