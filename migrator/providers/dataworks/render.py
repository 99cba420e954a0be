"""Canonical workflow -> DataWorks FlowSpec (the ``ImportWorkflowDefinition`` shape of the seed).

Ids are derived from the item key, so importing the same workflow again addresses the same
definition and nodes: DataWorks treats a known id as an update, which makes every re-run (and
every resume after a crash) an upsert rather than a duplicate.

What DataWorks cannot express is either refused (:class:`TranslationError`, the item becomes
``invalid``) or carried with a warning that says what changed. Nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from migrator.model import FailureAction, Task, TaskKind, Workflow
from migrator.providers.base import UpstreamTarget, warner, warning
from migrator.translate import mapping
from migrator.translate.cron import Dialect
from migrator.translate.kinds import SHELL_TYPES, target_type
from migrator.translate.macros import Syntax, writer
from migrator.translate.retries import Limits, convert
from migrator.translate.schedule import cron_for

TARGET = "dataworks"
SHELL_COMMANDS = SHELL_TYPES[TARGET]
#: SpecNode ``timeout`` is in seconds (dataworks-spec schema/node.schema.json: "单位为秒"),
#: ``rerunInterval`` in milliseconds (the seed's 180000); no bounds are documented for either.
LIMITS = Limits("DataWorks", interval_unit="ms", interval_per_second=1000)

EARLIEST = "1970-01-01 00:00:00"
LATEST = "9999-01-01 00:00:00"


def stable_id(*parts: str) -> str:
    """A 19-digit id that fits a signed 64-bit number (DataWorks ids are Longs carried as strings)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return str(10**18 + int.from_bytes(digest[:8], "big") % (8 * 10**18))  # < 2**63 - 1


def workflow_id(key: str) -> str:
    return stable_id("workflow", key)


def node_id(key: str, task: str) -> str:
    return stable_id("node", key, task)


def _time(value: datetime | None, default: str) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else default


class _Renderer:
    def __init__(
        self,
        wf: Workflow,
        folder: str,
        upstream: Mapping[str, UpstreamTarget],
        kinds: Mapping[TaskKind, str],
        mappings: mapping.Mappings,
    ) -> None:
        self.wf = wf
        self.upstream = upstream
        self.kinds, self.mappings = kinds, mappings
        self.key = wf.key
        self.warnings: list[str] = []
        root = "/".join(p for p in (folder.strip("/"), wf.folder.strip("/")) if p)
        self.path = f"{root}/{wf.name}" if root else wf.name
        self.macros = writer(wf, Syntax.DATAWORKS, warner(self.warnings, "macros"))
        # Each task's id is named by its node, its output and every dependency on it: hashed once.
        self.ids = {t.name: node_id(self.key, t.name) for t in wf.tasks}

    def warn(self, rule: str, message: str) -> None:
        self.warnings.append(warning(rule, message))

    def trigger(self) -> dict[str, Any]:
        sched = self.wf.schedule
        if sched is None:
            return {"type": "Manual"}
        return {
            "type": "Scheduler",
            "cron": cron_for(self.wf, Dialect.DATAWORKS),
            "startTime": _time(sched.start, EARLIEST),
            "endTime": _time(sched.end, LATEST),
            "timezone": sched.timezone,
            "delaySeconds": 0,
        }

    def parameters(self, values: dict[str, str], task: Task | None) -> list[dict[str, Any]]:
        params = [
            {
                "name": k,
                "artifactType": "Variable",
                "scope": "NodeParameter",
                "type": "Constant",
                "value": self.macros(v),
            }
            for k, v in values.items()
        ]
        if task is None:
            return params
        for var in task.variables:
            if var.secret:
                self.warn(
                    "secret-variable",
                    f"task {task.name!r}: secret variable {var.name!r} is not carried (DataWorks node "
                    "parameters are plain text); set it at the target by hand",
                )
                continue
            params.append(
                {
                    "name": var.name,
                    "artifactType": "Variable",
                    "scope": "NodeParameter",
                    "type": "Constant",
                    "value": self.macros(var.plain()),
                }
            )
        return params

    def content(self, task: Task, command: str) -> str:
        content = self.macros(task.content)
        if not task.environment:
            return content
        if command in SHELL_COMMANDS:
            exports = "".join(f"export {k}={json.dumps(v)}\n" for k, v in task.environment.items())
            self.warn("environment", f"task {task.name!r}: environment carried as export lines in the script")
            return exports + content
        self.warn(
            "environment",
            f"task {task.name!r}: environment {sorted(task.environment)} not carried "
            f"({command} nodes have no environment)",
        )
        return content

    def node(self, task: Task, trigger: dict[str, Any]) -> dict[str, Any]:
        nid = self.ids[task.name]
        choice = target_type(TARGET, task.kind, source=self.wf.source.system, overrides=self.kinds)
        command = choice.type
        if choice.placeholder:
            self.warn(
                "job-kind",
                f"task {task.name!r}: kind {task.kind.value} has no DataWorks equivalent; "
                f"kept as a {command} placeholder holding the original content",
            )
        if task.failure_action is FailureAction.CONTINUE:
            self.warn(
                "failure-action",
                f"task {task.name!r}: continue-on-failure has no DataWorks equivalent; "
                "downstream nodes will wait for a rerun",
            )
        sent = convert(task, LIMITS, self.warn)
        runtime: dict[str, Any] = {"command": command}
        run = task.run
        emr = {
            k: v
            for k, v in {
                "queue": run.queue,
                "memory": run.memory_mb,
                "cores": run.cores,
                "priority": run.priority,
                "submitter": run.user,
                "submitMode": {"YARN": "Yarn", "LOCAL": "Local"}.get((run.mode or "").upper()),
            }.items()
            if v is not None
        }
        if emr and command.startswith("EMR_"):
            runtime["emrJobConfig"] = emr
        elif emr:
            self.warn(
                "run-settings",
                f"task {task.name!r}: run settings {sorted(emr)} apply only to EMR nodes; not carried",
            )
        node: dict[str, Any] = {
            "recurrence": "Pause" if self.wf.schedule and self.wf.schedule.paused else "Normal",
            "id": nid,
            "name": task.name,
            "description": task.description,
            "timeout": sent.timeout,
            "instanceMode": "T+1",
            "rerunMode": "Allowed",
            "rerunTimes": sent.retries,
            "rerunInterval": sent.interval,
            "script": {
                "path": f"{self.path}/{task.name}",
                "runtime": runtime,
                "content": self.content(task, command),
                "parameters": self.parameters(task.parameters, task),
            },
            "trigger": trigger,
            "inputs": {},
            "outputs": {
                "nodeOutputs": [{"data": nid, "artifactType": "NodeOutput", "refTableName": task.name}]
            },
        }
        if self.wf.owners:
            node["owner"] = self.wf.owners[0]
        if run.cluster and self.mappings.covers(self.mappings.clusters):
            node["runtimeResource"] = {"resourceGroup": run.cluster}
        elif run.cluster:
            self.warn(
                "cluster",
                f"task {task.name!r}: cluster {run.cluster} not carried; [target.mappings] clusters "
                "maps clusters to the resource groups nodes run on",
            )
        if task.resources:
            node["fileResources"] = [
                {"name": r.alias or r.path.rsplit("/", 1)[-1], "path": r.path} for r in task.resources
            ]
            self.warn(
                "resources",
                f"task {task.name!r}: {len(task.resources)} resource(s) referenced by name; "
                "upload them to DataWorks resources before the first run",
            )
        return node

    def spec(self) -> dict[str, Any]:
        wf = self.wf
        wid = workflow_id(self.key)
        trigger = self.trigger()
        nodes = [self.node(t, trigger) for t in wf.tasks]
        # Inside the workflow a dependency names the upstream node's output; on another workflow,
        # the gated nodes (by default the entry nodes) depend on that workflow's output (its id) or
        # on the named upstream task's output, as MigrationX wires EMR parents.
        outside: dict[str, list[dict[str, str]]] = {}
        entry = wf.entry_tasks()
        for dep in wf.upstream:
            up = self.upstream.get(dep.workflow)
            if up is None:
                continue
            output = up.target_id if dep.task is None or up.external else node_id(up.key, dep.task)
            if dep.task is not None and up.external:
                self.warn(
                    "upstream-workflows",
                    f"the dependency on task {dep.task!r} of {dep.workflow!r} (outside the job, mapped to "
                    f"{up.target_id}) is carried as a dependency on that whole workflow",
                )
            ref = up.name if dep.task is None else f"{up.name}.{dep.task}"
            for gated in dep.gates or entry:
                outside.setdefault(gated, []).append(
                    {"type": "Normal", "output": output, "refTableName": ref}
                )
        dependencies = []
        for t in wf.tasks:
            depends = [
                {"type": "Normal", "output": self.ids[up], "refTableName": up}
                for up in wf.upstream_of(t.name)
            ] + outside.get(t.name, [])
            if depends:
                dependencies.append({"nodeId": self.ids[t.name], "depends": depends})
        if len(wf.owners) > 1:
            self.warn(
                "owners",
                f"DataWorks has one owner per object; {wf.owners[0]!r} kept, {list(wf.owners[1:])} dropped",
            )
        missing = [ref for ref in wf.upstream_workflows() if ref not in self.upstream]
        if missing:
            self.warn(
                "upstream-workflows",
                f"dependencies on {missing} not carried: not found in this job or its state database",
            )
        if wf.alerts.on_failure or wf.alerts.on_success or wf.alerts.on_task_failure:
            self.warn(
                "alerts",
                "alert settings are DataWorks monitoring rules, not part of the FlowSpec; not carried",
            )
        workflow: dict[str, Any] = {
            "id": wid,
            "name": wf.name,
            "description": wf.description,
            "script": {
                "path": self.path,
                "runtime": {"command": "WORKFLOW"},
                "parameters": self.parameters(wf.parameters, None),
            },
            "trigger": trigger,
            "strategy": {
                "timeout": 0,
                "instanceMode": "T+1",
                "rerunMode": "Allowed",
                "rerunTimes": 0,
                "rerunInterval": 0,
                "failureStrategy": "Break",
            },
            "inputs": {},
            "outputs": {
                "nodeOutputs": [{"data": wid, "artifactType": "NodeOutput", "refTableName": wf.name}]
            },
            "nodes": nodes,
            "dependencies": dependencies,
        }
        if wf.owners:
            workflow["owner"] = wf.owners[0]
        return {
            "version": "1.1.0",
            "kind": "CycleWorkflow",
            "spec": {"name": wf.name, "id": wid, "type": "CycleWorkflow", "workflows": [workflow]},
        }


def render(
    wf: Workflow,
    folder: str = "",
    upstream: Mapping[str, UpstreamTarget] | None = None,
    *,
    kinds: Mapping[TaskKind, str] | None = None,
    mappings: mapping.Mappings | None = None,
) -> tuple[str, dict[str, Any], tuple[str, ...]]:
    """Return ``(workflow id, FlowSpec, warnings)``; ``upstream`` maps references to workflow ids;
    ``kinds`` and ``mappings`` are the job file's ``[target.kinds]`` and ``[target.mappings]``."""
    mappings = mappings or mapping.Mappings()
    renderer = _Renderer(mapping.apply(wf, mappings), folder, upstream or {}, kinds or {}, mappings)
    spec = renderer.spec()
    return workflow_id(wf.key), spec, tuple(renderer.warnings)
