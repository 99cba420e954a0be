"""EnOS mapping: render.py's import body read back by read.py, bad documents, export files.

The round trip renders sample and hand-made workflows, reads the Flow Struct back as
``action=export`` returns it (the import ``flowJson`` plus the flow's ``name``) and compares it
with the original carrying render.py's documented transformations (:data:`render.CARRIED`): the
only remaining differences must be the fields of :data:`render.NOT_CARRIED`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from migrator import sample
from migrator.errors import TranslationError
from migrator.inventory import Entry
from migrator.model import Alerts, Dependency, Schedule, Source, Task, TaskKind, Workflow
from migrator.providers.base import UpstreamTarget
from migrator.providers.enos.read import EnosDocumentError, read_export, workflow_from_enos
from migrator.providers.enos.render import (
    ALERT_BITS,
    MANUAL_CRON,
    MANUAL_CYCLE,
    NOT_CARRIED,
    FlowPlan,
    render,
)
from migrator.translate.kinds import TYPES
from migrator.translate.macros import Syntax
from migrator.translate.macros import translate as translate_macros

SHANGHAI = ZoneInfo("Asia/Shanghai")
SEEDS = (7, 13, 29)
#: NOT_CARRIED entries are "field (why)", tasks' fields as "task.x" (dumped: "tasks.x").
NOT_CARRIED_FIELDS = frozenset(
    "tasks." + f.removeprefix("task.") if f.startswith("task.") else f
    for f in (entry.split()[0] for entry in NOT_CARRIED)
)
SECRET = "S3CRET-VALUE"
FLOW_ID = "2841"


def exported(plan: FlowPlan) -> dict[str, Any]:
    """The Flow Struct ``action=export`` would return for the imported flow: ``flowJson`` itself."""
    assert plan.body["flowJson"]["name"] == plan.body["flowName"]
    return dict(plan.body["flowJson"])


def live(plan: FlowPlan) -> dict[str, Any]:
    """The export plus ``active`` as Get Flow reports it once the client has disabled a paused flow."""
    flow = exported(plan)
    return {**flow, "active": 0 if plan.paused else 1} if flow["type"] == 1 else flow


def targets(workflows: list[Workflow]) -> dict[str, UpstreamTarget]:
    return {wf.key: UpstreamTarget(wf.key, wf.name, f"id-{i}") for i, wf in enumerate(workflows)}


def merged_parameters(wf: Workflow) -> dict[str, str]:
    """render's rule: task parameters every task agrees on join the flow's (which win)."""
    values: dict[str, set[str]] = {}
    for t in wf.tasks:
        for k, v in t.parameters.items():
            values.setdefault(k, set()).add(v)
    extra = {k: next(iter(v)) for k, v in values.items() if len(v) == 1 and k not in wf.parameters}
    return {k: enos_macros(v) for k, v in {**wf.parameters, **extra}.items()}


def enos_macros(text: str) -> str:
    """render's rule: the sample's EMR date macros are written as EnOS date variables."""
    return translate_macros(text, Syntax.EMR, Syntax.ENOS)[0]


def expected_task(t: Task) -> Task:
    kind = t.kind if t.kind in TYPES["enos"] else TaskKind.SHELL  # COMMAND placeholders read back as shell
    content = enos_macros(t.content)
    if t.environment and kind is TaskKind.SHELL:  # export lines in front of a COMMAND's script
        content = "".join(f"export {k}={json.dumps(v)}\n" for k, v in t.environment.items()) + content
    run = t.run.model_copy(
        update={
            "queue": None if t.run.queue == "default" else t.run.queue,
            "priority": t.run.priority or None,
            "cores": 0.5 if t.run.cores is None else t.run.cores,
            "memory_mb": 1024 if t.run.memory_mb is None else t.run.memory_mb,
            "user": t.run.user or None,
        }
    )
    return t.model_copy(
        update={
            "kind": kind,
            "content": content,
            "environment": {},
            "resources": t.resources[:1] and (t.resources[0].model_copy(update={"alias": None}),),
            "timeout": float(math.ceil(t.timeout)) if t.timeout else None,
            "retry_interval": float(round(t.retry_interval)),
            "run": run,
        }
    )


def expected_back(wf: Workflow, names: Mapping[str, str], flow_id: str | None = None) -> Workflow:
    """The original with render.py's documented transformations; NOT_CARRIED fields left as they were."""
    entry = set(wf.entry_tasks())
    upstream = tuple(
        Dependency(workflow=names[d.workflow], task=d.task, gates=() if set(d.gates) == entry else d.gates)
        for d in wf.upstream
        if d.workflow in names
    )
    a = wf.alerts
    channels = tuple(c for c in ALERT_BITS if c in a.channels)
    on = (a.on_failure or a.on_success or a.on_task_failure) and bool(channels)
    alerts = a.model_copy(update={"on_failure": on, "channels": channels if on else ()})
    schedule = wf.schedule and wf.schedule.model_copy(
        update={
            "start": wf.schedule.start
            and datetime.combine(wf.schedule.start.astimezone(SHANGHAI).date(), datetime.min.time(), SHANGHAI)
        }
    )
    return wf.model_copy(
        update={
            "source": Source(system="enos", id=flow_id),
            "parameters": merged_parameters(wf),
            "alerts": alerts,
            "schedule": schedule,
            "upstream": upstream,
            "tasks": tuple(expected_task(t) for t in wf.tasks),
            "edges": tuple(dict.fromkeys(wf.edges)),
        }
    )


def differences(a: Any, b: Any, path: str = "") -> set[str]:
    """Dotted paths (list indexes dropped) where two model dumps differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return set().union(*(differences(a.get(k), b.get(k), f"{path}.{k}".lstrip(".")) for k in a | b))
    rows = isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b)
    if rows and all(isinstance(x, dict) for x in (*a, *b)):
        return set().union(set(), *(differences(x, y, path) for x, y in zip(a, b, strict=True)))
    return set() if a == b else {path}


def lost(paths: set[str]) -> set[str]:
    """The NOT_CARRIED fields among (or above) these paths; paths below none of them stay as they are."""
    return {next((f for f in NOT_CARRIED_FIELDS if p == f or p.startswith(f + ".")), p) for p in paths}


def dump(wf: Workflow) -> dict[str, Any]:
    return wf.model_dump(mode="json", context={"secrets": "plain"})


# --- the round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
def test_sample_round_trip_loses_only_what_render_says(seed: int) -> None:
    workflows = list(sample.generate(60, seed=seed))
    upstream = targets(workflows)
    names = {k: t.name for k, t in upstream.items()}
    seen: set[str] = set()
    for wf in workflows:
        plan = render(wf, upstream=upstream, submitter="db_ou")
        back = workflow_from_enos(live(plan), folder=plan.folder, flow_id=FLOW_ID)
        expected = expected_back(wf, names, FLOW_ID)
        diff = lost(differences(dump(expected), dump(back)))
        assert diff <= NOT_CARRIED_FIELDS, (wf.name, diff - NOT_CARRIED_FIELDS)
        seen |= lost(differences(dump(wf), dump(back))) & NOT_CARRIED_FIELDS
        assert back.key == f"enos:{FLOW_ID}"
        assert plan.body["flowJson"]["submitter"] == "db_ou"
        assert all(w.split(": ", 1)[0].replace("-", "").isalpha() for w in plan.warnings)
    # The comparison does see the losses (the sample's timezones are all EnOS's own).
    assert seen == NOT_CARRIED_FIELDS - {"schedule.timezone"}


def test_the_comparison_can_fail() -> None:
    """A reader that dropped a carried field would be caught: the differences are not all tolerated."""
    wf = next(w for w in sample.generate(20, seed=7) if w.owners and w.schedule)
    back = workflow_from_enos({**exported(render(wf)), "owners": "", "cron": "", "type": 0})
    diff = lost(differences(dump(expected_back(wf, {})), dump(back)))
    assert {"owners", "schedule"} <= diff - NOT_CARRIED_FIELDS


def links_workflow() -> Workflow:
    return Workflow(
        name="links",
        folder="a/b",
        tasks=(Task(name="a"), Task(name="b"), Task(name="c"), Task(name="d")),
        edges=({"upstream": "a", "downstream": "c"}, {"upstream": "b", "downstream": "c"}),
        schedule=Schedule(cron="0 30 2 * * ?", start=datetime(2024, 3, 1, tzinfo=SHANGHAI)),
        upstream=(
            Dependency(workflow="emr:F-1"),
            Dependency(workflow="emr:F-2", task="load"),
            Dependency(workflow="emr:F-1", gates=("b",)),
            Dependency(workflow="emr:F-3", task="x", gates=("a", "d")),
            Dependency(workflow="emr:F-404"),
        ),
    )


UPSTREAM = {
    "emr:F-1": UpstreamTarget("emr:F-1", "up_one", "101"),
    "emr:F-2": UpstreamTarget("emr:F-2", "up_two", "102"),
    "emr:F-3": UpstreamTarget("emr:F-3", "up_three", "103"),
}


def test_task_level_links_and_gates_render_as_flow_and_task_links() -> None:
    plan = render(links_workflow(), upstream=UPSTREAM, folder="/target/")
    flow = plan.body["flowJson"]
    assert plan.folder == "target/a/b"
    assert flow["flowLinks"] == [
        {"linkId": "link_1", "sourceFlowName": "up_one"},
        {"linkId": "link_3", "sourceFlowName": "up_one"},
    ]
    assert flow["taskLinks"] == [
        {"linkId": "link_2", "sourceFlowName": "up_two", "sourceTaskName": "load"},
        {"linkId": "link_4", "sourceFlowName": "up_three", "sourceTaskName": "x"},
    ]
    assert [(r["linkId"], r["targetTaskName"], r["rerun"]) for r in flow["linkRelations"]] == [
        ("link_1", "a", False),
        ("link_1", "b", False),
        ("link_1", "d", False),
        ("link_2", "a", False),
        ("link_2", "b", False),
        ("link_2", "d", False),
        ("link_3", "b", False),
        ("link_4", "a", False),
        ("link_4", "d", False),
    ]
    assert flow["relations"] == [
        {"sourceTaskName": "a", "targetTaskName": "c", "rerun": False},
        {"sourceTaskName": "b", "targetTaskName": "c", "rerun": False},
    ]
    assert [w for w in plan.warnings if w.startswith("upstream-workflows: ")] == [
        "upstream-workflows: upstream flows ['emr:F-404'] not carried: not found in this job or its "
        "state database"
    ]
    back = workflow_from_enos(exported(plan), folder=plan.folder)
    assert back.upstream == (
        Dependency(workflow="up_one"),
        Dependency(workflow="up_two", task="load"),
        Dependency(workflow="up_one", gates=("b",)),
        Dependency(workflow="up_three", task="x", gates=("a", "d")),
    )
    assert back.key == "enos:target/a/b/links"


def test_links_read_back_in_relation_order_whatever_the_ids() -> None:
    flow = exported(render(links_workflow(), upstream=UPSTREAM))
    renamed = json.loads(json.dumps(flow).replace('"link_', '"zz-'))  # EnOS's own ids are opaque
    assert workflow_from_enos(renamed).upstream == workflow_from_enos(flow).upstream


CYCLES = [
    ("0 0 3 1 * ?", "M"),
    ("0 15 2 1,15 * ?", "M"),
    ("0 0 6 ? * 2-6", "W"),
    ("0 0 6 ? * 1", "W"),
    ("0 40 5 * * ?", "D"),
    ("0 5 0-23/1 * * ?", "H"),
    ("0 5 */2 * * ?", "H"),
    ("0 */10 * * * ?", "mi"),
]


@pytest.mark.parametrize(("cron", "cycle"), CYCLES)
def test_each_cycle_renders_and_reads_back(cron: str, cycle: str) -> None:
    wf = Workflow(name="w", tasks=(Task(name="t"),), schedule=Schedule(cron=cron))
    plan = render(wf)
    flow = plan.body["flowJson"]
    assert (flow["type"], flow["cron"], flow["cycle"]) == (1, f"{cron} *", cycle)
    assert "startTime" not in flow  # no start: omitted, never "today"
    back = workflow_from_enos(exported(plan))
    assert back.schedule == Schedule(cron=cron)


def test_a_cron_firing_every_few_seconds_is_a_translation_error_naming_the_workflow() -> None:
    wf = Workflow(name="fast", tasks=(Task(name="t"),), schedule=Schedule(cron="*/10 * * * * ?"))
    with pytest.raises(TranslationError, match=r"workflow 'fast': cron '\*/10 \* \* \* \* \?': the seconds"):
        render(wf)


def test_unscheduled_is_a_manual_flow() -> None:
    wf = Workflow(name="manual", tasks=(Task(name="t"),))
    plan = render(wf)
    flow = plan.body["flowJson"]
    assert (flow["type"], flow["cron"], flow["cycle"]) == (0, MANUAL_CRON, MANUAL_CYCLE)
    assert not plan.paused
    assert workflow_from_enos(exported(plan)).schedule is None


def test_paused_is_planned_and_read_from_active_when_present() -> None:
    start = datetime(2024, 5, 2, 8, 30, tzinfo=SHANGHAI)
    wf = Workflow(
        name="p", tasks=(Task(name="t"),), schedule=Schedule(cron="0 0 1 * * ?", start=start, paused=True)
    )
    plan = render(wf)
    assert plan.paused
    assert plan.body["flowJson"]["startTime"] == "2024-05-02"
    assert "schedule: start 2024-05-02T08:30:00+08:00 carried as its date: EnOS starts on a day" in (
        plan.warnings
    )
    schedule = workflow_from_enos(live(plan)).schedule
    assert schedule is not None
    assert schedule.paused
    assert schedule.start == datetime(2024, 5, 2, tzinfo=SHANGHAI)
    exported_only = workflow_from_enos(exported(plan)).schedule  # export has no active
    assert exported_only is not None
    assert not exported_only.paused


def test_start_is_taken_in_the_schedule_zone_and_end_and_zone_warn() -> None:
    start = datetime(2024, 5, 1, 16, 0, tzinfo=ZoneInfo("UTC"))  # 2024-05-02 00:00 in Shanghai
    wf = Workflow(
        name="z",
        tasks=(Task(name="t"),),
        schedule=Schedule(cron="0 0 1 * * ?", start=start, end=start + timedelta(days=9), timezone="UTC"),
    )
    plan = render(wf)
    assert plan.body["flowJson"]["startTime"] == "2024-05-01"  # the schedule's zone: UTC
    rules = [w.split(":")[0] for w in plan.warnings]
    assert rules.count("schedule") == 3  # a time of day (16:00 in the schedule's zone), end, zone
    assert any("end 2024-05-10" in w for w in plan.warnings)
    assert any("timezone UTC not carried" in w for w in plan.warnings)


def test_task_fields_and_their_warnings() -> None:
    wf = Workflow(
        name="tasks",
        parameters={"env": "prod"},
        tasks=(
            Task(
                name="sh",
                content="echo ${env}",
                environment={"A": 'x "y"'},
                parameters={"env": "dev", "day": "1"},
                resources=({"path": "oss://b/one.sh", "alias": "one"}, {"path": "oss://b/two.sh"}),
                timeout=90.5,
                retry_interval=30,
                max_retries=2,
                run={"queue": "etl", "user": "hadoop", "priority": 3, "cores": 1, "memory_mb": 1536},
                variables=({"name": "token", "value": SECRET, "secret": True},),
                description="not carried",
                failure_action="continue",
            ),
            Task(
                name="py", kind="python", content="print(1)", environment={"B": "1"}, parameters={"day": "1"}
            ),
            Task(name="sql", kind="hive_sql", content="select 1", parameters={"day": "2"}),
            Task(name="di", kind="data_integration", content="{}"),
        ),
    )
    plan = render(wf)
    flow = plan.body["flowJson"]
    sh, py, sql, di = flow["tasks"]
    assert json.loads(flow["parameters"]) == [{"key": "env", "value": "prod"}]  # "day" disagrees
    assert (sh["type"], py["type"], sql["type"], di["type"]) == (
        "COMMAND",
        "PYTHON",
        "COMMAND",
        "DATA_INTEGRATION",
    )
    assert sh["cmd"] == 'export A="x \\"y\\""\necho ${env}'
    assert py["cmd"] == "print(1)"  # no export lines in a Python script
    assert sql["cmd"] == "select 1"
    assert (sh["resource"], sh["submitter"], sh["priorityLevel"]) == ("etl", "hadoop", 3)
    assert (py["resource"], py["submitter"], py["priorityLevel"]) == ("default", "", 0)
    assert (sh["filePackage"], sh["timeout"], sh["retryLimit"], sh["retryInterval"]) == (
        "oss://b/one.sh",
        91,
        2,
        30,
    )
    assert (py["filePackage"], py["timeout"]) == ("", 0)
    assert json.loads(sh["runMode"]) == {
        "taskMode": 1, "cpu": 1, "memory": 1.5, "maxParallel": 0, "keyType": 0, "datasourceId": 0,
        "path": "", "content": "",
    }  # fmt: skip
    assert (json.loads(py["runMode"])["cpu"], json.loads(py["runMode"])["memory"]) == (0.5, 1)
    assert all(t["successCode"] == "0" and t["asLink"] is True and t["syncType"] == 1 for t in flow["tasks"])
    assert isinstance(flow["parameters"], str)
    assert isinstance(sh["runMode"], str)
    rules = {w.split(":")[0] for w in plan.warnings}
    assert rules >= {
        "job-kind", "environment", "parameters", "resources", "timeout", "variables", "description",
        "failure-action",
    }  # fmt: skip
    assert not any(SECRET in w for w in plan.warnings)
    assert SECRET not in json.dumps(plan.body)
    back = workflow_from_enos(exported(plan))
    assert back.parameters == {"env": "prod"}
    assert back.tasks[0].run.model_dump(exclude_none=True) == {
        "queue": "etl", "user": "hadoop", "priority": 3, "cores": 1.0, "memory_mb": 1536,
    }  # fmt: skip
    assert [t.kind for t in back.tasks] == ["shell", "python", "shell", "data_integration"]


def test_agreeing_task_parameters_join_the_flow() -> None:
    wf = Workflow(
        name="w",
        tasks=(Task(name="a", parameters={"day": "1"}), Task(name="b", parameters={"day": "1"})),
    )
    plan = render(wf)
    assert json.loads(plan.body["flowJson"]["parameters"]) == [{"key": "day", "value": "1"}]
    assert workflow_from_enos(exported(plan)).parameters == {"day": "1"}
    assert sum(w.startswith("parameters: ") for w in plan.warnings) == 2


@pytest.mark.parametrize(
    ("channels", "events", "mode"),
    [
        (("email",), {"on_failure": True}, 1),
        (("sms",), {"on_task_failure": True}, 2),
        (("sms", "email", "dingtalk"), {"on_failure": True}, 3),
        (("email", "sms"), {}, 0),
        (("dingtalk",), {"on_failure": True}, 0),
    ],
)
def test_alert_mode(channels: tuple[str, ...], events: dict[str, bool], mode: int) -> None:
    wf = Workflow(name="w", tasks=(Task(name="t"),), alerts=Alerts(channels=channels, **events))
    plan = render(wf)
    assert plan.body["flowJson"]["alertMode"] == mode
    back = workflow_from_enos(exported(plan)).alerts
    assert back.on_failure == bool(mode)
    assert back.channels == tuple(c for c, bit in ALERT_BITS.items() if mode & bit)


def test_owners_wrapped_by_the_server_and_the_body() -> None:
    wf = Workflow(name="w", description="d", owners=("a", "b"), tasks=(Task(name="t"),))
    plan = render(wf, submitter="db_1")
    assert {k: v for k, v in plan.body.items() if k != "flowJson"} == {"flowName": "w", "desc": "d"}
    assert (plan.body["flowJson"]["owners"], plan.body["flowJson"]["visitors"]) == ("a;b", "")
    assert workflow_from_enos({**exported(plan), "owners": ";a;b;"}).owners == ("a", "b")


# --- bad documents -----------------------------------------------------------------------------


def good() -> dict[str, Any]:
    wf = links_workflow().model_copy(update={"parameters": {"k": "v"}})
    return exported(render(wf, upstream=UPSTREAM))


BAD: list[tuple[str, Any, str]] = [
    # (dotted path to set, value, field named in the error)
    ("name", None, "name"),
    ("parameters", SECRET + "[", "parameters"),
    ("parameters", json.dumps({"key": SECRET}), "parameters"),
    ("parameters", json.dumps([{"key": SECRET, "value": [SECRET]}]), "parameters[0]"),
    ("cron", f"{SECRET} 0 1 * * ? *", "cron"),
    ("cycle", SECRET, "cron"),
    ("cycle", "H", "cron"),
    ("type", SECRET, "type"),
    ("type", 2, "type"),
    ("startTime", SECRET, "startTime"),
    ("alertMode", 7, "alertMode"),
    ("owners", [SECRET], "owners"),
    ("tasks", [], "tasks"),
    ("tasks", SECRET, "tasks"),
    ("tasks.0.type", SECRET, "tasks[0].type"),
    ("tasks.0.type", 3, "tasks[0].type"),
    ("tasks.0.runMode", SECRET, "tasks[0].runMode"),
    ("tasks.0.runMode", json.dumps({"cpu": SECRET}), "tasks[0].runMode.cpu"),
    ("tasks.1.timeout", SECRET, "tasks[1].timeout"),
    ("tasks.1.retryLimit", 1.5, "tasks[1].retryLimit"),
    ("tasks.1.retryLimit", -1, "tasks[1].max_retries"),
    ("tasks.1.name", "a", "tasks"),
    ("tasks.2.cmd", 5, "tasks[2].cmd"),
    ("relations.0.targetTaskName", SECRET, "relations[0].targetTaskName"),
    (
        "relations",
        [{"sourceTaskName": "c", "targetTaskName": "a"}, {"sourceTaskName": "a", "targetTaskName": "c"}],
        "relations",
    ),
    ("linkRelations.0.linkId", SECRET, "linkRelations[0].linkId"),
    ("linkRelations.0.targetTaskName", SECRET, "linkRelations[0].targetTaskName"),
    ("flowLinks.0.sourceFlowName", "", "flowLinks[0].sourceFlowName"),
    ("taskLinks.0.sourceTaskName", None, "taskLinks[0].sourceTaskName"),
    ("taskLinks.0.linkId", "link_1", "taskLinks[0].linkId"),
]


def mutate(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    *parents, last = path.split(".")
    node: Any = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


def test_the_good_document_reads() -> None:
    wf = workflow_from_enos(good(), flow_id="77")
    assert (wf.parameters, wf.source) == ({"k": "v"}, Source(system="enos", id="77"))


@pytest.mark.parametrize(("path", "value", "field"), BAD)
def test_bad_documents_name_the_flow_and_field_never_the_value(path: str, value: Any, field: str) -> None:
    with pytest.raises(EnosDocumentError) as caught:
        workflow_from_enos(mutate(good(), path, value), flow_id="77")
    assert caught.value.field == field, str(caught.value)
    assert str(caught.value).startswith(f"flow {'77'}: {field}: ")
    assert SECRET not in str(caught.value)


def test_a_flow_without_id_is_named_by_its_name() -> None:
    with pytest.raises(EnosDocumentError, match=r"^flow links: alertMode: "):
        workflow_from_enos({**good(), "alertMode": "x"})


# --- export files ------------------------------------------------------------------------------


def by_key(entries: list[Entry]) -> dict[str, Workflow]:
    return {e.key: e.workflow for e in entries if e.workflow is not None}


def test_read_export_files_bare_and_wrapped(tmp_path: Path) -> None:
    workflows = list(sample.generate(6, seed=7))
    upstream = targets(workflows)
    flows = [exported(render(wf, upstream=upstream)) for wf in workflows]
    (tmp_path / "one.json").write_text(json.dumps(flows[0]))
    (tmp_path / "many.json").write_text(
        json.dumps([flows[1], {"flowId": 2901, "folder": "x/y", "flow": flows[2]}, {"nope": 1}])
    )
    lines = [
        json.dumps({"flowId": "2902", "folder": "/z/", "flow": flows[3]}),
        "",
        "{not json " + SECRET,
        json.dumps({**flows[4], "cron": SECRET}),
        json.dumps(flows[5]),
    ]
    (tmp_path / "flows.jsonl").write_text("\n".join(lines))
    entries = list(
        read_export(
            [
                tmp_path / "one.json",
                tmp_path / "many.json",
                tmp_path / "flows.jsonl",
                tmp_path / "nothing.json",
            ]
        )
    )
    assert not any(SECRET in (e.error or "") for e in entries)
    errors = [e.error for e in entries if e.error]
    assert len(errors) == 4, errors
    assert errors[0].startswith(f"{tmp_path / 'many.json'}[2]: flow ?: ")
    assert errors[1].startswith(f"{tmp_path / 'flows.jsonl'}:3: malformed JSON")
    assert (
        errors[2]
        == f"{tmp_path / 'flows.jsonl'}:4: flow {workflows[4].name}: cron: "
        + "is not a 6-field Quartz expression (or 7 fields with an unrestricted year)"
    )
    assert errors[3] == f"{tmp_path / 'nothing.json'}: export file not found"
    read = by_key(entries)
    assert list(read) == [
        f"enos:{workflows[0].name}",
        f"enos:{workflows[1].name}",
        "enos:2901",
        "enos:2902",
        f"enos:{workflows[5].name}",
    ]
    assert read["enos:2901"].folder == "x/y"
    assert read["enos:2902"].folder == "z"
    assert read["enos:2901"].tasks == workflow_from_enos(flows[2]).tasks


def test_read_export_directories_recursively(tmp_path: Path) -> None:
    workflows = list(sample.generate(3, seed=13))
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.json").write_text(json.dumps(exported(render(workflows[0]))))
    (tmp_path / "a" / "b" / "two.jsonl").write_text(
        "\n".join(json.dumps(exported(render(wf))) for wf in workflows[1:])
    )
    (tmp_path / "a" / "b" / "notes.txt").write_text("ignored")
    entries = list(read_export([tmp_path]))
    assert [e.error for e in entries] == [None, None, None]
    # files in path order, recursively: a/b/two.jsonl sorts before a/one.json
    assert [e.name for e in entries] == [workflows[1].name, workflows[2].name, workflows[0].name]
    (tmp_path / "empty").mkdir()
    (empty,) = read_export([tmp_path / "empty"])
    assert empty.error == f"{tmp_path / 'empty'}: no .json or .jsonl export files"


def test_a_truncated_array_keeps_what_came_before(tmp_path: Path) -> None:
    flow = exported(render(next(iter(sample.generate(1, seed=7)))))
    text = json.dumps([flow, flow])
    (tmp_path / "cut.json").write_text(text[: len(text) - 40])
    entries = list(read_export([tmp_path / "cut.json"]))
    assert entries[0].workflow is not None
    assert entries[-1].error is not None
    assert "the rest of this file was not read" in entries[-1].error
