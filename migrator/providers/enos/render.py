"""Canonical workflow -> the EnOS Batch Processing ``import`` request (``action=import``).

Import is the one call that creates a flow together with its task definitions, keyed by **names**
(``flowJson`` is the Flow Struct that ``action=export`` returns, ``name`` included, so a rendered
body reads back with :func:`~migrator.providers.enos.read.workflow_from_enos` as it is): tasks,
intra-flow ``relations`` and cross-flow links (``flowLinks`` / ``taskLinks`` plus
``linkRelations``) all name what they join, so the plan needs no ids. The client adds ``dirId``
(the target folder's directory key), and, because the Flow Struct has no ``active``, disables the
flow after import when :attr:`FlowPlan.paused`.

:data:`CARRIED` says, field by field, how the canonical model maps onto the Flow Struct; the reader
in :mod:`migrator.providers.enos.read` inverts it. What EnOS cannot hold is dropped with a
``"rule: message"`` warning, and :data:`NOT_CARRIED` lists it. Warnings never quote parameter,
variable or environment values.

A scheduled workflow without a start date gets no ``startTime`` (the field is optional at import,
and "today" would make the plan depend on when it was rendered); EnOS then applies its default.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from typing import Any
from zoneinfo import ZoneInfo

from migrator import jsontext
from migrator.errors import TranslationError
from migrator.model import FailureAction, Task, TaskKind, Workflow
from migrator.providers.base import UpstreamTarget, warner, warning
from migrator.translate import mapping
from migrator.translate.cron import Dialect
from migrator.translate.kinds import SHELL_TYPES as KIND_SHELL_TYPES
from migrator.translate.kinds import target_type
from migrator.translate.macros import Syntax, writer
from migrator.translate.retries import Limits, convert
from migrator.translate.schedule import CronError, cron_for, enos_cron

TARGET = "enos"
#: Task types whose ``cmd`` is a shell script, so a task's environment can become ``export`` lines.
SHELL_TYPES = KIND_SHELL_TYPES[TARGET]
#: ``timeout`` and ``retryInterval`` are whole numbers whose unit EnOS does not state (enos-api.md);
#: they are sent as seconds, as the seed's sample values (timeout 300) read. No bounds documented.
LIMITS = Limits("EnOS")
#: ``alertMode`` bits per alert channel: 1 email, 2 SMS, 3 both (0 none).
ALERT_BITS: dict[str, int] = {"email": 1, "sms": 2}
MANUAL, PERIODIC = 0, 1
DATA_SYNC = 1
DEFAULT_RESOURCE = "default"
DEFAULT_TIMEZONE = "Asia/Shanghai"
#: runMode defaults EnOS's samples use, sent when the task names none (read back as these values).
DEFAULT_CPU = 0.5
DEFAULT_MEMORY_GB = 1
#: runMode ranges the documentation gives; values outside are sent with a warning.
CPU_RANGE = (0.1, 2.0)
MEMORY_GB_RANGE = (0.3, 4.0)
SUCCESS_CODE = "0"
LINK_PREFIX = "link_"

#: What a manual flow carries in the required ``cron``/``cycle`` fields (type 0 never fires on them).
MANUAL_CRON, MANUAL_CYCLE = "0 0 0 * * ? *", "D"

#: Where each canonical field goes.
CARRIED: dict[str, str] = {
    "name": "flowName, and the Flow Struct's name (as export answers it)",
    "description": "desc (request body and Flow Struct)",
    "folder": "FlowPlan.folder (the client turns it into the import dirId)",
    "owners": 'owners (";"-joined user names)',
    "schedule.cron": "cron (7-field, year *) and cycle (M/W/D/H/mi, see enos_cron); type 1",
    "schedule (none)": "type 0 (manual); the required cron and cycle get a daily default it ignores",
    "schedule.start": "startTime (yyyy-MM-dd; a time of day is dropped with a warning; none: omitted)",
    "schedule.paused": "FlowPlan.paused (the client disables the flow after import); read from active",
    "parameters": 'parameters (JSON string of [{"key","value"}]), plus agreeing task parameters',
    "alerts.on_failure / channels": "alertMode (1 email, 2 SMS, 3 both) when any alert event is on; "
    "other channels dropped with a warning",
    "upstream": "flowLinks (whole flow) / taskLinks (one task) by upstream flow name, and a "
    "linkRelation per gated task (dep.gates, else the entry tasks)",
    "tasks": "tasks[] (by name)",
    "edges": "relations (sourceTaskName -> targetTaskName, rerun false)",
    "task.kind": "type: shell COMMAND, data_integration DATA_INTEGRATION, python PYTHON; other kinds "
    "become COMMAND placeholders holding the original content",
    "task.content": "cmd",
    "task.environment": "export lines prepended to a COMMAND's cmd (other types: dropped with a warning)",
    "task.resources": "filePackage (the first resource's path; aliases and further ones dropped)",
    "task.max_retries / retry_interval": "retryLimit / retryInterval (whole seconds)",
    "task.timeout": "timeout (whole seconds, rounded up; 0 = none)",
    "task.run.queue": 'resource ("default" when unset)',
    "task.run.user": 'submitter ("" when unset)',
    "task.run.priority": "priorityLevel (0 when unset, read back as unset)",
    "task.run.cores / memory_mb": "runMode cpu / memory in GB (unset: 0.5 cores, 1 GB, read back as such)",
}
NOT_CARRIED = (
    "schedule.end (EnOS flows have no end date)",
    "schedule.timezone (EnOS fires in the server's time zone; Asia/Shanghai assumed)",
    "alerts.on_success (alertMode only chooses the channels of the flow's alerts)",
    "alerts.on_task_failure (alerts are per flow)",
    "alerts.recipients (alertMode has no recipient list)",
    "alerts.dingtalk_groups (no DingTalk channel)",
    "task.description (EnOS tasks have none)",
    "task.failure_action (a failed task stops its downstream tasks)",
    "task.parameters (tasks read the flow's parameters; agreeing ones are merged into them)",
    "task.variables (no custom variables; secret values are never rendered)",
    "task.run.mode (no submit mode)",
    "task.run.cluster (tasks run on the OU's resources)",
)


@dataclass(frozen=True, slots=True)
class FlowPlan:
    """One ``action=import`` request body, less ``dirId``, and what the client does around it."""

    name: str
    folder: str
    body: dict[str, Any]
    paused: bool
    warnings: tuple[str, ...] = field(default=())


def _number(value: float) -> int | float:
    """``2`` rather than ``2.0`` where the value is whole, as EnOS's samples write them."""
    return int(value) if float(value).is_integer() else value


class _Renderer:
    def __init__(self, wf: Workflow, folder: str, submitter: str, kinds: Mapping[TaskKind, str]) -> None:
        self.wf, self.submitter, self.kinds = wf, submitter, kinds
        self.folder = "/".join(p for p in (folder.strip("/"), wf.folder.strip("/")) if p)
        self.warnings: list[str] = []
        self.macros = writer(wf, Syntax.ENOS, warner(self.warnings, "macros"))

    def warn(self, rule: str, message: str) -> None:
        self.warnings.append(warning(rule, message))

    # --- the flow ------------------------------------------------------------------------------

    def plan(self, upstream: Mapping[str, UpstreamTarget]) -> FlowPlan:
        wf = self.wf
        flow: dict[str, Any] = {
            "name": wf.name,
            **self.schedule(),
            "parameters": jsontext.text(
                [{"key": k, "value": self.macros(v)} for k, v in self.parameters().items()]
            ),
            "submitter": self.submitter,
            "owners": ";".join(wf.owners),
            "visitors": "",
            "desc": wf.description,
            "tasks": [self.task(t) for t in wf.tasks],
            "relations": [
                {"sourceTaskName": a, "targetTaskName": b, "rerun": False}
                for a, b in dict.fromkeys((e.upstream, e.downstream) for e in wf.edges)
            ],
            "syncType": DATA_SYNC,
            "alertMode": self.alert_mode(),
            **self.links(upstream),
        }
        return FlowPlan(
            name=wf.name,
            folder=self.folder,
            body={"flowName": wf.name, "desc": wf.description, "flowJson": flow},
            paused=wf.schedule is not None and wf.schedule.paused,
            warnings=tuple(self.warnings),
        )

    def schedule(self) -> dict[str, Any]:
        schedule = self.wf.schedule
        if schedule is None:
            # cycle and cron are required fields; a manual flow never fires on them
            return {"type": MANUAL, "cron": MANUAL_CRON, "cycle": MANUAL_CYCLE}
        try:
            cron, cycle = enos_cron(cron_for(self.wf, Dialect.EMR))
        except CronError as exc:
            raise TranslationError(f"workflow {self.wf.name!r}: {exc}") from None
        out: dict[str, Any] = {"type": PERIODIC, "cron": cron, "cycle": cycle}
        if schedule.start is not None:
            start = schedule.start
            if start.tzinfo is not None:
                start = start.astimezone(ZoneInfo(schedule.timezone))
            if start.time() != time(0):
                self.warn("schedule", f"start {start.isoformat()} carried as its date: EnOS starts on a day")
            out["startTime"] = start.date().isoformat()
        if schedule.end is not None:
            self.warn("schedule", f"end {schedule.end.isoformat()} not carried: EnOS flows have no end date")
        if schedule.timezone != DEFAULT_TIMEZONE:
            self.warn(
                "schedule",
                f"timezone {schedule.timezone} not carried: EnOS fires in the server's time zone "
                f"({DEFAULT_TIMEZONE} assumed)",
            )
        return out

    def parameters(self) -> dict[str, str]:
        """The flow's parameters plus each task parameter all tasks agree on: EnOS tasks read ``${KEY}``."""
        wf = self.wf
        values: dict[str, set[str]] = {}
        for task in wf.tasks:
            for key, value in task.parameters.items():
                values.setdefault(key, set()).add(value)
        merged = dict(wf.parameters)
        for key, seen in values.items():
            if key not in merged and len(seen) == 1:
                merged[key] = next(iter(seen))
        for task in wf.tasks:
            if not task.parameters:
                continue
            agreed = sorted(k for k, v in task.parameters.items() if merged.get(k) == v)
            clash = sorted(k for k, v in task.parameters.items() if merged.get(k) != v)
            if agreed:
                self.warn(
                    "parameters",
                    f"task {task.name!r}: parameters {agreed} carried as the flow's parameters "
                    "(EnOS tasks read flow parameters)",
                )
            if clash:
                self.warn(
                    "parameters",
                    f"task {task.name!r}: parameters {clash} not carried: the flow's parameters or "
                    "another task's give them other values",
                )
        return merged

    def alert_mode(self) -> int:
        a = self.wf.alerts
        mode = sum(bit for channel, bit in ALERT_BITS.items() if channel in a.channels)
        if other := [c for c in a.channels if c not in ALERT_BITS]:
            self.warn("alerts", f"alert channels {other} not carried: EnOS alerts by email and SMS only")
        if a.on_success or a.on_task_failure:
            self.warn(
                "alerts",
                "success and task-failure alerts not carried: EnOS alerts per flow (alertMode only "
                "chooses the channels)",
            )
        if a.recipients or a.dingtalk_groups:
            self.warn("alerts", "alert recipients and DingTalk groups not carried: alertMode names none")
        if not (a.on_failure or a.on_success or a.on_task_failure):
            if mode:
                self.warn("alerts", "alert channels not carried: no alert event is switched on")
            return 0
        return mode

    def links(self, upstream: Mapping[str, UpstreamTarget]) -> dict[str, list[dict[str, Any]]]:
        """A link per resolvable dependency (``link_1``, ``link_2``... in order) joined to its gated tasks."""
        wf = self.wf
        flow_links: list[dict[str, Any]] = []
        task_links: list[dict[str, Any]] = []
        relations: list[dict[str, Any]] = []
        missing: list[str] = []
        entry = wf.entry_tasks()
        for dep in wf.upstream:
            target = upstream.get(dep.workflow)
            if target is None:
                missing.append(dep.workflow)
                continue
            link_id = f"{LINK_PREFIX}{len(flow_links) + len(task_links) + 1}"
            if dep.task is None:
                flow_links.append({"linkId": link_id, "sourceFlowName": target.name})
            else:
                task_links.append(
                    {"linkId": link_id, "sourceFlowName": target.name, "sourceTaskName": dep.task}
                )
            relations += [
                {"linkId": link_id, "targetTaskName": gated, "rerun": False} for gated in dep.gates or entry
            ]
        if missing:
            self.warn(
                "upstream-workflows",
                f"upstream flows {list(dict.fromkeys(missing))} not carried: not found in this job or "
                "its state database",
            )
        return {"flowLinks": flow_links, "taskLinks": task_links, "linkRelations": relations}

    # --- tasks ---------------------------------------------------------------------------------

    def task(self, task: Task) -> dict[str, Any]:
        choice = target_type(TARGET, task.kind, source=self.wf.source.system, overrides=self.kinds)
        kind = choice.type
        if choice.placeholder:
            self.warn(
                "job-kind",
                f"task {task.name!r}: kind {task.kind.value} has no EnOS task type; kept as a "
                f"{kind} placeholder holding the original content",
            )
        self.not_carried(task)
        sent = convert(task, LIMITS, self.warn)
        run = task.run
        return {
            "name": task.name,
            "resource": run.queue or DEFAULT_RESOURCE,
            "type": kind,
            "cmd": self.content(task, kind),
            "submitter": run.user or "",
            "filePackage": self.file_package(task),
            "cron": "",
            "priorityLevel": run.priority or 0,
            "timeout": sent.timeout,
            "retryLimit": sent.retries,
            "retryInterval": sent.interval,
            "successCode": SUCCESS_CODE,
            "waitCode": "",
            "asLink": True,
            "runMode": jsontext.text(self.run_mode(task)),
            "syncType": DATA_SYNC,
        }

    def content(self, task: Task, kind: str) -> str:
        content = self.macros(task.content)
        if not task.environment:
            return content
        if kind in SHELL_TYPES:
            self.warn("environment", f"task {task.name!r}: environment carried as export lines in the script")
            exports = "".join(f"export {k}={json.dumps(v)}\n" for k, v in task.environment.items())
            return exports + content
        self.warn(
            "environment",
            f"task {task.name!r}: environment {sorted(task.environment)} not carried ({kind} tasks "
            "have no environment)",
        )
        return content

    def file_package(self, task: Task) -> str:
        if not task.resources:
            return ""
        first = task.resources[0]
        if len(task.resources) > 1:
            self.warn(
                "resources",
                f"task {task.name!r}: only the first of {len(task.resources)} resources carried "
                "(EnOS tasks have one filePackage)",
            )
        if first.alias:
            self.warn("resources", f"task {task.name!r}: resource alias not carried")
        return first.path

    def run_mode(self, task: Task) -> dict[str, Any]:
        run = task.run
        cpu = DEFAULT_CPU if run.cores is None else run.cores
        memory = DEFAULT_MEMORY_GB if run.memory_mb is None else run.memory_mb / 1024
        for what, value, (lo, hi) in (("cores", cpu, CPU_RANGE), ("memory (GB)", memory, MEMORY_GB_RANGE)):
            if not lo <= value <= hi:
                self.warn(
                    "run-settings",
                    f"task {task.name!r}: {what} {value:g} outside EnOS's documented range "
                    f"{lo:g}-{hi:g}; sent as is",
                )
        return {
            "taskMode": 1,
            "cpu": _number(cpu),
            "memory": _number(memory),
            "maxParallel": 0,
            "keyType": 0,
            "datasourceId": 0,
            "path": "",
            "content": "",
        }

    def not_carried(self, task: Task) -> None:
        """The NOT_CARRIED task fields this task sets, one warning each (names only, never values)."""
        name = task.name
        if task.description:
            self.warn("description", f"task {name!r}: description not carried: EnOS tasks have none")
        if task.failure_action is FailureAction.CONTINUE:
            self.warn(
                "failure-action",
                f"task {name!r}: failure_action continue not carried: a failed EnOS task stops its "
                "downstream tasks",
            )
        if task.variables:
            self.warn(
                "variables",
                f"task {name!r}: custom variables {[v.name for v in task.variables]} not carried "
                "(secret values are never rendered); set them at the target by hand",
            )
        if task.run.mode:
            self.warn("run-settings", f"task {name!r}: submit mode {task.run.mode} not carried")
        if task.run.cluster:
            self.warn("cluster", f"task {name!r}: cluster {task.run.cluster} not carried")


def render(
    wf: Workflow,
    *,
    upstream: Mapping[str, UpstreamTarget] | None = None,
    folder: str = "",
    submitter: str = "",
    kinds: Mapping[TaskKind, str] | None = None,
    mappings: mapping.Mappings | None = None,
) -> FlowPlan:
    """``folder`` is the target folder the workflow's own folder goes under; ``submitter`` is the OU's
    big-data account (``db_...``) the job file maps to, not a user name; ``kinds`` and ``mappings``
    are the job file's ``[target.kinds]`` and ``[target.mappings]``."""
    wf = mapping.apply(wf, mappings)
    return _Renderer(wf, folder, submitter, kinds or {}).plan(upstream or {})
