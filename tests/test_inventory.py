"""Inventories stream record by record; bad records become specific errors and the rest goes on."""

from __future__ import annotations

import json
from pathlib import Path

from migrator.inventory import read

GOOD = {"name": "ok", "tasks": [{"name": "a"}]}


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
