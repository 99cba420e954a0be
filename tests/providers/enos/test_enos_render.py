"""EnOS rendering of job kinds, retries and timeouts, and job-file mappings."""

from __future__ import annotations

from typing import Any

import pytest

from migrator.errors import TranslationError
from migrator.model import TaskKind, Workflow
from migrator.providers.enos.render import FlowPlan, render
from migrator.translate.mapping import Mappings

WF: dict[str, Any] = {
    "name": "orders",
    "folder": "warehouse/daily",
    "owners": ["alice"],
    "tasks": [
        {"name": "load", "kind": "hive_sql", "content": "insert ...", "timeout": 59.5, "retry_interval": 30},
        {
            "name": "ship",
            "kind": "shell",
            "content": "hadoop fs -put out hdfs://nn1/out",
            "run": {"user": "hadoop"},
            "resources": [{"path": "hdfs://nn1/jars/ship.jar"}],
        },
    ],
}


def tasks(plan: FlowPlan) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in plan.body["flowJson"]["tasks"]}


def test_kinds_without_an_enos_type_are_command_placeholders_unless_the_job_file_says() -> None:
    wf = Workflow.model_validate(WF)
    plain = render(wf)
    assert tasks(plain)["load"]["type"] == "COMMAND"
    assert tasks(plain)["load"]["cmd"] == "insert ...", "the placeholder keeps the original content"
    assert any(w.startswith("job-kind: task 'load': kind hive_sql") for w in plain.warnings)
    over = render(wf, kinds={TaskKind.HIVE_SQL: "DATA_INTEGRATION"})
    assert tasks(over)["load"]["type"] == "DATA_INTEGRATION"
    assert not [w for w in over.warnings if w.startswith("job-kind")]


def test_timeouts_and_intervals_are_whole_seconds() -> None:
    load = tasks(render(Workflow.model_validate(WF)))["load"]
    assert (load["timeout"], load["retryInterval"], load["retryLimit"]) == (60, 30, 0)


def test_mappings_reach_owners_submitters_folders_and_paths() -> None:
    m = Mappings(
        owners={"alice": "alice.wang"},
        users={"hadoop": "db_etl"},
        folders={"warehouse": "dw"},
        paths={"hdfs://nn1/": "hdfs://nn2/"},
    )
    plan = render(Workflow.model_validate(WF), folder="migrated", submitter="db_flow", mappings=m)
    flow = plan.body["flowJson"]
    ship = tasks(plan)["ship"]
    assert (flow["owners"], flow["submitter"], ship["submitter"]) == ("alice.wang", "db_flow", "db_etl")
    assert plan.folder == "migrated/dw/daily"
    assert ship["filePackage"] == "hdfs://nn2/jars/ship.jar"
    assert ship["cmd"] == "hadoop fs -put out hdfs://nn2/out"


def test_an_unmapped_path_makes_the_workflow_invalid() -> None:
    m = Mappings(paths={"oss://a/": "oss://b/"})
    with pytest.raises(TranslationError, match=r"workflow 'orders': task 'ship' resources\[0\]\.path"):
        render(Workflow.model_validate(WF), mappings=m)
