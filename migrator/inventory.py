"""Canonical inventory files -> a stream of workflows (or of per-record errors).

JSON Lines and JSON arrays are both read incrementally, so memory stays flat however large the
file. A bad record never stops the file: it becomes an :class:`Entry` carrying the file, the line
(or array index) and the field at fault, which the engine records as an ``invalid`` item.
Validation messages are rebuilt from pydantic's ``loc``/``msg`` only, never its ``input``, so a
secret in a rejected record cannot leak into the store or a report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import ijson
import structlog
from pydantic import ValidationError

from migrator.model import Workflow

log = structlog.get_logger(__name__)

LINE_SUFFIXES = (".jsonl", ".ndjson")
SUFFIXES = (*LINE_SUFFIXES, ".json")


@dataclass(frozen=True, slots=True)
class Place:
    """Where a JSON Lines record was met reading its file in order: the file (as origins name
    it), the line's number, and the bytes ``[offset, end)`` it spans. A resumed migration seeks
    to ``offset`` to read the record again, and reads on from ``end`` (see engine.frontier)."""

    file: str
    line: int
    offset: int
    end: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One inventory record: a valid workflow, or the reason it is not one.

    ``place`` is set for a record read in order from a JSON Lines file (None for a JSON array's,
    or for a record read again out of order).
    """

    origin: str
    key: str
    name: str
    workflow: Workflow | None = None
    error: str | None = None
    place: Place | None = None


def explain(exc: ValidationError) -> str:
    """A short, specific, secret-free account of what is wrong with a record."""
    parts = []
    errors = exc.errors(include_input=False, include_url=False)
    inside = {err["loc"][:i] for err in errors for i in range(len(err["loc"]))}
    for err in errors:
        if err["type"] == "too_short" and err["loc"] in inside:
            continue  # "tasks: at least 1 item" only because its one task is refused: said below
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


def _entry(obj: Any, origin: str, place: Place | None) -> Entry:
    try:
        wf = Workflow.model_validate(obj)
    except ValidationError as exc:
        key, name = _identity(obj, origin)
        reason = explain(exc)
        label = f"workflow {name!r}: " if name != "?" and not reason.startswith("workflow ") else ""
        return Entry(origin, key, name, error=f"{origin}: {label}{reason}", place=place)
    return Entry(origin, wf.key, wf.name, workflow=wf, place=place)


@dataclass(frozen=True, slots=True)
class Document:
    """One JSON value read from a file, or why it could not be: ``origin`` is file:line or file[index]."""

    origin: str
    value: Any = None
    error: str | None = None
    place: Place | None = None


def _first_byte(fh: BinaryIO) -> bytes:
    while True:
        byte = fh.read(1)
        if not byte or not byte.isspace():
            fh.seek(0)
            return byte


def _unreadable(exc: ValueError | RecursionError, *, one_line: bool) -> str:
    """Why a JSON text could not be read, without quoting it (the text may hold secrets).

    Besides malformed JSON and bytes that are not UTF-8, Python's own limits refuse a record: an
    integer of more than 4,300 digits (``ValueError``) and nesting deeper than the recursion
    limit. Each is one bad record, not a reason to stop the batch. The place of a syntax error is
    its column in a JSON Lines record (``one_line``), its line in a whole-file document.
    """
    if isinstance(exc, json.JSONDecodeError):
        at = f"column {exc.colno}" if one_line else f"line {exc.lineno}"
        return f"malformed JSON ({exc.msg} at {at})"
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply to read"
    return f"unreadable JSON ({_first_line(exc).split(':')[0]})"


def _first_line(exc: Exception) -> str:
    """An exception's message, first line only (later lines of a parser's message quote the
    file); a C parser's message given as bytes is decoded, not shown as its ``repr``."""
    arg = exc.args[0] if exc.args else ""
    text = (arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _line(raw: bytes, origin: str, place: Place | None = None) -> Document:
    """One JSON Lines record (``raw`` not blank; stripped, so that a column counts from its text)."""
    try:
        return Document(origin, json.loads(raw.strip()), place=place)
    except (ValueError, RecursionError) as exc:
        return Document(origin, error=_unreadable(exc, one_line=True), place=place)


def documents(path: Path, *, offset: int = 0, line: int = 0) -> Iterator[Document]:
    """Every JSON value of a file, streamed: one per line (``.jsonl``), or an array's items, or one.

    Shared by every reader of JSON files (canonical inventories, provider export files), so that
    memory stays flat and a bad record is reported the same way everywhere. Parser messages are
    cut to their first line: later lines quote the file, which may hold secrets.

    A JSON Lines file may be read from ``offset`` (the start of a line), ``line`` being the
    number of the line before it, so that origins keep their line numbers; each of its
    documents carries its :class:`Place`.
    """
    with path.open("rb") as fh:
        if path.suffix in LINE_SUFFIXES:
            for raw, place in _lines(fh, str(path), offset, line):
                yield _line(raw, f"{place.file}:{place.line}", place)
            return
        assert offset == 0, "only JSON Lines files are read from an offset"
        if _first_byte(fh) != b"[":
            try:
                yield Document(str(path), json.load(fh))
            except (ValueError, RecursionError) as exc:
                yield Document(str(path), error=_unreadable(exc, one_line=False))
            return
        index = -1
        try:
            for index, value in enumerate(ijson.items(fh, "item", use_float=True)):
                yield Document(f"{path}[{index}]", value)
        except (ijson.JSONError, ValueError, RecursionError) as exc:
            after = f"after record {index}" if index >= 0 else "before its first record"
            yield Document(
                f"{path}[{index + 1}]",
                error=f"malformed JSON {after}: {_first_line(exc)}; the rest of this file was not read",
            )


def _lines(fh: BinaryIO, name: str, offset: int, line: int) -> Iterator[tuple[bytes, Place]]:
    """The records of a JSON Lines file from ``offset``, each with its place (blank lines skipped)."""
    fh.seek(offset)
    for raw in fh:
        line, start, offset = line + 1, offset, offset + len(raw)
        if raw.strip():
            yield raw, Place(name, line, start, offset)


def entry(doc: Document) -> Entry:
    """A document as an inventory record: a workflow, or why it is not one."""
    if doc.error is not None:
        return Entry(doc.origin, doc.origin, "?", error=f"{doc.origin}: {doc.error}", place=doc.place)
    return _entry(doc.value, doc.origin, doc.place)


def _record(raw: bytes, origin: str, place: Place | None) -> Entry:
    """One JSON Lines record as an inventory record.

    pydantic-core parses and validates the bytes in one pass, without the Python objects
    ``json.loads`` builds only to be validated and dropped: a third of reading's time. A record
    it refuses is read again the long way (:func:`_line`, :func:`entry`), which alone words the
    error (malformed JSON, or the field at fault) and finds a refused record's identity.
    """
    try:
        wf = Workflow.model_validate_json(raw)
    except ValueError:  # pydantic's ValidationError, for bad JSON as for a bad field
        wf = None
    # An integer past 1.8e308 in a float field parses as infinity here, where the long way
    # refuses it: the long way decides.
    if wf is None or not all(x is None or math.isfinite(x) for x in wf.floats()):
        return entry(_line(raw, origin, place))
    return Entry(origin, wf.key, wf.name, workflow=wf, place=place)


def entries(path: Path, *, offset: int = 0, line: int = 0) -> Iterator[Entry]:
    """Every inventory record of a file, streamed (``offset`` and ``line`` as for :func:`documents`).

    A file read from its start that holds no record at all is logged as a warning: an export
    that came out empty would otherwise pass for a source with nothing to migrate.
    """
    empty = True
    for found in _entries(path, offset, line):
        empty = False
        yield found
    if empty and offset == 0:
        log.warning("inventory file holds no records", file=str(path))


def _entries(path: Path, offset: int, line: int) -> Iterator[Entry]:
    if path.suffix not in LINE_SUFFIXES:
        yield from map(entry, documents(path, offset=offset, line=line))
        return
    with path.open("rb") as fh:
        for raw, place in _lines(fh, str(path), offset, line):
            yield _record(raw, f"{place.file}:{place.line}", place)


def entry_at(fh: BinaryIO, offset: int, origin: str) -> Entry | None:
    """The JSON Lines record that starts at ``offset`` of an open file, read again out of order
    (None if there is none: the end of the file, or a blank line). It carries no place."""
    fh.seek(offset)
    raw = fh.readline()
    return _record(raw, origin, None) if raw.strip() else None


def files(paths: Iterable[Path]) -> list[Path]:
    """The files ``paths`` name, in reading order: directories expanded to their inventory files,
    by name; a path that does not exist is kept (reading it says so)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += files(sorted(p for p in path.iterdir() if p.suffix in SUFFIXES))
        else:
            found.append(path)
    return found


def read(paths: Iterable[Path]) -> Iterator[Entry]:
    """Every record of every file (directories are read in name order), in file order."""
    for path in files(paths):
        if not path.exists():
            origin = str(path)
            yield Entry(origin, origin, "?", error=f"{path}: inventory file not found")
        else:
            yield from entries(path)
