"""Job kinds: one table per target, refinements per source system, job-file overrides."""

from __future__ import annotations

import pytest

from migrator.errors import TranslationError
from migrator.model import TaskKind
from migrator.translate.kinds import (
    KNOWN,
    PLACEHOLDERS,
    SHELL_TYPES,
    TYPES,
    check_overrides,
    source_kinds,
    target_type,
)

TARGETS = tuple(TYPES)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("kind", list(TaskKind))
def test_every_kind_gets_its_type_or_a_shell_placeholder(target: str, kind: TaskKind) -> None:
    choice = target_type(target, kind)
    if kind in TYPES[target]:
        assert (choice.type, choice.placeholder) == (TYPES[target][kind], False)
    else:
        assert (choice.type, choice.placeholder) == (PLACEHOLDERS[target], True)
        assert choice.type in SHELL_TYPES[target], "a placeholder keeps the content as a shell script"


@pytest.mark.parametrize("target", TARGETS)
def test_readers_invert_the_table_so_faithful_kinds_round_trip(target: str) -> None:
    back = source_kinds(target)
    for kind, name in TYPES[target].items():
        assert back[name] is kind
    assert back[PLACEHOLDERS[target]] is TaskKind.SHELL, "a placeholder reads back as the shell it is"
    assert set(TYPES[target].values()) | {PLACEHOLDERS[target]} <= KNOWN[target]


def test_an_emr_shell_job_becomes_an_emr_shell_node_at_dataworks_and_only_from_emr() -> None:
    assert target_type("dataworks", TaskKind.SHELL, source="emr").type == "EMR_SHELL"
    assert target_type("dataworks", TaskKind.SHELL, source="inventory").type == "DIDE_SHELL"
    assert target_type("enos", TaskKind.SHELL, source="emr").type == "COMMAND"


def test_a_job_file_override_wins_over_tables_and_placeholders() -> None:
    overrides = {TaskKind.PIG: "EMR_SPARK_SHELL", TaskKind.SHELL: "SHELL"}
    assert target_type("dataworks", TaskKind.PIG, overrides=overrides).type == "EMR_SPARK_SHELL"
    assert not target_type("dataworks", TaskKind.PIG, overrides=overrides).placeholder
    assert target_type("dataworks", TaskKind.SHELL, source="emr", overrides=overrides).type == "SHELL"
    assert target_type("dataworks", TaskKind.MR, overrides=overrides).type == "EMR_MR"


def test_an_override_the_target_does_not_know_is_refused_at_render_too() -> None:
    with pytest.raises(TranslationError, match="'DI' is not a type emr knows"):
        target_type("emr", TaskKind.DATA_INTEGRATION, overrides={TaskKind.DATA_INTEGRATION: "DI"})


def test_job_file_overrides_are_checked_against_the_targets_types() -> None:
    assert check_overrides("emr", {"pig": "SHELL", "hive_sql": "SPARK_SQL"}) == []
    errors = check_overrides("emr", {"odps": "SHELL", "python": "PYTHON"})
    assert len(errors) == 2
    assert errors[0].startswith("'odps' is not a task kind (kinds: shell, python")
    assert errors[1].startswith("python = 'PYTHON' is not a type emr knows (known: HIVE, HIVE_SQL")
    # target kind unknown at load time: any target's type passes, a type of none does not
    assert check_overrides(None, {"python": "PYTHON"}) == []
    assert "is not a type any target knows" in check_overrides(None, {"python": "PYTHON3"})[0]
