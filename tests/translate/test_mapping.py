"""Job-file mappings: values replaced in one place; an unmapped value under a table is refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from migrator.errors import TranslationError
from migrator.model import Workflow
from migrator.translate.mapping import Mappings, apply

WF: dict[str, Any] = {
    "name": "orders",
    "folder": "warehouse/dwd/daily",
    "owners": ["alice", "bob"],
    "parameters": {"src": "oss://old-bucket/raw/${bizdate}"},
    "tasks": [
        {
            "name": "load",
            "content": "hadoop fs -get hdfs://nn1/data/x oss://old-bucket/tmp/x",
            "resources": [{"path": "oss://old-bucket/jars/etl.jar", "alias": "etl"}],
            "parameters": {"out": "hdfs://nn1/out"},
            "environment": {"HOME_DIR": "hdfs://nn1/home"},
            "run": {"user": "hadoop", "cluster": "C-OLD"},
            "variables": [{"name": "pw", "value": "oss://old-bucket/secret", "secret": True}],
        }
    ],
}


def mapped(**tables: Any) -> Workflow:
    return apply(Workflow.model_validate(WF), Mappings.model_validate(tables))


def test_no_mappings_leave_the_workflow_as_it_is() -> None:
    wf = Workflow.model_validate(WF)
    assert apply(wf, None) is wf
    assert apply(wf, Mappings()) is wf


def test_owners_users_and_clusters_are_replaced() -> None:
    wf = mapped(owners={"alice": "1001", "bob": "1002"}, users={"hadoop": "etl"}, clusters={"C-OLD": "C-NEW"})
    assert wf.owners == ("1001", "1002")
    assert (wf.tasks[0].run.user, wf.tasks[0].run.cluster) == ("etl", "C-NEW")


def test_two_owners_mapped_to_one_account_are_one_owner() -> None:
    assert mapped(owners={"alice": "1001", "bob": "1001"}).owners == ("1001",)


@pytest.mark.parametrize(
    ("tables", "field"),
    [
        ({"owners": {"alice": "1001"}}, "owners: 'bob' has no entry in [target.mappings] owners"),
        (
            {"users": {"root": "etl"}},
            "task 'load' run.user: 'hadoop' has no entry in [target.mappings] users",
        ),
        ({"clusters": {"C-X": "C-Y"}}, "task 'load' run.cluster: 'C-OLD' has no entry"),
        (
            {"folders": {"ods": "ods2"}},
            "folder: 'warehouse/dwd/daily' is under no entry of [target.mappings] folders",
        ),
        (
            {"paths": {"hdfs://nn1/": "oss://b/"}},
            "task 'load' resources[0].path: 'oss://old-bucket/jars/etl.jar'",
        ),
        ({"strict": True}, "owners: 'alice' has no entry"),
    ],
)
def test_a_value_a_given_table_does_not_cover_makes_the_workflow_invalid(
    tables: dict[str, Any], field: str
) -> None:
    with pytest.raises(TranslationError) as caught:
        mapped(**tables)
    assert str(caught.value).startswith("workflow 'orders': ")
    assert field in str(caught.value)


def test_without_a_table_values_pass_through() -> None:
    wf = mapped(owners={"alice": "1001", "bob": "1002"})  # users, clusters, paths, folders: no table
    assert wf.tasks[0].run.user == "hadoop"
    assert wf.folder == "warehouse/dwd/daily"
    assert wf.tasks[0].resources[0].path == "oss://old-bucket/jars/etl.jar"


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        ({"warehouse": "dw"}, "dw/dwd/daily"),
        ({"warehouse": "dw", "warehouse/dwd": "marts/dwd"}, "marts/dwd/daily"),  # the longest prefix wins
        ({"/warehouse/dwd/daily/": "x"}, "x"),  # slashes around a folder do not matter
        ({"warehouse/dwd": ""}, "daily"),  # to the target root
        ({"": "legacy"}, "legacy/warehouse/dwd/daily"),  # "" covers every folder
    ],
)
def test_folders_map_by_whole_segments(folders: dict[str, str], expected: str) -> None:
    assert mapped(folders=folders).folder == expected


def test_a_folder_prefix_matches_whole_segments_only() -> None:
    with pytest.raises(TranslationError, match="folder"):
        mapped(folders={"warehouse/dw": "x"})


def test_a_workflow_at_the_root_needs_no_folder_entry() -> None:
    wf = apply(Workflow.model_validate({**WF, "folder": ""}), Mappings(folders={"a": "b"}))
    assert wf.folder == ""


def test_the_item_key_survives_a_folder_mapping() -> None:
    original = Workflow.model_validate(WF)
    wf = apply(original, Mappings(folders={"warehouse": "dw"}))
    assert wf.path == "dw/dwd/daily/orders"
    assert wf.key == original.key == "inventory:warehouse/dwd/daily/orders"


def test_path_prefixes_are_rewritten_in_resources_contents_parameters_and_environment() -> None:
    wf = mapped(paths={"oss://old-bucket/": "oss://new-bucket/", "hdfs://nn1/": "oss://old-bucket/hdfs/"})
    task = wf.tasks[0]
    assert task.resources[0].path == "oss://new-bucket/jars/etl.jar"
    assert task.resources[0].alias == "etl"
    # one pass: what a rewrite produces is never rewritten again
    assert task.content == "hadoop fs -get oss://old-bucket/hdfs/data/x oss://new-bucket/tmp/x"
    assert task.parameters == {"out": "oss://old-bucket/hdfs/out"}
    assert task.environment == {"HOME_DIR": "oss://old-bucket/hdfs/home"}
    assert wf.parameters == {"src": "oss://new-bucket/raw/${bizdate}"}
    assert task.variables[0].plain() == "oss://old-bucket/secret", "variables (maybe secret) are not touched"


def test_the_longest_path_prefix_wins() -> None:
    wf = mapped(paths={"oss://old-bucket/": "oss://a/", "oss://old-bucket/jars/": "oss://jars/"})
    assert wf.tasks[0].resources[0].path == "oss://jars/etl.jar"
    assert "oss://a/tmp/x" in wf.tasks[0].content


@pytest.mark.parametrize(
    "tables",
    [{"owners": ["alice"]}, {"owners": {"alice": ""}}, {"paths": {"": "oss://x/"}}, {"groups": {}}],
)
def test_shapes_are_checked(tables: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Mappings.model_validate(tables)
