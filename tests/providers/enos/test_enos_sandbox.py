"""The EnOS sandbox over real loopback HTTP: APIM tokens and signatures, flows, directories, restarts.

Requests are signed with :mod:`migrator.auth.apim` by a small caller; the real client is tested
elsewhere.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import anyio
import pytest
from yarl import URL

from migrator.auth import apim
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.faults import Faults
from migrator.sandbox.server import SandboxHandle, running, serve

FLOWS = "/batch-processing-service/v2.1/flows"
DIRS = "/batch-processing-service/v2.1/directories"
TOKEN = "/apim-token-service/v2.0/token"


def now_ms() -> str:
    return str(int(time.time() * 1000))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[SandboxHandle]:
    async with running("enos", SandboxSettings(data_path=tmp_path / "enos.db")) as handle:
        yield handle


class Api:
    """Gets a token, then signs each call the way the reference describes."""

    def __init__(self, session: aiohttp.ClientSession, handle: SandboxHandle) -> None:
        self.session, self.handle = session, handle
        self.creds = handle.credentials
        self.token = ""
        self._last = 0

    def stamp(self) -> str:
        """A fresh millisecond timestamp (never reused, so encryptions never repeat by accident)."""
        value = max(int(time.time() * 1000), self._last + 1)
        self._last = value
        return str(value)

    async def token_call(self, verb: str, **extra: Any) -> dict[str, Any]:
        stamp = self.stamp()
        body = {
            "appKey": self.creds["app_key"],
            "encryption": apim.encryption(self.creds["app_key"], stamp, self.creds["app_secret"]),
            "timestamp": int(stamp),
            **extra,
        }
        return await self.post_raw(f"{TOKEN}/{verb}", body)

    async def post_raw(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self.session.post(f"{self.handle.endpoint}{path}", json=body) as resp:
            assert resp.status == 200
            found: dict[str, Any] = await resp.json()
            return found

    async def login(self) -> str:
        answer = await self.token_call("get")
        assert answer["status"] == 0, answer
        self.token = answer["data"]["accessToken"]
        return self.token

    async def call(
        self,
        method: str,
        path: str,
        action: str,
        body: Any = None,
        *,
        status: int = 200,
        secret: str | None = None,
        stamp: str | None = None,
        **query: str,
    ) -> dict[str, Any]:
        if not self.token:
            await self.login()
        params = {"action": action, "userId": self.creds["user_id"], "orgId": self.creds["org_id"], **query}
        raw = b"" if body is None else json.dumps(body, indent=2, ensure_ascii=False).encode()
        stamp = stamp or self.stamp()
        headers = apim.sign(self.token, params.items(), raw, stamp, secret or self.creds["app_secret"])
        headers["Content-Type"] = "application/json;charset=UTF-8"
        url = URL(f"{self.handle.endpoint}{path}?{urlencode(params)}", encoded=True)
        async with self.session.request(method, url, data=raw or None, headers=headers) as resp:
            assert resp.status == status
            found: dict[str, Any] = await resp.json(content_type=None)
            return found

    async def ok(self, method: str, path: str, action: str, body: Any = None, **query: str) -> Any:
        answer = await self.call(method, path, action, body, **query)
        assert (answer["code"], answer["msg"]) == (0, "OK"), answer
        return answer["data"]

    async def error(self, method: str, path: str, action: str, body: Any = None, **query: str) -> str:
        """The msg of a refused batch call, checking it is a 62102 with ``data`` null."""
        answer = await self.call(method, path, action, body, **query)
        assert answer["code"] == 62102, answer
        assert answer["data"] is None
        return str(answer["msg"])

    async def root(self) -> str:
        [root] = await self.ok("GET", DIRS, "listWorkFlowDirs")
        return str(root["key"])

    async def import_(self, name: str, struct: dict[str, Any] | None = None, **extra: Any) -> int:
        body = {"flowName": name, "desc": "", "dirId": await self.root(), "flowJson": struct or flow_struct()}
        data = await self.ok("POST", FLOWS, "import", {**body, **extra})
        return int(data["flowId"])

    async def inspect(self, what: str) -> Any:
        async with self.session.get(f"{self.handle.endpoint}/_sandbox/{what}") as resp:
            assert resp.status == 200
            return await resp.json()


@pytest.fixture
def api(session: aiohttp.ClientSession, sandbox: SandboxHandle) -> Api:
    return Api(session, sandbox)


RUN_MODE = (
    '{"taskMode":1,"cpu":0.5,"memory":1,"maxParallel":0,"keyType":0,"datasourceId":0,"path":"","content":""}'
)


def task(name: str, cmd: str = "echo hi") -> dict[str, Any]:
    return {
        "name": name, "resource": "default", "type": "COMMAND", "cmd": cmd, "submitter": "db_x",
        "filePackage": "", "cron": "", "priorityLevel": 0, "timeout": 300, "retryLimit": 3,
        "retryInterval": 0, "successCode": "0", "waitCode": "", "asLink": True, "runMode": RUN_MODE,
        "syncType": 1,
    }  # fmt: skip


def flow_struct(**over: Any) -> dict[str, Any]:
    """The import sample's Flow Struct with two tasks a -> b."""
    struct: dict[str, Any] = {
        "cycle": "D", "cron": "0 0 0 * * ? *", "parameters": '[{"key":"REPLACE","value":"lili1"}]',
        "submitter": "db_x", "owners": "alice", "visitors": "bob", "type": 1, "desc": "",
        "tasks": [task("a"), task("b", 'echo "${REPLACE}"')],
        "relations": [{"sourceTaskName": "a", "targetTaskName": "b", "rerun": False}],
        "startTime": "2019-11-22", "flowLinks": [], "syncType": 1, "linkRelations": [], "alertMode": 3,
        "taskLinks": [],
    }  # fmt: skip
    struct.update(over)
    return struct


# --- tokens and signatures ---------------------------------------------------------------------


class _Stdout(io.StringIO):
    """Stands in for stdout and says when the first line is complete."""

    def __init__(self) -> None:
        super().__init__()
        self.line_written = anyio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if "\n" in self.getvalue():
            self.line_written.set()
        return written


async def test_sandbox_line_names_app_key_secret_user_and_org(tmp_path: Path) -> None:
    out = _Stdout()
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: serve(None, tmp_path / "sandbox.db", out=out))
        with anyio.fail_after(5):
            await out.line_written.wait()
        tg.cancel_scope.cancel()
    enos = json.loads(out.getvalue())["enos"]
    assert enos["endpoint"].startswith("http://127.0.0.1:")
    assert enos["credentials"] == {
        "app_key": "sandbox-access-key-id",
        "app_secret": "sandbox-access-key-secret",
        "user_id": "u15426865866571",
        "org_id": "o15427722038191",
    }


async def test_token_get_returns_the_same_token_until_refresh_replaces_it(api: Api) -> None:
    first = await api.token_call("get")
    assert first["status"] == 0
    assert (first["msg"], first["business"]) == ("SUCCESS", "apim-token-service")
    token = first["data"]["accessToken"]
    assert 7100 < first["data"]["expire"] <= 7200
    again = await api.token_call("get")
    assert again["data"]["accessToken"] == token

    refreshed = await api.token_call("refresh", accessToken=token)
    assert refreshed["status"] == 0
    new = refreshed["data"]["accessToken"]
    assert new != token
    api.token = token  # the old token no longer works
    answer = await api.call("GET", FLOWS, "getMyFlow")
    assert (answer["code"], answer["msg"]) == (1203, "access token is invalid")
    api.token = new
    assert await api.ok("GET", FLOWS, "getMyFlow") == []
    stale = await api.token_call("refresh", accessToken=token)
    assert stale["status"] == 1204
    assert token not in json.dumps(stale)
    assert (await api.inspect("objects"))["tokens"] == 1


async def test_token_service_errors(api: Api) -> None:
    app_key, secret = api.creds["app_key"], api.creds["app_secret"]
    stamp = api.stamp()
    body = {"appKey": app_key, "encryption": apim.encryption(app_key, stamp, secret), "timestamp": stamp}
    assert (await api.post_raw(f"{TOKEN}/get", body))["status"] == 0  # timestamp as a string works too
    replay = await api.post_raw(f"{TOKEN}/get", body)
    assert (replay["status"], replay["data"]) == (1001, None)

    stamp = api.stamp()
    unknown = {"appKey": "nobody", "encryption": apim.encryption("nobody", stamp, secret), "timestamp": stamp}
    assert (await api.post_raw(f"{TOKEN}/get", unknown))["status"] == 1002
    wrong = {"appKey": app_key, "encryption": apim.encryption(app_key, stamp, "guess"), "timestamp": stamp}
    answer = await api.post_raw(f"{TOKEN}/get", wrong)
    assert (answer["status"], answer["msg"]) == (1003, "encryption not valid")
    assert secret not in json.dumps(answer)
    assert (await api.post_raw(f"{TOKEN}/get", {"appKey": app_key, "timestamp": stamp}))["status"] == 1202
    bad_time = {**wrong, "timestamp": "yesterday"}
    assert (await api.post_raw(f"{TOKEN}/get", bad_time))["status"] == 1004
    calls = await api.inspect("calls")
    assert calls["token.get"] == {"0": 1, "1001": 1, "1002": 1, "1003": 1, "1004": 1, "1202": 1}


async def test_expired_token_is_refused_with_1203(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    async with running("enos", SandboxSettings(data_path=tmp_path / "e.db", token_ttl=0.3)) as handle:
        api = Api(session, handle)
        assert await api.ok("GET", FLOWS, "getMyFlow") == []
        await anyio.sleep(0.4)
        answer = await api.call("GET", FLOWS, "getMyFlow")
        assert answer == {"code": 1203, "msg": "access token has expired"}
        old = api.token
        assert await api.login() != old  # a get after expiry issues a new token
        assert await api.ok("GET", FLOWS, "getMyFlow") == []


async def test_wrong_signature_stale_timestamp_and_missing_headers(api: Api) -> None:
    answer = await api.call("GET", FLOWS, "getMyFlow", secret="not-the-secret")
    assert answer == {"code": 497, "msg": "App Signature Checked Fail"}
    stale = str(int(time.time() * 1000) - 6 * 60 * 1000)
    answer = await api.call("GET", FLOWS, "getMyFlow", stamp=stale)
    assert answer == {"code": 497, "msg": "App Timestamp Checked Fail"}
    async with api.session.get(f"{api.handle.endpoint}{FLOWS}?action=getMyFlow") as resp:
        assert (await resp.json())["code"] == 1202
    # the body is signed byte for byte: the same JSON with other whitespace fails
    params = {"action": "enable", "userId": api.creds["user_id"], "orgId": api.creds["org_id"]}
    stamp = api.stamp()
    headers = apim.sign(api.token, params.items(), b'{"flowId": 1}', stamp, api.creds["app_secret"])
    url = f"{api.handle.endpoint}{FLOWS}?{urlencode(params)}"
    async with api.session.post(url, data=b'{"flowId":1}', headers=headers) as resp:
        assert (await resp.json())["msg"] == "App Signature Checked Fail"
    calls = await api.inspect("calls")
    assert (calls["flows.getMyFlow"], calls["flows.enable"]) == ({"497": 2, "1202": 1}, {"497": 1})


async def test_user_and_org_must_match(api: Api) -> None:
    answer = await api.call("GET", FLOWS, "getMyFlow", userId="u1")
    assert (answer["code"], answer["data"]) == (62101, None)
    assert await api.error("GET", FLOWS, "noSuchAction") == "Invalid parameter: action 'noSuchAction'"
    wrong_method = await api.call("POST", FLOWS, "getMyFlow", {}, status=405)
    assert wrong_method["code"] == 405


# --- flows -------------------------------------------------------------------------------------


async def test_import_then_export_round_trips_the_flow_struct(api: Api) -> None:
    flow_id = await api.import_("outuser", flowId=1)
    exported = await api.ok("GET", FLOWS, "export", flowId=str(flow_id))
    assert exported == {"name": "outuser", **flow_struct()}
    assert isinstance(exported["parameters"], str)
    assert isinstance(exported["tasks"][0]["runMode"], str)
    assert flow_id != 1  # a given flowId is ignored

    info = await api.ok("GET", FLOWS, "get", flowId=str(flow_id))
    assert (info["flowId"], info["flowName"], info["active"], info["type"]) == (flow_id, "outuser", 1, 1)
    assert (info["freq"], info["cycle"], info["doAs"], info["owner"]) == (
        "0 0 0 * * ? *",
        "D",
        "db_x",
        "alice",
    )
    graph = json.loads(info["graph"])
    [objects] = (await api.inspect("objects"))["flows"]
    ids = objects["tasks"]
    assert set(ids) == {"a", "b"}
    assert all(i.isdigit() for i in ids.values())
    assert [t["nodeId"] for t in graph["tasks"]] == [f"t_{ids['a']}", f"t_{ids['b']}"]
    assert graph["relations"] == [
        {"source": f"t_{ids['a']}", "target": f"t_{ids['b']}", "cycleGap": "D0", "rerun": False}
    ]
    assert objects["flowJson"] == exported
    assert (objects["owner"], objects["dirId"], objects["active"]) == ("u15426865866571", await api.root(), 1)


async def test_import_is_not_idempotent_and_names_are_unique(api: Api) -> None:
    first = await api.import_("one")
    second = await api.import_("two")
    assert second != first
    msg = await api.error(
        "POST", FLOWS, "import", {"flowName": "one", "dirId": await api.root(), "flowJson": flow_struct()}
    )
    assert msg == "Invalid parameter: flowName, a workflow of the same name already exists"
    msg = await api.error(
        "POST", FLOWS, "import", {"flowName": "three", "dirId": "f" * 32, "flowJson": flow_struct()}
    )
    assert msg == "Directory does not exist"
    manual = await api.import_("manual", flow_struct(type=0, cycle="", cron=""))
    assert (await api.ok("GET", FLOWS, "get", flowId=str(manual)))["active"] == 0
    assert (await api.inspect("calls"))["flows.import"] == {"0": 3, "62102": 2}


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        (
            {"relations": [{"sourceTaskName": "a", "targetTaskName": "zz", "rerun": False}]},
            "relations[0].targetTaskName: 'zz' is not a task of this workflow",
        ),
        (
            {
                "relations": [
                    {"sourceTaskName": "a", "targetTaskName": "b"},
                    {"sourceTaskName": "b", "targetTaskName": "a"},
                ]
            },
            "relations: the task relations form a cycle",
        ),
        (
            {"flowLinks": [{"linkId": "l1", "sourceFlowName": "ghost"}]},
            "flowLinks[0].sourceFlowName: no workflow named 'ghost' in this organization",
        ),
        (
            {"taskLinks": [{"linkId": "l1", "sourceFlowName": "up", "sourceTaskName": "nope"}]},
            "taskLinks[0].sourceTaskName: 'nope' is not a task of workflow 'up'",
        ),
        (
            {"linkRelations": [{"linkId": "l9", "targetTaskName": "a", "rerun": False}]},
            "linkRelations[0].linkId: 'l9' is not declared in flowLinks or taskLinks",
        ),
        (
            {"tasks": [task("a"), {**task("b"), "runMode": "{not json"}]},
            "tasks[1].runMode: not a JSON string",
        ),
        ({"tasks": [task("a"), task("a")], "relations": []}, "tasks[1].name: duplicate task name 'a'"),
        ({"parameters": "[oops"}, "parameters: not a JSON string of [{key, value}]"),
        ({"cron": "0 0 * * *"}, "cron: '0 0 * * *' is not a 7-field cron expression"),
        ({"cycle": "Y"}, "cycle: must be one of M, W, D, H, mi"),
        ({"type": 5}, "type: must be one of 0, 1, 2"),
    ],
)
async def test_import_validation_names_the_problem(api: Api, over: dict[str, Any], expected: str) -> None:
    await api.import_("up")
    body = {"flowName": "down", "dirId": await api.root(), "flowJson": flow_struct(**over)}
    msg = await api.error("POST", FLOWS, "import", body)
    assert msg.startswith(f"Workflow validation failed: {expected}"), msg
    assert [f["flowName"] for f in (await api.inspect("objects"))["flows"]] == ["up"]


async def test_links_export_by_name_and_block_deleting_the_upstream(api: Api) -> None:
    up = await api.import_("up")
    links = {
        "flowLinks": [{"linkId": "l1", "sourceFlowName": "up"}],
        "taskLinks": [{"linkId": "l2", "sourceFlowName": "up", "sourceTaskName": "b"}],
        "linkRelations": [
            {"linkId": "l1", "targetTaskName": "a", "rerun": False},
            {"linkId": "l2", "targetTaskName": "a", "rerun": True},
        ],
    }
    down = await api.import_("down", flow_struct(**links))
    assert await api.ok("GET", FLOWS, "export", flowId=str(down)) == {"name": "down", **flow_struct(**links)}
    graph = json.loads((await api.ok("GET", FLOWS, "get", flowId=str(down)))["graph"])
    up_b = (await api.inspect("objects"))["flows"][0]["tasks"]["b"]
    assert [(f["nodeId"], f["flowName"], f["isVirtual"]) for f in graph["flows"]] == [
        (f"f_{up}", "up", False),
        (f"f_{up}_{up_b}", f"{up_b}(b)", True),
    ]

    answer = await api.call("GET", FLOWS, "delete", flowId=str(up))
    assert (answer["code"], answer["msg"]) == (
        62104,
        "This workflow is relied on by other workflows and cannot be deleted",
    )
    assert await api.ok("GET", FLOWS, "delete", flowId=str(down)) == ""
    assert await api.ok("GET", FLOWS, "delete", flowId=str(up)) == ""
    assert (await api.inspect("objects"))["flows"] == []
    assert await api.error("GET", FLOWS, "export", flowId=str(up)) == "Flow does not exist"
    await api.import_("up")  # the name is free again


async def test_save_updates_the_schedule_and_graph_by_task_id(api: Api) -> None:
    up = await api.import_("up")
    flow_id = await api.import_("wf")
    ids = (await api.inspect("objects"))["flows"][1]["tasks"]
    a, b = ids["a"], ids["b"]
    graph: dict[str, Any] = {
        "id": str(flow_id), "type": 1, "name": "wf renamed", "freq": "0 30 1 * * ? *", "cycle": "D",
        "alertMode": 0, "doAs": "db_y", "parameters": "[]", "owners": "carol", "desc": "new",
        "startTime": "2020-01-01", "visitors": "", "active": 0, "queue": "q1",
        "tasks": [{"taskName": "a", "taskId": a, "x": 0.5, "y": 0.5, "nodeId": f"t_{a}"},
                  {"taskName": "b", "taskId": b, "x": 0.6, "y": 0.5, "nodeId": f"t_{b}"}],
        "flows": [{"flowId": str(up), "flowName": "up", "nodeId": f"f_{up}", "isVirtual": False,
                   "x": 0, "y": 0}],
        "relations": [{"source": f"t_{b}", "target": f"t_{a}", "cycleGap": "D0", "rerun": True},
                      {"source": f"f_{up}", "target": f"t_{b}", "cycleGap": "D-1", "rerun": False}],
    }  # fmt: skip
    unknown = {**graph, "tasks": [*graph["tasks"], {"taskName": "c", "taskId": "999", "x": 0, "y": 0}]}
    msg = await api.error("POST", FLOWS, "save", unknown)
    assert msg == "Invalid parameter: tasks[2].taskId: '999' is not a task of this workflow"
    assert await api.error("POST", FLOWS, "save", {**graph, "id": 1}) == "Flow does not exist"
    assert await api.error("POST", FLOWS, "save", {**graph, "name": "up"}) == (
        "Invalid parameter: flowName, a workflow of the same name already exists"
    )

    assert await api.ok("POST", FLOWS, "save", graph) == {"flowId": flow_id}
    info = await api.ok("GET", FLOWS, "get", flowId=str(flow_id))
    assert (info["flowName"], info["freq"], info["active"], info["doAs"], info["desc"]) == (
        "wf renamed", "0 30 1 * * ? *", 0, "db_y", "new",
    )  # fmt: skip
    saved = json.loads(info["graph"])
    assert saved["queue"] == "q1"
    assert {(r["source"], r["target"], r["cycleGap"]) for r in saved["relations"]} == {
        (f"t_{b}", f"t_{a}", "D0"),
        (f"f_{up}", f"t_{b}", "D-1"),
    }
    exported = await api.ok("GET", FLOWS, "export", flowId=str(flow_id))
    assert exported["relations"] == [{"sourceTaskName": "b", "targetTaskName": "a", "rerun": True}]
    assert exported["flowLinks"] == [{"linkId": f"f_{up}", "sourceFlowName": "up"}]
    assert exported["linkRelations"] == [{"linkId": f"f_{up}", "targetTaskName": "b", "rerun": False}]
    assert (exported["name"], exported["cron"], exported["submitter"]) == (
        "wf renamed",
        "0 30 1 * * ? *",
        "db_y",
    )
    type_change = await api.error("POST", FLOWS, "save", {**graph, "type": 0})
    assert "type" in type_change


async def test_get_my_flow_and_search_paging(api: Api) -> None:
    ids = [await api.import_(name) for name in ("orders daily", "orders hourly", "users")]
    mine = await api.ok("GET", FLOWS, "getMyFlow")
    assert mine == [
        {"flowId": str(i), "editable": True, "flowName": n, "cycle": "D"}
        for i, n in zip(ids, ("orders daily", "orders hourly", "users"), strict=True)
    ]
    assert [f["flowName"] for f in await api.ok("GET", FLOWS, "getMyFlow", expression="ORDERS")] == [
        "orders daily",
        "orders hourly",
    ]
    assert [f["flowId"] for f in await api.ok("GET", FLOWS, "getMyFlow", expression=str(ids[2]))] == [
        str(ids[2])
    ]

    async def page(no: int, size: int, **extra: Any) -> list[Any]:
        found: list[Any] = await api.ok(
            "POST", FLOWS, "search", {"pagination": {"pageNo": no, "pageSize": size}, **extra}
        )
        return found

    assert await page(1, 2) == [{"flowId": ids[0], "flowName": "orders daily"},
                                {"flowId": ids[1], "flowName": "orders hourly"}]  # fmt: skip
    assert await page(2, 2) == [{"flowId": ids[2], "flowName": "users"}]
    assert await page(3, 2) == []
    assert await page(1, 10, expression="hourly") == [{"flowId": ids[1], "flowName": "orders hourly"}]
    assert await api.error("POST", FLOWS, "search", {"pagination": {"pageNo": 0, "pageSize": 2}}) == (
        "Invalid parameter: pagination.pageNo and pageSize must be positive"
    )
    bad_sorter = {"pagination": {"pageNo": 1, "pageSize": 2, "sorters": [{"field": "name", "order": "ASC"}]}}
    assert await api.error("POST", FLOWS, "search", bad_sorter) == "The sorters field parameter is invalid"
    newest = {
        "pagination": {"pageNo": 1, "pageSize": 1, "sorters": [{"field": "createTime", "order": "DESC"}]}
    }
    assert (await api.ok("POST", FLOWS, "search", newest))[0]["flowId"] == ids[2]


async def test_enable_and_disable_flip_active(api: Api) -> None:
    flow_id = await api.import_("wf")
    assert await api.ok("POST", FLOWS, "disable", {"flowId": flow_id}) == ""
    assert (await api.ok("GET", FLOWS, "get", flowId=str(flow_id)))["active"] == 0
    assert await api.ok("POST", FLOWS, "enable", {"flowId": str(flow_id)}) == ""
    assert (await api.inspect("objects"))["flows"][0]["active"] == 1
    assert await api.error("POST", FLOWS, "enable", {"flowId": 42}) == "Flow does not exist"
    assert await api.error("POST", FLOWS, "enable", {}) == "Invalid parameter: flowId"


# --- directories -------------------------------------------------------------------------------


async def test_directories_create_and_list(api: Api) -> None:
    root = await api.root()
    assert len(root) == 32
    assert all(c in "0123456789abcdef" for c in root)
    made = await api.ok("POST", DIRS, "create", {"parentId": root, "dirName": "sales"})
    sub = made["dirId"]
    assert len(sub) == 32
    flow_id = await api.import_("wf", dirId=sub)
    [tree] = await api.ok("GET", DIRS, "listWorkFlowDirs")
    assert tree == {
        "title": "Workflow", "key": root, "type": 1, "isDirectory": True,
        "children": [{"title": "sales", "key": sub, "type": 1, "isDirectory": True, "children": [
            {"title": "wf", "key": flow_id, "type": 1, "isDirectory": False, "editable": True}]}],
    }  # fmt: skip
    errors = [
        ({"parentId": root, "dirName": ""}, "dirName cannot be empty"),
        ({"parentId": "", "dirName": "x"}, "parentId cannot be empty"),
        ({"parentId": "0" * 32, "dirName": "x"}, "parentId not found"),
        ({"parentId": root, "dirName": "sales"}, "A directory of the same name already exists"),
    ]
    for body, expected in errors:
        assert await api.error("POST", DIRS, "create", body) == expected
    assert (await api.inspect("calls"))["directories.create"] == {"0": 1, "62102": 4}


# --- faults and restarts -----------------------------------------------------------------------


async def test_lost_import_answer_still_creates_the_flow(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    settings = SandboxSettings(data_path=tmp_path / "e.db", faults=Faults(import_lost_answer=1.0))
    async with running("enos", settings) as handle:
        api = Api(session, handle)
        body = {"flowName": "wf", "dirId": await api.root(), "flowJson": flow_struct()}
        answer = await api.call("POST", FLOWS, "import", body)
        assert answer == {"code": 62109, "msg": "Failed to create workflow", "data": None}
        [created] = await api.ok("GET", FLOWS, "getMyFlow", expression="wf")
        assert created["flowName"] == "wf"
        assert (await api.inspect("calls"))["flows.import"] == {"62109": 1}


async def test_account_lock_fault(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    settings = SandboxSettings(data_path=tmp_path / "e.db", faults=Faults(account_locked=1.0))
    async with running("enos", settings) as handle:
        answer = await Api(session, handle).call("GET", FLOWS, "getMyFlow")
        assert (answer["code"], answer["msg"]) == (62105, "Your account has been locked")


async def test_restart_keeps_flows_directories_tokens_and_used_encryptions(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    settings = SandboxSettings(data_path=tmp_path / "e.db")
    async with running("enos", settings) as handle:
        api = Api(session, handle)
        token = await api.login()
        root = await api.root()
        sub = (await api.ok("POST", DIRS, "create", {"parentId": root, "dirName": "d"}))["dirId"]
        first = await api.import_("wf", dirId=sub)
        stamp = api.stamp()
        app_key, secret = api.creds["app_key"], api.creds["app_secret"]
        used = {"appKey": app_key, "encryption": apim.encryption(app_key, stamp, secret), "timestamp": stamp}
        assert (await api.post_raw(f"{TOKEN}/get", used))["data"]["accessToken"] == token
    async with running("enos", settings) as handle:
        api = Api(session, handle)
        api.token = token  # the token survives the restart
        assert await api.root() == root
        assert (await api.ok("GET", FLOWS, "export", flowId=str(first)))["name"] == "wf"
        assert await api.import_("wf2") > first  # ids keep counting
        assert (await api.post_raw(f"{TOKEN}/get", used))["status"] == 1001
        objects = await api.inspect("objects")
        assert [f["flowName"] for f in objects["flows"]] == ["wf", "wf2"]
        assert [d["dirName"] for d in objects["directories"]] == ["Workflow", "d"]
        assert objects["tokens"] == 1
        assert token not in json.dumps(objects)
        calls = await api.inspect("calls")
        assert calls["flows.import"] == {"0": 2}
        assert calls["token.get"] == {"0": 2, "1001": 1}
