"""Inventories stream record by record; bad records become specific errors and the rest goes on."""

from __future__ import annotations

import json
from pathlib import Path

from structlog.testing import capture_logs

from migrator.inventory import documents, entries, entry, entry_at, read

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


def test_records_past_pythons_json_limits_are_bad_records_not_a_stopped_batch(tmp_path: Path) -> None:
    """An integer of 5,000 digits and nesting 100,000 deep: json.loads raises ValueError and
    RecursionError, not JSONDecodeError. Each is one invalid record; the rest are read."""
    path = tmp_path / "inv.jsonl"
    huge = json.dumps({**GOOD, "name": "huge"})[:-1] + ', "x": ' + "9" * 5000 + "}"
    path.write_text("\n".join([json.dumps(GOOD), huge, "[" * 100_000, json.dumps({**GOOD, "name": "last"})]))
    entries = list(read([path]))
    assert [e.name for e in entries if e.workflow] == ["ok", "last"]
    errors = {e.origin: e.error for e in entries if e.error}
    assert errors == {
        f"{path}:2": f"{path}:2: unreadable JSON "
        "(Exceeds the limit (4300 digits) for integer string conversion)",
        f"{path}:3": f"{path}:3: JSON nested too deeply to read",
    }


def test_a_json_array_parsers_message_is_its_first_line_decoded_never_the_quoted_text(
    tmp_path: Path,
) -> None:
    """ijson's C parser words an error as bytes whose later lines quote the file: shown as its
    repr they were one line, the quote (and a secret in it) included."""
    path = tmp_path / "inv.json"
    record = {"name": "s", "tasks": [{"name": "a", "variables": [{"name": "p", "value": "hunter2\u00e9"}]}]}
    path.write_bytes(b"[" + json.dumps(record, ensure_ascii=False).encode("latin-1") + b"]")
    (only,) = list(read([path]))
    assert only.error == (
        f"{path}[0]: malformed JSON before its first record: lexical error: invalid bytes in UTF8 string.; "
        "the rest of this file was not read"
    )


def test_a_file_with_no_record_is_a_warning_naming_it(tmp_path: Path) -> None:
    """An export that came out empty must not pass for a source with nothing to migrate."""
    (tmp_path / "a.jsonl").write_text("\n  \n")
    (tmp_path / "b.json").write_text("[]")
    (tmp_path / "c.jsonl").write_text(json.dumps(GOOD) + "\n")
    with capture_logs() as logs:
        found = list(read([tmp_path]))
    assert [e.name for e in found] == ["ok"]
    assert [(e["event"], e["log_level"], e["file"]) for e in logs] == [
        ("inventory file holds no records", "warning", str(tmp_path / "a.jsonl")),
        ("inventory file holds no records", "warning", str(tmp_path / "b.json")),
    ]
    with capture_logs() as logs:  # read on from a place past the start: nothing new is no news
        assert list(entries(tmp_path / "c.jsonl", offset=len(json.dumps(GOOD)) + 1, line=1)) == []
    assert logs == []


def test_a_refused_task_is_the_reason_given_not_also_an_empty_task_list(tmp_path: Path) -> None:
    path = tmp_path / "inv.jsonl"
    path.write_text(json.dumps({"name": "w", "tasks": [{"name": "t", "max_retries": "three"}]}) + "\n")
    (only,) = read([path])
    assert only.error == (
        f"{path}:1: workflow 'w': tasks.0.max_retries: "
        "Input should be a valid integer, unable to parse string as an integer"
    )


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
    assert list(entries(inv)) == whole, "validated from the bytes, as parsed then validated"
    assert list(entries(inv, offset=a.end, line=a.line)) == whole[1:]
    with inv.open("rb") as fh:
        again = [entry_at(fh, e.place.offset, e.origin) for e in whole if e.place is not None]
        assert entry_at(fh, a.end, "x") is None  # a blank line holds no record
    assert [e.key for e in again if e is not None] == [e.key for e in whole]
    assert all(e is not None and e.place is None for e in again), "read out of order: no place"


def test_a_line_validated_from_its_bytes_reads_as_parsed_then_validated(tmp_path: Path) -> None:
    """`entries` validates JSON Lines from the bytes; whatever a line holds, the entry (workflow,
    or error word for word) is the one `json.loads` then `model_validate` gives."""
    from migrator.sample import generate, write_jsonl

    inv = tmp_path / "inv.jsonl"
    write_jsonl(inv, generate(300, seed=3))
    odd = [
        '{"name": "dup", "name": "last", "tasks": [{"name": "a"}]}',  # a repeated key: the last
        '{"name": "nan", "tasks": [{"name": "a", "retry_interval": NaN}]}',
        '{"name": "big", "tasks": [{"name": "a", "max_retries": 3.0, "timeout": 1e400}]}',
        '{"name": "huge", "tasks": [{"name": "a", "timeout": 1' + "0" * 310 + "}]}",  # refused as before
        '{"name": "lone \\ud800", "tasks": [{"name": "a"}]}',  # a lone surrogate
        '\ufeff{"name": "bom", "tasks": [{"name": "a"}]}',
        '{"name": "x", "tasks": [{"name": "a"}]} trailing',
        '{"name": " padded ", "schedule": {"cron": "0 5 * * *"}, "tasks": [{"name": "a"}]}',
        '{"name": "dep", "upstream": ["u", {"workflow": "v", "task": "t"}], "tasks": [{"name": "a"}]}',
        '{"name": "when", "schedule": {"cron": "0 0 5 * * ?", "start": "2024-01-09T00:00:00+08:00",'
        ' "end": "2024-01-01"}, "tasks": [{"name": "a"}]}',
        '{"name": "s", "tasks": [{"name": "a", "variables": [{"name": "p", "value": 5}]}]}',
        "[1, 2]",
        '"text"',
    ]
    with inv.open("a", encoding="utf-8", errors="surrogatepass") as fh:
        fh.write("\n".join(odd) + "\n")
    fast = list(entries(inv))
    slow = [entry(d) for d in documents(inv)]
    assert len(fast) == 300 + len(odd)
    seen = [(e.key, e.name, e.error, e.place) for e in fast]
    assert seen == [(e.key, e.name, e.error, e.place) for e in slow]
    for a, b in zip(fast, slow, strict=True):
        assert (a.workflow is None) == (b.workflow is None)
        if a.workflow is not None and b.workflow is not None:
            assert a.workflow.to_record() == b.workflow.to_record(), a.origin
            assert a.workflow.content_hash() == b.workflow.content_hash(), a.origin
    assert sum(e.workflow is None for e in fast) >= 5, "the odd lines include refused ones"
