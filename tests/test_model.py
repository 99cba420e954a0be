"""The canonical model rejects broken DAGs with messages naming the workflow and the task."""

from __future__ import annotations

import hashlib
import json
import typing
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from migrator.model import Workflow, inventory_schema
from migrator.sample import generate


def wf(**kw: object) -> dict[str, object]:
    return {"name": "orders_daily", "tasks": [{"name": "a"}, {"name": "b"}], **kw}


def test_valid_workflow_has_stable_key_and_hash() -> None:
    w = Workflow.model_validate(wf(folder="/dw/orders/", edges=[{"upstream": "a", "downstream": "b"}]))
    assert w.path == "dw/orders/orders_daily"
    assert w.key == "inventory:dw/orders/orders_daily"
    assert (
        w.content_hash()
        == Workflow.model_validate(
            w.model_dump(mode="json") | {"tasks": [t.model_dump(mode="json") for t in w.tasks]}
        ).content_hash()
    )
    with_id = Workflow.model_validate(wf(source={"system": "emr", "id": "F-1"}))
    assert with_id.key == "emr:F-1"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (wf(tasks=[{"name": "a"}, {"name": "a"}]), "workflow 'orders_daily': duplicate task name 'a'"),
        (wf(edges=[{"upstream": "a", "downstream": "zz"}]), "names unknown task 'zz'"),
        (
            wf(edges=[{"upstream": "a", "downstream": "b"}, {"upstream": "b", "downstream": "a"}]),
            "workflow 'orders_daily': tasks form a cycle: a -> b -> a",
        ),
        (wf(tasks=[]), "at least 1 item"),
        ({"tasks": [{"name": "a"}]}, "name"),
        (
            wf(
                schedule={"cron": "0 0 1 * * ?", "start": "2025-01-02T00:00:00", "end": "2025-01-01T00:00:00"}
            ),
            "must be before schedule.end",
        ),
        (wf(tasks=[{"name": "a", "max_retries": -1}]), "greater than or equal to 0"),
    ],
)
def test_rejections_name_what_is_wrong(body: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        Workflow.model_validate(body)
    assert message in str(err.value)


def test_secret_values_hidden_in_repr_but_part_of_the_hash() -> None:
    base = wf(tasks=[{"name": "a", "variables": [{"name": "pw", "value": "hunter2", "secret": True}]}])
    w = Workflow.model_validate(base)
    assert "hunter2" not in repr(w)
    assert "hunter2" not in w.model_dump_json()
    changed = Workflow.model_validate(
        wf(tasks=[{"name": "a", "variables": [{"name": "pw", "value": "other", "secret": True}]}])
    )
    assert changed.content_hash() != w.content_hash()


def test_dependencies_take_a_shorthand_and_name_gated_tasks() -> None:
    w = Workflow.model_validate(wf(upstream=["a", {"workflow": "b", "task": "t9", "gates": ["b"]}, "a"]))
    assert w.upstream_workflows() == ["a", "b"]
    assert w.upstream[1].task == "t9"
    assert w.entry_tasks() == ["a", "b"]
    assert w.to_record()["upstream"] == ["a", {"workflow": "b", "task": "t9", "gates": ["b"]}, "a"]
    with pytest.raises(ValidationError, match="dependency on 'b' gates unknown task 'zz'"):
        Workflow.model_validate(wf(upstream=[{"workflow": "b", "gates": ["zz"]}]))


def test_the_memoised_hash_follows_changes_made_by_copy() -> None:
    w = Workflow.model_validate(wf())
    first = w.content_hash()
    assert w.content_hash() == first
    assert w.model_copy(update={"description": "changed"}).content_hash() != first
    assert w.model_copy().content_hash() == first


def test_schema_describes_one_record() -> None:
    schema = inventory_schema()
    assert schema["type"] == "object"
    assert "tasks" in schema["required"]
    assert "Task" in schema["$defs"]


def _float_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Paths of every float field under ``model``, through nested models and tuples of them."""
    found: set[str] = set()
    for name, info in model.model_fields.items():
        args = typing.get_args(info.annotation) or (info.annotation,)
        for arg in args:
            inner = typing.get_args(arg) or (arg,)
            for t in inner:
                if t is float:
                    found.add(prefix + name)
                elif isinstance(t, type) and issubclass(t, BaseModel):
                    found |= _float_fields(t, f"{prefix}{name}.")
    return found


def test_the_hash_guard_knows_every_float_field_of_the_model() -> None:
    """`Workflow.floats` must yield every float, or a float orjson writes differently would
    change a workflow's digest (and a sync would resubmit it)."""
    assert _float_fields(Workflow) == {"tasks.retry_interval", "tasks.timeout", "tasks.run.cores"}
    w = Workflow.model_validate(
        {"name": "f", "tasks": [{"name": "a", "retry_interval": 1.5, "timeout": 2.5, "run": {"cores": 3.5}}]}
    )
    assert sorted(x for x in w.floats() if x is not None) == [1.5, 2.5, 3.5]


@pytest.mark.parametrize(
    "task",
    [
        {"retry_interval": 180.0, "timeout": 3600.0, "run": {"cores": 4.0, "memory_mb": 2048}},
        {"retry_interval": 1e-05, "timeout": 2.5e-10},  # orjson writes 1e-05 as 0.00001
        {"timeout": float("inf")},  # orjson writes null
        {"run": {"memory_mb": 2**70}},  # beyond orjson's 64 bits
        {"retry_interval": 1e22, "content": 'é中😀 \u2028 \x7f "q" \\ \n\t\x01'},
    ],
)
def test_the_content_hash_is_the_standard_librarys_sorted_json(task: dict[str, Any]) -> None:
    """Digests in existing state databases were made with json.dumps; a new one must match."""
    w = Workflow.model_validate(
        {"name": "h", "parameters": {"b": "2", "a": "1"}, "tasks": [{"name": "t", **task}]}
    )
    blob = json.dumps(w.to_record(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert w.content_hash() == hashlib.sha256(blob.encode()).hexdigest()


def test_sample_workflows_hash_as_the_standard_library_does() -> None:
    for w in generate(200, seed=11):
        blob = json.dumps(w.to_record(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert w.content_hash() == hashlib.sha256(blob.encode()).hexdigest(), w.name
