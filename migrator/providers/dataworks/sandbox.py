"""A local DataWorks 2024-05-18 (new Data Studio) for the engine's tests and for people trying the tool.

It serves the five actions the migrator uses behind the emulated POP gateway, so the official SDK
can call it unmodified: ``ImportWorkflowDefinition`` (asynchronous, upsert by workflow id),
``GetJobStatus``, ``GetWorkflowDefinition``, ``ListWorkflowDefinitions`` and
``DeleteWorkflowDefinition`` (a sync's ``--prune``). A FlowSpec is checked
the way the service checks it, and a bad one fails the async job, not the HTTP call, with a
JSONPath in ``Error``. ``GET /_sandbox/objects`` shows what was imported and how many times.

Cross-workflow dependencies resolve against outputs declared by workflows already accepted for
import (their outputs are registered when the import is accepted, the definition itself is
written when the job completes), so upstream workflows must be submitted before downstream ones.

A workflow's ``script.path`` is its place in Data Studio's tree, and one place holds one object:
an import whose path another workflow holds fails its job with ``Error`` "target folder already
exists: <path>" (the service's own example of an import error). Like outputs, a path is taken
when its import is accepted, given up when the workflow is deleted or imported under another.
And as DataWorks undeploys only nodes with no descendants, a workflow others depend on (on its
own output or a node's) cannot be deleted: ``InvalidWorkflowDefinition.HasDescendants`` (the
service documents the refusal, not its code) names them.

Injected job faults (``Faults.job_fail``, ``Faults.job_hang``) are decided when the job is
created, like its outcome: a failing job ends ``Fail`` with ``Error`` "sandbox fault: injected
import failure", a hanging one stays ``Running`` for ever (restarts included); neither registers
outputs nor writes the definition.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from migrator import jsontext
from migrator.sandbox.acs import AcsError, AcsGateway, Call, json_response
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.faults import FaultPlan
from migrator.sandbox.storage import RUNNING, Job, SandboxStore

VERSION = "2024-05-18"
PRODUCT = "dataworks-public"
PROJECT_ID = 10001
OWNER = "1107550004253538"
MAX_PAGE_SIZE = 100

WORKFLOWS = "workflow_definitions"
OUTPUTS = "node_outputs"  # index: output string -> owning workflow (parent) and node
PATHS = "workflow_paths"  # index: Data Studio path -> the workflow (parent) there
DEPENDS = "workflow_depends"  # index: <dependant>><upstream>, named by the upstream, under the dependant
#: What an accepted import takes, and a delete or the next import of the workflow gives up.
HELD = (OUTPUTS, PATHS, DEPENDS)
META = "sandbox_meta"  # "indexed": paths and links indexed for every definition (files from before)
TAKEN_PATH = "target folder already exists: "

# A DataWorks id is a 64-bit number carried as a decimal string.
_ID = re.compile(r"[0-9]{1,19}")
_MAX_ID = 2**63 - 1
#: The due time of a job that hangs: never reached.
_NEVER_MS = 2**62
INJECTED_FAILURE = "sandbox fault: injected import failure"


def identity(settings: SandboxSettings) -> dict[str, str]:
    """The sandbox's one workspace, which jobs must name as their DataWorks ``project_id``."""
    return {"project_id": str(PROJECT_ID)}


def create_app(settings: SandboxSettings) -> web.Application:
    store = SandboxStore(settings.data_path)
    faults = FaultPlan(settings.faults, store)
    service = _DataWorks(store, settings, faults)
    gateway = AcsGateway(
        product=PRODUCT,
        version=VERSION,
        actions={
            "ImportWorkflowDefinition": service.import_workflow_definition,
            "GetJobStatus": service.get_job_status,
            "GetWorkflowDefinition": service.get_workflow_definition,
            "ListWorkflowDefinitions": service.list_workflow_definitions,
            "DeleteWorkflowDefinition": service.delete_workflow_definition,
        },
        store=store,
        credentials={settings.access_key_id: settings.access_key_secret},
        faults=faults,
    )
    return gateway.application(service.objects)


# --- FlowSpec checks ---------------------------------------------------------------------------


class SpecInvalid(Exception):
    """The first thing wrong with a FlowSpec, as ``<JSONPath>: <what>``."""


@dataclass(frozen=True, slots=True)
class _Accepted:
    """What a valid spec declares: the workflow, and every output with the node publishing it."""

    workflow_id: str
    name: str
    path: str
    outputs: tuple[tuple[str, str], ...]
    upstreams: frozenset[str]
    """The other workflows whose outputs this one depends on."""


def _obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecInvalid(f"{path}: missing or not an object")
    return value


def _items(value: Any, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecInvalid(f"{path}: not an array")
    return value


def _text(owner: dict[str, Any], key: str, path: str) -> str:
    value = owner.get(key)
    if not isinstance(value, str) or not value:
        raise SpecInvalid(f"{path}.{key}: missing")
    return value


def _id(owner: dict[str, Any], path: str) -> str:
    value = _text(owner, "id", path)
    if not _ID.fullmatch(value) or not 0 < int(value) <= _MAX_ID:
        raise SpecInvalid(f'{path}.id: malformed id "{value}" (expected a positive 64-bit decimal string)')
    return value


def _declared_outputs(owner: dict[str, Any], path: str) -> list[str]:
    at = f"{path}.outputs.nodeOutputs"
    outputs = _items(_obj(owner.get("outputs"), f"{path}.outputs").get("nodeOutputs"), at)
    return [_text(_obj(output, f"{at}[{k}]"), "data", f"{at}[{k}]") for k, output in enumerate(outputs)]


def _outside_depends(
    workflow: dict[str, Any], base: str, node_ids: set[str], node_outputs: set[str]
) -> Iterator[tuple[str, str]]:
    """Each dependency's output that no node of this workflow declares, with its JSONPath, in
    document order; a malformed dependency raises :class:`SpecInvalid` where it is met."""
    for i, item in enumerate(_items(workflow.get("dependencies"), f"{base}.dependencies")):
        at = f"{base}.dependencies[{i}]"
        dependency = _obj(item, at)
        node_id = _text(dependency, "nodeId", at)
        if node_id not in node_ids:
            raise SpecInvalid(f'{at}.nodeId: "{node_id}" is not a node of this workflow')
        for j, depend in enumerate(_items(dependency.get("depends"), f"{at}.depends")):
            output = _text(_obj(depend, f"{at}.depends[{j}]"), "output", f"{at}.depends[{j}]")
            if output not in node_outputs:
                yield output, f"{at}.depends[{j}].output"


def check_spec(doc: Any, output_owners: Callable[[Iterable[str]], Mapping[str, str]]) -> _Accepted:
    """Validate a FlowSpec for import; ``output_owners(outputs)`` names the workflow owning each
    output already imported (outputs no workflow owns are left out).

    Raises :class:`SpecInvalid` naming the JSONPath of the first problem.
    """
    spec = _obj(_obj(doc, "$").get("spec"), "$.spec")
    workflows = _items(spec.get("workflows"), "$.spec.workflows")
    base = "$.spec.workflows[0]"
    if not workflows:
        raise SpecInvalid(f"{base}: missing workflow")
    workflow = _obj(workflows[0], base)
    workflow_id, name = _id(workflow, base), _text(workflow, "name", base)
    script = workflow.get("script")
    path = script.get("path") if isinstance(script, dict) else None

    outputs: dict[str, tuple[str, str]] = {}  # output -> (node id, JSONPath of its declaration)
    if isinstance(workflow.get("outputs"), dict):
        for k, output in enumerate(_declared_outputs(workflow, base)):
            outputs.setdefault(output, (workflow_id, f"{base}.outputs.nodeOutputs[{k}].data"))
    node_ids: set[str] = set()
    names: set[str] = set()
    for i, item in enumerate(_items(workflow.get("nodes"), f"{base}.nodes")):
        at = f"{base}.nodes[{i}]"
        node = _obj(item, at)
        node_id, node_name = _id(node, at), _text(node, "name", at)
        if node_id in node_ids or node_id == workflow_id:
            raise SpecInvalid(f'{at}.id: duplicate node id "{node_id}"')
        if node_name in names:
            raise SpecInvalid(f'{at}.name: duplicate node name "{node_name}"')
        node_ids.add(node_id)
        names.add(node_name)
        runtime = _obj(_obj(node.get("script"), f"{at}.script").get("runtime"), f"{at}.script.runtime")
        _text(runtime, "command", f"{at}.script.runtime")
        declared = _declared_outputs(node, at)
        if not declared:
            raise SpecInvalid(f"{at}.outputs.nodeOutputs: a node must declare at least one output")
        for k, output in enumerate(declared):
            out_path = f"{at}.outputs.nodeOutputs[{k}].data"
            if output in outputs:
                raise SpecInvalid(
                    f'{out_path}: output "{output}" is already declared at {outputs[output][1]}'
                )
            outputs[output] = (node_id, out_path)
    owners = output_owners(outputs)
    for output, (_node, out_path) in outputs.items():
        owner = owners.get(output)
        if owner is not None and owner != workflow_id:
            raise SpecInvalid(f'{out_path}: output "{output}" is already declared by workflow {owner}')

    node_outputs = {o for o, (node_id, _p) in outputs.items() if node_id != workflow_id}
    outside: list[tuple[str, str]] = []  # (output, JSONPath) of dependencies on other workflows

    def resolve() -> frozenset[str]:
        """Look the outside outputs up in one query; name the first that no workflow declares."""
        owners = output_owners(o for o, _at in outside)
        for output, at in outside:
            if owners.get(output, workflow_id) == workflow_id:
                raise SpecInvalid(f'{at}: no node declares the output "{output}"')
        return frozenset(owners.values())

    try:
        for found in _outside_depends(workflow, base, node_ids, node_outputs):
            outside.append(found)
    except SpecInvalid:
        resolve()  # an unresolved output before the problem found is the first problem
        raise
    upstreams = resolve()
    accepted = tuple((o, node_id) for o, (node_id, _p) in outputs.items())
    place = path if isinstance(path, str) and path else name
    return _Accepted(workflow_id, name, place, accepted, upstreams)


# --- the service -------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def _bool_param(call: Call, name: str) -> bool:
    value = call.get(name, "false").lower()
    if value not in ("true", "false"):
        raise AcsError(f"InvalidParameter.{name}", f"The parameter {name} must be true or false.")
    return value == "true"


def _int_param(call: Call, name: str, default: int, low: int, high: int) -> int:
    raw = call.get(name)
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise AcsError(
            f"InvalidParameter.{name}", f"The parameter {name} must be an integer from {low} to {high}."
        )
    return value


def _workflow_id_hint(doc: Any) -> str:
    """The workflow id an import will answer with, read leniently (the job reports what is wrong)."""
    try:
        value = doc["spec"]["workflows"][0]["id"]
    except (KeyError, IndexError, TypeError):
        return ""
    return value if isinstance(value, str) else ""


def _stored_spec(definition: dict[str, Any]) -> dict[str, Any]:
    """A definition's FlowSpec: kept as the imported text (older sandbox files hold it parsed)."""
    spec = definition["spec"]
    parsed: dict[str, Any] = spec if isinstance(spec, dict) else json.loads(spec)
    return parsed


def _without_script_content(spec: dict[str, Any]) -> dict[str, Any]:
    """The FlowSpec, changed in place, without node script contents (GetWorkflowDefinition's default)."""
    for workflow in spec.get("spec", {}).get("workflows", []):
        for node in workflow.get("nodes", []) if isinstance(workflow, dict) else []:
            if isinstance(node, dict) and isinstance(node.get("script"), dict):
                node["script"].pop("content", None)
    return spec


class _DataWorks:
    """The actions, over the sandbox store."""

    def __init__(self, store: SandboxStore, settings: SandboxSettings, faults: FaultPlan) -> None:
        self._store = store
        self._delay = settings.job_delay
        self._faults = faults
        self._index_old_file()

    def _project(self, call: Call) -> None:
        raw = call.require("ProjectId")
        try:
            project = int(raw)
        except ValueError:
            raise AcsError(
                "InvalidParameter.ProjectId", f"The parameter ProjectId is not valid: {raw}"
            ) from None
        if project != PROJECT_ID:
            raise AcsError(
                "Forbidden.NotInProject",
                f"The current user is not a member of workspace {project}, or the workspace does not exist.",
                403,
            )

    def _complete_due(self) -> None:
        """Finish every job whose time has come, so reads see what a real service would show."""
        now = _now_ms()
        for job_id in self._store.due_jobs(now):
            self._store.finish_job(job_id, now, self._apply)

    def _index(self, accepted: _Accepted) -> None:
        """What an accepted import takes: its outputs, its path, and its links to upstreams."""
        workflow_id = accepted.workflow_id
        self._store.delete_children(workflow_id, *HELD)
        self._store.put_children(
            OUTPUTS, workflow_id, ((o, {"node_id": node_id}) for o, node_id in accepted.outputs)
        )
        self._store.put_children(PATHS, workflow_id, [(accepted.path, {})])
        for upstream in accepted.upstreams:
            link = {"dependant": workflow_id}
            self._store.put(DEPENDS, f"{workflow_id}>{upstream}", link, name=upstream, parent=workflow_id)

    def _index_old_file(self) -> None:
        """A file from before paths and links were indexed: index its definitions, as imported."""
        if self._store.get(META, "indexed") is not None:
            return
        with self._store.transaction():
            self._store.put(META, "indexed", {})
            for definition in self._store.objects(WORKFLOWS):
                try:
                    accepted = check_spec(
                        _stored_spec(definition), lambda outputs: self._store.parents(OUTPUTS, outputs)
                    )
                except SpecInvalid:
                    continue  # its upstream is gone: it keeps its outputs, and takes nothing more
                self._index(accepted)

    def _apply(self, job: Job) -> dict[str, Any]:
        """A job reached its outcome: a successful, non-dry-run import upserts the definition."""
        payload = job.payload
        workflow_id = payload["workflow_id"]
        kept = {"workflow_id": workflow_id, "dry_run": payload["dry_run"]}
        if job.outcome != "Success" or payload["dry_run"]:
            return kept
        old = self._store.get(WORKFLOWS, workflow_id)
        definition = {
            "id": workflow_id,
            "name": payload["name"],
            "path": payload["path"],
            "imports": (old["imports"] if old else 0) + 1,
            "owner": OWNER,
            "project_id": PROJECT_ID,
            "create_time": old["create_time"] if old else job.due_ms,
            "modify_time": job.due_ms,
            "spec": job.input,  # the text as imported: parsed only when read back
        }
        self._store.put(WORKFLOWS, workflow_id, definition, name=payload["name"])
        return kept

    async def import_workflow_definition(self, call: Call) -> dict[str, Any]:
        self._project(call)
        raw_spec = call.require("Spec")
        dry_run = _bool_param(call, "DryRun")
        try:
            doc = jsontext.load(raw_spec)
        except ValueError as exc:
            raise AcsError("InvalidParameter.Spec", f"The parameter Spec is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise AcsError("InvalidParameter.Spec", "The parameter Spec must be a FlowSpec JSON object.")
        self._complete_due()
        workflow_id = _workflow_id_hint(doc)
        job_type = "Update" if workflow_id and self._store.names(WORKFLOWS, [workflow_id]) else "Create"
        now = _now_ms()
        job_id = str(10**18 + secrets.randbelow(_MAX_ID - 10**18))
        due_ms = now + int(random.uniform(*self._delay) * 1000)
        fault = self._faults.job_fault()
        with self._store.transaction():
            try:
                accepted = check_spec(doc, lambda outputs: self._store.parents(OUTPUTS, outputs))
                outcome, error = "Success", ""
            except SpecInvalid as exc:
                accepted, outcome, error = None, "Fail", str(exc)
            if accepted is not None:
                holder = self._store.parents(PATHS, [accepted.path]).get(accepted.path)
                if holder not in (None, accepted.workflow_id):
                    outcome, error = "Fail", TAKEN_PATH + accepted.path
                    accepted = None
            if fault == "fail":
                accepted, outcome, error = None, "Fail", INJECTED_FAILURE
            elif fault == "hang":
                accepted, outcome, error, due_ms = None, RUNNING, "", _NEVER_MS
            payload: dict[str, Any] = {"workflow_id": workflow_id, "dry_run": dry_run}
            # The text as sent, not ``doc``: kept as the job's input and moved to the definition as
            # one string, a 12 kB spec is not serialised again and parsed once more on every import.
            spec = None if accepted is None else raw_spec
            if accepted is not None:
                payload.update(name=accepted.name, path=accepted.path)
                if not dry_run:  # outputs, path and links are taken as soon as this one is accepted
                    self._index(accepted)
            self._store.add_job(Job(job_id, job_type, RUNNING, outcome, error, now, due_ms, payload, spec))
        return {
            "AsyncJob": {
                "Id": job_id,
                "Status": RUNNING,
                "Completed": False,
                "Progress": 0,
                "Response": workflow_id,
                "Type": job_type,
                "CreateTime": now,
            }
        }

    async def get_job_status(self, call: Call) -> dict[str, Any]:
        job_id = call.require("JobId")
        job = self._store.finish_job(job_id, _now_ms(), self._apply)
        if job is None:
            raise AcsError("InvalidJobId.NotFound", f"The specified job {job_id} does not exist.", 404)
        return {
            "JobStatus": {
                "JobId": job.id,
                "Status": job.status,
                "Completed": "False" if job.status == RUNNING else "True",
                "Error": "" if job.status == RUNNING else job.error,
                "JobType": job.type,
                "CreateTime": str(job.created_ms),
            }
        }

    def _definition(self, call: Call) -> dict[str, Any]:
        self._project(call)
        workflow_id = call.require("Id")
        self._complete_due()
        found = self._store.get(WORKFLOWS, workflow_id)
        if found is None:
            raise AcsError(
                "InvalidWorkflowDefinition.NotFound",
                f"The workflow definition {workflow_id} does not exist.",
                404,
            )
        return found

    async def delete_workflow_definition(self, call: Call) -> dict[str, Any]:
        """The definition, its outputs, path and links go (a later import may create it again);
        refused while other workflows depend on it."""
        found = self._definition(call)
        workflow_id = found["id"]
        with self._store.transaction():  # the check and the delete under one write lock
            dependants = [link["dependant"] for link in self._store.named(DEPENDS, workflow_id)]
            if dependants:
                names = self._store.names(WORKFLOWS, dependants)
                listed = ", ".join(f"{d} ({names.get(d, '?')})" for d in dependants)
                raise AcsError(
                    "InvalidWorkflowDefinition.HasDescendants",
                    f"The workflow definition {workflow_id} has descendant nodes and cannot be deleted: "
                    f"workflows {listed} depend on it. Remove those dependencies first.",
                )
            self._store.delete(WORKFLOWS, workflow_id)
            self._store.delete_children(workflow_id, *HELD)
        return {"Success": True}

    async def get_workflow_definition(self, call: Call) -> dict[str, Any]:
        found = self._definition(call)
        spec = _stored_spec(found)
        if not _bool_param(call, "IncludeScriptContent"):
            spec = _without_script_content(spec)
        return {
            "WorkflowDefinition": {
                "Id": found["id"],
                "Name": found["name"],
                "Owner": found["owner"],
                "ProjectId": found["project_id"],
                "Spec": json.dumps(spec, ensure_ascii=False),
                "CreateTime": found["create_time"],
                "ModifyTime": found["modify_time"],
            }
        }

    async def list_workflow_definitions(self, call: Call) -> dict[str, Any]:
        self._project(call)
        page_number = _int_param(call, "PageNumber", 1, 1, 10**9)
        page_size = _int_param(call, "PageSize", 10, 1, MAX_PAGE_SIZE)
        name = call.get("Name")
        self._complete_due()
        if call.get("Type", "CycleWorkflow") != "CycleWorkflow":  # the sandbox holds no manual workflows
            total, found = 0, []
        else:
            total = self._store.count(WORKFLOWS, name_contains=name)
            found = self._store.objects(
                WORKFLOWS, name_contains=name, offset=(page_number - 1) * page_size, limit=page_size
            )
        return {
            "PagingInfo": {
                "PageNumber": page_number,
                "PageSize": page_size,
                "TotalCount": total,
                "WorkflowDefinitions": [
                    {
                        "Id": d["id"],
                        "Name": d["name"],
                        "Owner": d["owner"],
                        "ProjectId": d["project_id"],
                        "Type": "CycleWorkflow",
                        "CreateTime": d["create_time"],
                        "ModifyTime": d["modify_time"],
                        "Script": {"Path": d["path"], "Runtime": {"Command": "WORKFLOW"}},
                    }
                    for d in found
                ],
            }
        }

    async def objects(self, _request: web.Request) -> web.Response:
        """``GET /_sandbox/objects``: every definition (with its import count) and every async job."""
        self._complete_due()
        definitions = [
            {
                **{key: d[key] for key in ("id", "name", "path", "imports", "create_time", "modify_time")},
                "spec": _stored_spec(d),
            }
            for d in self._store.objects(WORKFLOWS)
        ]
        jobs = [
            {
                "id": job.id,
                "type": job.type,
                "workflow_id": job.payload.get("workflow_id", ""),
                "dry_run": job.payload.get("dry_run", False),
                "status": job.status,
                "error": job.error if job.status != RUNNING else "",
                "create_time": job.created_ms,
                "due_time": job.due_ms,
            }
            for job in self._store.list_jobs()
        ]
        return json_response({WORKFLOWS: definitions, "async_jobs": jobs})
