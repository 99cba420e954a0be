"""EMR Data Development answers -> canonical workflows (the inverse of :mod:`.render`), and export files.

:func:`workflow_from_emr` reads one flow as the API describes it (a ``DescribeFlow`` answer or a
``ListFlow`` item, plus the ``DescribeFlowJob`` answers of its jobs) into a
:class:`~migrator.model.Workflow`, undoing each row of :data:`.render.CARRIED`. It reads the same
objects as MigrationX serialises them too (Gson over the legacy Java SDK: ``cronExpr`` for
``CronExpr``, lists not double-wrapped), so one reader serves the live API, JSON documents and
MigrationX dumps.

:func:`read_export` streams export files, one :class:`~migrator.inventory.Entry` per flow:

* documents ``{"flow": <DescribeFlow>, "jobs": [<DescribeFlowJob>...], "folder": "a/b"}`` (or
  ``"categories": [<DescribeFlowCategory>...]`` instead of ``folder``) in ``.jsonl`` files, one per
  line, or ``.json`` files holding an array (read incrementally) or a single document;
* the directory ``AliyunEmrService.dump`` writes (aliyun/dataworks-spec, MigrationX), which
  :func:`write_export` writes too::

      <root>/.package_info.txt                  {"type": "ALIYUN_EMR", "timestamp", "exporter"}
      <root>/<project>/<project>.json           the ListFlowProject item
      <root>/<project>/job/<FJ-id>.json         DescribeFlowJob (the ListFlowJob item if that failed)
      <root>/<project>/flow/<F-id>.json         the ListFlow item
      <root>/<project>/flow/<F-id>.detail.json  DescribeFlow plus "project" and "path" (folder names)

  MigrationX stores ``cronExpr`` with the day of week renumbered for DataWorks (``CronUtil``:
  Sunday 1 -> 7, Monday 2 -> 1, ...); both writers do, and the reader renumbers it back. MigrationX
  also rewrites date expressions in ``paramConf`` to DataWorks' syntax (``ParamUtil``), which
  cannot be undone; :func:`write_export` keeps them as they are.

Errors never quote a field's value (job content and variables may hold secrets): they name the
file, the line or array index, the flow and the field.
"""

from __future__ import annotations

import json
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from migrator.inventory import LINE_SUFFIXES, Entry, documents
from migrator.model import FailureAction, TaskKind, Workflow
from migrator.providers.emr.render import (
    DEFAULT_TIMEZONE,
    EVENT_FAILED,
    EVENT_NODE_FAILED,
    EVENT_SUCCEEDED,
    NO_DESCRIPTION,
    STOP_SCHEDULE,
    TARGET,
)
from migrator.translate import fields
from migrator.translate.dag import find_cycle
from migrator.translate.kinds import source_kinds

__all__ = ["EmrDocumentError", "folder_path", "read_export", "workflow_from_emr", "write_export"]

#: EMR job ``Type`` -> canonical kind (render's table inverted; SHELL placeholders stay shell).
KINDS: dict[str, TaskKind] = source_kinds(TARGET)
FAILURE_ACTIONS: dict[str, FailureAction] = {a.value.upper(): a for a in FailureAction}
#: AlertConf ``eventId`` -> the :class:`~migrator.model.Alerts` flag it sets.
ALERT_EVENTS: dict[str, str] = {
    EVENT_FAILED: "on_failure",
    EVENT_SUCCEEDED: "on_success",
    EVENT_NODE_FAILED: "on_task_failure",
}
#: Lists the API double-wraps (``ResourceList.Resource[]``) and the Java SDK, hence Gson, does not.
WRAPPED: dict[str, str] = {"ResourceList": "Resource", "ParentFlowList": "ParentFlow"}
#: Quartz day of week (1 = Sunday) -> DataWorks' (7 = Sunday): MigrationX's ``CronUtil.rotateWeek``.
DATAWORKS_WEEKDAY: dict[int, int] = {1: 7, 2: 1, 3: 2, 4: 3, 5: 4, 6: 5, 7: 6}
QUARTZ_WEEKDAY: dict[int, int] = {dw: quartz for quartz, dw in DATAWORKS_WEEKDAY.items()}

FLOW_DIR, JOB_DIR, JSON_EXT, DETAIL_EXT = "flow", "job", ".json", ".detail"
PACKAGE_INFO = ".package_info.txt"
PACKAGE_TYPE = "ALIYUN_EMR"
EXPORTER = "migrator"

_ZONE = ZoneInfo(DEFAULT_TIMEZONE)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SAFE_NAME = re.compile(r"[^/\\\x00]+")


class EmrDocumentError(fields.DocumentError):
    """An EMR answer that cannot be read as a workflow."""


# --- field access under either spelling ------------------------------------------------------------


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _raw(doc: Mapping[str, Any], name: str) -> Any:
    """``name`` as the API spells it (``CronExpr``), else as Gson does (``cronExpr``)."""
    return doc[name] if name in doc else doc.get(_camel(name))


def _scalar_text(value: Any) -> str | None:
    """A JSON scalar as the string EMR meant (``1`` -> ``"1"``, ``true`` -> ``"true"``); None otherwise."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


class _Fields(fields.Fields):
    """One answer's fields, under either spelling."""

    error = EmrDocumentError

    def raw(self, name: str) -> Any:
        return _raw(self.doc, name)

    def listed(self, name: str) -> list[Any]:
        """A list the API double-wraps (``{"Resource": [...]}``) or Gson flattened (``[...]``)."""
        value = self.raw(name)
        if isinstance(value, Mapping):
            value = _raw(value, WRAPPED.get(name, ""))
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(name, "must be a list")
        return value

    def strings(self, name: str) -> dict[str, str]:
        """``ParamConf`` / ``EnvConf``: a JSON object of scalars."""
        value = self.json(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(name, "must be a JSON object")
        out: dict[str, str] = {}
        for key, item in value.items():
            text = _scalar_text(item)
            if text is None:
                raise self.fail(f"{name}.{key}", "must be a string")
            out[key] = text
        return out


# --- the DAG ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Node:
    id: str
    label: str
    job_id: str
    ref: str  # the field naming the job, for errors


def _node_id(value: Any) -> str | None:
    return (
        str(value) if isinstance(value, str | int) and not isinstance(value, bool) and value != "" else None
    )


def _from_graph(f: _Fields) -> tuple[list[_Node], list[tuple[str, str]]] | None:
    """JOB nodes and all edges of ``Graph`` (the UI DAG ``CreateFlowForWeb`` takes)."""
    graph = f.json("Graph")
    if graph is None:
        return None
    nodes, edges = (graph.get(k) if isinstance(graph, dict) else None for k in ("nodes", "edges"))
    if not isinstance(nodes, list) or not isinstance(edges, list | None):
        raise f.fail("Graph", 'must be a JSON object with a "nodes" list and an "edges" list')
    known: set[str] = set()
    jobs: list[_Node] = []
    for i, node in enumerate(nodes):
        where = f"Graph.nodes[{i}]"
        attribute = node.get("attribute") if isinstance(node, dict) else None
        node_id = _node_id(node.get("id")) if isinstance(node, dict) else None
        if node_id is None or not isinstance(attribute, dict):
            raise f.fail(where, 'must be an object with an "id" and an "attribute" object')
        if node_id in known:
            raise f.fail(f"{where}.id", "repeats an earlier node's id")
        known.add(node_id)
        if attribute.get("type") == "JOB":
            job_id = attribute.get("jobId")
            if not isinstance(job_id, str) or not job_id:
                raise f.fail(f"{where}.attribute.jobId", "is missing")
            label = node.get("label")
            ref = f"{where}.attribute.jobId"
            jobs.append(_Node(node_id, label if isinstance(label, str) else "", job_id, ref))
    pairs: list[tuple[str, str]] = []
    for i, edge in enumerate(edges or []):
        ends = [_node_id(edge.get(end)) if isinstance(edge, dict) else None for end in ("source", "target")]
        for end, node_id in zip(("source", "target"), ends, strict=True):
            if node_id is None or node_id not in known:
                raise f.fail(f"Graph.edges[{i}].{end}", "is not a node of the graph")
        pairs.append((str(ends[0]), str(ends[1])))
    return jobs, pairs


def _from_application(f: _Fields) -> tuple[list[_Node], list[tuple[str, str]]] | None:
    """``:action:`` entries of ``Application.nodeDefMap``, ``transitions`` being the out-edges."""
    app = f.json("Application")
    if app is None:
        return None
    defs = app.get("nodeDefMap") if isinstance(app, dict) else None
    if not isinstance(defs, dict):
        raise f.fail("Application", 'must be a JSON object with a "nodeDefMap" object')
    jobs: list[_Node] = []
    pairs: list[tuple[str, str]] = []
    for key, node in defs.items():
        where = f"Application.nodeDefMap.{key}"
        if not isinstance(node, dict):
            raise f.fail(where, "must be an object")
        if node.get("type") == ":action:":
            job_id = node.get("jobId")
            if not isinstance(job_id, str) or not job_id:
                raise f.fail(f"{where}.jobId", "is missing")
            label = node.get("name")
            jobs.append(_Node(key, label if isinstance(label, str) else "", job_id, f"{where}.jobId"))
        transitions = node.get("transitions") or []
        if not isinstance(transitions, list):
            raise f.fail(f"{where}.transitions", "must be a list")
        for target in transitions:
            if not isinstance(target, str) or target not in defs:
                raise f.fail(f"{where}.transitions", "names a node that is not in nodeDefMap")
            pairs.append((key, target))
    return jobs, pairs


def _unique(names: list[str]) -> list[str]:
    """Task names, a repeated one suffixed ``_2``, ``_3``... in node order (one job in several nodes)."""
    taken = set(names)
    seen: set[str] = set()
    out: list[str] = []
    for name in names:
        unique, n = name, 1
        while unique in seen or (unique != name and unique in taken):
            n += 1
            unique = f"{name}_{n}"
        seen.add(unique)
        out.append(unique)
    return out


# --- jobs -> tasks ------------------------------------------------------------------------------

_RunField = tuple[str, Callable[[_Fields, str], Any]]
#: RunConf key -> (RunSettings field, reader).
RUN_CONF: dict[str, _RunField] = {
    "queue": ("queue", _Fields.text),
    "memory": ("memory_mb", _Fields.integer),
    "cores": ("cores", _Fields.number),
    "priority": ("priority", _Fields.integer),
    "userName": ("user", _Fields.text),
}


def _description(text: str | None) -> str:
    """The placeholder render sends for an empty description (EMR requires one) reads back empty."""
    return "" if text in (None, NO_DESCRIPTION) else str(text)


def _job_kind(job: _Fields) -> TaskKind:
    emr_type = job.text("Type")
    if not emr_type:
        raise job.fail("Type", "is missing")
    kind = KINDS.get(emr_type)
    if kind is None:
        raise job.fail("Type", f"is not a job type the migrator reads (known: {', '.join(KINDS)})")
    return kind


def _resources(job: _Fields) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, item in enumerate(job.listed("ResourceList")):
        if not isinstance(item, Mapping):
            raise job.fail(f"ResourceList[{i}]", "must be an object")
        res = job.within(item, f"ResourceList[{i}].")
        path = res.text("Path")
        if not path:
            raise res.fail("Path", "is missing")
        out.append({"path": path, "alias": res.text("Alias") or None})
    return out


def _run(job: _Fields) -> dict[str, Any]:
    conf = job.json("RunConf")
    if conf is not None and not isinstance(conf, dict):
        raise job.fail("RunConf", "must be a JSON object")
    settings = job.within(conf or {}, "RunConf.")
    run = {field: read(settings, key) for key, (field, read) in RUN_CONF.items()}
    run["mode"] = job.text("Mode")  # the answer's key is lowercase ``mode``; _raw finds either
    run["cluster"] = job.text("ClusterId")
    return {k: v for k, v in run.items() if v is not None}


def _variables(job: _Fields) -> list[dict[str, Any]]:
    conf = job.json("CustomVariables")
    if conf is None:
        return []
    listed = conf.get("variables") if isinstance(conf, dict) else conf
    if not isinstance(listed, list):
        raise job.fail("CustomVariables", 'must be a JSON object with a "variables" list')
    out: list[dict[str, Any]] = []
    for i, item in enumerate(listed):
        where = f"CustomVariables.variables[{i}]"
        name = item.get("name") if isinstance(item, dict) else None
        value = _scalar_text(item.get("value", "")) if isinstance(item, dict) else None
        if not isinstance(name, str) or value is None:
            raise job.fail(where, 'must be an object with a "name" and a string "value"')
        properties = item.get("properties")
        password = properties.get("password") if isinstance(properties, dict) else False
        out.append({"name": name, "value": value, "secret": password in (True, "true")})
    return out


def _task(job: _Fields, name: str) -> dict[str, Any]:
    """One job as a task record (validated with the whole workflow)."""
    fail_act = (job.text("FailAct") or "STOP").upper()
    if fail_act not in FAILURE_ACTIONS:
        raise job.fail("FailAct", f"must be one of {', '.join(FAILURE_ACTIONS)}")
    return {
        "name": name,
        "kind": _job_kind(job),
        "content": job.text("Params") or "",
        "description": _description(job.text("Description")),
        "resources": _resources(job),
        "max_retries": job.integer("MaxRetry") or 0,
        "retry_interval": job.number("RetryInterval") or 0,
        "timeout": job.number("MaxRunningTimeSec") or None,
        "failure_action": FAILURE_ACTIONS[fail_act],
        "run": _run(job),
        "parameters": job.strings("ParamConf"),
        "environment": job.strings("EnvConf"),
        "variables": _variables(job),
    }


# --- the flow -----------------------------------------------------------------------------------


def _datetime(f: _Fields, name: str) -> datetime | None:
    ms = f.integer(name)
    return None if ms is None else (_EPOCH + timedelta(milliseconds=ms)).astimezone(_ZONE)


def _schedule(f: _Fields) -> dict[str, Any] | None:
    cron = (f.text("CronExpr") or "").strip()
    if not cron:
        return None
    return {
        "cron": cron,
        "timezone": DEFAULT_TIMEZONE,
        "start": _datetime(f, "StartSchedule"),
        "end": _datetime(f, "EndSchedule"),
        "paused": f.text("Status") == STOP_SCHEDULE,
    }


def _group_ids(f: _Fields, where: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise f.fail(where, "must be a list of strings")
    return value


def _alerts(f: _Fields) -> dict[str, Any]:
    conf = f.json("AlertConf")
    if conf is None:
        return {}
    items = conf.get("items", []) if isinstance(conf, dict) else None
    if not isinstance(items, list):
        raise f.fail("AlertConf", 'must be a JSON object with an "items" list')
    alerts: dict[str, Any] = {}
    recipients: dict[str, None] = {}
    dingtalk: dict[str, None] = {}
    for i, item in enumerate(items):
        where = f"AlertConf.items[{i}]"
        if not isinstance(item, dict):
            raise f.fail(where, "must be an object")
        if item.get("enable", True) in (False, "false"):
            continue
        event = item.get("eventId")
        flag = ALERT_EVENTS.get(event) if isinstance(event, str) else None
        if flag is not None:
            alerts[flag] = True
        for key, into in (("alertUserGroupIdList", recipients), ("alertDingDingGroupList", dingtalk)):
            into.update(dict.fromkeys(_group_ids(f, f"{where}.{key}", item.get(key))))
    return {**alerts, "recipients": tuple(recipients), "dingtalk_groups": tuple(dingtalk)}


def _parents(f: _Fields, system: str) -> list[str]:
    ids: dict[str, None] = {}
    for i, parent in enumerate(f.listed("ParentFlowList")):
        parent_id = _raw(parent, "ParentFlowId") if isinstance(parent, Mapping) else parent
        if not isinstance(parent_id, str) or not parent_id:
            raise f.fail(f"ParentFlowList[{i}].ParentFlowId", "is missing")
        ids[f"{system}:{parent_id}"] = None
    return list(ids)


def _flow_id(flow: Mapping[str, Any]) -> str | None:
    value = _raw(flow, "Id")
    return value if isinstance(value, str) and value else None


def workflow_from_emr(
    flow: Mapping[str, Any],
    jobs: Mapping[str, Mapping[str, Any]],
    *,
    folder: str = "",
    system: str = "emr",
) -> Workflow:
    """One flow (DescribeFlow answer or ListFlow item) and its jobs by ``FJ-`` id, as a workflow.

    Tasks are the Graph's JOB nodes in Graph order (``Application.nodeDefMap`` when there is no
    Graph); a job used by several nodes gives several tasks. Workflow parameters cannot be told
    apart from the task parameters render merged them into, so they stay in the tasks.
    """
    flow_id = _flow_id(flow)
    if flow_id is None:
        raise EmrDocumentError("?", "Id", "is missing")
    f = _Fields(flow, flow_id)
    flow_name = f.text("Name")
    if not flow_name or not flow_name.strip():
        raise f.fail("Name", "is missing")
    dag = _from_graph(f) or _from_application(f)
    if dag is None:
        raise f.fail("Graph", "is missing, and so is Application")
    nodes, pairs = dag
    if not nodes:
        raise f.fail("Graph", "has no JOB node")

    found: list[_Fields] = []
    for node in nodes:
        job = jobs.get(node.job_id)
        if job is None:
            raise f.fail(node.ref, f"names job {node.job_id}, which is not among the flow's jobs")
        found.append(f.within(job, f"jobs[{node.job_id}]."))
    prefix = f"{flow_name}."
    labels = [
        node.label.strip() or (job.text("Name") or "").removeprefix(prefix).strip() or node.job_id
        for node, job in zip(nodes, found, strict=True)
    ]
    names = dict(zip((n.id for n in nodes), _unique(labels), strict=True))
    tasks = [_task(job, names[node.id]) for node, job in zip(nodes, found, strict=True)]
    edges = list(dict.fromkeys((names[a], names[b]) for a, b in pairs if a in names and b in names))
    cycle = find_cycle(list(names.values()), edges)
    if cycle:
        raise f.fail("Graph", f"the JOB nodes form a cycle ({len(cycle) - 1} nodes)")

    record = {
        "name": flow_name,
        "source": {"system": system, "id": flow_id},
        "description": _description(f.text("Description")),
        "folder": folder.strip("/"),
        "schedule": _schedule(f),
        "alerts": _alerts(f),
        "upstream": _parents(f, system),
        "tasks": tasks,
        "edges": [{"upstream": a, "downstream": b} for a, b in edges],
    }
    try:
        return Workflow.model_validate(record)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        loc = list(first["loc"])
        if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
            where = f"jobs[{nodes[loc[1]].job_id}]"
            loc = [where, *loc[2:]]
        reason = str(first["msg"]).removeprefix("Value error, ")
        raise EmrDocumentError(flow_id, ".".join(str(p) for p in loc) or "flow", reason) from None


def folder_path(category_id: str | None, categories: Mapping[str, Mapping[str, Any]]) -> str:
    """``a/b/c``: the category's names from the root down, walking ``ParentId``.

    The walk ends at a category without a parent, at one missing from ``categories`` and at one
    already visited, so a loop in the data cannot hang it.
    """
    names: list[str] = []
    seen: set[str] = set()
    current = category_id
    while isinstance(current, str) and current and current not in seen:
        seen.add(current)
        category = categories.get(current)
        if category is None:
            break
        name = _raw(category, "Name")
        if isinstance(name, str) and name.strip("/ "):
            names.append(name.strip("/ "))
        current = _raw(category, "ParentId")
    return "/".join(reversed(names))


# --- MigrationX's cron numbering ------------------------------------------------------------------


def _renumber_weekday(cron: str, table: Mapping[int, int]) -> str:
    """Apply ``table`` to the day-of-week field as ``CronUtil.cronToDwCron`` does (and where it does)."""
    parts = cron.split()
    if len(parts) != 6:
        return cron
    week = parts[5]

    def day(token: str) -> str:
        number = int(token)
        return str(table.get(number, number))

    try:
        if week.isdigit():
            parts[5] = day(week)
        elif "," in week:
            parts[5] = ",".join(day(t) for t in week.split(",") if t)
        elif "-" in week:
            ends = [t for t in week.split("-") if t]
            if len(ends) == 2:
                parts[5] = f"{day(ends[0])}-{day(ends[1])}"
    except ValueError:  # names (MON-FRI) or nested forms: MigrationX fails on them, we leave them
        return cron
    return " ".join(parts)


def _with_cron(doc: Mapping[str, Any], table: Mapping[int, int]) -> dict[str, Any]:
    out = dict(doc)
    for key in ("CronExpr", "cronExpr"):
        if isinstance(out.get(key), str):
            out[key] = _renumber_weekday(out[key], table)
    return out


# --- reading export files -------------------------------------------------------------------------


class _FileError(Exception):
    """A file of an export directory that cannot be read; the message names the file, not its text."""


def _load(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise _FileError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    except json.JSONDecodeError as exc:
        raise _FileError(
            f"{path}: malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except UnicodeDecodeError:
        raise _FileError(f"{path}: not UTF-8 text") from None
    if not isinstance(data, dict):
        raise _FileError(f"{path}: not a JSON object")
    return data


class _JobFiles(Mapping[str, Mapping[str, Any]]):
    """``job/<id>.json`` read when a flow asks for it, a few kept: a project's jobs are never all loaded."""

    def __init__(self, directory: Path, keep: int = 256) -> None:
        self.directory = directory
        self.keep = keep
        self._cache: OrderedDict[str, Mapping[str, Any]] = OrderedDict()

    def __getitem__(self, job_id: str) -> Mapping[str, Any]:
        if job_id in self._cache:
            self._cache.move_to_end(job_id)
            return self._cache[job_id]
        path = self.directory / f"{job_id}{JSON_EXT}"
        if not _SAFE_NAME.fullmatch(job_id) or not path.is_file():
            raise KeyError(job_id)
        job = _load(path)  # a _FileError passes through Mapping.get, which only absorbs KeyError
        self._cache[job_id] = job
        if len(self._cache) > self.keep:
            self._cache.popitem(last=False)
        return job

    def __iter__(self) -> Iterator[str]:
        if self.directory.is_dir():
            yield from (p.name.removesuffix(JSON_EXT) for p in sorted(self.directory.glob(f"*{JSON_EXT}")))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _error(origin: str, flow_id: str | None, name: str, message: str, system: str) -> Entry:
    key = f"{system}:{flow_id}" if flow_id else origin
    return Entry(origin, key, name, error=f"{origin}: {message}")


def _entry(
    origin: str, flow: Mapping[str, Any], jobs: Mapping[str, Mapping[str, Any]], folder: str, system: str
) -> Entry:
    """Read one flow; whatever goes wrong becomes an error entry keyed by the flow when its id is known."""
    flow_id = _flow_id(flow)
    raw_name = _raw(flow, "Name")
    name = raw_name.strip() if isinstance(raw_name, str) and raw_name.strip() else "?"
    try:
        wf = workflow_from_emr(flow, jobs, folder=folder, system=system)
    except EmrDocumentError as exc:
        return _error(origin, flow_id, name, str(exc), system)
    except _FileError as exc:
        return _error(origin, flow_id, name, f"flow {flow_id or '?'}: {exc}", system)
    return Entry(origin, wf.key, wf.name, workflow=wf)


def _document(doc: Any, origin: str, system: str) -> Entry:
    """``{"flow", "jobs", "folder" | "categories"}``."""
    flow = doc.get("flow") if isinstance(doc, dict) else None
    if not isinstance(flow, dict):
        return _error(
            origin, None, "?", 'flow ?: document: must be a JSON object with a "flow" object', system
        )
    flow_id = _flow_id(flow) or "?"
    raw_name = _raw(flow, "Name")
    name = raw_name if isinstance(raw_name, str) and raw_name.strip() else "?"

    def bad(field: str, reason: str) -> Entry:
        return _error(origin, _flow_id(flow), name, str(EmrDocumentError(flow_id, field, reason)), system)

    listed = doc.get("jobs") or []
    jobs: dict[str, Mapping[str, Any]] = {}
    if isinstance(listed, dict):
        listed = list(listed.values())
    if not isinstance(listed, list):
        return bad("jobs", "must be a list of DescribeFlowJob answers")
    for i, job in enumerate(listed):
        job_id = _flow_id(job) if isinstance(job, dict) else None
        if job_id is None:
            return bad(f"jobs[{i}]", 'must be an object with an "Id"')
        jobs[job_id] = job
    folder = doc.get("folder")
    categories = doc.get("categories")
    if folder is not None and not isinstance(folder, str):
        return bad("folder", "must be a string")
    if folder is None and categories is not None:
        if not isinstance(categories, list) or not all(
            isinstance(c, dict) and _flow_id(c) for c in categories
        ):
            return bad("categories", 'must be a list of objects with an "Id"')
        by_id = {str(_flow_id(c)): c for c in categories}
        category = _raw(flow, "CategoryId")
        folder = folder_path(category if isinstance(category, str) else None, by_id)
    return _entry(origin, flow, jobs, folder or "", system)


def _read_file(path: Path, system: str) -> Iterator[Entry]:
    for doc in documents(path):
        if doc.error is not None:
            yield Entry(doc.origin, doc.origin, "?", error=f"{doc.origin}: {doc.error}")
        else:
            yield _document(doc.value, doc.origin, system)


def _is_project(directory: Path) -> bool:
    return (directory / f"{directory.name}{JSON_EXT}").is_file() or (directory / FLOW_DIR).is_dir()


def _folder_of(detail: Mapping[str, Any]) -> str:
    """MigrationX's ``path``: category names joined by the exporting machine's separator."""
    path = _raw(detail, "Path")
    return path.replace("\\", "/").strip("/") if isinstance(path, str) else ""


def _read_project(directory: Path, system: str) -> Iterator[Entry]:
    """``flow/<id>.json`` (+ ``<id>.detail.json``) one at a time, jobs looked up in ``job/`` by id."""
    jobs = _JobFiles(directory / JOB_DIR)
    flows = directory / FLOW_DIR
    if not flows.is_dir():
        return
    for path in sorted(flows.glob(f"*{JSON_EXT}")):
        if DETAIL_EXT in path.name:  # as MigrationX's loader tells list items from details
            continue
        origin = str(path)
        detail_path = path.with_name(f"{path.name.removesuffix(JSON_EXT)}{DETAIL_EXT}{JSON_EXT}")
        try:
            listed = _load(path)
            detail = _load(detail_path) if detail_path.exists() else {}
        except _FileError as exc:
            flow_id = path.name.removesuffix(JSON_EXT)  # MigrationX names the files by flow id
            yield _error(origin, flow_id, "?", f"flow {flow_id}: {exc}", system)
            continue
        flow = _with_cron({**listed, **detail}, QUARTZ_WEEKDAY)
        yield _entry(origin, flow, jobs, _folder_of(detail), system)


def _read_directory(directory: Path, system: str) -> Iterator[Entry]:
    if _is_project(directory):
        yield from _read_project(directory, system)
        return
    projects = sorted(d for d in directory.iterdir() if d.is_dir() and _is_project(d))
    for project in projects:
        yield from _read_project(project, system)
    if projects:
        return
    documents = sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix in (*LINE_SUFFIXES, JSON_EXT)
    )
    if not documents:
        origin = str(directory)
        yield Entry(
            origin, origin, "?", error=f"{origin}: neither an EMR export directory nor JSON documents"
        )
    yield from read_export(documents, system=system)


def read_export(paths: Sequence[Path], *, system: str = "emr") -> Iterator[Entry]:
    """Every flow of the given export files and directories, one entry each, read as they come."""
    for path in paths:
        if path.is_dir():
            yield from _read_directory(path, system)
        elif not path.exists():
            origin = str(path)
            yield Entry(origin, origin, "?", error=f"{origin}: export file not found")
        else:
            yield from _read_file(path, system)


# --- writing the MigrationX layout ----------------------------------------------------------------


def _gson(value: Any) -> Any:
    """An API answer as MigrationX stores it: Java field names, lists not double-wrapped."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            inner = WRAPPED.get(key)
            flat = (_raw(item, inner) or []) if inner is not None and isinstance(item, Mapping) else item
            out[_camel(key)] = _gson(flat)
        return out
    if isinstance(value, list | tuple):
        return [_gson(v) for v in value]
    return value


def _file_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"{what} cannot name a file of the export")
    return value


def _write(path: Path, doc: Any) -> None:
    """Owner-only (0600): job variables may hold secrets."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=2)


def write_export(
    directory: Path,
    project: Mapping[str, Any],
    flows: Iterable[tuple[Mapping[str, Any], Mapping[str, Any]]],
    jobs: Iterable[Mapping[str, Any]],
    *,
    categories: Mapping[str, Mapping[str, Any]] | None = None,
) -> None:
    """Snapshot one project in MigrationX's dump layout (see the module docstring), streaming.

    ``flows`` are (ListFlow item, DescribeFlow answer) pairs. A flow's folder is the answer's own
    ``path`` when the caller set one, else computed from ``categories`` (DescribeFlowCategory
    answers by id); without either the folder is not recorded.
    """
    name = _file_name(_raw(project, "Name"), "the project's Name")
    root = directory / name
    for sub in (FLOW_DIR, JOB_DIR):
        (root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    stored_project = _gson(project)
    _write(root / f"{name}{JSON_EXT}", stored_project)
    for job in jobs:
        job_id = _file_name(_raw(job, "Id"), "a job's Id")
        _write(root / JOB_DIR / f"{job_id}{JSON_EXT}", _gson(job))
    for listed, detail in flows:
        flow_id = _file_name(_raw(detail, "Id") or _raw(listed, "Id"), "a flow's Id")
        path = _raw(detail, "Path")
        if not isinstance(path, str):
            category = _raw(detail, "CategoryId")
            path = folder_path(category, categories) if categories and isinstance(category, str) else ""
        stored = {**_gson(detail), "project": stored_project, "path": path}
        _write(root / FLOW_DIR / f"{flow_id}{JSON_EXT}", _with_cron(_gson(listed), DATAWORKS_WEEKDAY))
        _write(root / FLOW_DIR / f"{flow_id}{DETAIL_EXT}{JSON_EXT}", _with_cron(stored, DATAWORKS_WEEKDAY))
    info = {"type": PACKAGE_TYPE, "timestamp": datetime.now(UTC).isoformat(), "exporter": EXPORTER}
    _write(directory / PACKAGE_INFO, info)
