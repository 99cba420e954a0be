"""Job kinds: which type each target gives a canonical :class:`~migrator.model.TaskKind`, as tables.

Every renderer asks :func:`target_type` and every reader inverts :data:`TYPES` through
:func:`source_kinds`, so a translation between two systems is always source type -> canonical kind
-> target type, and one place holds the facts. The neutral table :data:`TYPES` is refined per
(source system, target) by :data:`REFINED` where the source says more than the kind does (an EMR
shell job runs on the EMR cluster, so at DataWorks it is an ``EMR_SHELL`` node, not a resource-group
shell), and a job file's ``[target.kinds]`` overrides both.

A kind a target has no faithful type for becomes that target's shell :data:`PLACEHOLDERS`, holding
the original content unchanged; the renderer says so in a ``job-kind`` warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from migrator.errors import TranslationError
from migrator.model import TaskKind

__all__ = [
    "KNOWN",
    "PLACEHOLDERS",
    "REFINED",
    "SHELL_TYPES",
    "TYPES",
    "Choice",
    "check_overrides",
    "source_kinds",
    "target_type",
]

#: canonical kind -> each target's type name. EMR: the job ``Type`` list of the CreateFlowJob seed.
#: DataWorks: ``script.runtime.command`` (CodeProgramType names; note ``EMR_SCOOP``). EnOS: the task
#: ``type`` strings every sample sends. A kind absent from a target's table has no faithful type.
TYPES: dict[str, dict[TaskKind, str]] = {
    "emr": {
        TaskKind.SHELL: "SHELL",
        TaskKind.HIVE_SQL: "HIVE_SQL",
        TaskKind.HIVE: "HIVE",
        TaskKind.SPARK: "SPARK",
        TaskKind.SPARK_SQL: "SPARK_SQL",
        TaskKind.SPARK_STREAMING: "SPARK_STREAMING",
        TaskKind.MR: "MR",
        TaskKind.PIG: "PIG",
        TaskKind.SQOOP: "SQOOP",
    },
    "dataworks": {
        TaskKind.SHELL: "DIDE_SHELL",
        TaskKind.PYTHON: "PYTHON",
        TaskKind.HIVE_SQL: "EMR_HIVE",
        TaskKind.HIVE: "EMR_HIVE_CLI",
        TaskKind.SPARK: "EMR_SPARK",
        TaskKind.SPARK_SQL: "EMR_SPARK_SQL",
        TaskKind.SPARK_STREAMING: "EMR_SPARK_STREAMING",
        TaskKind.MR: "EMR_MR",
        TaskKind.SQOOP: "EMR_SCOOP",
        TaskKind.ODPS_SQL: "ODPS_SQL",
        TaskKind.DATA_INTEGRATION: "DI",
        TaskKind.VIRTUAL: "VIRTUAL",
    },
    "enos": {
        TaskKind.SHELL: "COMMAND",
        TaskKind.DATA_INTEGRATION: "DATA_INTEGRATION",
        TaskKind.PYTHON: "PYTHON",
    },
}

#: (source system, target) -> kinds that map more faithfully than :data:`TYPES` says.
REFINED: dict[tuple[str, str], dict[TaskKind, str]] = {
    ("emr", "dataworks"): {TaskKind.SHELL: "EMR_SHELL"},
}

#: What a kind without a faithful type becomes: a shell holding the original content.
PLACEHOLDERS: dict[str, str] = {"emr": "SHELL", "dataworks": "DIDE_SHELL", "enos": "COMMAND"}

#: Types whose content is a shell script (a task's environment can become ``export`` lines).
SHELL_TYPES: dict[str, frozenset[str]] = {
    "emr": frozenset({"SHELL"}),
    "dataworks": frozenset({"DIDE_SHELL", "EMR_SHELL", "SHELL"}),
    "enos": frozenset({"COMMAND"}),
}

#: Every type a job file's ``[target.kinds]`` may name, per target: EMR's seed list; the DataWorks
#: commands the reference lists (alibaba-apis.md 7.5, an excerpt of CodeProgramType); EnOS's
#: sample strings (its documentation's numeric table disagrees with every sample, so only these).
KNOWN: dict[str, frozenset[str]] = {
    "emr": frozenset(TYPES["emr"].values()),
    "dataworks": frozenset(
        {
            *TYPES["dataworks"].values(),
            *SHELL_TYPES["dataworks"],
            "ODPS_SPARK",
            "ODPS_MR",
            "PYODPS",
            "PYODPS3",
            "EMR_SPARK_SHELL",
            "EMR_PRESTO",
            "EMR_IMPALA",
            "EMR_STREAMING_SQL",
            "EMR_TRINO",
            "EMR_KYUUBI",
            "HOLOGRES_SQL",
        }
    ),
    "enos": frozenset(TYPES["enos"].values()),
}


@dataclass(frozen=True, slots=True)
class Choice:
    """The target type for one task, and whether it is a placeholder (no faithful mapping)."""

    type: str
    placeholder: bool = False


def target_type(
    target: str, kind: TaskKind, *, source: str = "", overrides: Mapping[TaskKind, str] | None = None
) -> Choice:
    """``kind``'s type at ``target``: the job file's override, else the source system's refinement,
    else the neutral table, else the target's placeholder."""
    if overrides and kind in overrides:
        chosen = overrides[kind]
        if chosen not in KNOWN[target]:  # load_job checks this already; a hand-built config may not
            raise TranslationError(f"kinds: {kind.value} = {chosen!r} is not a type {target} knows")
        return Choice(chosen)
    found = REFINED.get((source, target), {}).get(kind) or TYPES[target].get(kind)
    return Choice(found) if found else Choice(PLACEHOLDERS[target], placeholder=True)


def source_kinds(system: str) -> dict[str, TaskKind]:
    """A system's type -> canonical kind (for its reader): :data:`TYPES` inverted, so a placeholder
    reads back as the shell kind it is."""
    return {name: kind for kind, name in TYPES[system].items()}


def check_overrides(target: str | None, overrides: Mapping[str, str]) -> list[str]:
    """Why each entry of a job file's ``[target.kinds]`` is wrong (empty: all fine).

    Keys are canonical kinds; values must be types of ``target`` (any target's when the target's
    kind is not known at load time).
    """
    known = KNOWN[target] if target in KNOWN else frozenset().union(*KNOWN.values())
    where = f"a type {target} knows" if target in KNOWN else "a type any target knows"
    errors: list[str] = []
    for key, value in overrides.items():
        if key not in {k.value for k in TaskKind}:
            errors.append(f"{key!r} is not a task kind (kinds: {', '.join(k.value for k in TaskKind)})")
        elif value not in known:
            errors.append(f"{key} = {value!r} is not {where} (known: {', '.join(sorted(known))})")
    return errors
