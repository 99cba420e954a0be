"""EnOS Batch Processing flows -> canonical workflows (the inverse of :mod:`.render`), and export files.

:func:`workflow_from_enos` reads one Flow Struct as ``action=export`` returns it (``import``'s
``flowJson`` plus the flow's ``name``) into a :class:`~migrator.model.Workflow`, undoing each row of
:data:`.render.CARRIED`. ``parameters`` and ``runMode`` are JSON strings inside the JSON (decoded
ones are accepted too); ``owners`` is ``;``-separated and the server may wrap it as ``";a;b;"``.
Cross-flow links name the upstream flow (and task) by **name**: they become
:class:`~migrator.model.Dependency` entries on that name, which the engine resolves. A link's
``linkRelations`` give the dependency's ``gates``, left empty when they are exactly the entry tasks
(and when the link joins no task at all, which the canonical model cannot say otherwise).

The Flow Struct has no ``active``: a document that carries one (a Get Flow answer merged in) is
paused when it is 0; an export alone reads as not paused.

:func:`read_export` streams export files, one :class:`~migrator.inventory.Entry` per flow: ``.json``
files holding one Flow Struct or an array of them (read incrementally), ``.jsonl`` files one per
line, each either bare or wrapped as ``{"flowId", "folder", "flow": <Flow Struct>}``; directories
are read recursively. Export files carry no ids, so a bare flow's key is its folder and name.

Errors never quote a field's value (commands and parameters may hold secrets): they name the
file, the line or array index, the flow and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from migrator.inventory import LINE_SUFFIXES, Entry, documents
from migrator.model import TaskKind, Workflow
from migrator.providers.enos.render import (
    ALERT_BITS,
    DEFAULT_RESOURCE,
    DEFAULT_TIMEZONE,
    MANUAL,
    PERIODIC,
    TARGET,
)
from migrator.translate import fields
from migrator.translate.dag import find_cycle
from migrator.translate.kinds import source_kinds
from migrator.translate.schedule import CronError, quartz_from_enos

__all__ = ["EnosDocumentError", "read_export", "workflow_from_enos"]

#: EnOS task ``type`` -> canonical kind (render's table inverted; COMMAND placeholders read as shell).
KINDS: dict[str, TaskKind] = source_kinds(TARGET)
JSON_SUFFIX = ".json"
_ZONE = ZoneInfo(DEFAULT_TIMEZONE)


class EnosDocumentError(fields.DocumentError):
    """A Flow Struct that cannot be read as a workflow."""


class _Fields(fields.Fields):
    """One object's fields; absent text reads as empty and an absent number as zero, as EnOS means them."""

    error = EnosDocumentError

    def text(self, name: str) -> str:
        return super().text(name) or ""

    def number(self, name: str) -> float:
        return super().number(name) or 0.0

    def integer(self, name: str) -> int:
        return super().integer(name) or 0

    def objects(self, name: str) -> list[_Fields]:
        value = self.raw(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(name, "must be a list")
        out: list[_Fields] = []
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise self.fail(f"{name}[{i}]", "must be an object")
            out.append(self.within(item, f"{name}[{i}]."))
        return out

    def required(self, name: str) -> str:
        value = self.text(name).strip()
        if not value:
            raise self.fail(name, "is missing")
        return value


# --- the flow -----------------------------------------------------------------------------------


def _schedule(f: _Fields) -> dict[str, Any] | None:
    kind = f.integer("type")
    if kind == MANUAL:
        return None
    if kind != PERIODIC:
        raise f.fail("type", f"must be {MANUAL} (manual) or {PERIODIC} (periodic)")
    cron = f.required("cron")
    try:
        quartz = quartz_from_enos(cron, f.text("cycle"))
    except CronError as exc:
        raise f.fail("cron", exc.reason) from None
    start = f.text("startTime").strip()
    started: datetime | None = None
    if start:
        try:
            started = datetime.fromisoformat(start)
        except ValueError:
            raise f.fail("startTime", "must be a date (yyyy-MM-dd)") from None
        started = started.replace(tzinfo=_ZONE)
    paused = "active" in f.doc and f.integer("active") == 0
    return {"cron": quartz, "timezone": DEFAULT_TIMEZONE, "start": started, "paused": paused}


def _parameters(f: _Fields) -> dict[str, str]:
    listed = f.json("parameters")
    if listed is None:
        return {}
    if not isinstance(listed, list):
        raise f.fail("parameters", 'must be a JSON list of {"key", "value"} objects')
    out: dict[str, str] = {}
    for i, item in enumerate(listed):
        key = item.get("key") if isinstance(item, dict) else None
        value = item.get("value", "") if isinstance(item, dict) else None
        if not isinstance(key, str) or not key or not isinstance(value, str | int | float):
            raise f.fail(f"parameters[{i}]", 'must be an object with a "key" and a string "value"')
        out[key] = value if isinstance(value, str) else json.dumps(value)
    return out


def _alerts(f: _Fields) -> dict[str, Any]:
    mode = f.integer("alertMode")
    if mode < 0 or mode > sum(ALERT_BITS.values()):
        raise f.fail("alertMode", "must be 0 (none), 1 (email), 2 (SMS) or 3 (both)")
    channels = tuple(channel for channel, bit in ALERT_BITS.items() if mode & bit)
    return {"on_failure": True, "channels": channels} if channels else {}


def _owners(f: _Fields) -> tuple[str, ...]:
    return tuple(o.strip() for o in f.text("owners").split(";") if o.strip())


# --- tasks --------------------------------------------------------------------------------------


def _run(t: _Fields) -> dict[str, Any]:
    run: dict[str, Any] = {}
    resource = t.text("resource").strip()
    if resource and resource != DEFAULT_RESOURCE:
        run["queue"] = resource
    if user := t.text("submitter").strip():
        run["user"] = user
    if priority := t.integer("priorityLevel"):
        run["priority"] = priority
    mode = t.json("runMode")
    if mode is None:
        return run
    if not isinstance(mode, dict):
        raise t.fail("runMode", "must be a JSON object")
    settings = t.within(mode, "runMode.")
    if "cpu" in mode:
        run["cores"] = settings.number("cpu")
    if "memory" in mode:
        run["memory_mb"] = round(settings.number("memory") * 1024)
    return run


def _task(t: _Fields) -> dict[str, Any]:
    kind = KINDS.get(t.text("type"))
    if kind is None:
        raise t.fail("type", f"is not a task type the migrator reads (known: {', '.join(KINDS)})")
    package = t.text("filePackage").strip()
    timeout = t.number("timeout")
    return {
        "name": t.required("name"),
        "kind": kind,
        "content": t.text("cmd"),
        "resources": [{"path": package}] if package else [],
        "max_retries": t.integer("retryLimit"),
        "retry_interval": t.number("retryInterval"),
        "timeout": timeout or None,
        "run": _run(t),
    }


def _edges(f: _Fields, names: set[str]) -> list[tuple[str, str]]:
    edges: list[tuple[str, str]] = []
    for r in f.objects("relations"):
        ends = (r.required("sourceTaskName"), r.required("targetTaskName"))
        for end, name in zip(("sourceTaskName", "targetTaskName"), ends, strict=True):
            if name not in names:
                raise r.fail(end, "is not a task of the flow")
        edges.append(ends)
    return list(dict.fromkeys(edges))


def _upstream(f: _Fields, names: set[str], entry: list[str]) -> list[dict[str, Any]]:
    """flowLinks / taskLinks in the order their linkRelations first name them, gates from those."""
    links: dict[str, dict[str, Any]] = {}
    for listing, has_task in (("flowLinks", False), ("taskLinks", True)):
        for link in f.objects(listing):
            link_id = link.required("linkId")
            if link_id in links:
                raise link.fail("linkId", "repeats another link's id")
            dep: dict[str, Any] = {"workflow": link.required("sourceFlowName")}
            if has_task:
                dep["task"] = link.required("sourceTaskName")
            links[link_id] = dep
    gates: dict[str, list[str]] = {}
    for rel in f.objects("linkRelations"):
        link_id = rel.required("linkId")
        if link_id not in links:
            raise rel.fail("linkId", "names no flowLink or taskLink of the flow")
        target = rel.required("targetTaskName")
        if target not in names:
            raise rel.fail("targetTaskName", "is not a task of the flow")
        gated = gates.setdefault(link_id, [])
        if target not in gated:
            gated.append(target)
    out: list[dict[str, Any]] = []
    for link_id in [*gates, *(i for i in links if i not in gates)]:
        gated = gates.get(link_id, [])
        exact = sorted(gated) == sorted(entry)
        out.append({**links[link_id], "gates": () if exact else tuple(gated)})
    return out


def _flow_label(flow: Mapping[str, Any], flow_id: str | None) -> str:
    name = _name(flow)
    return flow_id or (name if name else "?")


def _name(flow: Mapping[str, Any]) -> str | None:
    for key in ("name", "flowName"):
        value = flow.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def workflow_from_enos(
    flow: Mapping[str, Any], *, folder: str = "", flow_id: str | None = None, system: str = "enos"
) -> Workflow:
    """One Flow Struct (``name`` or ``flowName`` for its name) as a workflow.

    ``flow_id`` is the EnOS flow id when known (a live listing); export files have none, and the
    workflow's key then falls back to its folder and name.
    """
    f = _Fields(flow, _flow_label(flow, flow_id))
    name = _name(flow)
    if name is None:
        raise f.fail("name", "is missing")
    tasks = [_task(t) for t in f.objects("tasks")]
    if not tasks:
        raise f.fail("tasks", "has no task")
    names = [t["name"] for t in tasks]
    if len(set(names)) != len(names):
        raise f.fail("tasks", "two tasks have the same name")
    edges = _edges(f, set(names))
    if cycle := find_cycle(names, edges):
        raise f.fail("relations", f"the tasks form a cycle ({len(cycle) - 1} tasks)")
    inside = {b for _, b in edges}
    entry = [n for n in names if n not in inside]
    record = {
        "name": name,
        "source": {"system": system, "id": flow_id},
        "description": f.text("desc"),
        "folder": folder.strip("/"),
        "owners": _owners(f),
        "schedule": _schedule(f),
        "parameters": _parameters(f),
        "alerts": _alerts(f),
        "upstream": _upstream(f, set(names), entry),
        "tasks": tasks,
        "edges": [{"upstream": a, "downstream": b} for a, b in edges],
    }
    try:
        return Workflow.model_validate(record)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
        reason = str(first["msg"]).removeprefix("Value error, ")
        raise EnosDocumentError(f.flow, where or "flow", reason) from None


# --- reading export files -------------------------------------------------------------------------


def _error(origin: str, key: str | None, name: str, message: str) -> Entry:
    return Entry(origin, key or origin, name, error=f"{origin}: {message}")


def _document(doc: Any, origin: str, system: str) -> Entry:
    """A bare Flow Struct or ``{"flowId", "folder", "flow": <Flow Struct>}``."""
    if not isinstance(doc, dict):
        return _error(origin, None, "?", "flow ?: document: must be a JSON object (a Flow Struct)")
    flow: Any = doc
    folder: Any = ""
    flow_id: str | None = None
    wrapped = isinstance(doc.get("flow"), dict)
    if wrapped:
        flow, folder = doc["flow"], doc.get("folder") or ""
        raw_id = doc.get("flowId")
        if isinstance(raw_id, int | str) and not isinstance(raw_id, bool) and str(raw_id).strip():
            flow_id = str(raw_id).strip()
        elif raw_id is not None:
            label = _flow_label(flow, None)
            return _error(origin, None, label, str(EnosDocumentError(label, "flowId", "must be an id")))
    name = _name(flow) or "?"
    key = f"{system}:{flow_id}" if flow_id else None
    if not isinstance(folder, str):
        label = _flow_label(flow, flow_id)
        return _error(origin, key, name, str(EnosDocumentError(label, "folder", "must be a string")))
    try:
        wf = workflow_from_enos(flow, folder=folder, flow_id=flow_id, system=system)
    except EnosDocumentError as exc:
        return _error(origin, key, name, str(exc))
    return Entry(origin, wf.key, wf.name, workflow=wf)


def _read_file(path: Path, system: str) -> Iterator[Entry]:
    for doc in documents(path):
        if doc.error is not None:
            yield Entry(doc.origin, doc.origin, "?", error=f"{doc.origin}: {doc.error}")
        else:
            yield _document(doc.value, doc.origin, system)


def _files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix in (*LINE_SUFFIXES, JSON_SUFFIX)
    )


def read_export(paths: Sequence[Path], *, system: str = "enos") -> Iterator[Entry]:
    """Every flow of the given export files and directories (recursively), one entry each, as they come."""
    for path in paths:
        origin = str(path)
        if path.is_dir():
            files = _files(path)
            if not files:
                yield _error(origin, None, "?", "no .json or .jsonl export files")
            yield from read_export(files, system=system)
        elif not path.exists():
            yield _error(origin, None, "?", "export file not found")
        else:
            yield from _read_file(path, system)
