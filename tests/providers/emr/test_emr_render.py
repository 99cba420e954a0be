"""EMR rendering rules that the round trips do not reach: placeholders, rounding, warnings."""

from __future__ import annotations

import json

import pytest

from migrator.errors import TranslationError
from migrator.model import TaskKind, Workflow
from migrator.providers.emr.read import workflow_from_emr
from migrator.providers.emr.render import NO_DESCRIPTION, FlowPlan, render
from migrator.translate.mapping import Mappings

BASE = {"name": "wf", "tasks": [{"name": "a"}]}


def plan(**changes: object) -> FlowPlan:
    return render(
        Workflow.model_validate({**BASE, **changes}), project_id="FP-1", region="r", cluster_id="C-1"
    )


def test_empty_descriptions_become_a_placeholder_that_reads_back_empty() -> None:
    p = plan()
    assert p.form["Description"] == NO_DESCRIPTION
    assert p.jobs[0].form["Description"] == NO_DESCRIPTION
    flow = {"Id": "F-1", "Name": "wf", "Description": NO_DESCRIPTION, "Graph": p.graph({"a": "FJ-1"})}
    job = {"Id": "FJ-1", "Name": "wf.a", "Type": "SHELL", "Description": NO_DESCRIPTION, "Params": ""}
    back = workflow_from_emr(flow, {"FJ-1": job})
    assert back.description == ""
    assert back.tasks[0].description == ""


def test_timeouts_round_up_modes_are_checked_and_silent_alert_recipients_warn() -> None:
    p = plan(tasks=[{"name": "a", "timeout": 90.2, "run": {"mode": "k8s"}}], alerts={"recipients": ["AUG-1"]})
    assert p.jobs[0].query["MaxRunningTimeSec"] == "91"
    assert "Mode" not in p.jobs[0].query
    rules = {w.split(":")[0] for w in p.warnings}
    assert {"timeout", "run-settings", "alerts"} <= rules
    assert "AlertConf" not in p.query


def test_modes_are_upper_cased() -> None:
    assert plan(tasks=[{"name": "a", "run": {"mode": "local"}}]).jobs[0].query["Mode"] == "LOCAL"


def test_retries_are_clamped_to_emrs_bounds_with_warnings() -> None:
    p = plan(tasks=[{"name": "a", "max_retries": 7, "retry_interval": 600}, {"name": "b", "max_retries": 5}])
    a, b = (j.query for j in p.jobs)
    assert (a["MaxRetry"], a["RetryInterval"]) == ("5", "300")
    assert (b["MaxRetry"], b["RetryInterval"]) == ("5", "0")
    assert [w for w in p.warnings if w.startswith("retries")] == [
        "retries: task 'a': max_retries 7 clamped to EMR's 5",
        "retries: task 'a': retry_interval 600s clamped to EMR's 300s",
    ]


def test_job_kinds_come_from_the_table_the_job_file_overrides_it() -> None:
    tasks = [{"name": "a", "kind": "odps_sql"}, {"name": "b", "kind": "python"}]
    p = plan(tasks=tasks)
    assert [j.query["Type"] for j in p.jobs] == ["SHELL", "SHELL"]
    assert [w.split(":")[0] for w in p.warnings].count("job-kind") == 2
    wf = Workflow.model_validate({**BASE, "tasks": tasks})
    over = render(wf, project_id="FP-1", region="r", cluster_id="C-1", kinds={TaskKind.ODPS_SQL: "HIVE_SQL"})
    assert [j.query["Type"] for j in over.jobs] == ["HIVE_SQL", "SHELL"]
    assert [w for w in over.warnings if w.startswith("job-kind")] == [
        "job-kind: task 'b': kind python has no EMR job type; kept as a SHELL placeholder holding the "
        "original content"
    ]


def test_mappings_reach_run_conf_and_clear_the_cluster_warning() -> None:
    wf = Workflow.model_validate(
        {
            **BASE,
            "folder": "etl/daily",
            "tasks": [{"name": "a", "run": {"user": "hadoop", "cluster": "C-OLD"}}],
        }
    )
    unmapped = render(wf, project_id="FP-1", region="r", cluster_id="C-1")
    assert any(w.startswith("cluster: task 'a': cluster C-OLD not carried") for w in unmapped.warnings)
    m = Mappings(users={"hadoop": "etl"}, clusters={"C-OLD": "C-1"}, folders={"etl": "migrated"})
    p = render(wf, project_id="FP-1", region="r", cluster_id="C-1", mappings=m)
    assert json.loads(p.jobs[0].form["RunConf"])["userName"] == "etl"
    assert not [w for w in p.warnings if w.startswith("cluster")]
    assert p.folder == "migrated/daily"
    with pytest.raises(TranslationError, match=r"workflow 'wf': task 'a' run\.user: 'hadoop' has no entry"):
        render(wf, project_id="FP-1", region="r", cluster_id="C-1", mappings=Mappings(users={"x": "y"}))
