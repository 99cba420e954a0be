"""The canonical model rejects broken DAGs with messages naming the workflow and the task."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from migrator.model import Workflow, inventory_schema


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
