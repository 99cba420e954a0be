"""Canonical workflow -> EMR Data Development requests: one job per task, then the flow's DAG.

EMR assigns ids (``FJ-``, ``F-``), so the plan names what to create and the provider fills the
ids in as parts are created: the jobs first (``CreateFlowJob``), then the flow whose ``Graph``
points at them (``CreateFlowForWeb``), then, for a scheduled flow, ``ModifyFlowForWeb`` to put it
under schedule (EMR creates flows stopped; a paused workflow simply stays so).

:data:`CARRIED` says, field by field, how the canonical model maps onto the API; the reader in
:mod:`migrator.providers.emr.read` inverts it. What EMR cannot hold is dropped with a warning.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from migrator import jsontext
from migrator.model import Task, TaskKind, Workflow
from migrator.providers.base import UpstreamTarget, warner, warning
from migrator.translate import mapping
from migrator.translate.cron import Dialect
from migrator.translate.dag import topological_order
from migrator.translate.kinds import target_type
from migrator.translate.macros import Syntax, writer
from migrator.translate.retries import Limits, convert
from migrator.translate.schedule import cron_for

TARGET = "emr"

#: CreateFlowJob ranges (alibaba-apis.md 5.4): MaxRetry 0-5, RetryInterval 0-300 s; clamped with a warning.
MAX_RETRY = 5
MAX_RETRY_INTERVAL = 300
LIMITS = Limits("EMR", max_retries=MAX_RETRY, max_interval=MAX_RETRY_INTERVAL)
#: AlertConf event ids (seed): flow failed, flow succeeded, a node failed.
EVENT_FAILED, EVENT_SUCCEEDED, EVENT_NODE_FAILED = "EMR-210401001", "EMR-110401002", "EMR-110401015"
DEFAULT_TIMEZONE = "Asia/Shanghai"
UNDER_SCHEDULE, STOP_SCHEDULE = "UNDER_SCHEDULE", "STOP_SCHEDULE"
MODES = frozenset({"YARN", "LOCAL"})
#: What an empty description becomes (EMR requires one); the reader maps it back to "".
NO_DESCRIPTION = "(no description)"

#: Where each canonical field goes (the README's table is built from the same facts).
CARRIED: dict[str, str] = {
    "name": "Flow.Name",
    "description": "Flow.Description",
    "folder": "ParentCategory: a FLOW category path (jobs go in the same path of JOB categories)",
    "schedule.cron": "CronExpr (Quartz 6-field)",
    "schedule.start / end": "StartSchedule / EndSchedule (epoch ms; a start is required with a cron)",
    "schedule.paused": "Status STOP_SCHEDULE (UNDER_SCHEDULE otherwise)",
    "alerts": "AlertConf items: failure, success, node failure; recipients and DingTalk groups",
    "upstream": "ParentFlowList (target ids of the upstream flows)",
    "parameters": "copied into every job's ParamConf (a task's own value wins)",
    "tasks": "one job each (Name = workflow.task), placed in Graph as a JOB node labelled with the task",
    "edges": "Graph edges (START -> entry tasks, exit tasks -> END)",
    "task.kind": "Type (kinds EMR lacks become SHELL placeholders)",
    "task.content / description": "Params / Description (empty: NO_DESCRIPTION, as EMR requires one)",
    "task.resources": "ResourceList.N.Path / Alias",
    "task.max_retries / retry_interval": "MaxRetry (0-5) / RetryInterval (0-300 s), clamped with a warning",
    "task.timeout": "MaxRunningTimeSec",
    "task.failure_action": "FailAct",
    "task.run": "RunConf (queue, memory, cores, priority, userName), Mode",
    "task.parameters / environment": "ParamConf / EnvConf",
    "task.variables": "CustomVariables (secret -> properties.password)",
}
NOT_CARRIED = (
    "owners",
    "schedule.timezone (EMR uses the cluster's)",
    "alerts.channels",
    "task.run.cluster (jobs run on the target flow's cluster)",
)


#: CreateFlowJob parameters that ModifyFlowJob does not take.
CREATE_ONLY = frozenset({"Type", "Adhoc", "ParentCategory"})
#: What an update sends for a setting its rendering leaves out. EMR's Modify actions change only
#: the fields they are sent (the sandbox does the same), so a timeout, environment or alert an
#: earlier version set would otherwise stay at the target after the source dropped it. Each value
#: means "none", as leaving the field out of a create does.
JOB_CLEARED_QUERY = {"MaxRunningTimeSec": "0", "Mode": "YARN"}
JOB_CLEARED_FORM = {"ParamConf": "{}", "EnvConf": "{}", "RunConf": "{}"}
FLOW_CLEARED_QUERY = {"AlertConf": jsontext.text({"items": []}), "ParentFlowList": "", "CronExpr": ""}
"""``ParentFlowList`` and ``CronExpr`` have no value that means "none": they are sent empty, and
what the target kept is read back (:func:`kept`), as are EndSchedule and a job's ResourceList,
which cannot be sent empty at all. (A flow whose schedule the source dropped is also stopped.)"""


@dataclass(frozen=True, slots=True)
class JobPlan:
    """One ``CreateFlowJob``: ``query`` and ``form`` exactly as sent, less the category."""

    task: str
    name: str
    query: dict[str, str]
    form: dict[str, str]

    @property
    def part(self) -> str:
        return f"job:{self.task}"

    def replacing(self) -> tuple[dict[str, str], dict[str, str]]:
        """``ModifyFlowJob``'s query and form for a job an earlier rendering made: this one's
        settings, and "none" for each one it leaves out."""
        query = {k: v for k, v in {**JOB_CLEARED_QUERY, **self.query}.items() if k not in CREATE_ONLY}
        variables = {"scope": "PROJECT", "entityId": self.query["ProjectId"], "variables": []}
        cleared = {**JOB_CLEARED_FORM, "CustomVariables": jsontext.text(variables)}
        return query, {**cleared, **self.form}

    def leaves_out_unclearable(self) -> bool:
        """No ResourceList: a Modify cannot empty one an earlier rendering set."""
        return not any(name.startswith("ResourceList.") for name in self.form)

    def kept(self, found: Mapping[str, Any]) -> list[str]:
        """What a job an earlier rendering made (``DescribeFlowJob``'s answer) still holds that
        this rendering does not and a Modify cannot remove."""
        if not self.leaves_out_unclearable():
            return []  # a list sent replaces the one held
        resources = listed(found, "ResourceList", "Resource")
        return [f"resources {', '.join(str(r.get('Path')) for r in resources)}"] if resources else []


@dataclass(frozen=True, slots=True)
class GraphNode:
    id: str
    task: str
    kind: str
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class FlowPlan:
    """Everything to create for one workflow; ids are filled in as the parts are created."""

    name: str
    folder: str
    client_token: str
    jobs: tuple[JobPlan, ...]
    nodes: tuple[GraphNode, ...]
    edges: tuple[tuple[str, str], ...]
    query: dict[str, str]
    form: dict[str, str]
    scheduled: bool
    warnings: tuple[str, ...] = field(default=())

    def leaves_out_unclearable(self) -> bool:
        """No parent flows, schedule or schedule end: a Modify cannot remove ones an earlier
        rendering set."""
        return not {"ParentFlowList", "CronExpr", "EndSchedule"} <= self.query.keys()

    def kept(self, found: Mapping[str, Any]) -> list[str]:
        """What a flow an earlier rendering made (``DescribeFlow``'s answer) still holds that this
        rendering does not and a Modify cannot remove: parent flows, a schedule, its end."""
        held: list[str] = []
        parents = listed(found, "ParentFlowList", "ParentFlow")
        if parents and "ParentFlowList" not in self.query:
            named = (f"{p.get('ParentFlowId')} ({p.get('ParentFlowName')})" for p in parents)
            held.append(f"parent flows {', '.join(named)}")
        cron = found.get("CronExpr")
        if cron and "CronExpr" not in self.query:
            held.append(f"schedule {cron} (stopped)")
        end = found.get("EndSchedule")
        if end and "EndSchedule" not in self.query:
            when = datetime.fromtimestamp(int(end) / 1000, UTC).isoformat(timespec="seconds")
            held.append(f"schedule end {when}")
        return held

    def graph(self, job_ids: Mapping[str, str]) -> str:
        """The ``Graph`` JSON once every task's job id is known."""
        ids = {n.task: n.id for n in self.nodes}
        nodes: list[dict[str, Any]] = [
            {
                "id": "start",
                "type": "node",
                "shape": "startControlNode",
                "label": "start",
                "attribute": {"type": "START"},
                "x": 0,
                "y": 0,
            },
            {
                "id": "end",
                "type": "node",
                "shape": "endControlNode",
                "label": "end",
                "attribute": {"type": "END"},
                "x": 0,
                "y": (max((n.y for n in self.nodes), default=0) + 1),
            },
        ]
        for n in self.nodes:
            nodes.append(
                {
                    "id": n.id,
                    "type": "node",
                    "shape": f"{n.kind.lower()}JobNode",
                    "label": n.task,
                    "attribute": {"type": "JOB", "jobType": n.kind, "jobId": job_ids[n.task]},
                    "x": n.x,
                    "y": n.y,
                }
            )
        has_in = {b for _, b in self.edges}
        has_out = {a for a, _ in self.edges}
        pairs = [("start", ids[t]) for t in ids if t not in has_in]
        pairs += [(ids[a], ids[b]) for a, b in self.edges]
        pairs += [(ids[t], "end") for t in ids if t not in has_out]
        edges = [
            {"id": f"{a}-{b}", "source": a, "sourceAnchor": 1, "target": b, "targetAnchor": 0}
            for a, b in pairs
        ]
        return jsontext.text({"nodes": nodes, "edges": edges})


def listed(data: Mapping[str, Any], outer: str, inner: str) -> list[dict[str, Any]]:
    """The items of an answer's list: EMR lists are double-wrapped (``Flow.Flow[]``,
    ``ResourceList.Resource[]``), a legacy of XML."""
    wrapped = data.get(outer) or {}
    items = wrapped.get(inner) if isinstance(wrapped, dict) else None
    return [i for i in items or [] if isinstance(i, dict)]


def described(text: str) -> str:
    """EMR requires a description; an empty one is sent as :data:`NO_DESCRIPTION` and read back empty."""
    return text or NO_DESCRIPTION


def client_token(key: str) -> str:
    """``ClientToken`` derived from the item key: a retried create names the same flow."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"migrator:{key}"))


def _node_id(task: str) -> str:
    return hashlib.sha256(task.encode()).hexdigest()[:8]


def _ms(value: datetime) -> str:
    return str(int(value.timestamp() * 1000))


class _Renderer:
    def __init__(
        self,
        wf: Workflow,
        project_id: str,
        region: str,
        cluster_id: str,
        folder: str,
        kinds: Mapping[TaskKind, str],
    ) -> None:
        self.wf, self.project_id, self.region, self.cluster_id = wf, project_id, region, cluster_id
        self.kinds = kinds
        self.folder = "/".join(p for p in (folder.strip("/"), wf.folder.strip("/")) if p)
        self.warnings: list[str] = []
        self.macros = writer(wf, Syntax.EMR, warner(self.warnings, "macros"))

    def warn(self, rule: str, message: str) -> None:
        self.warnings.append(warning(rule, message))

    def job(self, task: Task) -> JobPlan:
        choice = target_type(TARGET, task.kind, source=self.wf.source.system, overrides=self.kinds)
        kind = choice.type
        if choice.placeholder:
            self.warn(
                "job-kind",
                f"task {task.name!r}: kind {task.kind.value} has no EMR job type; kept as a "
                f"{kind} placeholder holding the original content",
            )
        sent = convert(task, LIMITS, self.warn)
        query = {
            "RegionId": self.region,
            "ProjectId": self.project_id,
            "Name": f"{self.wf.name}.{task.name}",
            "Type": kind,
            "FailAct": task.failure_action.value.upper(),
            "MaxRetry": str(sent.retries),
            "RetryInterval": str(sent.interval),
            "Adhoc": "false",
        }
        run = task.run
        if run.mode and run.mode.upper() in MODES:
            query["Mode"] = run.mode.upper()
        elif run.mode:
            self.warn(
                "run-settings",
                f"task {task.name!r}: mode {run.mode!r} is not one of {sorted(MODES)}; "
                "EMR's default (YARN) applies",
            )
        if run.cluster and run.cluster != self.cluster_id:
            # A source cluster id means nothing at the target: the job runs on the flow's cluster.
            self.warn(
                "cluster",
                f"task {task.name!r}: cluster {run.cluster} not carried; runs on the "
                f"target cluster {self.cluster_id}",
            )
        if sent.timeout:
            query["MaxRunningTimeSec"] = str(sent.timeout)
        form = {"Description": described(task.description), "Params": self.macros(task.content)}
        parameters = {k: self.macros(v) for k, v in {**self.wf.parameters, **task.parameters}.items()}
        if parameters:
            form["ParamConf"] = jsontext.text(parameters)
        if task.environment:
            form["EnvConf"] = jsontext.text(task.environment)
        run_conf: dict[str, Any] = {
            k: v
            for k, v in {
                "priority": run.priority,
                "userName": run.user,
                "memory": run.memory_mb,
                "queue": run.queue,
            }.items()
            if v is not None
        }
        if run.cores is not None:
            run_conf["cores"] = int(run.cores) if float(run.cores).is_integer() else run.cores
        if run_conf:
            form["RunConf"] = jsontext.text(run_conf)
        if task.variables:
            form["CustomVariables"] = jsontext.text(
                {
                    "scope": "PROJECT",
                    "entityId": self.project_id,
                    "variables": [
                        {"name": v.name, "value": v.plain(), "properties": {"password": v.secret}}
                        for v in task.variables
                    ],
                }
            )
        for n, res in enumerate(task.resources, start=1):
            form[f"ResourceList.{n}.Path"] = res.path
            if res.alias:
                form[f"ResourceList.{n}.Alias"] = res.alias
        return JobPlan(task.name, query["Name"], query, form)

    def flow(self, upstream: Mapping[str, UpstreamTarget]) -> FlowPlan:
        wf = self.wf
        jobs = tuple(self.job(t) for t in wf.tasks)
        order = topological_order([t.name for t in wf.tasks], [(e.upstream, e.downstream) for e in wf.edges])
        depth: dict[str, int] = {}
        for name in order:
            depth[name] = 1 + max((depth[u] for u in wf.upstream_of(name)), default=0)
        per_level: dict[int, int] = {}
        nodes: list[GraphNode] = []
        for t in wf.tasks:
            level = depth[t.name]
            column = per_level[level] = per_level.get(level, -1) + 1
            nodes.append(
                GraphNode(_node_id(t.name), t.name, jobs[len(nodes)].query["Type"], column * 200, level * 100)
            )
        query = {
            "RegionId": self.region,
            "ProjectId": self.project_id,
            "Name": wf.name,
            "CreateCluster": "false",
            "ClusterId": self.cluster_id,
            "ClientToken": client_token(wf.key),
        }
        form = {"Description": described(wf.description)}
        scheduled = False
        if wf.schedule is not None:
            query["CronExpr"] = cron_for(wf, Dialect.EMR)
            start = wf.schedule.start
            if start is None:
                query["StartSchedule"] = str(int(time.time() * 1000))
                self.warn("schedule", "EMR needs a start for a scheduled flow; the time of migration is used")
            else:
                query["StartSchedule"] = _ms(start)
            if wf.schedule.end is not None:
                query["EndSchedule"] = _ms(wf.schedule.end)
            if wf.schedule.timezone != DEFAULT_TIMEZONE:
                self.warn(
                    "schedule",
                    f"timezone {wf.schedule.timezone} not carried: EMR fires in the cluster's "
                    f"time zone ({DEFAULT_TIMEZONE} assumed)",
                )
            scheduled = not wf.schedule.paused
        alerts = self.alerts()
        if alerts:
            query["AlertConf"] = jsontext.text(alerts)
        parents = [upstream[ref].target_id for ref in wf.upstream_workflows() if ref in upstream]
        missing = [ref for ref in wf.upstream_workflows() if ref not in upstream]
        finer = [d.workflow for d in wf.upstream if d.task is not None or d.gates]
        if finer:
            self.warn(
                "upstream-workflows",
                f"dependencies on {finer} name tasks; EMR parent flows gate the "
                "whole flow on the whole upstream flow",
            )
        if missing:
            self.warn(
                "upstream-workflows",
                f"parent flows {missing} not carried: not found in this job or its state database",
            )
        if parents:
            query["ParentFlowList"] = ",".join(parents)
        if wf.owners:
            self.warn("owners", f"owners {list(wf.owners)} not carried: EMR flows have no owner field")
        if wf.parameters:
            self.warn("parameters", "workflow parameters copied into every job's ParamConf")
        return FlowPlan(
            name=wf.name,
            folder=self.folder,
            client_token=query["ClientToken"],
            jobs=jobs,
            nodes=tuple(nodes),
            edges=tuple((e.upstream, e.downstream) for e in wf.edges),
            query=query,
            form=form,
            scheduled=scheduled,
            warnings=tuple(self.warnings),
        )

    def alerts(self) -> dict[str, Any] | None:
        a = self.wf.alerts
        events = [
            e
            for on, e in (
                (a.on_failure, EVENT_FAILED),
                (a.on_success, EVENT_SUCCEEDED),
                (a.on_task_failure, EVENT_NODE_FAILED),
            )
            if on
        ]
        if a.channels:
            self.warn(
                "alerts",
                f"alert channels {list(a.channels)} not carried: EMR notifies user groups and "
                "DingTalk groups",
            )
        if not events:
            if a.recipients or a.dingtalk_groups:
                self.warn(
                    "alerts",
                    "alert recipients not carried: no alert event (failure, success, task "
                    "failure) is switched on",
                )
            return None
        return {
            "items": [
                {
                    "enable": True,
                    "eventId": e,
                    "alertUserGroupIdList": list(a.recipients),
                    "alertDingDingGroupList": list(a.dingtalk_groups),
                }
                for e in events
            ]
        }


def render(
    wf: Workflow,
    *,
    project_id: str,
    region: str,
    cluster_id: str,
    upstream: Mapping[str, UpstreamTarget] | None = None,
    folder: str = "",
    kinds: Mapping[TaskKind, str] | None = None,
    mappings: mapping.Mappings | None = None,
) -> FlowPlan:
    """``folder`` is the target folder the workflow's own folder is placed under; ``kinds`` and
    ``mappings`` are the job file's ``[target.kinds]`` and ``[target.mappings]``."""
    wf = mapping.apply(wf, mappings)
    return _Renderer(wf, project_id, region, cluster_id, folder, kinds or {}).flow(upstream or {})
