"""Canonical inventory files -> a stream of workflows (or of per-record errors).

JSON Lines and JSON arrays are both read incrementally, so memory stays flat however large the
file. A bad record never stops the file: it becomes an :class:`Entry` carrying the file, the line
(or array index) and the field at fault, which the engine records as an ``invalid`` item.
Validation messages are rebuilt from pydantic's ``loc``/``msg`` only, never its ``input``, so a
secret in a rejected record cannot leak into the store or a report.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ijson
from pydantic import ValidationError

from migrator.model import Workflow

SUFFIXES = (".jsonl", ".ndjson", ".json")


@dataclass(frozen=True, slots=True)
class Entry:
    """One inventory record: a valid workflow, or the reason it is not one."""

    origin: str
    key: str
    name: str
    workflow: Workflow | None = None
    error: str | None = None


def explain(exc: ValidationError) -> str:
    """A short, specific, secret-free account of what is wrong with a record."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        msg = str(err["msg"]).removeprefix("Value error, ")
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def _identity(obj: Any, origin: str) -> tuple[str, str]:
    """Best-effort key and name of a record that failed validation, so a fixed record reuses its item."""
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"].strip():
        return origin, "?"
    name = obj["name"].strip()
    raw_source = obj.get("source")
    source: dict[str, Any] = raw_source if isinstance(raw_source, dict) else {}
    folder = str(obj.get("folder") or "").strip("/")
    system = source.get("system") or "inventory"
    ident = source.get("id") or (f"{folder}/{name}" if folder else name)
    return f"{system}:{ident}", name


def _entry(obj: Any, origin: str) -> Entry:
    try:
        wf = Workflow.model_validate(obj)
    except ValidationError as exc:
        key, name = _identity(obj, origin)
        reason = explain(exc)
        label = f"workflow {name!r}: " if name != "?" and not reason.startswith("workflow ") else ""
        return Entry(origin, key, name, error=f"{origin}: {label}{reason}")
    return Entry(origin, wf.key, wf.name, workflow=wf)


def _read_lines(path: Path) -> Iterator[Entry]:
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            origin = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                yield Entry(origin, origin, "?", error=f"{origin}: malformed JSON: {exc}")
                continue
            yield _entry(obj, origin)


def _read_array(path: Path) -> Iterator[Entry]:
    index = -1
    with path.open("rb") as fh:
        try:
            for index, obj in enumerate(ijson.items(fh, "item", use_float=True)):
                yield _entry(obj, f"{path}[{index}]")
        except ijson.JSONError as exc:
            # Only the first line: the parser's later lines quote the file, which may hold secrets.
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            origin = f"{path}[{index + 1}]"
            yield Entry(
                origin,
                origin,
                "?",
                error=f"{origin}: malformed JSON after record {index}: {first}; "
                "the rest of this file was not read",
            )


def read(paths: Iterable[Path]) -> Iterator[Entry]:
    """Every record of every file (directories are read in name order), in file order."""
    for path in paths:
        if path.is_dir():
            yield from read(sorted(p for p in path.iterdir() if p.suffix in SUFFIXES))
        elif not path.exists():
            origin = str(path)
            yield Entry(origin, origin, "?", error=f"{path}: inventory file not found")
        elif path.suffix == ".json":
            yield from _read_array(path)
        else:
            yield from _read_lines(path)
