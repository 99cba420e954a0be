"""The DataWorks sandbox over real loopback HTTP: async imports, FlowSpec checks, restarts, the SDK.

Requests are signed with :mod:`migrator.auth.acs` or sent by the official
``alibabacloud-dataworks-public20240518`` SDK, which must work against the sandbox unmodified.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import aiohttp
import anyio
import pytest
from alibabacloud_dataworks_public20240518 import models as dw_models
from alibabacloud_dataworks_public20240518.client import Client as DataWorksSdk
from alibabacloud_tea_openapi import models as openapi_models
from yarl import URL

from migrator.auth import acs
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.server import SandboxHandle, running, serve

VERSION = "2024-05-18"
PROJECT = "10001"
READS = {"GetJobStatus", "GetWorkflowDefinition", "ListWorkflowDefinitions"}
FAST = (0.05, 0.2)
T = TypeVar("T")


def settings(data: Path | None = None, job_delay: tuple[float, float] = FAST) -> SandboxSettings:
    return SandboxSettings(data_path=data, job_delay=job_delay)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxHandle]:
    async with running("dataworks", settings(tmp_path / "dw.db")) as handle:
        yield handle


class Api:
    """A V3-signing caller, as small as a test needs; the real client is tested elsewhere."""

    def __init__(self, session: aiohttp.ClientSession, handle: SandboxHandle) -> None:
        self.session, self.handle = session, handle

    async def __call__(self, action: str, **params: str) -> tuple[int, dict[str, Any]]:
        creds = self.handle.credentials
        method = "GET" if action in READS else "POST"
        query = params if method == "GET" else {}
        body = urlencode(params).encode() if method == "POST" else b""
        host = urlsplit(self.handle.endpoint).netloc
        headers = acs.v3_sign(
            creds["access_key_id"], creds["access_key_secret"], method=method, host=host, action=action,
            version=VERSION, query=query, body=body,
            content_type="application/x-www-form-urlencoded" if body else None,
        )  # fmt: skip
        url = URL(f"{self.handle.endpoint}/" + (f"?{urlencode(query)}" if query else ""), encoded=True)
        async with self.session.request(method, url, data=body or None, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)

    async def ok(self, action: str, **params: str) -> dict[str, Any]:
        status, body = await self(action, **params)
        assert status == 200, body
        return body

    async def import_(self, spec: dict[str, Any], **extra: str) -> dict[str, Any]:
        job: dict[str, Any] = (
            await self.ok("ImportWorkflowDefinition", ProjectId=PROJECT, Spec=json.dumps(spec), **extra)
        )["AsyncJob"]
        return job

    async def wait(self, job_id: str) -> dict[str, Any]:
        with anyio.fail_after(5):
            while True:
                status: dict[str, Any] = (await self.ok("GetJobStatus", JobId=job_id))["JobStatus"]
                if status["Completed"] == "True":
                    return status
                assert (status["Status"], status["Completed"]) == ("Running", "False")
                await anyio.sleep(0.02)

    async def objects(self) -> dict[str, Any]:
        async with self.session.get(f"{self.handle.endpoint}/_sandbox/objects") as resp:
            assert resp.status == 200
            found: dict[str, Any] = await resp.json()
            return found


@pytest.fixture
def api(session: aiohttp.ClientSession, sandbox: SandboxHandle) -> Api:
    return Api(session, sandbox)


def node(node_id: str, name: str, command: str = "DIDE_SHELL") -> dict[str, Any]:
    return {
        "id": node_id,
        "name": name,
        "recurrence": "Normal",
        "script": {"path": f"Sandbox/WF/{name}", "runtime": {"command": command}, "content": f"echo {name}"},
        "outputs": {"nodeOutputs": [{"data": node_id, "artifactType": "NodeOutput", "refTableName": name}]},
    }


def flowspec(
    workflow_id: str, name: str, nodes: list[dict[str, Any]], deps: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """A FlowSpec in the seed's shape; ``deps`` maps a node id to the outputs it depends on."""
    workflow = {
        "id": workflow_id,
        "name": name,
        "script": {"path": f"Sandbox/{name}", "runtime": {"command": "WORKFLOW"}},
        "outputs": {
            "nodeOutputs": [{"data": workflow_id, "artifactType": "NodeOutput", "refTableName": name}]
        },
        "nodes": nodes,
        "dependencies": [
            {"nodeId": n, "depends": [{"type": "Normal", "output": o} for o in outs]}
            for n, outs in (deps or {}).items()
        ],
    }
    envelope = {"name": name, "id": workflow_id, "type": "CycleWorkflow", "workflows": [workflow]}
    return {"version": "1.1.0", "kind": "CycleWorkflow", "spec": envelope}


def simple_spec(name: str = "wf") -> dict[str, Any]:
    return flowspec("1001", name, [node("2001", "a"), node("2002", "b")], {"2002": ["2001"]})


async def test_import_runs_asynchronously_then_the_definition_exists(api: Api) -> None:
    job = await api.import_(simple_spec())
    assert job["Status"] == "Running"
    assert job["Completed"] is False
    assert (job["Progress"], job["Response"], job["Type"]) == (0, "1001", "Create")
    assert isinstance(job["CreateTime"], int)
    assert abs(job["CreateTime"] - time.time() * 1000) < 5000
    assert (await api.objects())["workflow_definitions"] == []  # not before the job completes

    status = await api.wait(job["Id"])
    assert status == {"JobId": job["Id"], "Status": "Success", "Completed": "True", "Error": "",
                      "JobType": "Create", "CreateTime": str(job["CreateTime"])}  # fmt: skip
    [definition] = (await api.objects())["workflow_definitions"]
    assert (definition["id"], definition["name"], definition["path"], definition["imports"]) == (
        "1001",
        "wf",
        "Sandbox/wf",
        1,
    )
    assert definition["spec"] == simple_spec()


async def test_reimport_of_the_same_ids_is_an_update_not_a_second_definition(api: Api) -> None:
    await api.wait((await api.import_(simple_spec()))["Id"])
    job = await api.import_(simple_spec(name="wf renamed"))
    assert job["Type"] == "Update"
    assert (await api.wait(job["Id"]))["JobType"] == "Update"
    [definition] = (await api.objects())["workflow_definitions"]
    assert (definition["name"], definition["imports"]) == ("wf renamed", 2)


async def test_get_and_list_workflow_definitions(api: Api) -> None:
    await api.wait((await api.import_(simple_spec("orders daily")))["Id"])
    await api.wait((await api.import_(flowspec("1002", "users", [node("2003", "x")])))["Id"])

    found = (await api.ok("GetWorkflowDefinition", ProjectId=PROJECT, Id="1001"))["WorkflowDefinition"]
    assert (found["Id"], found["Name"], found["ProjectId"]) == ("1001", "orders daily", 10001)
    assert isinstance(found["CreateTime"], int)
    assert found["ModifyTime"] >= found["CreateTime"]
    nodes = json.loads(found["Spec"])["spec"]["workflows"][0]["nodes"]
    assert [n["name"] for n in nodes] == ["a", "b"]
    assert "content" not in nodes[0]["script"]  # IncludeScriptContent defaults to false
    full = await api.ok("GetWorkflowDefinition", ProjectId=PROJECT, Id="1001", IncludeScriptContent="true")
    assert json.loads(full["WorkflowDefinition"]["Spec"]) == simple_spec("orders daily")

    paging = (await api.ok("ListWorkflowDefinitions", ProjectId=PROJECT, Name="DAILY"))["PagingInfo"]
    assert (paging["PageNumber"], paging["PageSize"], paging["TotalCount"]) == (1, 10, 1)
    [listed] = paging["WorkflowDefinitions"]
    assert listed["Id"] == "1001"
    assert (listed["Type"], listed["ProjectId"]) == ("CycleWorkflow", 10001)
    assert listed["Script"] == {"Path": "Sandbox/orders daily", "Runtime": {"Command": "WORKFLOW"}}
    page2 = (await api.ok("ListWorkflowDefinitions", ProjectId=PROJECT, PageSize="1", PageNumber="2"))[
        "PagingInfo"
    ]
    assert page2["TotalCount"] == 2
    assert [d["Id"] for d in page2["WorkflowDefinitions"]] == ["1002"]
    status, body = await api("ListWorkflowDefinitions", ProjectId=PROJECT, PageSize="101")
    assert (status, body["Code"]) == (400, "InvalidParameter.PageSize")


def _dangling() -> dict[str, Any]:
    return flowspec("1001", "wf", [node("2001", "a")], {"2001": ["9999"]})


def _mutated(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    spec = simple_spec()
    change(spec["spec"]["workflows"][0])
    return spec


W = "$.spec.workflows[0]"
BAD_SPECS: list[tuple[str, Callable[[], dict[str, Any]], str]] = [
    ("duplicate name", lambda: flowspec("1001", "wf", [node("21", "x"), node("22", "y"), node("23", "x")]),
     f'{W}.nodes[2].name: duplicate node name "x"'),
    ("dangling output", _dangling,
     f'{W}.dependencies[0].depends[0].output: no node declares the output "9999"'),
    ("duplicate id", lambda: flowspec("1001", "wf", [node("2001", "a"), node("2001", "b")]),
     f'{W}.nodes[1].id: duplicate node id "2001"'),
    ("malformed id", lambda: flowspec("1001", "wf", [node("20x1", "a")]), f"{W}.nodes[0].id: malformed id"),
    ("id over 64 bits", lambda: flowspec("9300000000000000000", "wf", []), f"{W}.id: malformed id"),
    ("no workflow", lambda: {"version": "1.1.0", "kind": "CycleWorkflow", "spec": {"workflows": []}},
     f"{W}: missing workflow"),
    ("no name", lambda: _mutated(lambda w: w.pop("name")), f"{W}.name: missing"),
    ("no command", lambda: _mutated(lambda w: w["nodes"][1]["script"]["runtime"].pop("command")),
     f"{W}.nodes[1].script.runtime.command: missing"),
    ("no outputs", lambda: _mutated(lambda w: w["nodes"][0]["outputs"].update(nodeOutputs=[])),
     f"{W}.nodes[0].outputs.nodeOutputs: a node must declare at least one output"),
    ("foreign node", lambda: _mutated(lambda w: w["dependencies"][0].update(nodeId="3000")),
     f'{W}.dependencies[0].nodeId: "3000" is not a node of this workflow'),
]  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "error"), [(s, e) for _, s, e in BAD_SPECS], ids=[i for i, _, _ in BAD_SPECS]
)
async def test_a_bad_spec_fails_the_job_naming_the_json_path(
    api: Api, spec: Callable[[], dict[str, Any]], error: str
) -> None:
    job = await api.import_(spec())
    assert job["Status"] == "Running"  # validation shows in the job, not in the HTTP answer
    status = await api.wait(job["Id"])
    assert status["Status"] == "Fail"
    assert status["Error"].startswith(error)
    assert (await api.objects())["workflow_definitions"] == []


async def test_cross_workflow_dependency_resolves_to_an_imported_output(api: Api) -> None:
    downstream = flowspec("1002", "down", [node("2003", "c")], {"2003": ["2002"]})
    assert (await api.wait((await api.import_(downstream))["Id"]))["Status"] == "Fail"
    await api.wait((await api.import_(simple_spec()))["Id"])
    assert (await api.wait((await api.import_(downstream))["Id"]))["Status"] == "Success"
    # an output belongs to one workflow: another workflow may not declare it again
    thief = flowspec("1003", "thief", [node("2001", "a")])
    status = await api.wait((await api.import_(thief))["Id"])
    assert status["Status"] == "Fail"
    assert 'output "2001" is already declared by workflow 1001' in status["Error"]


async def test_a_path_holds_one_workflow_until_it_is_renamed_or_deleted(api: Api) -> None:
    async def status(spec: dict[str, Any], **extra: str) -> dict[str, Any]:
        return await api.wait((await api.import_(spec, **extra))["Id"])

    other = flowspec("1002", "wf", [node("2003", "x")])  # another workflow, at Sandbox/wf
    assert (await status(other, DryRun="true"))["Status"] == "Success"  # the path is free, and stays so
    assert (await status(simple_spec()))["Status"] == "Success"
    for extra in ({}, {"DryRun": "true"}):
        refused = await status(other, **extra)
        assert (refused["Status"], refused["Error"]) == ("Fail", "target folder already exists: Sandbox/wf")
    assert (await status(simple_spec()))["Status"] == "Success"  # its own path: an update
    assert (await status(simple_spec("wf renamed")))["Status"] == "Success"  # gives Sandbox/wf up
    assert (await status(other))["Status"] == "Success"
    assert (await status(simple_spec("wf")))["Status"] == "Fail"  # 1001 may not come back to it
    await api.ok("DeleteWorkflowDefinition", ProjectId=PROJECT, Id="1002")
    assert (await status(simple_spec("wf")))["Status"] == "Success"
    names = {d["id"]: d["path"] for d in (await api.objects())["workflow_definitions"]}
    assert names == {"1001": "Sandbox/wf"}


async def test_a_workflow_others_depend_on_cannot_be_deleted_until_they_no_longer_do(api: Api) -> None:
    """DataWorks undeploys only nodes with no descendants: a prune must not leave a dependency
    on a workflow that is gone."""
    await api.wait((await api.import_(simple_spec()))["Id"])
    downstream = flowspec("1002", "down", [node("2003", "c")], {"2003": ["2002"]})  # on 1001's node b
    await api.wait((await api.import_(downstream))["Id"])
    status, body = await api("DeleteWorkflowDefinition", ProjectId=PROJECT, Id="1001")
    assert (status, body["Code"]) == (400, "InvalidWorkflowDefinition.HasDescendants")
    assert "workflows 1002 (down) depend on it" in body["Message"]
    assert {d["id"] for d in (await api.objects())["workflow_definitions"]} == {"1001", "1002"}
    alone = flowspec("1002", "down", [node("2003", "c")])  # the same workflow, its dependency dropped
    assert (await api.wait((await api.import_(alone))["Id"]))["Status"] == "Success"
    await api.ok("DeleteWorkflowDefinition", ProjectId=PROJECT, Id="1001")
    assert {d["id"] for d in (await api.objects())["workflow_definitions"]} == {"1002"}


async def test_dry_run_validates_without_importing(api: Api) -> None:
    assert (await api.wait((await api.import_(simple_spec(), DryRun="true"))["Id"]))["Status"] == "Success"
    assert (await api.wait((await api.import_(_dangling(), DryRun="true"))["Id"]))["Status"] == "Fail"
    assert (await api.objects())["workflow_definitions"] == []


async def test_request_errors_are_http_errors_in_the_envelope(api: Api) -> None:
    cases: list[tuple[str, dict[str, str], int, str]] = [
        ("ImportWorkflowDefinition", {"Spec": "{}"}, 400, "MissingProjectId"),
        ("ImportWorkflowDefinition", {"ProjectId": PROJECT}, 400, "MissingSpec"),
        (
            "ImportWorkflowDefinition",
            {"ProjectId": PROJECT, "Spec": "{not json"},
            400,
            "InvalidParameter.Spec",
        ),
        ("ImportWorkflowDefinition", {"ProjectId": "777", "Spec": "{}"}, 403, "Forbidden.NotInProject"),
        ("GetJobStatus", {"JobId": "424242"}, 404, "InvalidJobId.NotFound"),
        (
            "GetWorkflowDefinition",
            {"ProjectId": PROJECT, "Id": "5"},
            404,
            "InvalidWorkflowDefinition.NotFound",
        ),
        ("ListWorkflowDefinitions", {"ProjectId": "777"}, 403, "Forbidden.NotInProject"),
    ]
    for action, params, http, code in cases:
        status, body = await api(action, **params)
        assert (status, body["Code"]) == (http, code), (action, params, body)
        assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert (await api.objects())["async_jobs"] == []


async def test_calls_are_counted(session: aiohttp.ClientSession, api: Api) -> None:
    await api.wait((await api.import_(simple_spec()))["Id"])
    await api("GetJobStatus", JobId="1")
    async with session.get(f"{api.handle.endpoint}/_sandbox/calls") as resp:
        counts = await resp.json()
    assert counts["ImportWorkflowDefinition"] == {"ok": 1}
    assert counts["GetJobStatus"]["InvalidJobId.NotFound"] == 1
    assert counts["GetJobStatus"]["ok"] >= 1


async def test_a_restarted_sandbox_keeps_definitions_and_finishes_a_job_started_before(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    data = tmp_path / "dw.db"
    async with running("dataworks", settings(data, job_delay=(0.05, 0.05))) as first:
        api = Api(session, first)
        await api.wait((await api.import_(simple_spec()))["Id"])
    async with running("dataworks", settings(data, job_delay=(0.6, 0.6))) as second:
        api = Api(session, second)
        [definition] = (await api.objects())["workflow_definitions"]
        assert definition["imports"] == 1
        pending = await api.import_(flowspec("1002", "later", [node("2003", "c")], {"2003": ["2002"]}))
        assert (await api.ok("GetJobStatus", JobId=pending["Id"]))["JobStatus"]["Status"] == "Running"
    async with running("dataworks", settings(data)) as third:
        api = Api(session, third)
        status = await api.wait(pending["Id"])
        assert (status["Status"], status["JobType"]) == ("Success", "Create")
        assert {d["id"]: d["imports"] for d in (await api.objects())["workflow_definitions"]} == {
            "1001": 1, "1002": 1
        }  # fmt: skip


def _jobs_as_the_release_before(data: Path) -> None:
    """Rewrite the jobs table as it was before it had an ``input`` column: the spec in the payload."""
    db = sqlite3.connect(data, isolation_level=None)
    db.executescript(
        """
        CREATE TABLE old_jobs (
            id TEXT PRIMARY KEY, type TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT NOT NULL,
            error TEXT NOT NULL, created_ms INTEGER NOT NULL, due_ms INTEGER NOT NULL, payload TEXT NOT NULL);
        INSERT INTO old_jobs SELECT id, type, status, outcome, error, created_ms, due_ms, payload FROM jobs;
        """
    )
    for id, payload, spec in db.execute("SELECT id, payload, input FROM jobs").fetchall():
        db.execute(
            "UPDATE old_jobs SET payload = ? WHERE id = ?",
            (json.dumps({**json.loads(payload), "spec": spec}), id),
        )
    db.executescript("DROP TABLE jobs; ALTER TABLE old_jobs RENAME TO jobs;")
    db.close()


async def test_an_import_running_in_a_file_of_the_release_before_finishes_with_its_spec(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    data = tmp_path / "dw.db"
    spec = simple_spec("carried")
    async with running("dataworks", settings(data, job_delay=(30, 30))) as first:
        job = await Api(session, first).import_(spec)
    _jobs_as_the_release_before(data)
    async with running("dataworks", settings(data)) as second:
        api = Api(session, second)
        db = sqlite3.connect(data)
        [(payload, carried)] = db.execute("SELECT payload, input FROM jobs").fetchall()
        assert "spec" not in json.loads(payload)
        assert json.loads(carried) == spec
        db.execute("UPDATE jobs SET due_ms = 0")  # due now, rather than in 30 s
        db.commit()
        db.close()
        assert (await api.wait(job["Id"]))["Status"] == "Success"
        found = await api.ok(
            "GetWorkflowDefinition", ProjectId=PROJECT, Id="1001", IncludeScriptContent="true"
        )
        assert json.loads(found["WorkflowDefinition"]["Spec"]) == spec


async def test_a_file_of_the_release_before_gets_its_paths_and_links_indexed(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    data = tmp_path / "dw.db"
    async with running("dataworks", settings(data)) as first:
        api = Api(session, first)
        await api.wait((await api.import_(simple_spec()))["Id"])
        downstream = flowspec("1002", "down", [node("2003", "c")], {"2003": ["2002"]})
        await api.wait((await api.import_(downstream))["Id"])
    db = sqlite3.connect(data)
    db.execute("DELETE FROM objects WHERE kind IN ('workflow_paths', 'workflow_depends', 'sandbox_meta')")
    db.commit()
    db.close()
    async with running("dataworks", settings(data)) as second:
        api = Api(session, second)
        refused = await api.wait((await api.import_(flowspec("1003", "wf", [node("2004", "x")])))["Id"])
        assert refused["Error"] == "target folder already exists: Sandbox/wf"
        status, _ = await api("DeleteWorkflowDefinition", ProjectId=PROJECT, Id="1001")
        assert status == 400


async def test_two_sandboxes_on_one_file_complete_a_job_once(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    data = tmp_path / "dw.db"
    async with running("dataworks", settings(data)) as one, running("dataworks", settings(data)) as two:
        first, second = Api(session, one), Api(session, two)
        job = await first.import_(simple_spec())
        await anyio.sleep(FAST[1])
        both = [
            await second.ok("GetJobStatus", JobId=job["Id"]),
            await first.ok("GetJobStatus", JobId=job["Id"]),
        ]
        assert [b["JobStatus"]["Status"] for b in both] == ["Success", "Success"]
        assert [d["imports"] for d in (await first.objects())["workflow_definitions"]] == [1]


# --- the official SDK against the sandbox --------------------------------------------------------


def sdk(handle: SandboxHandle, secret: str | None = None, algorithm: str | None = None) -> DataWorksSdk:
    config = openapi_models.Config(
        access_key_id=handle.credentials["access_key_id"],
        access_key_secret=secret or handle.credentials["access_key_secret"],
        endpoint=urlsplit(handle.endpoint).netloc,
        protocol="http",
    )
    if algorithm:
        config.signature_algorithm = algorithm
    return DataWorksSdk(config)


async def in_thread(fn: Callable[[], T]) -> T:
    """The SDK is synchronous; the sandbox needs this event loop free while it waits."""
    return await anyio.to_thread.run_sync(fn)


async def test_official_sdk_imports_and_polls(sandbox: SandboxHandle) -> None:
    client = sdk(sandbox)
    request = dw_models.ImportWorkflowDefinitionRequest(
        project_id=10001, spec=json.dumps(simple_spec("sdk wf"))
    )
    imported = await in_thread(lambda: client.import_workflow_definition(request))
    job = imported.body.async_job
    assert (job.status, job.completed, job.response, job.type) == ("Running", False, "1001", "Create")
    with anyio.fail_after(5):
        while True:
            polled = await in_thread(
                lambda: client.get_job_status(dw_models.GetJobStatusRequest(job_id=job.id))
            )
            if polled.body.job_status.completed == "True":
                break
            await anyio.sleep(0.02)
    assert polled.body.job_status.status == "Success"
    listed = await in_thread(
        lambda: client.list_workflow_definitions(
            dw_models.ListWorkflowDefinitionsRequest(project_id=10001, name="sdk")
        )
    )
    assert [d.id for d in listed.body.paging_info.workflow_definitions] == ["1001"]


async def test_official_sdk_v1_signature_is_accepted(sandbox: SandboxHandle) -> None:
    client = sdk(sandbox, algorithm="v2")  # the SDK's name for the RPC HMAC-SHA1 signature
    request = dw_models.ImportWorkflowDefinitionRequest(
        project_id=10001, spec=json.dumps(simple_spec("v1 wf"))
    )
    imported = await in_thread(lambda: client.import_workflow_definition(request))
    polled = await in_thread(
        lambda: client.get_job_status(dw_models.GetJobStatusRequest(job_id=imported.body.async_job.id))
    )
    assert polled.body.job_status.job_id == imported.body.async_job.id
    # proof that this really was V1: the gateway echoes a V1 string-to-sign on a mismatch
    wrong = sdk(sandbox, secret="not-the-secret", algorithm="v2")
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the SDK's exception classes vary by version
        await in_thread(lambda: wrong.get_job_status(dw_models.GetJobStatusRequest(job_id="1")))
    assert getattr(raised.value, "code", None) == "SignatureDoesNotMatch"
    assert "server string to sign is:GET&%2F&AccessKeyId%3D" in str(raised.value)


async def test_official_sdk_with_a_wrong_secret_gets_signature_does_not_match(sandbox: SandboxHandle) -> None:
    client = sdk(sandbox, secret="not-the-secret")
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the SDK's exception classes vary by version
        await in_thread(lambda: client.get_job_status(dw_models.GetJobStatusRequest(job_id="1")))
    assert getattr(raised.value, "code", None) == "SignatureDoesNotMatch"
    assert getattr(raised.value, "status_code", None) == 400
    assert "server string to sign is:ACS3-HMAC-SHA256" in str(raised.value)
    assert "not-the-secret" not in str(raised.value)


# --- migrator sandbox ------------------------------------------------------------------------------


class _Stdout(io.StringIO):
    """Stands in for stdout and says when the first line is complete."""

    def __init__(self) -> None:
        super().__init__()
        self.line_written = anyio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if "\n" in text:
            self.line_written.set()
        return written


async def _served_line(port: int | None, data: Path | None) -> dict[str, Any]:
    """Run ``serve`` until its JSON line appears, check the DataWorks entry answers, then cancel."""
    out = _Stdout()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(port, data, settings=settings(), out=out))
        with anyio.fail_after(5):
            await out.line_written.wait()
        line: dict[str, Any] = json.loads(out.getvalue())
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"{line['dataworks']['endpoint']}/_sandbox/calls") as r,
        ):
            assert r.status == 200
        tg.cancel_scope.cancel()
    assert out.getvalue().count("\n") == 1
    return line


async def test_serve_prints_one_json_line_and_serves_until_cancelled(tmp_path: Path) -> None:
    line = await _served_line(None, tmp_path / "sandbox.db")
    entry = line["dataworks"]
    assert entry["project_id"] == "10001"
    assert set(entry["credentials"]) == {"access_key_id", "access_key_secret"}
    assert entry["endpoint"].startswith("http://127.0.0.1:")
    assert (tmp_path / "sandbox.dataworks.db").exists()


async def test_serve_with_a_port_puts_dataworks_at_port_plus_two(free_ports: Callable[[int], int]) -> None:
    base = free_ports(3)  # emr, enos and dataworks listen on base, base + 1 and base + 2
    line = await _served_line(base, None)
    assert line["dataworks"]["endpoint"] == f"http://127.0.0.1:{base + 2}"


def test_a_spec_check_names_the_first_problem_in_document_order() -> None:
    """Outside outputs are looked up together after the walk; an unresolved one still comes
    before a malformed dependency that follows it."""
    from migrator.providers.dataworks.sandbox import SpecInvalid, check_spec

    def node(i: int) -> dict[str, Any]:
        return {"id": str(i), "name": f"n{i}", "script": {"runtime": {"command": "SHELL"}},
                "outputs": {"nodeOutputs": [{"data": f"o{i}"}]}}  # fmt: skip

    dependencies = [{"nodeId": "2", "depends": [{"output": "nowhere"}]}, {"nodeId": "999", "depends": []}]
    doc = {
        "spec": {"workflows": [{"id": "1", "name": "w", "nodes": [node(2)], "dependencies": dependencies}]}
    }
    lookups: list[list[str]] = []

    def owners(outputs: Any) -> dict[str, str]:
        lookups.append(list(outputs))
        return {}

    with pytest.raises(
        SpecInvalid, match=r'dependencies\[0\]\.depends\[0\]\.output: no node declares the output "nowhere"'
    ):
        check_spec(doc, owners)
    assert lookups[-1] == ["nowhere"], "outside outputs are looked up in one query"
