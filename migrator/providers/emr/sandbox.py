"""A local EMR Data Development (2016-04-08) for the engine's tests and for people trying the tool.

It serves the Flow actions the migrator writes and reads behind the emulated POP gateway, so the
official ``alibabacloud-emr20160408`` SDK can call it unmodified: jobs (``CreateFlowJob``,
``ModifyFlowJob``, ``DeleteFlowJob``, ``DescribeFlowJob``, ``ListFlowJob``), flows (``CreateFlow``,
``CreateFlowForWeb``, ``ModifyFlowForWeb``, ``DeleteFlow``, ``DescribeFlow``, ``ListFlow``),
folders (``CreateFlowCategory``, ``DescribeFlowCategory``, ``ListFlowCategory``) and
``ListFlowProject``. There is one project and one existing cluster (see :func:`identity`).

Errors come in the two shapes the real service uses. Parameter problems are the gateway's:
``Missing{Name}`` and ``InvalidParameter.{Name}`` (everything wrong inside a ``Graph`` is
``InvalidParameter.Graph``), ``InvalidRegionId``, all HTTP 400. What the flow backend refuses
(an unknown project, flow, job, category or cluster, a duplicate folder, a job still used by a
flow, a page size of 250 or more) comes in EMR's lowercase envelope
``{"code": "FLOW_API_FAILED", "message", "requestId", "successResponse": false}``, also HTTP 400.

Choices where the documentation is silent: a new flow's ``Status`` is ``STOP_SCHEDULE`` (EMR
schedules a flow only once it is started); ``Periodic`` is true when a cron is set; a job's
``FailAct`` defaults to ``STOP``, ``mode`` to ``YARN``, retries to 0; a Modify changes only the
fields it is sent, a parameter absent or empty leaving its field as it was (so parent flows, an
end of schedule or resources, once set, cannot be removed through the API); fields never set are left
out of answers, as the service's JSON serialiser does with nulls; deletes are soft (kept in the
data file, invisible to every action and to ``GET /_sandbox/objects``).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from migrator.sandbox.acs import AcsError, AcsGateway, Call, json_response
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.faults import FaultPlan
from migrator.sandbox.storage import SandboxStore

VERSION = "2016-04-08"
PRODUCT = "Emr"
REGION_ID = "cn-hangzhou"
PROJECT_ID = "FP-5A3F0C2D7E9B1A46"
PROJECT_NAME = "sandbox_project"
CLUSTER_ID = "C-7D2E9F41B6A3C085"
USER_ID = "1283491727430562"
PROJECT_CREATED_MS = 1_700_000_000_000
MAX_PAGE_SIZE = 250  # exclusive, as the service words it
DEFAULT_STATUS = "STOP_SCHEDULE"
FLOW_STATUSES = ("STOP_SCHEDULE", "UNDER_SCHEDULE", "RUNNING")
JOB_TYPES = ("MR", "SPARK", "HIVE_SQL", "HIVE", "PIG", "SQOOP", "SPARK_SQL", "SPARK_STREAMING", "SHELL")
CATEGORY_TYPES = ("FLOW", "JOB")

CATEGORIES = "flow_categories"
JOBS = "flow_jobs"
FLOWS = "flows"
TOKENS = "flow_client_tokens"  # id "<project>:<token>", parent = the flow it created

_RESOURCE = re.compile(r"ResourceList\.([0-9]+)\.(Path|Alias)")


def identity(settings: SandboxSettings) -> dict[str, str]:
    """The sandbox's one project, its region and its one existing cluster."""
    return {"project_id": PROJECT_ID, "region_id": REGION_ID, "cluster_id": CLUSTER_ID}


def create_app(settings: SandboxSettings) -> web.Application:
    store = SandboxStore(settings.data_path)
    faults = FaultPlan(settings.faults, store)
    service = _Emr(store)
    gateway = _EmrGateway(
        product=PRODUCT,
        version=VERSION,
        actions={
            "CreateFlowJob": service.create_flow_job,
            "ModifyFlowJob": service.modify_flow_job,
            "DeleteFlowJob": service.delete_flow_job,
            "DescribeFlowJob": service.describe_flow_job,
            "ListFlowJob": service.list_flow_job,
            "CreateFlow": service.create_flow,
            "CreateFlowForWeb": service.create_flow_for_web,
            "ModifyFlowForWeb": service.modify_flow_for_web,
            "DeleteFlow": service.delete_flow,
            "DescribeFlow": service.describe_flow,
            "ListFlow": service.list_flow,
            "CreateFlowCategory": service.create_flow_category,
            "DescribeFlowCategory": service.describe_flow_category,
            "ListFlowCategory": service.list_flow_category,
            "ListFlowProject": service.list_flow_project,
        },
        store=store,
        credentials={settings.access_key_id: settings.access_key_secret},
        faults=faults,
    )
    return gateway.application(service.objects)


# --- the EMR flow backend's own error envelope ---------------------------------------------------


class FlowApiError(AcsError):
    """A refusal by the flow backend, answered in EMR's lowercase envelope instead of the gateway's."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__("FLOW_API_FAILED", message, status)


def flow_api_envelope(message: str, request_id: str) -> dict[str, Any]:
    """EMR Data Development's error body: lowercase keys and ``successResponse: false``."""
    return {"code": "FLOW_API_FAILED", "message": message, "requestId": request_id, "successResponse": False}


class _EmrGateway(AcsGateway):
    """The POP gateway, except that flow-backend refusals keep their lowercase envelope."""

    def _error(self, request: web.Request, request_id: str, action: str, exc: AcsError) -> web.Response:
        if not isinstance(exc, FlowApiError):
            return super()._error(request, request_id, action, exc)
        self._store.count_call(action, exc.code)
        return json_response(flow_api_envelope(exc.message, request_id), exc.status, request_id=request_id)


# --- parameter parsing: one small parser per kind of value, fields described by tables ----------

Parser = Callable[[str, str], Any]  # (parameter name, raw value) -> the value stored


def _invalid(name: str, message: str) -> AcsError:
    return AcsError(f"InvalidParameter.{name}", f"The parameter {name} {message}")


def _text(_name: str, raw: str) -> str:
    return raw


def _bool(name: str, raw: str) -> bool:
    """Booleans travel as ``true``/``false`` (the Python SDK sends ``True``/``False``)."""
    value = raw.lower()
    if value not in ("true", "false"):
        raise _invalid(name, f'must be true or false, got "{raw}".')
    return value == "true"


def _int_in(low: int, high: int) -> Parser:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise _invalid(name, f'must be an integer from {low} to {high}, got "{raw}".')
        return value

    return parse


_epoch_ms = _int_in(0, 2**63 - 1)


def _choice(*values: str) -> Parser:
    def parse(name: str, raw: str) -> str:
        if raw not in values:
            raise _invalid(name, f'is not valid: "{raw}". Valid values: {", ".join(values)}.')
        return raw

    return parse


def _json_text(name: str, raw: str) -> str:
    """A JSON document carried as a string: checked, then stored as sent."""
    try:
        json.loads(raw)
    except ValueError as exc:
        raise _invalid(name, f"must be a JSON string: {exc}.") from None
    return raw


def _alert_conf(name: str, raw: str) -> str:
    """``{"items": [{"enable", "eventId", "alertUserGroupIdList", "alertDingDingGroupList"}]}``."""
    doc = json.loads(_json_text(name, raw))
    items = doc.get("items", []) if isinstance(doc, dict) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise _invalid(name, 'must be a JSON object whose "items" is a list of objects.')
    return raw


def _cron(name: str, raw: str) -> str:
    """A Quartz expression: 6 or 7 space-separated fields (``0 0 0-23/1 * * ?``)."""
    if len(raw.split()) not in (6, 7):
        raise _invalid(name, f'is not a Quartz cron expression (6 or 7 fields): "{raw}".')
    return raw


@dataclass(frozen=True, slots=True)
class _Param:
    """One request parameter: its wire name, the stored key, how to read it, and its default."""

    wire: str
    key: str
    parse: Parser = _text
    required: bool = False
    default: Any = None


def _read(call: Call, params: Iterable[_Param], *, partial: bool = False) -> dict[str, Any]:
    """Parse ``params`` from the call; ``partial`` (a Modify) keeps only what was sent."""
    values: dict[str, Any] = {}
    for param in params:
        raw = call.get(param.wire)
        if raw != "":
            values[param.key] = param.parse(param.wire, raw)
        elif param.required and not partial:
            call.require(param.wire)  # raises Missing{Name}
        elif not partial:
            values[param.key] = param.default
    return values


# Fields CreateFlowJob and ModifyFlowJob share (Modify: all optional, only those sent change).
_JOB_FIELDS = (
    _Param("Name", "name", required=True),
    _Param("Description", "description", required=True),
    _Param("FailAct", "fail_act", _choice("CONTINUE", "STOP"), default="STOP"),
    _Param("MaxRetry", "max_retry", _int_in(0, 5), default=0),
    _Param("RetryInterval", "retry_interval", _int_in(0, 300), default=0),
    _Param("RetryPolicy", "retry_policy"),
    _Param("MaxRunningTimeSec", "max_running_time_sec", _epoch_ms, default=0),
    _Param("Mode", "mode", _choice("YARN", "LOCAL"), default="YARN"),
    _Param("ClusterId", "cluster_id"),
    _Param("Params", "params"),
    _Param("ParamConf", "param_conf", _json_text),
    _Param("CustomVariables", "custom_variables", _json_text),
    _Param("EnvConf", "env_conf", _json_text),
    _Param("RunConf", "run_conf", _json_text),
    _Param("MonitorConf", "monitor_conf", _json_text),
    _Param("AlertConf", "alert_conf", _json_text),
)
_JOB_CREATE_ONLY = (
    _Param("Type", "type", _choice(*JOB_TYPES), required=True),
    _Param("Adhoc", "adhoc", _bool, default=False),
)

# Fields every flow write shares; the cron, Graph/Application and references are read apart.
_FLOW_FIELDS = (
    _Param("Name", "name", required=True),
    _Param("Description", "description", required=True),
    _Param("StartSchedule", "start_schedule", _epoch_ms),
    _Param("EndSchedule", "end_schedule", _epoch_ms),
    _Param("CreateCluster", "create_cluster", _bool, default=False),
    _Param("ClusterId", "cluster_id"),
    _Param("HostName", "host_name"),
    _Param("Namespace", "namespace"),
    _Param("AlertConf", "alert_conf", _alert_conf),
    _Param("AlertUserGroupBizId", "alert_user_group_biz_id"),
    _Param("AlertDingDingGroupBizId", "alert_ding_ding_group_biz_id"),
    _Param("Lifecycle", "lifecycle"),
    _Param("LogArchiveLocation", "log_archive_location"),
)
_FLOW_APPLICATION = (_Param("Application", "application"),)
_FLOW_MODIFY_ONLY = (
    _Param("Periodic", "periodic", _bool),
    _Param("Status", "status", _choice(*FLOW_STATUSES)),
)


def _cron_param(call: Call) -> str | None:
    """``CronExpr`` (the SDK's name) or ``CronExpression`` (the seed doc's); both must agree."""
    cron_expr, cron_expression = call.get("CronExpr"), call.get("CronExpression")
    if cron_expr and cron_expression and cron_expr != cron_expression:
        raise _invalid("CronExpr", "and CronExpression disagree; send one of them.")
    raw = cron_expr or cron_expression
    return _cron("CronExpr" if cron_expr else "CronExpression", raw) if raw else None


def _resources(call: Call) -> list[dict[str, str]] | None:
    """``ResourceList.N.Path``/``.Alias`` in N order; None when the call sends no list."""
    found: dict[int, dict[str, str]] = {}
    for name, value in call.params.items():
        match = _RESOURCE.fullmatch(name)
        if match:
            found.setdefault(int(match[1]), {})[match[2].lower()] = value
    if not found:
        return None
    resources = []
    for n in sorted(found):
        if not found[n].get("path"):
            call.require(f"ResourceList.{n}.Path")
        resources.append({"path": found[n]["path"], "alias": found[n].get("alias", "")})
    return resources


def _check_schedule(flow: dict[str, Any]) -> None:
    start, end = flow.get("start_schedule"), flow.get("end_schedule")
    if flow.get("cron") and start is None:
        raise AcsError("MissingStartSchedule", "StartSchedule is mandatory when a cron expression is set.")
    if start is not None and end is not None and start >= end:
        raise _invalid("StartSchedule", f"({start}) must be less than EndSchedule ({end}).")


def _check_cluster(owner: dict[str, Any]) -> None:
    """An existing cluster (``C-``), or with ``CreateCluster`` a cluster template (``CT-``)."""
    cluster = owner.get("cluster_id")
    if not cluster:
        return
    if owner.get("create_cluster"):
        if not cluster.startswith("CT-"):
            raise _invalid(
                "ClusterId", f'must be a cluster template (CT-...) when CreateCluster is true: "{cluster}".'
            )
        return
    if cluster != CLUSTER_ID:
        raise FlowApiError(f"cluster [{cluster}] not exist")


# --- Graph -----------------------------------------------------------------------------------------

_NODE_TYPES = {"START": ":start:", "END": ":end:", "JOB": ":action:"}


def _graph_error(message: str) -> AcsError:
    return AcsError("InvalidParameter.Graph", f"The parameter Graph is not valid: {message}")


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _graph_error(f"{where} must be a JSON object.")
    return value


def _graph_text(owner: dict[str, Any], key: str, where: str) -> str:
    value = owner.get(key)
    if not isinstance(value, str) or not value:
        raise _graph_error(f"{where}.{key} is missing.")
    return value


def check_graph(raw: str, job: Callable[[str], dict[str, Any] | None]) -> dict[str, Any]:
    """Validate a ``Graph`` and return the ``Application`` it implies.

    ``job(id)`` returns a live job of the flow's project or None. The Application is the
    execution definition DescribeFlow shows: ``nodeDefMap`` keyed by node id, with the node's out
    edges as ``transitions`` and its in-degree as ``dependencies``.
    """
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise _graph_error(f"not JSON ({exc}).") from None
    graph = _dict(doc, "the graph")
    nodes, edges = graph.get("nodes"), graph.get("edges")
    if not isinstance(nodes, list) or not isinstance(edges, list):
        raise _graph_error('the graph must have "nodes" and "edges" lists.')

    kinds: dict[str, str] = {}
    names: dict[str, str] = {}
    job_ids: dict[str, str] = {}
    for i, item in enumerate(nodes):
        node = _dict(item, f"nodes[{i}]")
        node_id = _graph_text(node, "id", f"nodes[{i}]")
        if node_id in kinds:
            raise _graph_error(f'nodes[{i}].id: duplicate node id "{node_id}".')
        attribute = _dict(node.get("attribute"), f"nodes[{i}].attribute")
        kind = attribute.get("type")
        if kind not in _NODE_TYPES:
            raise _graph_error(f'nodes[{i}].attribute.type must be START, END or JOB, got "{kind}".')
        kinds[node_id] = kind
        label = node.get("label")
        names[node_id] = label if isinstance(label, str) and label else kind.lower()
        if kind == "JOB":
            job_id = _graph_text(attribute, "jobId", f"nodes[{i}].attribute")
            found = job(job_id)
            if found is None:
                raise _graph_error(
                    f'nodes[{i}].attribute.jobId: job "{job_id}" does not exist in the project.'
                )
            job_ids[node_id] = job_id
            if not (isinstance(label, str) and label):
                names[node_id] = found["name"]
    counts = Counter(kinds.values())
    for kind in ("START", "END"):
        if counts[kind] != 1:
            raise _graph_error(f"the graph must have exactly one {kind} node, found {counts[kind]}.")

    transitions: dict[str, list[str]] = {node_id: [] for node_id in kinds}
    sources: dict[str, set[str]] = {node_id: set() for node_id in kinds}
    for i, item in enumerate(edges):
        edge = _dict(item, f"edges[{i}]")
        source, target = (_graph_text(edge, end, f"edges[{i}]") for end in ("source", "target"))
        for end, node_id in (("source", source), ("target", target)):
            if node_id not in kinds:
                raise _graph_error(f'edges[{i}].{end}: "{node_id}" is not a node of the graph.')
        if kinds[target] == "START" or kinds[source] == "END":
            raise _graph_error(f"edges[{i}]: nothing may run before START or after END.")
        if target not in transitions[source]:
            transitions[source].append(target)
        sources[target].add(source)
    _check_acyclic(transitions)

    return {
        "nodeDefMap": {
            node_id: {
                **({"jobId": job_ids[node_id]} if node_id in job_ids else {}),
                "name": names[node_id],
                "type": _NODE_TYPES[kind],
                "transitions": transitions[node_id],
                "dependencies": len(sources[node_id]),
            }
            for node_id, kind in kinds.items()
        }
    }


def _check_acyclic(transitions: dict[str, list[str]]) -> None:
    """Kahn's algorithm: whatever cannot be ordered sits on a cycle."""
    indegree = Counter(target for targets in transitions.values() for target in targets)
    ready = [node for node in transitions if indegree[node] == 0]
    ordered = 0
    while ready:
        node = ready.pop()
        ordered += 1
        for target in transitions[node]:
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    if ordered < len(transitions):
        stuck = sorted(node for node in transitions if indegree[node] > 0)
        raise _graph_error(f'the graph has a cycle through node "{stuck[0]}".')


def _graph_job_ids(raw: str | None) -> list[str]:
    """The jobs a stored (already valid) Graph runs."""
    if not raw:
        return []
    nodes = json.loads(raw)["nodes"]
    return [n["attribute"]["jobId"] for n in nodes if n["attribute"]["type"] == "JOB"]


# --- answers ---------------------------------------------------------------------------------------


def _compact(fields: dict[str, Any]) -> dict[str, Any]:
    """Leave out what was never set, as the service's JSON serialiser leaves out nulls."""
    return {key: value for key, value in fields.items() if value is not None}


def _job_fields(job: dict[str, Any]) -> dict[str, Any]:
    """ListFlowJob's job: note ``Adhoc`` as a string and the lowercase ``mode`` key."""
    return _compact(
        {
            "Id": job["id"],
            "Name": job["name"],
            "Type": job["type"],
            "Description": job["description"],
            "Adhoc": "true" if job["adhoc"] else "false",
            "CategoryId": job["category_id"],
            "FailAct": job["fail_act"],
            "MaxRetry": job["max_retry"],
            "RetryInterval": job["retry_interval"],
            "Params": job["params"],
            "ParamConf": job["param_conf"],
            "CustomVariables": job["custom_variables"],
            "EnvConf": job["env_conf"],
            "RunConf": job["run_conf"],
            "MonitorConf": job["monitor_conf"],
            "AlertConf": job["alert_conf"],
            "mode": job["mode"],
            "GmtCreate": job["gmt_create"],
            "GmtModified": job["gmt_modified"],
            "ResourceList": {
                "Resource": [{"Path": r["path"], "Alias": r["alias"]} for r in job["resources"]]
            },
        }
    )


def _job_detail(job: dict[str, Any]) -> dict[str, Any]:
    return _compact(
        {
            **_job_fields(job),
            "RetryPolicy": job["retry_policy"],
            "MaxRunningTimeSec": job["max_running_time_sec"],
            "ClusterId": job["cluster_id"],
        }
    )


def _flow_fields(flow: dict[str, Any]) -> dict[str, Any]:
    """ListFlow's flow."""
    return _compact(
        {
            "Id": flow["id"],
            "Name": flow["name"],
            "Description": flow["description"],
            "Type": flow["type"],
            "Status": flow["status"],
            "Periodic": flow["periodic"],
            "CategoryId": flow["category_id"],
            "ClusterId": flow["cluster_id"],
            "CreateCluster": flow["create_cluster"],
            "HostName": flow["host_name"],
            "CronExpr": flow["cron"],
            "StartSchedule": flow["start_schedule"],
            "EndSchedule": flow["end_schedule"],
            "Graph": flow["graph"],
            "AlertConf": flow["alert_conf"],
            "AlertUserGroupBizId": flow["alert_user_group_biz_id"],
            "AlertDingDingGroupBizId": flow["alert_ding_ding_group_biz_id"],
            "GmtCreate": flow["gmt_create"],
            "GmtModified": flow["gmt_modified"],
            "ProjectId": flow["project_id"],
        }
    )


def _category_fields(category: dict[str, Any]) -> dict[str, Any]:
    return _compact(
        {
            "Id": category["id"],
            "Name": category["name"],
            "ParentId": category["parent_id"],
            "ProjectId": category["project_id"],
            "Type": category["type"],
            "GmtCreate": category["gmt_create"],
            "GmtModified": category["gmt_modified"],
        }
    )


def _project_fields() -> dict[str, Any]:
    return {
        "Id": PROJECT_ID,
        "Name": PROJECT_NAME,
        "Description": "The EMR sandbox's project",
        "UserId": USER_ID,
        "GmtCreate": PROJECT_CREATED_MS,
        "GmtModified": PROJECT_CREATED_MS,
    }


# --- the service -------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class _Page:
    number: int
    size: int

    def of(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        start = (self.number - 1) * self.size
        return items[start : start + self.size]


def _page(call: Call) -> _Page:
    """``PageNumber`` (default 1) and ``PageSize`` (default 20, below 250)."""
    number = _int_in(1, 10**9)("PageNumber", call.get("PageNumber") or "1")
    size = _int_in(1, 10**9)("PageSize", call.get("PageSize") or "20")
    if size >= MAX_PAGE_SIZE:
        raise FlowApiError(f"Invalid Param[pageSize should less than {MAX_PAGE_SIZE}]")
    return _Page(number, size)


def _paged(page: _Page, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"PageNumber": page.number, "PageSize": page.size, "Total": len(items)}


class _Emr:
    """The actions, over the sandbox store. Every object carries its project; deletes are soft."""

    def __init__(self, store: SandboxStore) -> None:
        self._store = store

    # --- scope and lookups -------------------------------------------------------------------

    def _region(self, call: Call) -> None:
        region = call.require("RegionId")
        if region != REGION_ID:
            raise AcsError("InvalidRegionId", f"The specified region {region} does not exist.")

    def _scope(self, call: Call) -> str:
        """Check ``RegionId`` and ``ProjectId``; return the project."""
        self._region(call)
        project = call.require("ProjectId")
        if project != PROJECT_ID:
            raise FlowApiError("project not exist")
        return project

    def _live(self, kind: str, project: str) -> list[dict[str, Any]]:
        return [o for o in self._store.objects(kind) if o["project_id"] == project and not o.get("deleted")]

    def _find(self, kind: str, object_id: str, project: str) -> dict[str, Any] | None:
        found = self._store.get(kind, object_id)
        if found is None or found["project_id"] != project or found.get("deleted"):
            return None
        return found

    def _get(self, kind: str, object_id: str, project: str, what: str) -> dict[str, Any]:
        found = self._find(kind, object_id, project)
        if found is None:
            raise FlowApiError(f"{what} [{object_id}] not exist")
        return found

    def _new_id(self, prefix: str, kind: str) -> str:
        while True:
            candidate = prefix + secrets.token_hex(8).upper()
            if self._store.get(kind, candidate) is None:
                return candidate

    def _category_ref(self, call: Call, name: str, project: str) -> str | None:
        """An optional folder parameter (``ParentCategory``/``ParentId``): an existing ``FC-``."""
        category = call.get(name)
        if not category:
            return None
        self._get(CATEGORIES, category, project, "category")
        return category

    def _parent_flows(self, raw: str, project: str, flow_id: str | None) -> list[str]:
        """``ParentFlowList``: existing flows of the project, without making flow dependencies cyclic."""
        parents = [p.strip() for p in raw.split(",") if p.strip()]
        for parent in parents:
            self._get(FLOWS, parent, project, "parent flow")
        if flow_id is not None and self._reaches(parents, flow_id, project):
            raise _invalid("ParentFlowList", f"would make flow {flow_id} depend on itself.")
        return parents

    def _reaches(self, starts: list[str], goal: str, project: str) -> bool:
        seen: set[str] = set()
        stack = list(starts)
        while stack:
            current = stack.pop()
            if current == goal:
                return True
            if current in seen:
                continue
            seen.add(current)
            found = self._find(FLOWS, current, project)
            stack.extend(found["parent_flows"] if found else [])
        return False

    def _put(self, kind: str, record: dict[str, Any]) -> None:
        self._store.put(kind, record["id"], record, name=record.get("name", ""), parent=record["project_id"])

    # --- jobs ----------------------------------------------------------------------------------

    async def create_flow_job(self, call: Call) -> dict[str, Any]:
        project = self._scope(call)
        values = _read(call, (*_JOB_CREATE_ONLY, *_JOB_FIELDS))
        resources = _resources(call) or []
        _check_cluster(values)
        category = self._category_ref(call, "ParentCategory", project)
        now = _now_ms()
        with self._store.transaction():
            job_id = self._new_id("FJ-", JOBS)
            job = {"id": job_id, "project_id": project, **values, "category_id": category,
                   "resources": resources, "gmt_create": now, "gmt_modified": now}  # fmt: skip
            self._put(JOBS, job)
        return {"Id": job_id}

    async def modify_flow_job(self, call: Call) -> dict[str, Any]:
        project = self._scope(call)
        job = self._get(JOBS, call.require("Id"), project, "job")
        job.update(_read(call, _JOB_FIELDS, partial=True))
        resources = _resources(call)
        if resources is not None:
            job["resources"] = resources
        _check_cluster(job)
        job["gmt_modified"] = _now_ms()
        self._put(JOBS, job)
        return {"Data": True}

    async def delete_flow_job(self, call: Call) -> dict[str, Any]:
        project = self._scope(call)
        job = self._get(JOBS, call.require("Id"), project, "job")
        users = [f["id"] for f in self._live(FLOWS, project) if job["id"] in _graph_job_ids(f["graph"])]
        if users:
            raise FlowApiError(f"job [{job['id']}] is used by flow [{', '.join(users)}], can not be deleted")
        self._put(JOBS, {**job, "deleted": True, "gmt_modified": _now_ms()})
        return {"Data": True}

    async def describe_flow_job(self, call: Call) -> dict[str, Any]:
        project = self._scope(call)
        return _job_detail(self._get(JOBS, call.require("Id"), project, "job"))

    async def list_flow_job(self, call: Call) -> dict[str, Any]:
        project = self._scope(call)
        page = _page(call)
        adhoc = _bool("Adhoc", call.get("Adhoc")) if call.get("Adhoc") else None
        wanted = {"id": call.get("Id"), "name": call.get("Name"), "type": call.get("Type"), "adhoc": adhoc}
        jobs = [j for j in self._live(JOBS, project) if _matches(j, wanted)]
        return {**_paged(page, jobs), "JobList": {"Job": [_job_fields(j) for j in page.of(jobs)]}}

    # --- flows ---------------------------------------------------------------------------------

    def _flow_values(
        self, call: Call, project: str, old: dict[str, Any] | None, *, web: bool
    ) -> dict[str, Any]:
        """The flow after this write: ``old`` (None on create) with what the call sends."""
        partial = old is not None
        fields = (*_FLOW_FIELDS, *(_FLOW_MODIFY_ONLY if partial else ()), *(() if web else _FLOW_APPLICATION))
        values = _read(call, fields, partial=partial)
        cron = _cron_param(call)
        if cron is not None or not partial:
            values["cron"] = cron
        if web and call.get("Graph"):
            application = check_graph(call.get("Graph"), lambda job_id: self._find(JOBS, job_id, project))
            values.update(graph=call.get("Graph"), application=json.dumps(application))
        elif not partial:
            values.update(graph=None, application=values.get("application"))
        if call.get("ParentFlowList") or not partial:
            flow_id = old["id"] if old else None
            values["parent_flows"] = self._parent_flows(call.get("ParentFlowList"), project, flow_id)
        if call.get("ParentCategory") or not partial:
            values["category_id"] = self._category_ref(call, "ParentCategory", project)
        flow = {**(old or {}), **values}
        if not partial or ("periodic" not in values and cron is not None):
            flow["periodic"] = bool(flow["cron"])  # a cron makes a flow periodic unless told otherwise
        _check_schedule(flow)
        _check_cluster(flow)
        return flow

    async def _create_flow(self, call: Call, *, web: bool) -> dict[str, Any]:
        project = self._scope(call)
        token = call.get("ClientToken")
        with self._store.transaction():
            if token:
                earlier = self._store.get(TOKENS, f"{project}:{token}")
                if earlier is not None:
                    return {"Id": earlier["flow_id"]}
            flow = self._flow_values(call, project, None, web=web)
            now = _now_ms()
            flow_id = self._new_id("F-", FLOWS)
            flow.update(id=flow_id, project_id=project, type="FLOW", status=DEFAULT_STATUS,
                        client_token=token or None, gmt_create=now, gmt_modified=now)  # fmt: skip
            self._put(FLOWS, flow)
            if token:
                self._store.put(TOKENS, f"{project}:{token}", {"flow_id": flow_id}, parent=flow_id)
        return {"Id": flow_id}

    async def create_flow(self, call: Call) -> dict[str, Any]:
        return await self._create_flow(call, web=False)

    async def create_flow_for_web(self, call: Call) -> dict[str, Any]:
        return await self._create_flow(call, web=True)

    async def modify_flow_for_web(self, call: Call) -> dict[str, Any]:
        project = self._scope(call)
        old = self._get(FLOWS, call.require("Id"), project, "flow")
        flow = self._flow_values(call, project, old, web=True)
        flow["gmt_modified"] = _now_ms()
        self._put(FLOWS, flow)
        return {"Data": True}

    async def delete_flow(self, call: Call) -> dict[str, Any]:
        project = self._scope(call)
        flow = self._get(FLOWS, call.require("Id"), project, "flow")
        with self._store.transaction():
            self._put(FLOWS, {**flow, "deleted": True, "gmt_modified": _now_ms()})
            self._store.delete_children(flow["id"], TOKENS)  # a token must not answer with a deleted flow
        return {"Data": True}

    async def describe_flow(self, call: Call) -> dict[str, Any]:
        project = self._scope(call)
        flow = self._get(FLOWS, call.require("Id"), project, "flow")
        parents = []
        for parent_id in flow["parent_flows"]:
            parent = self._find(FLOWS, parent_id, project)
            parents.append({"ParentFlowId": parent_id, "ParentFlowName": parent["name"] if parent else None,
                            "ProjectId": project, "ProjectName": PROJECT_NAME})  # fmt: skip
        return _compact(
            {
                **_flow_fields(flow),
                "Application": flow["application"],
                "Namespace": flow["namespace"],
                "Lifecycle": flow["lifecycle"],
                "LogArchiveLocation": flow["log_archive_location"],
                "ParentFlowList": {"ParentFlow": [_compact(p) for p in parents]},
            }
        )

    async def list_flow(self, call: Call) -> dict[str, Any]:
        project = self._scope(call)
        page = _page(call)
        periodic = _bool("Periodic", call.get("Periodic")) if call.get("Periodic") else None
        wanted = {"id": call.get("Id"), "name": call.get("Name"), "status": call.get("Status"),
                  "cluster_id": call.get("ClusterId"), "periodic": periodic}  # fmt: skip
        job_id = call.get("JobId")
        flows = [
            f
            for f in self._live(FLOWS, project)
            if _matches(f, wanted) and (not job_id or job_id in _graph_job_ids(f["graph"]))
        ]
        return {**_paged(page, flows), "Flow": {"Flow": [_flow_fields(f) for f in page.of(flows)]}}

    # --- folders and projects ------------------------------------------------------------------

    async def create_flow_category(self, call: Call) -> dict[str, Any]:
        project = self._scope(call)
        name = call.require("Name")
        kind = _choice(*CATEGORY_TYPES)("Type", call.get("Type", "FLOW") or "FLOW")
        parent = self._category_ref(call, "ParentId", project)
        with self._store.transaction():
            siblings = self._live(CATEGORIES, project)
            if any((c["parent_id"], c["type"], c["name"]) == (parent, kind, name) for c in siblings):
                raise FlowApiError(f"category name [{name}] already exists")
            now = _now_ms()
            category_id = self._new_id("FC-", CATEGORIES)
            category = {"id": category_id, "project_id": project, "name": name, "parent_id": parent,
                        "type": kind, "gmt_create": now, "gmt_modified": now}  # fmt: skip
            self._put(CATEGORIES, category)
        return {"Id": category_id}

    async def describe_flow_category(self, call: Call) -> dict[str, Any]:
        project = self._scope(call)
        return _category_fields(self._get(CATEGORIES, call.require("Id"), project, "category"))

    async def list_flow_category(self, call: Call) -> dict[str, Any]:
        project = self._scope(call)
        page = _page(call)
        parent = call.get("ParentId")
        root = _bool("Root", call.get("Root")) if call.get("Root") else False
        categories = [
            c
            for c in self._live(CATEGORIES, project)
            if (not parent or c["parent_id"] == parent) and (not root or c["parent_id"] is None)
        ]
        return {
            **_paged(page, categories),
            "Categories": {"Category": [_category_fields(c) for c in page.of(categories)]},
        }

    async def list_flow_project(self, call: Call) -> dict[str, Any]:
        self._region(call)
        page = _page(call)
        project = _project_fields()
        wanted_id, name_part = call.get("ProjectId"), call.get("Name").lower()
        matches = (not wanted_id or wanted_id == PROJECT_ID) and name_part in PROJECT_NAME.lower()
        projects = [project] if matches else []
        return {**_paged(page, projects), "Projects": {"Project": page.of(projects)}}

    # --- inspection ----------------------------------------------------------------------------

    async def objects(self, _request: web.Request) -> web.Response:
        """``GET /_sandbox/objects``: every live flow (Graph parsed), job and folder as stored."""
        flows = [
            {**f, "graph": json.loads(f["graph"]) if f["graph"] else None}
            for f in self._live(FLOWS, PROJECT_ID)
        ]
        return json_response(
            {
                "flows": flows,
                "jobs": self._live(JOBS, PROJECT_ID),
                "categories": self._live(CATEGORIES, PROJECT_ID),
            }
        )


def _matches(record: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Exact-match filters; an empty or None filter matches everything."""
    return all(value in ("", None) or record.get(key) == value for key, value in wanted.items())
