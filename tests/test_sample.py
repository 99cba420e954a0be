"""The sample-inventory generator: deterministic, valid, realistic shapes, lossless JSONL round trip."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from migrator.model import TaskKind, Workflow
from migrator.sample import generate, main, source_id, write_jsonl

DEMO = Path(__file__).resolve().parents[1] / "jobs" / "inventory" / "demo.jsonl"


@pytest.fixture(scope="module")
def sample() -> list[Workflow]:
    return list(generate(1500, seed=7))


def test_same_seed_same_output_and_prefix_stable() -> None:
    first = [w.content_hash() for w in generate(300, seed=11)]
    again = [w.content_hash() for w in generate(300, seed=11)]
    shorter = [w.content_hash() for w in generate(120, seed=11)]
    assert first == again
    assert shorter == first[:120]
    other = [w.content_hash() for w in generate(300, seed=12)]
    assert not set(first) & set(other)


def test_every_workflow_validates(sample: list[Workflow]) -> None:
    for wf in sample:
        assert isinstance(wf, Workflow)
        again = Workflow.model_validate(wf.to_record())
        assert again.content_hash() == wf.content_hash()


def test_task_counts_within_3_to_15(sample: list[Workflow]) -> None:
    counts = Counter(len(wf.tasks) for wf in sample)
    assert min(counts) == 3
    assert max(counts) == 15


def test_dag_shape_single_sink_every_task_connected(sample: list[Workflow]) -> None:
    for wf in sample:
        names = [t.name for t in wf.tasks]
        ups = {e.upstream for e in wf.edges}
        downs = {e.downstream for e in wf.edges}
        sinks = [n for n in names if n not in ups]
        assert sinks == [names[-1]], wf.name
        assert all(n in ups or n in downs for n in names), wf.name


def test_upstream_references_point_at_earlier_keys(sample: list[Workflow]) -> None:
    seen: set[str] = set()
    with_upstream = 0
    for wf in sample:
        for key in wf.upstream_workflows():
            assert key in seen, (wf.key, key)
        with_upstream += bool(wf.upstream)
        assert len(wf.upstream_workflows()) == len(wf.upstream)
        seen.add(wf.key)
    assert 0 < with_upstream <= 0.15 * len(sample)


def test_identity_and_keys(sample: list[Workflow]) -> None:
    keys = [wf.key for wf in sample]
    assert len(set(keys)) == len(keys)
    assert len({wf.path for wf in sample}) == len(sample)
    for i, wf in enumerate(sample[:50]):
        assert wf.source.system == "emr"
        assert wf.source.id == source_id(7, i)
        assert re.fullmatch(r"F-[0-9A-F]{16}", wf.source.id)
        assert re.fullmatch(r"(ods|dwd|dws|ads)_[a-z0-9_]+", wf.name)
        assert wf.folder.startswith(f"warehouse/{wf.name[:3]}/")
        assert wf.owners
    enos = next(generate(1, system="enos"))
    assert enos.key.startswith("enos:F-")


def test_schedules_are_quartz(sample: list[Workflow]) -> None:
    scheduled = [wf.schedule for wf in sample if wf.schedule is not None]
    assert len(scheduled) > 0.9 * len(sample)
    for s in scheduled:
        sec, _minute, _hour, dom, _month, dow = s.cron.split(" ")
        assert sec == "0"
        assert (dom == "?") != (dow == "?"), s.cron
        assert s.timezone == "Asia/Shanghai"
        assert s.start is not None
        assert s.end is None or s.end > s.start
    assert any(s.paused for s in scheduled)
    assert any(s.end is not None for s in scheduled)
    assert any("0-23/1" in s.cron for s in scheduled)
    assert any(s.cron.split(" ")[3] == "?" for s in scheduled)  # weekly
    assert any(s.cron.split(" ")[3].isdigit() for s in scheduled)  # monthly


def test_task_mix_and_settings(sample: list[Workflow]) -> None:
    tasks = [t for wf in sample for t in wf.tasks]
    kinds = {t.kind for t in tasks}
    assert kinds >= {
        TaskKind.HIVE_SQL,
        TaskKind.SHELL,
        TaskKind.SPARK,
        TaskKind.SPARK_SQL,
        TaskKind.SQOOP,
        TaskKind.PYTHON,
        TaskKind.MR,
        TaskKind.VIRTUAL,
    }
    for t in tasks:
        assert 0 <= t.max_retries <= 5
        assert 0 <= t.retry_interval <= 300
        if t.kind is TaskKind.SPARK:
            assert t.resources[0].path.startswith("oss://")
            assert t.resources[0].alias
            assert "--class" in t.content
        if t.kind in (TaskKind.HIVE_SQL, TaskKind.SPARK_SQL):
            assert re.search(r"\$\{(bizdate|yyyy-MM-dd|yyyyMMdd-1d)\}", t.content)
        if t.kind is TaskKind.SQOOP:
            assert t.content.startswith("sqoop import ")
            assert any(v.secret and v.name == "db_password" for v in t.variables)
        if t.kind is not TaskKind.VIRTUAL:
            assert t.run.user == "hadoop"
            assert t.run.queue in ("default", "etl")
            assert t.run.memory_mb is not None
            assert 1024 <= t.run.memory_mb <= 8192
    assert any(t.failure_action.value == "continue" for t in tasks)
    assert any(t.timeout is not None for t in tasks)
    assert any(wf.alerts.on_failure for wf in sample)
    assert any(wf.parameters.get("bizdate") == "${yyyyMMdd-1d}" for wf in sample)


def test_jsonl_round_trip_keeps_secrets(tmp_path: Path) -> None:
    workflows = list(generate(200, seed=3))
    out = tmp_path / "inv.jsonl"
    assert write_jsonl(out, workflows) == 200
    text = out.read_text(encoding="utf-8")
    assert "**********" not in text
    lines = text.splitlines()
    assert len(lines) == 200
    secrets = 0
    for wf, line in zip(workflows, lines, strict=True):
        back = Workflow.model_validate_json(line)
        assert back.content_hash() == wf.content_hash()
        for t in back.tasks:
            for v in t.variables:
                assert v.plain() in line
                secrets += v.secret
        assert json.loads(line)["source"]["id"] == wf.source.id
    assert secrets > 0


def test_main_writes_the_same_file(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "cli.jsonl"
    assert main(["25", str(out), "--seed", "5"]) == 0
    ref = tmp_path / "ref.jsonl"
    write_jsonl(ref, generate(25, seed=5))
    assert out.read_bytes() == ref.read_bytes()


def test_edge_counts() -> None:
    assert list(generate(0)) == []
    with pytest.raises(ValueError, match="count"):
        list(generate(-1))


def test_demo_inventory_is_current(tmp_path: Path) -> None:
    """jobs/inventory/demo.jsonl must be regenerated whenever the generator changes."""
    ref = tmp_path / "demo.jsonl"
    write_jsonl(ref, generate(60, seed=7))
    assert DEMO.read_bytes() == ref.read_bytes(), (
        "regenerate: python -m migrator.sample 60 jobs/inventory/demo.jsonl --seed 7"
    )
