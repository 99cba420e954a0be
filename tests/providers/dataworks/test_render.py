"""Canonical workflow -> FlowSpec in the seed's shape, with deterministic ids and honest warnings."""

from __future__ import annotations

from typing import Any

import pytest

from migrator.errors import TranslationError
from migrator.model import TaskKind, Workflow
from migrator.providers.base import UpstreamTarget
from migrator.providers.dataworks.render import node_id, render, workflow_id
from migrator.translate.mapping import Mappings

WF: dict[str, Any] = {
    "name": "dwd_orders_daily",
    "source": {"system": "emr", "id": "F-1"},
    "folder": "warehouse/dwd",
    "owners": ["alice", "bob"],
    "schedule": {"cron": "0 30 2 * * ?", "start": "2025-01-01T00:00:00", "paused": True},
    "parameters": {"bizdate": "${yyyyMMdd-1d}"},
    "tasks": [
        {
            "name": "extract",
            "kind": "sqoop",
            "content": "sqoop import ...",
            "max_retries": 3,
            "retry_interval": 120,
            "timeout": 3600,
        },
        {
            "name": "transform",
            "kind": "hive_sql",
            "content": "insert ...",
            "run": {"queue": "etl", "memory_mb": 2048},
            "variables": [
                {"name": "token", "value": "s3cret!", "secret": True},
                {"name": "region", "value": "cn"},
            ],
        },
        {"name": "check", "kind": "pig", "content": "pig -f check.pig", "environment": {"A": "1"}},
    ],
    "edges": [
        {"upstream": "extract", "downstream": "transform"},
        {"upstream": "transform", "downstream": "check"},
    ],
}


def test_spec_shape_matches_the_seed() -> None:
    wf = Workflow.model_validate(WF)
    wid, spec, warnings = render(wf, "migrated")
    assert (spec["version"], spec["kind"], spec["spec"]["id"]) == ("1.1.0", "CycleWorkflow", wid)
    (flow,) = spec["spec"]["workflows"]
    assert flow["script"] == {
        "path": "migrated/warehouse/dwd/dwd_orders_daily",
        "runtime": {"command": "WORKFLOW"},
        "parameters": [
            {
                "name": "bizdate",
                "artifactType": "Variable",
                "scope": "NodeParameter",
                "type": "Constant",
                "value": "$[yyyymmdd-1]",  # the EMR macro in DataWorks syntax
            }
        ],
    }
    assert flow["trigger"] == {
        "type": "Scheduler",
        "cron": "0 30 2 * * ?",
        "startTime": "2025-01-01 00:00:00",
        "endTime": "9999-01-01 00:00:00",
        "timezone": "Asia/Shanghai",
        "delaySeconds": 0,
    }
    nodes = {n["name"]: n for n in flow["nodes"]}
    assert nodes["extract"]["script"]["runtime"]["command"] == "EMR_SCOOP"
    assert nodes["extract"]["rerunTimes"] == 3
    assert nodes["extract"]["rerunInterval"] == 120_000
    assert nodes["transform"]["script"]["runtime"]["emrJobConfig"] == {"queue": "etl", "memory": 2048}
    assert all(n["recurrence"] == "Pause" for n in nodes.values())
    for node in flow["nodes"]:
        assert node["outputs"]["nodeOutputs"][0]["data"] == node["id"]
        assert node["script"]["path"] == f"migrated/warehouse/dwd/dwd_orders_daily/{node['name']}"
    deps = {d["nodeId"]: [x["output"] for x in d["depends"]] for d in flow["dependencies"]}
    assert deps == {
        nodes["transform"]["id"]: [nodes["extract"]["id"]],
        nodes["check"]["id"]: [nodes["transform"]["id"]],
    }
    rules = [w.split(":")[0] for w in warnings]
    assert {"secret-variable", "job-kind", "environment", "owners"} <= set(rules)


def test_ids_are_deterministic_signed_64_bit_and_distinct() -> None:
    wf = Workflow.model_validate(WF)
    assert render(wf)[0] == workflow_id("emr:F-1") == render(Workflow.model_validate(WF))[0]
    ids = {workflow_id(f"emr:F-{i}") for i in range(2000)} | {
        node_id("emr:F-1", f"t{i}") for i in range(2000)
    }
    assert len(ids) == 4000
    assert all(len(i) == 19 and 0 < int(i) < 2**63 for i in ids)


def test_secret_values_never_reach_the_spec() -> None:
    _, spec, warnings = render(Workflow.model_validate(WF))
    text = str(spec) + str(warnings)
    assert "s3cret!" not in text
    params = spec["spec"]["workflows"][0]["nodes"][1]["script"]["parameters"]
    assert params == [
        {
            "name": "region",
            "artifactType": "Variable",
            "scope": "NodeParameter",
            "type": "Constant",
            "value": "cn",
        }
    ]


def test_environment_on_shell_becomes_exports() -> None:
    body = {
        **WF,
        "tasks": [{"name": "s", "kind": "shell", "content": "echo $A", "environment": {"A": "x y"}}],
        "edges": [],
    }
    _, spec, _ = render(Workflow.model_validate(body))
    assert spec["spec"]["workflows"][0]["nodes"][0]["script"]["content"] == 'export A="x y"\necho $A'


@pytest.mark.parametrize(
    ("cron", "ok"),
    # a 5-field cron is read as Unix; a year restriction cannot be expressed
    [("0 0 1 * * ?", True), ("0 0 1 * * ? *", True), ("0 0 1 * * ? 2026", False), ("0 1 * * *", True)],
)
def test_cron_forms(cron: str, ok: bool) -> None:
    wf = Workflow.model_validate({**WF, "schedule": {"cron": cron}})
    if ok:
        assert render(wf)[1]["spec"]["workflows"][0]["trigger"]["cron"] == "0 0 1 * * ?"
    else:
        with pytest.raises(TranslationError, match="dwd_orders_daily"):
            render(wf)


def test_unscheduled_is_manual() -> None:
    wf = Workflow.model_validate({k: v for k, v in WF.items() if k != "schedule"})
    assert render(wf)[1]["spec"]["workflows"][0]["trigger"] == {"type": "Manual"}


def test_upstream_workflows_become_dependencies_of_entry_nodes() -> None:
    body = {**WF, "upstream": ["emr:F-9", "missing_one"]}
    up = {"emr:F-9": UpstreamTarget("emr:F-9", "ods_orders", "1234567890123456789")}
    _, spec, warnings = render(Workflow.model_validate(body), upstream=up)
    flow = spec["spec"]["workflows"][0]
    deps = {d["nodeId"]: [x["output"] for x in d["depends"]] for d in flow["dependencies"]}
    nodes = {n["name"]: n["id"] for n in flow["nodes"]}
    assert deps[nodes["extract"]] == ["1234567890123456789"], "the entry node waits for the upstream workflow"
    assert deps[nodes["transform"]] == [nodes["extract"]]
    assert any(w.startswith("upstream-workflows") and "'missing_one'" in w for w in warnings)


def test_task_level_links_gate_the_named_nodes() -> None:
    body = {**WF, "upstream": [{"workflow": "emr:F-9", "task": "load", "gates": ["check"]}]}
    up = {"emr:F-9": UpstreamTarget("emr:F-9", "ods_orders", "1234567890123456789")}
    _, spec, _ = render(Workflow.model_validate(body), upstream=up)
    flow = spec["spec"]["workflows"][0]
    deps = {d["nodeId"]: [x["output"] for x in d["depends"]] for d in flow["dependencies"]}
    nodes = {n["name"]: n["id"] for n in flow["nodes"]}
    assert deps[nodes["check"]] == [nodes["transform"], node_id("emr:F-9", "load")]
    assert nodes["extract"] not in deps, "only the gated task waits"


def nodes_of(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in spec["spec"]["workflows"][0]["nodes"]}


def test_timeouts_are_seconds_rounded_up_and_intervals_milliseconds() -> None:
    body = {
        **WF,
        "tasks": [{"name": "t", "timeout": 0.5, "retry_interval": 1.25, "max_retries": 9}],
        "edges": [],
    }
    _, spec, warnings = render(Workflow.model_validate(body))
    node = nodes_of(spec)["t"]
    assert (node["timeout"], node["rerunInterval"], node["rerunTimes"]) == (1, 1250, 9)
    assert "timeout: task 't': timeout 0.5s rounded up to 1s" in warnings
    assert not [w for w in warnings if w.startswith("retries")]


def test_job_file_kinds_override_the_table() -> None:
    wf = Workflow.model_validate(WF)
    _, spec, warnings = render(wf, kinds={TaskKind.PIG: "EMR_SPARK_SHELL", TaskKind.SQOOP: "DI"})
    nodes = nodes_of(spec)
    assert nodes["check"]["script"]["runtime"]["command"] == "EMR_SPARK_SHELL"
    assert nodes["extract"]["script"]["runtime"]["command"] == "DI"
    assert not [w for w in warnings if w.startswith("job-kind")]


def test_mapped_owners_users_clusters_and_folders_land_in_the_spec() -> None:
    body = {**WF, "tasks": [{**WF["tasks"][1], "run": {"user": "hadoop", "cluster": "C-OLD"}}], "edges": []}
    wf = Workflow.model_validate(body)
    _, plain, warnings = render(wf)
    assert "runtimeResource" not in nodes_of(plain)["transform"]
    assert any(w.startswith("cluster: task 'transform': cluster C-OLD not carried") for w in warnings)
    m = Mappings(
        owners={"alice": "110755000425", "bob": "110755000426"},
        users={"hadoop": "etl"},
        clusters={"C-OLD": "S_res_group_1"},
        folders={"warehouse": "dw"},
    )
    _, spec, warnings = render(wf, "migrated", mappings=m)
    flow = spec["spec"]["workflows"][0]
    node = nodes_of(spec)["transform"]
    assert (flow["owner"], node["owner"]) == ("110755000425", "110755000425")
    assert node["script"]["runtime"]["emrJobConfig"]["submitter"] == "etl"
    assert node["runtimeResource"] == {"resourceGroup": "S_res_group_1"}
    assert flow["script"]["path"] == "migrated/dw/dwd/dwd_orders_daily"
    assert not [w for w in warnings if w.startswith("cluster")]
    assert render(wf, mappings=m)[0] == render(wf)[0], "a mapped folder does not change the ids"


def test_an_unmapped_owner_makes_the_workflow_invalid_naming_it() -> None:
    with pytest.raises(TranslationError, match=r"workflow 'dwd_orders_daily': owners: 'bob' has no entry"):
        render(Workflow.model_validate(WF), mappings=Mappings(owners={"alice": "1"}))
