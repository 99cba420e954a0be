"""A local EnOS Batch Processing Service v2.1 (behind an emulated APIM gateway) for tests and trials.

It serves what the migrator needs from EnOS: the APIM token service (``token/get``,
``token/refresh``), request-signature checks on every call, the workflow actions of
``/batch-processing-service/v2.1/flows`` (import, export, get, save, getMyFlow, search, delete,
enable, disable) and the directory actions (``create``, ``listWorkFlowDirs``). Everything lives in
a :class:`SandboxStore`, so a restarted sandbox keeps flows, directories, tokens, used
encryptions and call counts.

Choices where the reference is silent (documented here so the client can rely on them):

* Every answer is HTTP 200 with the code in the body, except a wrong HTTP method for an action
  (HTTP 405, ``{"code": 405, "msg": "Method Not Allowed"}``) and the gateway's quota and
  overload answers (below).
* Quotas are per app key and apply to batch calls once the token and signature are verified
  (the token service is exempt): a daily cap used up answers HTTP 429
  ``{"code": 429, "msg": "Resource Exhausted: the daily call limit of N is used up"}`` with
  ``Retry-After`` (whole seconds until the next quota day); a QPS quota or injected throttling
  HTTP 429 ``{"code": 429, "msg": "Resource Exhausted"}``; an injected server error HTTP 503
  ``{"code": 503, "msg": "Service Unavailable"}``, all with ``data`` null. Reads are
  ``flows.get/export/getMyFlow/search`` and ``directories.listWorkFlowDirs``.
* Gateway failures answer ``{"code", "msg"}`` (no ``data``): missing auth headers 1202; an
  unknown (never issued, or replaced by a refresh) token 1203 ``access token is invalid``; an
  expired token 1203 ``access token has expired``; a timestamp more than 5 minutes off 497
  ``App Timestamp Checked Fail``; a bad signature 497 ``App Signature Checked Fail``. A signed
  request may be sent again (no replay check on API calls, only on token encryptions).
* The token service refuses timestamps more than 5 minutes off with 1004; refreshing with a
  token that is not the app's current one answers 1204.
* A new flow starts with ``active`` 1 when it is periodic (``type`` 1), else 0. Only periodic
  flows must carry a cycle and a 7-field cron; manual (0) and temporary (2) ones may leave both
  empty.
* Ids: flows are integers from 2800, tasks digit strings from 105700. ``getMyFlow`` gives
  ``flowId`` as a string (documented), ``search`` as an integer.
* Graph nodes: a task is ``t_<taskId>``, an upstream flow ``f_<flowId>``, and an upstream task
  (a *virtual* flow named ``<taskId>(<taskName>)``) ``f_<flowId>_<taskId>``. Save replaces the
  graph: tasks and upstream nodes left out are dropped from the flow; it cannot add tasks or
  task links, nor change ``type``.
"""

from __future__ import annotations

import hmac
import json
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from migrator.auth import apim
from migrator.sandbox.base import SandboxSettings, sandbox_app
from migrator.sandbox.faults import FaultPlan, Refusal, Refused
from migrator.sandbox.storage import SandboxStore

USER_ID = "u15426865866571"
ORG_ID = "o15427722038191"
BASE = "/batch-processing-service/v2.1"
TOKEN_BASE = "/apim-token-service/v2.0/token"
CLOCK_SKEW = 300.0  # seconds a request timestamp may be away from the server clock
FIRST_FLOW_ID = 2800
FIRST_TASK_ID = 105700

FLOWS = "flows"  # stored with parent = own id, so delete_children removes exactly one flow
DIRS = "directories"
TOKENS = "tokens"  # one per app key: the current token and when it expires
COUNTERS = "counters"

CYCLES = ("M", "W", "D", "H", "mi")
PERIODIC = 1  # the one scheduling type that needs a cycle and a cron
SORT_FIELDS = {
    "createTime": "createdMs",
    "create_time": "createdMs",
    "updateTime": "updatedMs",
    "update_time": "updatedMs",
    "startTime": "startTime",
    "start_time": "startTime",
}
SAME_NAME = "Invalid parameter: flowName, a workflow of the same name already exists"
NO_FLOW = "Flow does not exist"
#: Batch calls that only read; every other call counts against the write quota.
READS = frozenset(
    {"flows.get", "flows.export", "flows.getMyFlow", "flows.search", "directories.listWorkFlowDirs"}
)


def identity(settings: SandboxSettings) -> dict[str, str]:
    """The one user and organisation every batch call must name as ``userId`` and ``orgId``."""
    return {"user_id": USER_ID, "org_id": ORG_ID}


def create_app(settings: SandboxSettings) -> web.Application:
    store = SandboxStore(settings.data_path)
    faults = FaultPlan(settings.faults, store)
    service = _EnOS(store, settings, faults)
    app = sandbox_app(store, service.objects, faults, call_name)
    app.router.add_post(f"{TOKEN_BASE}/get", service.token_get)
    app.router.add_post(f"{TOKEN_BASE}/refresh", service.token_refresh)
    for resource in service.routes:
        app.router.add_route("*", f"{BASE}/{resource}", service.batch)
    app.router.add_get("/_sandbox/calls", service.calls)
    return app


def call_name(request: web.Request) -> str:
    """A call as ``/_sandbox/calls`` counts it: ``token.<verb>`` or ``<resource>.<action>``."""
    prefix, _slash, last = request.path.rpartition("/")
    if prefix == TOKEN_BASE:
        return f"token.{last}"
    if prefix == BASE:
        return f"{last}.{request.query.get('action') or '-'}"
    return request.path


# --- errors ------------------------------------------------------------------------------------


class ApiError(Exception):
    """A refused call: ``code`` and ``msg`` go in the body, ``http`` is the HTTP status."""

    def __init__(
        self, code: int, msg: str, http: int = 200, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(msg)
        self.code, self.msg, self.http = code, msg, http
        self.headers = dict(headers or {})


def refusal_error(refused: Refused) -> ApiError:
    """The APIM gateway's answer to a call refused by a quota or an injected fault."""
    if refused.reason is Refusal.DAILY_CAP:
        msg = f"Resource Exhausted: the daily call limit of {refused.daily_cap} is used up"
        retry = str(max(1, math.ceil(refused.retry_after)))
        return ApiError(429, msg, 429, {"Retry-After": retry})
    if refused.reason is Refusal.SERVER_ERROR:
        return ApiError(503, "Service Unavailable", 503)
    return ApiError(429, "Resource Exhausted", 429)


def _invalid(msg: str) -> ApiError:
    return ApiError(62102, msg)


class _Invalid(Exception):
    """The first problem in a Flow Struct, as ``<path>: <what>``."""


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(
        body, status=status, headers=headers, dumps=lambda v: json.dumps(v, ensure_ascii=False)
    )


def _now_text() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S.0", time.localtime())


# --- Flow Struct checks (import) ---------------------------------------------------------------


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{path}: missing or not an object")
    return value


def _list(owner: dict[str, Any], key: str) -> list[Any]:
    value = owner.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Invalid(f"{key}: not an array")
    return value


def _text(owner: dict[str, Any], key: str, path: str, default: str | None = None) -> str:
    value = owner.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise _Invalid(f"{path}{key}: missing or not a string")
    return value


def _int_in(owner: dict[str, Any], key: str, path: str, allowed: range, default: int | None = None) -> int:
    value = owner.get(key, default)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        choices = ", ".join(map(str, allowed)) if len(allowed) <= 5 else f"{allowed[0]} to {allowed[-1]}"
        raise _Invalid(f"{path}{key}: must be one of {choices}")
    return value


def _cycle(value: Any, kind: int) -> str:
    if kind != PERIODIC and value in ("", None):
        return ""
    if value not in CYCLES:
        raise _Invalid(f"cycle: must be one of {', '.join(CYCLES)}")
    return str(value)


def _cron(value: Any, kind: int, label: str = "cron") -> str:
    if kind != PERIODIC and value in ("", None):
        return ""
    if not isinstance(value, str) or len(value.split()) != 7:
        raise _Invalid(f"{label}: {value!r} is not a 7-field cron expression")
    return value


def _parameters(value: Any) -> str:
    """Scheduling parameters as the JSON string of ``[{key, value}]`` the service keeps."""
    if value is None:
        return "[]"
    if isinstance(value, list):  # the save page documents a list; its sample sends a string
        value = json.dumps(value, ensure_ascii=False)
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, list) or not all(isinstance(p, dict) and "key" in p for p in parsed):
        raise _Invalid("parameters: not a JSON string of [{key, value}]")
    return str(value)


def _run_mode(task: dict[str, Any], path: str) -> None:
    raw = task.get("runMode")
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _Invalid(f"{path}runMode: not a JSON string of a RunMode object")


def _link_id(value: Any, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise _Invalid(f"{path}linkId: missing")
    return str(value)


def _acyclic(edges: list[tuple[str, str]], what: str) -> None:
    """Refuse a cycle among tasks (Kahn's algorithm over the task edges)."""
    nodes = {n for edge in edges for n in edge}
    incoming = dict.fromkeys(nodes, 0)
    for _s, t in edges:
        incoming[t] += 1
    ready = [n for n, k in incoming.items() if k == 0]
    while ready:
        n = ready.pop()
        for s, t in edges:
            if s == n:
                incoming[t] -= 1
                if incoming[t] == 0:
                    ready.append(t)
    if any(incoming.values()):
        raise _Invalid(f"{what}: the task relations form a cycle")


#: Finds an existing flow of the organisation by name.
FlowByName = Callable[[str], dict[str, Any] | None]


def check_struct(doc: Any, desc: str, find: FlowByName) -> dict[str, Any]:
    """Validate an import's ``flowJson``; returns the flow's parts as the sandbox stores them.

    Raises :class:`_Invalid` naming the first problem.
    """
    flow = _obj(doc, "flowJson")
    kind = _int_in(flow, "type", "", range(3))
    meta = {
        "cycle": _cycle(flow.get("cycle"), kind),
        "cron": _cron(flow.get("cron"), kind),
        "parameters": _parameters(flow.get("parameters")),
        "alertMode": _int_in(flow, "alertMode", "", range(4), 0),
        "submitter": _text(flow, "submitter", "", ""),
        "owners": _text(flow, "owners", "", ""),
        "visitors": _text(flow, "visitors", "", ""),
        "type": kind,
        "syncType": _int_in(flow, "syncType", "", range(2), 1),
        "desc": desc or _text(flow, "desc", "", ""),
        "startTime": _text(flow, "startTime", "", ""),
        "queue": "",
    }
    tasks: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, item in enumerate(_list(flow, "tasks")):
        at = f"tasks[{i}]."
        task = _obj(item, at[:-1])
        name = _text(task, "name", at)
        if name in names:
            raise _Invalid(f"{at}name: duplicate task name {name!r}")
        names.add(name)
        _run_mode(task, at)
        tasks.append(task)

    relations: list[dict[str, Any]] = []
    for i, item in enumerate(_list(flow, "relations")):
        at = f"relations[{i}]."
        relation = _obj(item, at[:-1])
        ends = [_text(relation, key, at) for key in ("sourceTaskName", "targetTaskName")]
        for key, end in zip(("sourceTaskName", "targetTaskName"), ends, strict=True):
            if end not in names:
                raise _Invalid(f"{at}{key}: {end!r} is not a task of this workflow")
        if ends[0] == ends[1]:
            raise _Invalid(f"{at}targetTaskName: a task cannot depend on itself")
        rerun = bool(relation.get("rerun", False))
        relations.append({"source": ends[0], "target": ends[1], "rerun": rerun, "cycleGap": ""})
    _acyclic([(r["source"], r["target"]) for r in relations], "relations")

    links: list[dict[str, Any]] = []
    for key in ("flowLinks", "taskLinks"):
        for i, item in enumerate(_list(flow, key)):
            at = f"{key}[{i}]."
            link = _obj(item, at[:-1])
            link_id = _link_id(link.get("linkId"), at)
            if any(known["linkId"] == link_id for known in links):
                raise _Invalid(f"{at}linkId: duplicate linkId {link_id!r}")
            source = _text(link, "sourceFlowName", at)
            upstream = find(source)
            if upstream is None:
                raise _Invalid(f"{at}sourceFlowName: no workflow named {source!r} in this organization")
            task_name = _text(link, "sourceTaskName", at) if key == "taskLinks" else None
            if task_name is not None and task_name not in upstream["taskIds"]:
                raise _Invalid(f"{at}sourceTaskName: {task_name!r} is not a task of workflow {source!r}")
            node = _link_node(
                upstream["flowId"], None if task_name is None else upstream["taskIds"][task_name]
            )
            if any(known["nodeId"] == node for known in links):
                raise _Invalid(f"{at}sourceFlowName: {source!r} is already linked")
            links.append(
                {"linkId": link_id, "flowId": upstream["flowId"], "taskName": task_name, "nodeId": node}
            )

    link_relations: list[dict[str, Any]] = []
    for i, item in enumerate(_list(flow, "linkRelations")):
        at = f"linkRelations[{i}]."
        relation = _obj(item, at[:-1])
        link_id = _link_id(relation.get("linkId"), at)
        if not any(link["linkId"] == link_id for link in links):
            raise _Invalid(f"{at}linkId: {link_id!r} is not declared in flowLinks or taskLinks")
        target = _text(relation, "targetTaskName", at)
        if target not in names:
            raise _Invalid(f"{at}targetTaskName: {target!r} is not a task of this workflow")
        rerun = bool(relation.get("rerun", False))
        link_relations.append({"linkId": link_id, "target": target, "rerun": rerun, "cycleGap": ""})
    return {
        "meta": meta,
        "tasks": tasks,
        "relations": relations,
        "links": links,
        "linkRelations": link_relations,
    }


def _link_node(flow_id: int, task_id: str | None) -> str:
    return f"f_{flow_id}" if task_id is None else f"f_{flow_id}_{task_id}"


# --- the service -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Call:
    """One batch call: its decoded query and raw body."""

    query: Mapping[str, str]
    raw: bytes

    def body(self) -> dict[str, Any]:
        try:
            value = json.loads(self.raw or b"null")
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise _invalid("Incorrect parameter: the request body must be a JSON object")
        return value


def _flow_id(value: Any) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid("Invalid parameter: flowId")
    return value


Handler = Callable[[_Call], Any]


class _EnOS:
    """Token service, gateway checks and batch actions over the sandbox store."""

    def __init__(self, store: SandboxStore, settings: SandboxSettings, faults: FaultPlan) -> None:
        self._store = store
        self._settings = settings
        self._faults = faults
        self.routes: dict[str, dict[str, tuple[str, Handler]]] = {
            "flows": {
                "import": ("POST", self.import_flow),
                "export": ("GET", self.export_flow),
                "get": ("GET", self.get_flow),
                "save": ("POST", self.save_flow),
                "getMyFlow": ("GET", self.get_my_flow),
                "search": ("POST", self.search_flow),
                "delete": ("GET", self.delete_flow),
                "enable": ("POST", lambda call: self._set_active(call, 1)),
                "disable": ("POST", lambda call: self._set_active(call, 0)),
            },
            "directories": {
                "create": ("POST", self.create_directory),
                "listWorkFlowDirs": ("GET", self.list_directories),
            },
        }
        #: Faults that strike after the action committed: the change is made, the answer is lost.
        self._lost_answers = {
            "flows.import": (settings.faults.import_lost_answer, 62109, "Failed to create workflow")
        }
        with store.transaction():
            if not any(d["parentId"] is None for d in store.objects(DIRS)):
                root = secrets.token_hex(16)
                store.put(
                    DIRS, root, {"dirId": root, "dirName": "Workflow", "parentId": None}, name="Workflow"
                )

    # --- token service ---------------------------------------------------------------------------

    async def token_get(self, request: web.Request) -> web.Response:
        return await self._token_call(request, "get")

    async def token_refresh(self, request: web.Request) -> web.Response:
        return await self._token_call(request, "refresh")

    async def _token_call(self, request: web.Request, verb: str) -> web.Response:
        raw = await request.read()
        try:
            with self._store.transaction():
                data: dict[str, Any] | None = self._token(verb, raw)
            status, msg = 0, "SUCCESS"
        except ApiError as exc:
            status, msg, data = exc.code, exc.msg, None
        self._store.count_call(f"token.{verb}", str(status))
        return _json({"status": status, "msg": msg, "business": "apim-token-service", "data": data})

    def _token(self, verb: str, raw: bytes) -> dict[str, Any]:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(1004, "invalid parameter: the body must be a JSON object")
        needed = ("appKey", "encryption", "timestamp") + (("accessToken",) if verb == "refresh" else ())
        for key in needed:
            if body.get(key) in (None, ""):
                raise ApiError(1202, f"parameter is empty: {key}")
        app_key, given, stamp = body["appKey"], body["encryption"], body["timestamp"]
        if isinstance(stamp, bool) or not isinstance(stamp, int | str) or not str(stamp).isdigit():
            raise ApiError(1004, "invalid parameter: timestamp must be epoch milliseconds")
        if not isinstance(app_key, str) or not isinstance(given, str):
            raise ApiError(1004, "invalid parameter: appKey and encryption must be strings")
        if app_key != self._settings.access_key_id:
            raise ApiError(1002, "appKey does not exist")
        now = time.time()
        if abs(int(stamp) / 1000 - now) > CLOCK_SKEW:
            raise ApiError(1004, "invalid parameter: timestamp is more than 5 minutes from the server time")
        expected = apim.encryption(app_key, str(stamp), self._settings.access_key_secret)
        if not hmac.compare_digest(expected, given):
            raise ApiError(1003, "encryption not valid")
        if not self._store.use_nonce("token.encryption", given, expires=now + 2 * CLOCK_SKEW, now=now):
            raise ApiError(1001, "repeated request: this encryption was already used")
        current = self._store.get(TOKENS, app_key)
        if verb == "refresh":
            presented = body["accessToken"]
            if current is None or not hmac.compare_digest(current["token"], str(presented)):
                raise ApiError(1204, "failed to refresh access token: it is not this app's current token")
            current = None
        if current is None or current["expires"] <= now:
            current = {
                "token": secrets.token_hex(24),
                "expires": now + self._settings.token_ttl,
                "appKey": app_key,
            }
            self._store.put(TOKENS, app_key, current)
        return {"accessToken": current["token"], "expire": max(0, math.ceil(current["expires"] - now))}

    # --- gateway ---------------------------------------------------------------------------------

    def _authenticate(self, request: web.Request, raw: bytes) -> str:
        """The APIM checks in the gateway's order: token, then timestamp, then signature.

        Returns the app key the token was issued to, which the quotas are kept for.
        """
        token = request.headers.get(apim.TOKEN_HEADER, "")
        given = request.headers.get(apim.SIGNATURE_HEADER, "")
        stamp = request.headers.get(apim.TIMESTAMP_HEADER, "")
        if not (token and given and stamp):
            raise ApiError(1202, "parameter is empty: apim-accesstoken, apim-signature and apim-timestamp")
        record = next(
            (t for t in self._store.objects(TOKENS) if hmac.compare_digest(t["token"], token)), None
        )
        if record is None:
            raise ApiError(1203, "access token is invalid")
        now = time.time()
        if record["expires"] <= now:
            raise ApiError(1203, "access token has expired")
        if not stamp.isdigit() or abs(int(stamp) / 1000 - now) > CLOCK_SKEW:
            raise ApiError(497, "App Timestamp Checked Fail")
        secret = self._settings.access_key_secret
        try:
            good = apim.verify(token, list(request.query.items()), raw, stamp, secret, given)
        except UnicodeDecodeError:
            good = False
        if not good:
            raise ApiError(497, "App Signature Checked Fail")
        return str(record.get("appKey", self._settings.access_key_id))

    async def batch(self, request: web.Request) -> web.Response:
        """Every ``/batch-processing-service/v2.1/<resource>?action=`` call."""
        resource = request.path.rsplit("/", 1)[-1]
        action = request.query.get("action", "")
        key = f"{resource}.{action or '-'}"
        raw = await request.read()
        try:
            app_key = self._authenticate(request, raw)
        except ApiError as exc:
            self._store.count_call(key, str(exc.code))
            return _json({"code": exc.code, "msg": exc.msg})
        try:
            refused = self._faults.admit(app_key, write=key not in READS)
            if refused is not None:
                raise refusal_error(refused)
            data = self._dispatch(request, resource, action, raw)
            self._lose_answer(key)
        except ApiError as exc:
            self._store.count_call(key, str(exc.code))
            return _json({"code": exc.code, "msg": exc.msg, "data": None}, exc.http, exc.headers)
        self._store.count_call(key, "0")
        return _json({"code": 0, "msg": "OK", "data": data})

    def _lose_answer(self, key: str) -> None:
        """After a committed change, maybe answer as the real service's ambiguous failure does."""
        fault = self._lost_answers.get(key)
        if fault is not None and self._faults.roll(fault[0]):
            raise ApiError(fault[1], fault[2])

    def _dispatch(self, request: web.Request, resource: str, action: str, raw: bytes) -> Any:
        route = self.routes[resource].get(action)
        if route is None:
            raise _invalid(f"Invalid parameter: action {action!r}")
        method, handler = route
        if request.method != method:
            raise ApiError(405, "Method Not Allowed", 405)
        if request.query.get("userId") != USER_ID or request.query.get("orgId") != ORG_ID:
            raise ApiError(62101, "userId does not exist, or it does not match orgId")
        if self._faults.roll(self._settings.faults.account_locked):
            raise ApiError(62105, "Your account has been locked")
        with self._store.transaction():
            return handler(_Call(request.query, raw))

    # --- store helpers ---------------------------------------------------------------------------

    def _next_id(self, counter: str, first: int) -> int:
        found = self._store.get(COUNTERS, counter)
        value = first if found is None else int(found["next"])
        self._store.put(COUNTERS, counter, {"next": value + 1})
        return value

    def _flows(self) -> list[dict[str, Any]]:
        return self._store.objects(FLOWS)

    def _flow_named(self, name: str) -> dict[str, Any] | None:
        return next(iter(self._store.named(FLOWS, name)), None)  # stored under their flowName

    def _flow(self, value: Any) -> dict[str, Any]:
        found = self._store.get(FLOWS, str(_flow_id(value)))
        if found is None:
            raise _invalid(NO_FLOW)
        if found["owner"] != USER_ID:
            raise ApiError(62103, "User has no privilege")
        return found

    def _save(self, flow: dict[str, Any]) -> None:
        key = str(flow["flowId"])
        self._store.put(FLOWS, key, flow, name=flow["flowName"], parent=key)

    def _names(self, flow: dict[str, Any]) -> dict[int, str]:
        """The names of the flows ``flow`` links to, read without decoding any other flow."""
        found = self._store.names(FLOWS, (str(link["flowId"]) for link in flow["links"]))
        return {int(k): v for k, v in found.items()}

    # --- flows -----------------------------------------------------------------------------------

    def import_flow(self, call: _Call) -> dict[str, Any]:
        """A new flow with new ids every time (import is not an upsert; a given flowId is ignored)."""
        body = call.body()
        name = body.get("flowName")
        if not isinstance(name, str) or not name.strip():
            raise _invalid("Invalid parameter: flowName")
        dir_id = body.get("dirId")
        if not isinstance(dir_id, str) or self._store.get(DIRS, dir_id) is None:
            raise _invalid("Directory does not exist")
        if self._flow_named(name) is not None:
            raise _invalid(SAME_NAME)
        desc = body.get("desc") or ""
        try:
            parts = check_struct(
                body.get("flowJson"), desc if isinstance(desc, str) else "", self._flow_named
            )
        except _Invalid as exc:
            raise _invalid(f"Workflow validation failed: {exc}") from None
        flow_id = self._next_id("flow", FIRST_FLOW_ID)
        tasks = [
            {"taskId": str(self._next_id("task", FIRST_TASK_ID)), "x": 0.1 * i, "y": 0.1, "def": task}
            for i, task in enumerate(parts.pop("tasks"))
        ]
        for i, link in enumerate(parts["links"]):
            link.update(x=0.1 * i, y=0.0)
        cycle = parts["meta"]["cycle"]
        for relation in parts["relations"] + parts["linkRelations"]:
            relation["cycleGap"] = f"{cycle}0"
        now_ms, now_text = int(time.time() * 1000), _now_text()
        flow = {
            "flowId": flow_id,
            "flowName": name,
            "dirId": dir_id,
            "active": 1 if parts["meta"]["type"] == 1 else 0,
            "owner": USER_ID,
            "createdMs": now_ms,
            "updatedMs": now_ms,
            "createTime": now_text,
            "updateTime": now_text,
            "tasks": tasks,
            "taskIds": {t["def"]["name"]: t["taskId"] for t in tasks},
            **parts,
        }
        self._save(flow)
        return {"flowId": flow_id}

    def _struct(self, flow: dict[str, Any]) -> dict[str, Any]:
        """The Flow Struct export answers: names, not ids."""
        meta, names = flow["meta"], self._names(flow)
        flow_links, task_links = [], []
        for link in flow["links"]:
            entry = {"linkId": link["linkId"], "sourceFlowName": names.get(link["flowId"], "")}
            if link["taskName"] is None:
                flow_links.append(entry)
            else:
                task_links.append({**entry, "sourceTaskName": link["taskName"]})
        return {
            "name": flow["flowName"],
            **{k: meta[k] for k in ("cycle", "cron", "parameters", "alertMode", "submitter", "owners")},
            **{k: meta[k] for k in ("visitors", "type", "syncType", "desc", "startTime")},
            "tasks": [t["def"] for t in flow["tasks"]],
            "flowLinks": flow_links,
            "taskLinks": task_links,
            "relations": [
                {"sourceTaskName": r["source"], "targetTaskName": r["target"], "rerun": r["rerun"]}
                for r in flow["relations"]
            ],
            "linkRelations": [
                {"linkId": r["linkId"], "targetTaskName": r["target"], "rerun": r["rerun"]}
                for r in flow["linkRelations"]
            ],
        }

    def export_flow(self, call: _Call) -> dict[str, Any]:
        return self._struct(self._flow(call.query.get("flowId")))

    def _graph(self, flow: dict[str, Any]) -> dict[str, Any]:
        """The id-keyed graph form that get answers (as a string) and save takes."""
        names = self._names(flow)
        ids = flow["taskIds"]
        links = {link["linkId"]: link for link in flow["links"]}
        nodes = []
        for link in flow["links"]:
            upstream = names.get(link["flowId"], "")
            virtual = link["taskName"] is not None
            if virtual:
                upstream_flow = self._store.get(FLOWS, str(link["flowId"])) or {"taskIds": {}}
                upstream = f"{upstream_flow['taskIds'].get(link['taskName'], '')}({link['taskName']})"
            nodes.append({"flowId": str(link["flowId"]), "flowName": upstream, "nodeId": link["nodeId"],
                          "isVirtual": virtual, "x": link["x"], "y": link["y"]})  # fmt: skip
        relations = [
            {"source": f"t_{ids[r['source']]}", "target": f"t_{ids[r['target']]}", "cycleGap": r["cycleGap"],
             "rerun": r["rerun"]}
            for r in flow["relations"]
        ] + [
            {"source": links[r["linkId"]]["nodeId"], "target": f"t_{ids[r['target']]}",
             "cycleGap": r["cycleGap"], "rerun": r["rerun"]}
            for r in flow["linkRelations"]
        ]  # fmt: skip
        return {
            "tasks": [
                {"taskName": t["def"]["name"], "taskId": t["taskId"], "nodeId": f"t_{t['taskId']}",
                 "x": t["x"], "y": t["y"]}
                for t in flow["tasks"]
            ],
            "flows": nodes,
            "relations": relations,
            "queue": flow["meta"]["queue"],
        }  # fmt: skip

    def get_flow(self, call: _Call) -> dict[str, Any]:
        flow = self._flow(call.query.get("flowId"))
        meta = flow["meta"]
        return {
            "flowId": flow["flowId"],
            "flowName": flow["flowName"],
            "active": flow["active"],
            "creator": flow["owner"],
            "createTime": flow["createTime"],
            "updateUser": flow["owner"],
            "updateTime": flow["updateTime"],
            "freq": meta["cron"],
            "cycle": meta["cycle"],
            "parameters": meta["parameters"],
            "owner": meta["owners"],
            "visitor": meta["visitors"],
            "doAs": meta["submitter"],
            "alertMode": meta["alertMode"],
            "graph": json.dumps(self._graph(flow), ensure_ascii=False),
            "entry": 1,
            "type": meta["type"],
            "syncType": meta["syncType"],
            "desc": meta["desc"],
            "startTime": meta["startTime"],
            "virtual": False,
            "locked": False,
            "hasEditPri": True,
            "hasReadPri": True,
            "isUserLocked": False,
        }

    def save_flow(self, call: _Call) -> dict[str, Any]:
        """Replace a flow's schedule and graph; tasks are only referenced by their existing ids."""
        body = call.body()
        flow = self._flow(body.get("id"))
        try:
            changes = self._check_save(body, flow)
        except _Invalid as exc:
            raise _invalid(f"Invalid parameter: {exc}") from None
        name = changes.pop("flowName")
        if name != flow["flowName"] and self._flow_named(name) is not None:
            raise _invalid(SAME_NAME)
        flow.update(changes, flowName=name, updatedMs=int(time.time() * 1000), updateTime=_now_text())
        self._save(flow)
        return {"flowId": flow["flowId"]}

    def _check_save(self, body: dict[str, Any], flow: dict[str, Any]) -> dict[str, Any]:
        meta = dict(flow["meta"])
        kind = _int_in(body, "type", "", range(3))
        if kind != meta["type"]:
            raise _Invalid("type: the scheduling type cannot be changed after creation")
        meta.update(
            cycle=_cycle(body.get("cycle"), kind),
            cron=_cron(body.get("freq"), kind, "freq"),
            alertMode=_int_in(body, "alertMode", "", range(4)),
            submitter=_text(body, "doAs", "", ""),
            owners=_text(body, "owners", "", ""),
            visitors=_text(body, "visitors", "", ""),
            startTime=_text(body, "startTime", "", meta["startTime"]),
            parameters=_parameters(body.get("parameters", meta["parameters"])),
            desc=_text(body, "desc", "", meta["desc"]),
            queue=_text(body, "queue", "", meta["queue"]),
        )
        name = _text(body, "name", "")
        active = _int_in(body, "active", "", range(2))

        by_id = {t["taskId"]: t for t in flow["tasks"]}
        tasks, task_nodes = [], {}
        for i, item in enumerate(_list(body, "tasks")):
            at = f"tasks[{i}]."
            node = _obj(item, at[:-1])
            task_id = str(node.get("taskId", ""))
            if task_id not in by_id:
                raise _Invalid(f"{at}taskId: {task_id!r} is not a task of this workflow")
            if f"t_{task_id}" in task_nodes:
                raise _Invalid(f"{at}taskId: {task_id!r} appears twice")
            tasks.append({**by_id[task_id], "x": node.get("x", 0.0), "y": node.get("y", 0.0)})
            task_nodes[f"t_{task_id}"] = by_id[task_id]["def"]["name"]

        old_links = {link["nodeId"]: link for link in flow["links"]}
        links: list[dict[str, Any]] = []
        for i, item in enumerate(_list(body, "flows")):
            at = f"flows[{i}]."
            node = _obj(item, at[:-1])
            upstream_id = _flow_id(node.get("flowId"))
            node_id = str(node.get("nodeId") or _link_node(upstream_id, None))
            link = old_links.get(node_id)
            if link is None:
                if node.get("isVirtual") or node_id != _link_node(upstream_id, None):
                    raise _Invalid(f"{at}nodeId: {node_id!r} is not an upstream node of this workflow")
                if upstream_id == flow["flowId"] or self._store.get(FLOWS, str(upstream_id)) is None:
                    raise _Invalid(f"{at}flowId: workflow {upstream_id} does not exist")
                link = {"linkId": node_id, "flowId": upstream_id, "taskName": None, "nodeId": node_id}
            if any(known["nodeId"] == node_id for known in links):
                raise _Invalid(f"{at}nodeId: {node_id!r} appears twice")
            links.append({**link, "x": node.get("x", 0.0), "y": node.get("y", 0.0)})

        link_nodes = {link["nodeId"]: link["linkId"] for link in links}
        relations, link_relations = [], []
        for i, item in enumerate(_list(body, "relations")):
            at = f"relations[{i}]."
            relation = _obj(item, at[:-1])
            source, target = str(relation.get("source", "")), str(relation.get("target", ""))
            if target not in task_nodes:
                raise _Invalid(f"{at}target: {target!r} is not a task node of this graph")
            gap = _text(relation, "cycleGap", at, f"{meta['cycle']}0")
            rerun = bool(relation.get("rerun", False))
            if source in task_nodes:
                relations.append(
                    {
                        "source": task_nodes[source],
                        "target": task_nodes[target],
                        "rerun": rerun,
                        "cycleGap": gap,
                    }
                )
            elif source in link_nodes:
                link_relations.append(
                    {
                        "linkId": link_nodes[source],
                        "target": task_nodes[target],
                        "rerun": rerun,
                        "cycleGap": gap,
                    }
                )
            else:
                raise _Invalid(f"{at}source: {source!r} is not a node of this graph")
        _acyclic([(r["source"], r["target"]) for r in relations], "relations")
        return {
            "flowName": name,
            "active": active,
            "meta": meta,
            "tasks": tasks,
            "taskIds": {t["def"]["name"]: t["taskId"] for t in tasks},
            "links": links,
            "relations": relations,
            "linkRelations": link_relations,
        }

    def get_my_flow(self, call: _Call) -> list[dict[str, Any]]:
        return [
            {
                "flowId": str(f["flowId"]),
                "editable": True,
                "flowName": f["flowName"],
                "cycle": f["meta"]["cycle"],
            }
            for f in self._matching(call.query.get("expression", ""))
        ]

    def _matching(self, expression: str) -> list[dict[str, Any]]:
        """Flows whose name or id contains ``expression`` (case-insensitive), oldest first."""
        return self._store.objects(FLOWS, name_contains=expression, or_id_contains=True)

    def search_flow(self, call: _Call) -> list[dict[str, Any]]:
        body = call.body()
        expression = body.get("expression") or ""
        if not isinstance(expression, str):
            raise _invalid("Invalid parameter: expression")
        pagination = body.get("pagination")
        if not isinstance(pagination, dict):
            raise _invalid("Invalid parameter: pagination")
        try:
            page_no = _int_in(pagination, "pageNo", "pagination.", range(1, 2**31))
            page_size = _int_in(pagination, "pageSize", "pagination.", range(1, 2**31))
        except _Invalid:
            raise _invalid("Invalid parameter: pagination.pageNo and pageSize must be positive") from None
        found = self._matching(expression)
        sorters = pagination.get("sorters") or []
        for sorter in reversed(sorters if isinstance(sorters, list) else [None]):
            field = sorter.get("field") if isinstance(sorter, dict) else None
            order = sorter.get("order", "ASC") if isinstance(sorter, dict) else None
            if field not in SORT_FIELDS or order not in ("ASC", "DESC"):
                raise _invalid("The sorters field parameter is invalid")
            key = SORT_FIELDS[field]
            found.sort(
                key=lambda f: f[key] if key != "startTime" else f["meta"][key], reverse=order == "DESC"
            )
        page = found[(page_no - 1) * page_size : page_no * page_size]
        return [{"flowId": f["flowId"], "flowName": f["flowName"]} for f in page]

    def delete_flow(self, call: _Call) -> str:
        flow = self._flow(call.query.get("flowId"))
        for other in self._flows():
            if other["flowId"] != flow["flowId"] and any(
                link["flowId"] == flow["flowId"] for link in other["links"]
            ):
                raise ApiError(62104, "This workflow is relied on by other workflows and cannot be deleted")
        self._store.delete_children(str(flow["flowId"]), FLOWS)
        return ""

    def _set_active(self, call: _Call, active: int) -> str:
        flow = self._flow(call.body().get("flowId"))
        flow.update(active=active, updatedMs=int(time.time() * 1000), updateTime=_now_text())
        self._save(flow)
        return ""

    # --- directories -----------------------------------------------------------------------------

    def create_directory(self, call: _Call) -> dict[str, Any]:
        body = call.body()
        name, parent = body.get("dirName"), body.get("parentId")
        if not isinstance(name, str) or not name.strip():
            raise _invalid("dirName cannot be empty")
        if not isinstance(parent, str) or not parent:
            raise _invalid("parentId cannot be empty")
        if self._store.get(DIRS, parent) is None:
            raise _invalid("parentId not found")
        if any(d["parentId"] == parent and d["dirName"] == name for d in self._store.objects(DIRS)):
            raise _invalid("A directory of the same name already exists")
        dir_id = secrets.token_hex(16)
        self._store.put(DIRS, dir_id, {"dirId": dir_id, "dirName": name, "parentId": parent}, name=name)
        return {"dirId": dir_id}

    def list_directories(self, _call: _Call) -> list[dict[str, Any]]:
        dirs, flows = self._store.objects(DIRS), self._flows()

        def tree(directory: dict[str, Any]) -> dict[str, Any]:
            key = directory["dirId"]
            children = [tree(d) for d in dirs if d["parentId"] == key]
            files = [
                {
                    "title": f["flowName"],
                    "key": f["flowId"],
                    "type": 1,
                    "isDirectory": False,
                    "editable": True,
                }
                for f in flows
                if f["dirId"] == key
            ]
            return {"title": directory["dirName"], "key": key, "type": 1, "isDirectory": True,
                    "children": children + files}  # fmt: skip

        return [tree(d) for d in dirs if d["parentId"] is None]

    # --- inspection ------------------------------------------------------------------------------

    async def objects(self, _request: web.Request) -> web.Response:
        """``GET /_sandbox/objects`` (unsigned): flows as stored, directories, and how many tokens."""
        flows = [
            {
                "flowId": f["flowId"],
                "flowName": f["flowName"],
                "dirId": f["dirId"],
                "active": f["active"],
                "owner": f["owner"],
                "flowJson": self._struct(f),
                "tasks": dict(f["taskIds"]),
            }
            for f in self._flows()
        ]
        return _json(
            {"flows": flows, "directories": self._store.objects(DIRS), "tokens": self._store.count(TOKENS)}
        )

    async def calls(self, _request: web.Request) -> web.Response:
        """``GET /_sandbox/calls`` (unsigned): ``{"<resource>.<action>": {"<code>": n}}``."""
        return _json(self._store.calls())
