"""EMR rendering rules that the round trips do not reach: placeholders, rounding, warnings."""

from __future__ import annotations

from migrator.model import Workflow
from migrator.providers.emr.read import workflow_from_emr
from migrator.providers.emr.render import NO_DESCRIPTION, FlowPlan, render

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
