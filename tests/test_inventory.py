"""Inventories stream record by record; bad records become specific errors and the rest goes on."""

from __future__ import annotations

import json
from pathlib import Path

from migrator.inventory import documents, entry, line_at, read

GOOD = {"name": "ok", "tasks": [{"name": "a"}]}


def wf(name: str) -> dict[str, object]:
    return {"name": name, "tasks": [{"name": "a"}]}


def test_jsonl_bad_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "inv.jsonl"
    secret_record = {
        "tasks": [{"name": "a", "variables": [{"name": "p", "value": "hunter2", "secret": True}]}]
    }
    path.write_text(
        "\n".join(
            [
                json.dumps(GOOD),
                "{not json",
                "",
                json.dumps(
                    {
                        "name": "cyc",
                        "tasks": [{"name": "a"}, {"name": "b"}],
                        "edges": [{"upstream": "a", "downstream": "b"}, {"upstream": "b", "downstream": "a"}],
                    }
                ),
                json.dumps({"name": "missing_tasks"}),
                json.dumps(secret_record),
                json.dumps({**GOOD, "name": "last"}),
            ]
        )
        + "\n"
    )
    entries = list(read([path]))
    assert [e.name for e in entries if e.workflow] == ["ok", "last"]
    errors = {e.origin: e.error for e in entries if e.error}
    assert errors[f"{path}:2"].startswith(f"{path}:2: malformed JSON")
    assert "tasks form a cycle: a -> b -> a" in errors[f"{path}:4"]
    assert errors[f"{path}:5"] == f"{path}:5: workflow 'missing_tasks': tasks: Field required"
    assert errors[f"{path}:6"] == f"{path}:6: name: Field required"
    assert all("hunter2" not in (e or "") for e in errors.values())
    invalid = next(e for e in entries if e.origin == f"{path}:5")
    assert invalid.key == "inventory:missing_tasks", "a fixed record must land on the same item"


def test_json_array_streams_and_stops_cleanly_at_a_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "inv.json"
    path.write_text(
        "[" + json.dumps(GOOD) + ", " + json.dumps({"name": "y"}) + ', {"name": "secret-ish", bad'
    )
    entries = list(read([path]))
    assert entries[0].workflow is not None
    assert entries[1].error == f"{path}[1]: workflow 'y': tasks: Field required"
    assert entries[2].error is not None
    assert entries[2].error.startswith(f"{path}[2]: malformed JSON after record 1")
    assert "secret-ish" not in entries[2].error


def test_directory_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "b.jsonl").write_text(json.dumps({**GOOD, "name": "b"}) + "\n")
    (tmp_path / "a.jsonl").write_text(json.dumps({**GOOD, "name": "a"}) + "\n")
    (tmp_path / "notes.txt").write_text("ignored")
    entries = list(read([tmp_path, tmp_path / "nope.jsonl"]))
    assert [e.name for e in entries[:2]] == ["a", "b"]
    assert entries[2].error == f"{tmp_path / 'nope.jsonl'}: inventory file not found"


def test_jsonl_records_carry_their_place_and_reading_resumes_after_one(tmp_path: Path) -> None:
    """What the read frontier relies on: a record's bytes are where its place says, and reading
    on from a place's end numbers the lines as a reading from the start does."""
    inv = tmp_path / "inv.jsonl"
    lines = [json.dumps(wf("a")), "", "{broken", json.dumps(wf("b")), "  ", json.dumps(wf("c"))]
    data = ("\n".join(lines) + "\n").encode()
    inv.write_bytes(data)
    whole = [entry(d) for d in documents(inv)]
    assert [(e.origin, e.key) for e in whole] == [
        (f"{inv}:1", "inventory:a"),
        (f"{inv}:3", f"{inv}:3"),
        (f"{inv}:4", "inventory:b"),
        (f"{inv}:6", "inventory:c"),
    ]
    for e in whole:
        assert e.place is not None
        assert (e.place.file, e.place.line) == (str(inv), int(e.origin.rsplit(":", 1)[1]))
        assert data[e.place.offset : e.place.end].rstrip(b"\n") == lines[e.place.line - 1].encode()
    a = whole[0].place
    assert a is not None
    assert [entry(d) for d in documents(inv, offset=a.end, line=a.line)] == whole[1:]
    with inv.open("rb") as fh:
        again = [line_at(fh, e.place.offset, e.origin) for e in whole if e.place is not None]
        assert line_at(fh, a.end, "x") is None  # a blank line holds no record
    assert [entry(d).key for d in again if d is not None] == [e.key for e in whole]
    assert all(d is not None and d.place is None for d in again), "read out of order: no place"
