"""The EMR Data Development sandbox over real loopback HTTP: jobs, flows, Graphs, folders, the SDK.

Requests are signed with :mod:`migrator.auth.acs` or sent by the official
``alibabacloud-emr20160408`` SDK, which must work against the sandbox unmodified.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import aiohttp
import anyio
import pytest
from alibabacloud_emr20160408 import models as emr_models
from alibabacloud_emr20160408.client import Client as EmrSdk
from alibabacloud_tea_openapi import models as openapi_models
from yarl import URL

from migrator.auth import acs
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.server import SandboxHandle, running

VERSION = "2016-04-08"
REGION = "cn-hangzhou"
PROJECT = "FP-5A3F0C2D7E9B1A46"
CLUSTER = "C-7D2E9F41B6A3C085"
SCOPE = {"RegionId": REGION, "ProjectId": PROJECT}
START_MS, END_MS = "1538017814000", "4102416001000"
T = TypeVar("T")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxHandle]:
    async with running("emr", SandboxSettings(data_path=tmp_path / "emr.db")) as handle:
        yield handle


class Api:
    """A V3-signing caller: ``query`` in the URL, ``form`` in a form body, as the SDK splits them."""

    def __init__(self, session: aiohttp.ClientSession, handle: SandboxHandle) -> None:
        self.session, self.handle = session, handle

    async def __call__(
        self,
        action: str,
        form: dict[str, str] | None = None,
        /,
        *,
        method: str = "POST",
        nonce: str | None = None,
        date: str | None = None,
        **query: str,
    ) -> tuple[int, dict[str, Any]]:
        creds = self.handle.credentials
        body = urlencode(form).encode() if form else b""
        headers = acs.v3_sign(
            creds["access_key_id"], creds["access_key_secret"], method=method,
            host=urlsplit(self.handle.endpoint).netloc, action=action, version=VERSION, query=query,
            body=body, content_type="application/x-www-form-urlencoded" if body else None, nonce=nonce,
            date=date,
        )  # fmt: skip
        url = URL(f"{self.handle.endpoint}/" + (f"?{urlencode(query)}" if query else ""), encoded=True)
        async with self.session.request(method, url, data=body or None, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def ok(self, action: str, form: dict[str, str] | None = None, /, **query: str) -> dict[str, Any]:
        status, body = await self(action, form, **query)
        assert status == 200, body
        return body

    async def job(self, name: str = "job", job_type: str = "SHELL", **extra: str) -> str:
        form = {"Description": f"{name} description", "Params": f"echo {name}"}
        found: str = (await self.ok("CreateFlowJob", form, **SCOPE, Name=name, Type=job_type, **extra))["Id"]
        return found

    async def web_flow(self, name: str, graph: str, **extra: str) -> str:
        params = {**SCOPE, "Name": name, "Description": f"{name} flow", "Graph": graph, **extra}
        found: str = (await self.ok("CreateFlowForWeb", **params))["Id"]
        return found

    async def objects(self) -> dict[str, Any]:
        async with self.session.get(f"{self.handle.endpoint}/_sandbox/objects") as resp:
            assert resp.status == 200
            found: dict[str, Any] = await resp.json()
            return found


@pytest.fixture
def api(session: aiohttp.ClientSession, sandbox: SandboxHandle) -> Api:
    return Api(session, sandbox)


def graph(nodes: list[tuple[str, str, str | None]], edges: list[tuple[str, str]], label: bool = True) -> str:
    """A Graph in the console's shape; ``nodes`` are ``(id, START|END|JOB, job id)``."""
    doc = {
        "nodes": [
            {
                "id": node_id,
                "type": "node",
                "shape": {"START": "startControlNode", "END": "endControlNode"}.get(kind, "shellJobNode"),
                **({"label": f"label-{node_id}"} if label and kind == "JOB" else {}),
                "attribute": {"type": kind, **({"jobType": "SHELL", "jobId": job} if job else {})},
            }
            for node_id, kind, job in nodes
        ],
        "edges": [{"id": f"e{i}", "source": s, "target": t} for i, (s, t) in enumerate(edges)],
    }
    return json.dumps(doc)


def chain(*jobs: str, label: bool = True) -> str:
    """START -> each job in turn -> END."""
    ids = ["s", *(f"n{i}" for i in range(len(jobs))), "e"]
    nodes = [("s", "START", None), *((f"n{i}", "JOB", j) for i, j in enumerate(jobs)), ("e", "END", None)]
    return graph(nodes, list(itertools.pairwise(ids)), label=label)


def lowercase(message: str) -> Callable[[dict[str, Any]], None]:
    def check(body: dict[str, Any]) -> None:
        assert set(body) == {"code", "message", "requestId", "successResponse"}, body
        assert (body["code"], body["message"], body["successResponse"]) == ("FLOW_API_FAILED", message, False)

    return check


def envelope(code: str, *in_message: str) -> Callable[[dict[str, Any]], None]:
    def check(body: dict[str, Any]) -> None:
        assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}, body
        assert body["Code"] == code, body
        for part in in_message:
            assert part in body["Message"], body

    return check


# --- projects ------------------------------------------------------------------------------------


async def test_identity_and_the_one_project(api: Api, sandbox: SandboxHandle) -> None:
    assert sandbox.identity == {"project_id": PROJECT, "region_id": REGION, "cluster_id": CLUSTER}
    listed = await api.ok("ListFlowProject", RegionId=REGION)
    assert (listed["PageNumber"], listed["PageSize"], listed["Total"]) == (1, 20, 1)
    [project] = listed["Projects"]["Project"]
    assert set(project) == {"Id", "Name", "Description", "UserId", "GmtCreate", "GmtModified"}
    assert project["Id"] == PROJECT
    assert isinstance(project["GmtCreate"], int)
    assert (await api.ok("ListFlowProject", RegionId=REGION, ProjectId=PROJECT))["Total"] == 1
    assert (await api.ok("ListFlowProject", RegionId=REGION, ProjectId="FP-0000000000000000"))["Total"] == 0
    assert (await api.ok("ListFlowProject", RegionId=REGION, Name="no such"))["Projects"]["Project"] == []
    status, body = await api("ListFlowProject", RegionId="cn-beijing")
    assert status == 400
    envelope("InvalidRegionId", "cn-beijing")(body)


# --- jobs ----------------------------------------------------------------------------------------

FULL_JOB_FORM = {
    "Description": "a full job",
    "Params": "ls -l * | wc -l",
    "ParamConf": '{"date":"${yyyy-MM-dd}"}',
    "CustomVariables": '{"scope":"PROJECT","variables":[{"name":"v1","value":"1"}]}',
    "EnvConf": '{"key":"value"}',
    "RunConf": '{"priority":1,"userName":"hadoop","memory":2048,"cores":1}',
    "MonitorConf": '{"inputs":[]}',
    "ResourceList.2.Path": "oss://bucket/b.jar",
    "ResourceList.1.Path": "oss://bucket/a.jar",
    "ResourceList.1.Alias": "a.jar",
}


async def test_create_flow_job_reads_query_and_form_and_describes_it(api: Api) -> None:
    folder = (await api.ok("CreateFlowCategory", **SCOPE, Name="jobs", Type="JOB"))["Id"]
    job_id = (
        await api.ok(
            "CreateFlowJob",
            FULL_JOB_FORM,
            **SCOPE,
            Name="full job",
            Type="SPARK_SQL",
            FailAct="CONTINUE",
            MaxRetry="3",
            RetryInterval="120",
            Mode="LOCAL",
            Adhoc="False",
            ClusterId=CLUSTER,
            ParentCategory=folder,
            AlertConf="{}",
            MaxRunningTimeSec="600",
            RetryPolicy="default",
        )
    )["Id"]
    assert job_id.startswith("FJ-")
    assert len(job_id) == 19
    assert job_id[3:] == job_id[3:].upper()
    int(job_id[3:], 16)

    found = await api.ok("DescribeFlowJob", **SCOPE, Id=job_id)
    expected = {
        "Id": job_id, "Name": "full job", "Type": "SPARK_SQL", "Description": "a full job", "Adhoc": "false",
        "CategoryId": folder, "FailAct": "CONTINUE", "MaxRetry": 3, "RetryInterval": 120,
        "RetryPolicy": "default", "MaxRunningTimeSec": 600, "Params": "ls -l * | wc -l",
        "ParamConf": FULL_JOB_FORM["ParamConf"], "CustomVariables": FULL_JOB_FORM["CustomVariables"],
        "EnvConf": FULL_JOB_FORM["EnvConf"], "RunConf": FULL_JOB_FORM["RunConf"],
        "MonitorConf": '{"inputs":[]}', "AlertConf": "{}", "mode": "LOCAL", "ClusterId": CLUSTER,
        "ResourceList": {"Resource": [{"Path": "oss://bucket/a.jar", "Alias": "a.jar"},
                                      {"Path": "oss://bucket/b.jar", "Alias": ""}]},
    }  # fmt: skip
    assert {k: v for k, v in found.items() if k not in ("RequestId", "GmtCreate", "GmtModified")} == expected
    assert "Mode" not in found
    assert isinstance(found["GmtCreate"], int)
    assert found["GmtModified"] == found["GmtCreate"]

    listed = await api.ok("ListFlowJob", **SCOPE)
    [job] = listed["JobList"]["Job"]
    assert (job["Id"], job["Adhoc"], job["mode"], job["CategoryId"]) == (job_id, "false", "LOCAL", folder)
    assert "ClusterId" not in job  # ListFlowJob's job has no ClusterId, DescribeFlowJob's has
    [stored] = (await api.objects())["jobs"]
    assert (stored["id"], stored["type"], stored["adhoc"], stored["max_retry"]) == (
        job_id,
        "SPARK_SQL",
        False,
        3,
    )
    assert stored["resources"] == [{"path": "oss://bucket/a.jar", "alias": "a.jar"},
                                   {"path": "oss://bucket/b.jar", "alias": ""}]  # fmt: skip


async def test_job_defaults_and_list_filters(api: Api) -> None:
    shell = await api.job("shell")
    hive = await api.job("hive", job_type="HIVE_SQL")
    adhoc = await api.job("adhoc query", job_type="HIVE_SQL", Adhoc="true")
    found = await api.ok("DescribeFlowJob", **SCOPE, Id=shell)
    assert (found["FailAct"], found["MaxRetry"], found["RetryInterval"], found["mode"]) == (
        "STOP",
        0,
        0,
        "YARN",
    )
    assert (found["Adhoc"], found["ResourceList"]) == ("false", {"Resource": []})
    assert "CategoryId" not in found  # never set: left out, as the service leaves out nulls

    async def ids(**filters: str) -> list[str]:
        return [j["Id"] for j in (await api.ok("ListFlowJob", **SCOPE, **filters))["JobList"]["Job"]]

    assert await ids() == [shell, hive, adhoc]
    assert await ids(Adhoc="false") == [shell, hive]
    assert await ids(Adhoc="true") == [adhoc]
    assert await ids(Type="HIVE_SQL") == [hive, adhoc]
    assert await ids(Name="hive") == [hive]
    assert await ids(Name="hiv") == []  # Name is an exact match
    assert await ids(Id=adhoc) == [adhoc]
    [adhoc_job] = (await api.ok("ListFlowJob", **SCOPE, Id=adhoc))["JobList"]["Job"]
    assert adhoc_job["Adhoc"] == "true"


JOB_OK = {"Name": "j", "Type": "SHELL"}
JOB_FORM_OK = {"Description": "d"}
BAD_JOBS: list[tuple[str, dict[str, str], dict[str, str], int, Callable[[dict[str, Any]], None]]] = [
    ("no region", {"RegionId": ""}, {}, 400, envelope("MissingRegionId")),
    ("other region", {"RegionId": "cn-beijing"}, {}, 400, envelope("InvalidRegionId", "cn-beijing")),
    ("no project", {"ProjectId": ""}, {}, 400, envelope("MissingProjectId")),
    ("other project", {"ProjectId": "FP-0000000000000000"}, {}, 400, lowercase("project not exist")),
    ("no name", {"Name": ""}, {}, 400, envelope("MissingName")),
    ("no type", {"Type": ""}, {}, 400, envelope("MissingType")),
    ("no description", {}, {"Description": ""}, 400, envelope("MissingDescription")),
    ("unknown type", {"Type": "FLINK"}, {}, 400, envelope("InvalidParameter.Type", '"FLINK"', "SHELL")),
    ("fail act", {"FailAct": "SKIP"}, {}, 400, envelope("InvalidParameter.FailAct", "SKIP")),
    ("mode", {"Mode": "CLUSTER"}, {}, 400, envelope("InvalidParameter.Mode", "CLUSTER")),
    ("max retry 6", {"MaxRetry": "6"}, {}, 400, envelope("InvalidParameter.MaxRetry", "0 to 5")),
    ("max retry -1", {"MaxRetry": "-1"}, {}, 400, envelope("InvalidParameter.MaxRetry")),
    ("max retry text", {"MaxRetry": "two"}, {}, 400, envelope("InvalidParameter.MaxRetry")),
    ("retry interval", {"RetryInterval": "301"}, {}, 400, envelope("InvalidParameter.RetryInterval", "300")),
    ("adhoc", {"Adhoc": "maybe"}, {}, 400, envelope("InvalidParameter.Adhoc", "maybe")),
    ("alias without path", {}, {"ResourceList.1.Alias": "a.jar"}, 400,
     envelope("MissingResourceList.1.Path")),
    ("param conf", {}, {"ParamConf": "{date"}, 400, envelope("InvalidParameter.ParamConf", "JSON")),
    ("custom variables", {}, {"CustomVariables": "v1=1"}, 400, envelope("InvalidParameter.CustomVariables")),
    ("env conf", {}, {"EnvConf": "{'a': 1}"}, 400, envelope("InvalidParameter.EnvConf")),
    ("run conf", {}, {"RunConf": "memory=1"}, 400, envelope("InvalidParameter.RunConf")),
    ("alert conf", {"AlertConf": "N/A"}, {}, 400, envelope("InvalidParameter.AlertConf")),
    ("unknown folder", {"ParentCategory": "FC-0000000000000000"}, {}, 400,
     lowercase("category [FC-0000000000000000] not exist")),
    ("unknown cluster", {"ClusterId": "C-0000000000000000"}, {}, 400,
     lowercase("cluster [C-0000000000000000] not exist")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("query", "form", "http", "check"), [c[1:] for c in BAD_JOBS], ids=[c[0] for c in BAD_JOBS]
)
async def test_create_flow_job_validation(
    api: Api, query: dict[str, str], form: dict[str, str], http: int, check: Callable[[dict[str, Any]], None]
) -> None:
    params = {k: v for k, v in {**SCOPE, **JOB_OK, **query}.items() if v}
    status, body = await api(
        "CreateFlowJob", {k: v for k, v in {**JOB_FORM_OK, **form}.items() if v}, **params
    )
    assert status == http, body
    check(body)
    assert (await api.objects())["jobs"] == []


async def test_modify_flow_job_changes_what_it_is_given(api: Api) -> None:
    job_id = await api.job("before")
    form = {"Params": "echo after", "ResourceList.1.Path": "hdfs:///x.sh"}
    modified = await api.ok(
        "ModifyFlowJob", form, **SCOPE, Id=job_id, Name="after", MaxRetry="5", Type="HIVE"
    )
    assert modified["Data"] is True
    found = await api.ok("DescribeFlowJob", **SCOPE, Id=job_id)
    assert (found["Name"], found["Params"], found["MaxRetry"]) == ("after", "echo after", 5)
    assert (found["Description"], found["Type"]) == (
        "before description",
        "SHELL",
    )  # kept; Type not modifiable
    assert found["ResourceList"] == {"Resource": [{"Path": "hdfs:///x.sh", "Alias": ""}]}
    assert found["GmtModified"] >= found["GmtCreate"]

    status, body = await api("ModifyFlowJob", **SCOPE, Id=job_id, RetryInterval="900")
    assert status == 400
    envelope("InvalidParameter.RetryInterval")(body)
    status, body = await api("ModifyFlowJob", {"EnvConf": "nope"}, **SCOPE, Id=job_id)
    envelope("InvalidParameter.EnvConf")(body)
    status, body = await api("ModifyFlowJob", **SCOPE, Id="FJ-0000000000000000", Name="x")
    assert status == 400
    lowercase("job [FJ-0000000000000000] not exist")(body)
    status, body = await api("ModifyFlowJob", **SCOPE, Name="x")
    envelope("MissingId")(body)
    assert (await api.ok("DescribeFlowJob", **SCOPE, Id=job_id))["RetryInterval"] == 0


async def test_delete_flow_job_unless_a_flow_runs_it(api: Api) -> None:
    used, free = await api.job("used"), await api.job("free")
    flow_id = await api.web_flow("f", chain(used))
    status, body = await api("DeleteFlowJob", **SCOPE, Id=used)
    assert status == 400
    lowercase(f"job [{used}] is used by flow [{flow_id}], can not be deleted")(body)
    assert (await api.ok("DeleteFlowJob", **SCOPE, Id=free))["Data"] is True
    status, body = await api("DescribeFlowJob", **SCOPE, Id=free)
    lowercase(f"job [{free}] not exist")(body)
    assert [j["id"] for j in (await api.objects())["jobs"]] == [used]
    await api.ok("DeleteFlow", **SCOPE, Id=flow_id)
    assert (await api.ok("DeleteFlowJob", **SCOPE, Id=used))["Data"] is True


# --- flows ---------------------------------------------------------------------------------------

ALERT_CONF = json.dumps(
    {"items": [{"enable": True, "eventId": "EMR-210401001", "alertUserGroupIdList": ["AUG-1"],
                "alertDingDingGroupList": ["ADG-1"]}]}
)  # fmt: skip


async def test_create_flow_as_the_seed_documents_it(api: Api) -> None:
    folder = (await api.ok("CreateFlowCategory", **SCOPE, Name="flows"))["Id"]
    upstream = (await api.ok("CreateFlow", **SCOPE, Name="upstream", Description="first"))["Id"]
    other = (await api.ok("CreateFlow", **SCOPE, Name="other", Description="second"))["Id"]
    flow_id = (
        await api.ok(
            "CreateFlow",
            **SCOPE,
            Name="myFlow",
            Description="这是一个项目描述",
            StartSchedule=START_MS,
            EndSchedule=END_MS,
            CronExpression="0 0 0-23/1 * * ?",
            CreateCluster="false",
            ClusterId=CLUSTER,
            HostName="emr-header-1.cluster-123456",
            Namespace="ns",
            Application="APP",
            AlertConf=ALERT_CONF,
            AlertUserGroupBizId="AUG-1",
            AlertDingDingGroupBizId="ADG-1",
            ParentFlowList=f"{upstream},{other}",
            ParentCategory=folder,
            Lifecycle="7",
            LogArchiveLocation="oss://logs/",
            ClientToken="123e4567-e89b-12d3-a456-426655440000",
        )
    )["Id"]
    assert flow_id.startswith("F-")
    assert len(flow_id) == 18
    found = await api.ok("DescribeFlow", **SCOPE, Id=flow_id)
    expected = {
        "Id": flow_id, "Name": "myFlow", "Description": "这是一个项目描述", "Type": "FLOW",
        "Status": "STOP_SCHEDULE", "Periodic": True, "CategoryId": folder, "ClusterId": CLUSTER,
        "CreateCluster": False, "HostName": "emr-header-1.cluster-123456", "CronExpr": "0 0 0-23/1 * * ?",
        "StartSchedule": int(START_MS), "EndSchedule": int(END_MS), "Application": "APP",
        "AlertConf": ALERT_CONF, "AlertUserGroupBizId": "AUG-1", "AlertDingDingGroupBizId": "ADG-1",
        "Namespace": "ns", "Lifecycle": "7", "LogArchiveLocation": "oss://logs/", "ProjectId": PROJECT,
        "ParentFlowList": {"ParentFlow": [
            {"ParentFlowId": upstream, "ParentFlowName": "upstream", "ProjectId": PROJECT,
             "ProjectName": "sandbox_project"},
            {"ParentFlowId": other, "ParentFlowName": "other", "ProjectId": PROJECT,
             "ProjectName": "sandbox_project"}]},
    }  # fmt: skip
    assert {k: v for k, v in found.items() if k not in ("RequestId", "GmtCreate", "GmtModified")} == expected
    assert isinstance(found["GmtCreate"], int)
    plain = await api.ok("DescribeFlow", **SCOPE, Id=upstream)
    assert (plain["Periodic"], plain["ParentFlowList"]) == (False, {"ParentFlow": []})
    assert "Graph" not in plain
    assert "CronExpr" not in plain
    stored = {f["id"]: f for f in (await api.objects())["flows"]}[flow_id]
    assert (stored["cron"], stored["parent_flows"], stored["category_id"]) == (
        "0 0 0-23/1 * * ?",
        [upstream, other],
        folder,
    )
    assert (stored["client_token"], stored["graph"]) == ("123e4567-e89b-12d3-a456-426655440000", None)


BAD_FLOWS: list[tuple[str, dict[str, str], Callable[[dict[str, Any]], None]]] = [
    ("no name", {"Name": ""}, envelope("MissingName")),
    ("no description", {"Description": ""}, envelope("MissingDescription")),
    ("other project", {"ProjectId": "FP-0000000000000000"}, lowercase("project not exist")),
    ("other region", {"RegionId": "us-west-1"}, envelope("InvalidRegionId")),
    ("cron without start", {"CronExpr": "0 0 1 * * ?"}, envelope("MissingStartSchedule")),
    ("seed cron without start", {"CronExpression": "0 0 1 * * ?"}, envelope("MissingStartSchedule")),
    ("start after end", {"StartSchedule": END_MS, "EndSchedule": START_MS},
     envelope("InvalidParameter.StartSchedule", "less than EndSchedule")),
    ("start equals end", {"StartSchedule": START_MS, "EndSchedule": START_MS},
     envelope("InvalidParameter.StartSchedule")),
    ("start not a long", {"StartSchedule": "yesterday"}, envelope("InvalidParameter.StartSchedule")),
    ("not a cron", {"CronExpr": "daily", "StartSchedule": START_MS},
     envelope("InvalidParameter.CronExpr")),
    ("crons disagree",
     {"CronExpr": "0 0 1 * * ?", "CronExpression": "0 0 2 * * ?", "StartSchedule": START_MS},
     envelope("InvalidParameter.CronExpr")),
    ("create cluster", {"CreateCluster": "yes"}, envelope("InvalidParameter.CreateCluster")),
    ("template expected", {"CreateCluster": "true", "ClusterId": CLUSTER},
     envelope("InvalidParameter.ClusterId")),
    ("unknown cluster", {"ClusterId": "C-0000000000000000"},
     lowercase("cluster [C-0000000000000000] not exist")),
    ("alert conf not json", {"AlertConf": "{items"}, envelope("InvalidParameter.AlertConf")),
    ("alert conf items", {"AlertConf": '{"items": {}}'}, envelope("InvalidParameter.AlertConf")),
    ("unknown parent flow", {"ParentFlowList": "F-0000000000000000"},
     lowercase("parent flow [F-0000000000000000] not exist")),
    ("unknown folder", {"ParentCategory": "FC-0000000000000000"},
     lowercase("category [FC-0000000000000000] not exist")),
]  # fmt: skip


@pytest.mark.parametrize("action", ["CreateFlow", "CreateFlowForWeb"])
@pytest.mark.parametrize(("params", "check"), [c[1:] for c in BAD_FLOWS], ids=[c[0] for c in BAD_FLOWS])
async def test_create_flow_validation(
    api: Api, action: str, params: dict[str, str], check: Callable[[dict[str, Any]], None]
) -> None:
    merged = {**SCOPE, "Name": "f", "Description": "d", **params}
    status, body = await api(action, **{k: v for k, v in merged.items() if v})
    assert status == 400, body
    check(body)
    assert (await api.objects())["flows"] == []


async def test_client_token_makes_creates_idempotent(api: Api) -> None:
    first = (await api.ok("CreateFlow", **SCOPE, Name="f", Description="d", ClientToken="tok-1"))["Id"]
    again = (await api.ok("CreateFlow", **SCOPE, Name="f", Description="d", ClientToken="tok-1"))["Id"]
    job_id = await api.job()
    web = await api.web_flow("w", chain(job_id), ClientToken="tok-2")
    web_again = await api.web_flow("w", chain(job_id), ClientToken="tok-2")
    other = (await api.ok("CreateFlow", **SCOPE, Name="f", Description="d", ClientToken="tok-3"))["Id"]
    untokened = [(await api.ok("CreateFlow", **SCOPE, Name="u", Description="d"))["Id"] for _ in range(2)]
    assert (again, web_again) == (first, web)
    assert len({first, web, other, *untokened}) == 5
    assert len((await api.objects())["flows"]) == 5
    # a token that created a flow since deleted creates a new one
    await api.ok("DeleteFlow", **SCOPE, Id=first)
    renewed = (await api.ok("CreateFlow", **SCOPE, Name="f", Description="d", ClientToken="tok-1"))["Id"]
    assert renewed != first


async def test_create_flow_for_web_stores_the_graph_and_synthesises_the_application(api: Api) -> None:
    extract, load = await api.job("extract"), await api.job("load", job_type="HIVE_SQL")
    dag = graph(
        [("s", "START", None), ("a", "JOB", extract), ("b", "JOB", load), ("c", "JOB", extract),
         ("e", "END", None)],
        [("s", "a"), ("s", "b"), ("a", "c"), ("b", "c"), ("c", "e")],
        label=False,
    )  # fmt: skip
    flow_id = await api.web_flow("dag", dag, CronExpr="0 0 1 * * ?", StartSchedule=START_MS)
    found = await api.ok("DescribeFlow", **SCOPE, Id=flow_id)
    assert found["Graph"] == dag
    assert (found["Periodic"], found["CronExpr"]) == (True, "0 0 1 * * ?")
    assert json.loads(found["Application"]) == {
        "nodeDefMap": {
            "s": {"name": "start", "type": ":start:", "transitions": ["a", "b"], "dependencies": 0},
            "a": {"jobId": extract, "name": "extract", "type": ":action:", "transitions": ["c"],
                  "dependencies": 1},
            "b": {"jobId": load, "name": "load", "type": ":action:", "transitions": ["c"], "dependencies": 1},
            "c": {"jobId": extract, "name": "extract", "type": ":action:", "transitions": ["e"],
                  "dependencies": 2},
            "e": {"name": "end", "type": ":end:", "transitions": [], "dependencies": 1},
        }
    }  # fmt: skip
    labelled_id = await api.web_flow("l", chain(load))
    labelled = json.loads((await api.ok("DescribeFlow", **SCOPE, Id=labelled_id))["Application"])
    assert labelled["nodeDefMap"]["n0"]["name"] == "label-n0"
    [stored] = [f for f in (await api.objects())["flows"] if f["id"] == flow_id]
    assert stored["graph"] == json.loads(dag)


def _nodes(job: str) -> list[tuple[str, str, str | None]]:
    return [("s", "START", None), ("a", "JOB", job), ("e", "END", None)]


BAD_GRAPHS: list[tuple[str, Callable[[str], str], str]] = [
    ("not json", lambda j: "{nodes", "not JSON"),
    ("not an object", lambda j: "[]", "the graph must be a JSON object"),
    ("no edges", lambda j: json.dumps({"nodes": []}), 'must have "nodes" and "edges" lists'),
    ("duplicate node", lambda j: graph([*_nodes(j), ("a", "JOB", j)], [("s", "a"), ("a", "e")]),
     'nodes[3].id: duplicate node id "a"'),
    ("two starts",
     lambda j: graph([*_nodes(j), ("s2", "START", None)], [("s", "a"), ("s2", "a"), ("a", "e")]),
     "exactly one START node, found 2"),
    ("no end", lambda j: graph(_nodes(j)[:2], [("s", "a")]), "exactly one END node, found 0"),
    ("unknown type", lambda j: graph([*_nodes(j), ("x", "FORK", None)], [("s", "a"), ("a", "e")]),
     'nodes[3].attribute.type must be START, END or JOB, got "FORK"'),
    ("job without id", lambda j: graph([*_nodes(j), ("b", "JOB", None)], [("s", "a"), ("a", "e")]),
     "nodes[3].attribute.jobId is missing"),
    ("unknown job", lambda j: chain(j, "FJ-0000000000000000"),
     'nodes[2].attribute.jobId: job "FJ-0000000000000000" does not exist'),
    ("dangling edge", lambda j: graph(_nodes(j), [("s", "a"), ("a", "zz")]),
     'edges[1].target: "zz" is not a node of the graph'),
    ("cycle",
     lambda j: graph([*_nodes(j), ("b", "JOB", j)], [("s", "a"), ("a", "b"), ("b", "a"), ("b", "e")]),
     'cycle through node "a"'),
    ("self loop", lambda j: graph(_nodes(j), [("s", "a"), ("a", "a"), ("a", "e")]), 'cycle through node "a"'),
    ("into start", lambda j: graph(_nodes(j), [("s", "a"), ("a", "s"), ("a", "e")]),
     "edges[1]: nothing may run before START or after END"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in BAD_GRAPHS], ids=[c[0] for c in BAD_GRAPHS])
async def test_a_bad_graph_is_refused_naming_the_problem(
    api: Api, make: Callable[[str], str], message: str
) -> None:
    job_id = await api.job()
    status, body = await api("CreateFlowForWeb", **SCOPE, Name="f", Description="d", Graph=make(job_id))
    assert status == 400, body
    envelope("InvalidParameter.Graph", message)(body)
    assert (await api.objects())["flows"] == []


async def test_graph_may_travel_in_the_form_body(api: Api) -> None:
    job_id = await api.job()
    flow_id = (
        await api.ok("CreateFlowForWeb", {"Graph": chain(job_id)}, **SCOPE, Name="f", Description="d")
    )["Id"]
    assert (await api.ok("DescribeFlow", **SCOPE, Id=flow_id))["Graph"] == chain(job_id)
    _, body = await api(
        "CreateFlowForWeb", {"Graph": chain(job_id, "FJ-1")}, **SCOPE, Name="g", Description="d"
    )
    envelope("InvalidParameter.Graph", "FJ-1")(body)


async def test_modify_flow_for_web_replaces_given_fields_and_revalidates(api: Api) -> None:
    one, two = await api.job("one"), await api.job("two")
    upstream = (await api.ok("CreateFlow", **SCOPE, Name="up", Description="d"))["Id"]
    flow_id = await api.web_flow("before", chain(one), HostName="h1")
    changed = chain(one, two)
    changes = {"Name": "after", "Graph": changed, "Status": "UNDER_SCHEDULE", "CronExpr": "0 0 1 * * ?",
               "StartSchedule": START_MS, "ParentFlowList": upstream}  # fmt: skip
    assert (await api.ok("ModifyFlowForWeb", **SCOPE, Id=flow_id, **changes))["Data"] is True
    found = await api.ok("DescribeFlow", **SCOPE, Id=flow_id)
    assert (found["Name"], found["Description"], found["HostName"]) == ("after", "before flow", "h1")
    assert (found["Graph"], found["Status"], found["Periodic"]) == (changed, "UNDER_SCHEDULE", True)
    application = json.loads(found["Application"])
    assert [n["jobId"] for n in application["nodeDefMap"].values() if "jobId" in n] == [
        one,
        two,
    ]
    assert [p["ParentFlowId"] for p in found["ParentFlowList"]["ParentFlow"]] == [upstream]
    await api.ok("ModifyFlowForWeb", **SCOPE, Id=flow_id, Periodic="false")
    assert (await api.ok("DescribeFlow", **SCOPE, Id=flow_id))["Periodic"] is False

    cases: list[tuple[dict[str, str], Callable[[dict[str, Any]], None]]] = [
        (
            {"Graph": chain(one, "FJ-0000000000000000")},
            envelope("InvalidParameter.Graph", "FJ-0000000000000000"),
        ),
        ({"Status": "PAUSED"}, envelope("InvalidParameter.Status", "PAUSED")),
        ({"Periodic": "sometimes"}, envelope("InvalidParameter.Periodic")),
        (
            {"EndSchedule": "1000"},
            envelope("InvalidParameter.StartSchedule"),
        ),  # checked against the stored start
        ({"ParentFlowList": flow_id}, envelope("InvalidParameter.ParentFlowList", "itself")),
        ({"Id": "F-0000000000000000"}, lowercase("flow [F-0000000000000000] not exist")),
        ({"Id": ""}, envelope("MissingId")),
    ]
    for params, check in cases:
        merged = {**SCOPE, "Id": flow_id, **params}
        status, body = await api("ModifyFlowForWeb", **{k: v for k, v in merged.items() if v})
        assert status == 400, (params, body)
        check(body)
    # an upstream flow may not come to depend on its downstream: flow dependencies stay acyclic
    status, body = await api("ModifyFlowForWeb", **SCOPE, Id=upstream, ParentFlowList=flow_id)
    envelope("InvalidParameter.ParentFlowList")(body)
    assert (await api.ok("DescribeFlow", **SCOPE, Id=flow_id))["Graph"] == changed


async def test_list_flow_filters_and_double_wrapping(api: Api) -> None:
    one, two = await api.job("one"), await api.job("two")
    daily = await api.web_flow("daily", chain(one), CronExpr="0 0 1 * * ?", StartSchedule=START_MS)
    manual = await api.web_flow("manual", chain(two))
    plain = (await api.ok("CreateFlow", **SCOPE, Name="daily copy", Description="d", ClusterId=CLUSTER))["Id"]
    await api.ok("ModifyFlowForWeb", **SCOPE, Id=manual, Status="UNDER_SCHEDULE")

    async def ids(**filters: str) -> list[str]:
        listed = await api.ok("ListFlow", **SCOPE, **filters)
        return [f["Id"] for f in listed["Flow"]["Flow"]]

    listed = await api.ok("ListFlow", **SCOPE)
    assert (listed["PageNumber"], listed["PageSize"], listed["Total"]) == (1, 20, 3)
    first = listed["Flow"]["Flow"][0]
    assert first["Graph"] == chain(one)
    assert (first["ProjectId"], first["CronExpr"], first["Periodic"]) == (PROJECT, "0 0 1 * * ?", True)
    assert "Application" not in first
    assert await ids() == [daily, manual, plain]
    assert await ids(Name="daily") == [daily]  # exact, not a substring
    assert await ids(JobId=two) == [manual]
    assert await ids(Periodic="true") == [daily]
    assert await ids(Periodic="false") == [manual, plain]
    assert await ids(Status="UNDER_SCHEDULE") == [manual]
    assert await ids(Id=plain) == [plain]
    assert await ids(ClusterId=CLUSTER) == [plain]
    assert await ids(method="GET") == [daily, manual, plain]  # every action answers GET too


async def test_delete_flow(api: Api) -> None:
    flow_id = (await api.ok("CreateFlow", **SCOPE, Name="f", Description="d"))["Id"]
    assert (await api.ok("DeleteFlow", **SCOPE, Id=flow_id))["Data"] is True
    for action in ("DescribeFlow", "DeleteFlow"):
        status, body = await api(action, **SCOPE, Id=flow_id)
        assert status == 400
        lowercase(f"flow [{flow_id}] not exist")(body)
    assert (await api.ok("ListFlow", **SCOPE))["Total"] == 0
    assert (await api.objects())["flows"] == []


# --- folders -------------------------------------------------------------------------------------


async def test_flow_categories(api: Api) -> None:
    root = (await api.ok("CreateFlowCategory", **SCOPE, Name="etl", Type="FLOW"))["Id"]
    child = (await api.ok("CreateFlowCategory", **SCOPE, Name="daily", ParentId=root))["Id"]
    same_name_elsewhere = (await api.ok("CreateFlowCategory", **SCOPE, Name="daily"))["Id"]
    job_tree = (await api.ok("CreateFlowCategory", **SCOPE, Name="etl", Type="JOB"))["Id"]
    assert root.startswith("FC-")
    assert len({root, child, same_name_elsewhere, job_tree}) == 4

    found = await api.ok("DescribeFlowCategory", **SCOPE, Id=child)
    assert {k: v for k, v in found.items() if k not in ("RequestId", "GmtCreate", "GmtModified")} == {
        "Id": child, "Name": "daily", "ParentId": root, "ProjectId": PROJECT, "Type": "FLOW"
    }  # fmt: skip
    assert isinstance(found["GmtModified"], int)
    assert "ParentId" not in await api.ok("DescribeFlowCategory", **SCOPE, Id=root)

    async def ids(**filters: str) -> list[str]:
        return [
            c["Id"] for c in (await api.ok("ListFlowCategory", **SCOPE, **filters))["Categories"]["Category"]
        ]

    assert await ids() == [root, child, same_name_elsewhere, job_tree]
    assert await ids(Root="true") == [root, same_name_elsewhere, job_tree]
    assert await ids(ParentId=root) == [child]

    cases: list[tuple[dict[str, str], Callable[[dict[str, Any]], None]]] = [
        ({"Name": "daily", "ParentId": root}, lowercase("category name [daily] already exists")),
        ({"Name": "etl", "Type": "FLOW"}, lowercase("category name [etl] already exists")),
        (
            {"Name": "x", "ParentId": "FC-0000000000000000"},
            lowercase("category [FC-0000000000000000] not exist"),
        ),
        ({"Name": "x", "Type": "FOLDER"}, envelope("InvalidParameter.Type", "FOLDER")),
        ({}, envelope("MissingName")),
    ]
    for params, check in cases:
        status, body = await api("CreateFlowCategory", **SCOPE, **params)
        assert status == 400, (params, body)
        check(body)
    status, body = await api("DescribeFlowCategory", **SCOPE, Id="FC-0000000000000000")
    lowercase("category [FC-0000000000000000] not exist")(body)
    assert len((await api.objects())["categories"]) == 4


# --- paging --------------------------------------------------------------------------------------


async def test_paging_and_the_page_size_limit(api: Api) -> None:
    jobs = [await api.job(f"j{i}") for i in range(5)]
    page = await api.ok("ListFlowJob", **SCOPE, PageSize="2", PageNumber="3")
    assert (page["PageNumber"], page["PageSize"], page["Total"]) == (3, 2, 5)
    assert [j["Id"] for j in page["JobList"]["Job"]] == jobs[4:]
    page = await api.ok("ListFlowJob", **SCOPE, PageSize="2", PageNumber="2")
    assert [j["Id"] for j in page["JobList"]["Job"]] == jobs[2:4]
    assert (await api.ok("ListFlowJob", **SCOPE, PageNumber="9"))["JobList"]["Job"] == []
    assert (await api.ok("ListFlowJob", **SCOPE, PageSize="249"))["PageSize"] == 249

    for action in ("ListFlowJob", "ListFlow", "ListFlowCategory", "ListFlowProject"):
        for size in ("250", "1000"):
            status, body = await api(action, **SCOPE, PageSize=size)
            assert status == 400, (action, body)
            lowercase("Invalid Param[pageSize should less than 250]")(body)
    for bad in ({"PageSize": "0"}, {"PageNumber": "0"}, {"PageNumber": "first"}):
        status, body = await api("ListFlow", **SCOPE, **bad)
        assert status == 400
        envelope(f"InvalidParameter.{next(iter(bad))}")(body)


# --- the gateway in front ------------------------------------------------------------------------


async def test_replayed_nonce_and_stale_timestamp_are_refused(api: Api) -> None:
    nonce = acs.new_nonce()
    assert (await api("ListFlowProject", nonce=nonce, RegionId=REGION))[0] == 200
    status, body = await api("ListFlowProject", nonce=nonce, RegionId=REGION)
    assert status == 400
    envelope("SignatureNonceUsed")(body)
    stale = acs.utc_timestamp(datetime.now(UTC) - timedelta(minutes=16))
    status, body = await api("ListFlowProject", date=stale, RegionId=REGION)
    assert status == 400
    envelope("InvalidTimeStamp.Expired")(body)


async def test_calls_are_counted_with_both_envelopes(session: aiohttp.ClientSession, api: Api) -> None:
    await api.job()
    await api("ListFlow", **SCOPE, PageSize="300")
    await api("ListFlow", RegionId="cn-beijing", ProjectId=PROJECT)
    async with session.get(f"{api.handle.endpoint}/_sandbox/calls") as resp:
        counts = await resp.json()
    assert counts["CreateFlowJob"] == {"ok": 1}
    assert counts["ListFlow"] == {"FLOW_API_FAILED": 1, "InvalidRegionId": 1}


async def test_a_restarted_sandbox_keeps_what_was_created(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    settings = SandboxSettings(data_path=tmp_path / "emr.db")
    async with running("emr", settings) as first:
        api = Api(session, first)
        folder = (await api.ok("CreateFlowCategory", **SCOPE, Name="etl"))["Id"]
        job_id = await api.job("kept", ParentCategory=folder)
        flow_id = await api.web_flow(
            "kept", chain(job_id), ParentCategory=folder, ClientToken="restart-token"
        )
        before = await api.ok("DescribeFlow", **SCOPE, Id=flow_id)
    async with running("emr", settings) as second:
        api = Api(session, second)
        after = await api.ok("DescribeFlow", **SCOPE, Id=flow_id)
        assert {**after, "RequestId": ""} == {**before, "RequestId": ""}
        assert (await api.ok("DescribeFlowJob", **SCOPE, Id=job_id))["CategoryId"] == folder
        assert (await api.ok("DescribeFlowCategory", **SCOPE, Id=folder))["Name"] == "etl"
        assert await api.web_flow("kept", chain(job_id), ClientToken="restart-token") == flow_id
        assert len((await api.objects())["flows"]) == 1


# --- the official SDK against the sandbox --------------------------------------------------------


def sdk(handle: SandboxHandle, secret: str | None = None, algorithm: str | None = None) -> EmrSdk:
    config = openapi_models.Config(
        access_key_id=handle.credentials["access_key_id"],
        access_key_secret=secret or handle.credentials["access_key_secret"],
        endpoint=urlsplit(handle.endpoint).netloc,
        protocol="http",
        region_id=REGION,
    )
    if algorithm:
        config.signature_algorithm = algorithm
    return EmrSdk(config)


async def in_thread(fn: Callable[[], T]) -> T:
    """The SDK is synchronous; the sandbox needs this event loop free while it waits."""
    return await anyio.to_thread.run_sync(fn)


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["v3", "v1"])
async def test_official_sdk_creates_and_reads_flows(sandbox: SandboxHandle, algorithm: str | None) -> None:
    client = sdk(sandbox, algorithm=algorithm)
    job_request = emr_models.CreateFlowJobRequest(
        region_id=REGION, project_id=PROJECT, name="sdk job", type="SHELL", description="made by the SDK",
        params="ls -l * | grep a&b", adhoc=False, max_retry=2, fail_act="CONTINUE", mode="YARN",
        param_conf='{"date":"${yyyy-MM-dd}"}', run_conf='{"memory":2048}', cluster_id=CLUSTER,
        resource_list=[emr_models.CreateFlowJobRequestResourceList(path="oss://b/x.jar", alias="x.jar")],
    )  # fmt: skip
    job_id = (await in_thread(lambda: client.create_flow_job(job_request))).body.id
    assert job_id.startswith("FJ-")

    flow_request = emr_models.CreateFlowRequest(
        region_id=REGION, project_id=PROJECT, name="sdk flow", description="plain",
        cron_expr="0 0 0-23/1 * * ?", start_schedule=int(START_MS), end_schedule=int(END_MS),
        create_cluster=False, cluster_id=CLUSTER,
    )  # fmt: skip
    plain_id = (await in_thread(lambda: client.create_flow(flow_request))).body.id

    dag = chain(job_id)
    web_request = emr_models.CreateFlowForWebRequest(
        region_id=REGION, project_id=PROJECT, name="sdk web flow", description="with a graph", graph=dag,
        create_cluster=False, cluster_id=CLUSTER, parent_flow_list=plain_id,
    )  # fmt: skip
    web_id = (await in_thread(lambda: client.create_flow_for_web(web_request))).body.id

    listed = await in_thread(
        lambda: client.list_flow(
            emr_models.ListFlowRequest(region_id=REGION, project_id=PROJECT, job_id=job_id)
        )
    )
    assert listed.body.total == 1
    assert [(f.id, f.graph) for f in listed.body.flow.flow] == [(web_id, dag)]

    described = (
        await in_thread(
            lambda: client.describe_flow(
                emr_models.DescribeFlowRequest(region_id=REGION, project_id=PROJECT, id=plain_id)
            )
        )
    ).body
    assert (described.name, described.cron_expr, described.periodic) == ("sdk flow", "0 0 0-23/1 * * ?", True)
    assert (described.start_schedule, described.end_schedule) == (int(START_MS), int(END_MS))
    web = (
        await in_thread(
            lambda: client.describe_flow(
                emr_models.DescribeFlowRequest(region_id=REGION, project_id=PROJECT, id=web_id)
            )
        )
    ).body
    assert web.graph == dag
    assert [p.parent_flow_id for p in web.parent_flow_list.parent_flow] == [plain_id]

    job = (
        await in_thread(
            lambda: client.describe_flow_job(
                emr_models.DescribeFlowJobRequest(region_id=REGION, project_id=PROJECT, id=job_id)
            )
        )
    ).body
    assert (job.params, job.adhoc, job.mode, job.max_retry) == ("ls -l * | grep a&b", "false", "YARN", 2)
    assert [(r.path, r.alias) for r in job.resource_list.resource] == [("oss://b/x.jar", "x.jar")]


async def test_official_sdk_reads_the_lowercase_envelope(sandbox: SandboxHandle) -> None:
    client = sdk(sandbox)
    request = emr_models.ListFlowRequest(region_id=REGION, project_id="FP-0000000000000000")
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the SDK's exception classes vary by version
        await in_thread(lambda: client.list_flow(request))
    assert getattr(raised.value, "code", None) == "FLOW_API_FAILED"
    assert "project not exist" in str(raised.value)


@pytest.mark.parametrize("algorithm", [None, "v2"], ids=["v3", "v1"])
async def test_official_sdk_with_a_wrong_secret_gets_signature_does_not_match(
    sandbox: SandboxHandle, algorithm: str | None
) -> None:
    client = sdk(sandbox, secret="not-the-secret", algorithm=algorithm)
    request = emr_models.ListFlowRequest(region_id=REGION, project_id=PROJECT)
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the SDK's exception classes vary by version
        await in_thread(lambda: client.list_flow(request))
    assert getattr(raised.value, "code", None) == "SignatureDoesNotMatch"
    assert getattr(raised.value, "status_code", None) == 400
    signed_as = "POST&%2F&" if algorithm == "v2" else "ACS3-HMAC-SHA256"
    assert f"server string to sign is:{signed_as}" in str(raised.value)
    assert "not-the-secret" not in str(raised.value)
