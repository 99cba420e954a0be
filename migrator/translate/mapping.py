"""Job-file mappings of source values to target values: owners, run users, clusters, paths, folders.

An account, cluster, bucket or folder at the source usually means nothing at the target, so a job
file's ``[target.mappings]`` says what each becomes. Every renderer applies them in one place,
:func:`apply`, to the canonical workflow before it renders anything, so each target sees the
mapped values in the fields it carries (EMR ``RunConf.userName``, DataWorks ``owner`` and
``emrJobConfig.submitter``, EnOS ``owners`` and task ``submitter``...).

A value with no entry passes through unchanged when its table is empty; once a table has entries
(or ``strict = true``), a value the table does not cover makes the workflow ``invalid`` with a
:class:`~migrator.errors.TranslationError` naming the workflow and the field, so nothing lands
with an account or path that only half migrated.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from migrator.errors import TranslationError
from migrator.model import Resource, Task, Workflow

__all__ = ["Mappings", "apply"]

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class Mappings(BaseModel):
    """``[target.mappings]``: source value -> target value, per field.

    ``owners``: workflow owners (DataWorks wants account ids, EnOS user names). ``users``: the user a
    task runs as (EMR ``userName``, DataWorks ``submitter``, EnOS task ``submitter``). ``clusters``:
    a task's cluster (EMR ``C-...``; at DataWorks the resource group it runs on). ``paths``: path
    prefixes (``oss://old/`` -> ``oss://new/``) in resource paths, and in contents, parameters and
    environment values. ``folders``: folder prefixes, by whole segments (``""`` matches every folder).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    owners: dict[NonEmpty, NonEmpty] = Field(default_factory=dict)
    users: dict[NonEmpty, NonEmpty] = Field(default_factory=dict)
    clusters: dict[NonEmpty, NonEmpty] = Field(default_factory=dict)
    paths: dict[NonEmpty, NonEmpty] = Field(default_factory=dict)
    folders: dict[str, str] = Field(default_factory=dict)
    upstreams: dict[NonEmpty, NonEmpty] = Field(
        default_factory=dict,
        description="upstream workflows outside the job that exist at the target: source key or name -> "
        "its target id (DataWorks workflow id, EMR flow id) or, for EnOS, its flow name",
    )
    strict: bool = Field(default=False, description="every value needs an entry, even with an empty table")

    @field_validator("folders")
    @classmethod
    def _segments(cls, value: dict[str, str]) -> dict[str, str]:
        return {k.strip().strip("/"): v.strip().strip("/") for k, v in value.items()}

    def covers(self, table: Mapping[str, str]) -> bool:
        """Whether a value missing from ``table`` is an error (a non-empty table, or strict)."""
        return self.strict or bool(table)


_NONE = Mappings()


class _Mapper:
    def __init__(self, wf: Workflow, mappings: Mappings) -> None:
        self.wf, self.m = wf, mappings
        self.prefixes = sorted(mappings.paths, key=len, reverse=True)  # the longest matches first
        # One pass over the text with the longest prefix first, so a replacement is never rewritten.
        self.in_text = re.compile("|".join(re.escape(p) for p in self.prefixes)) if self.prefixes else None

    def fail(self, field: str, reason: str) -> TranslationError:
        return TranslationError(f"workflow {self.wf.name!r}: {field}: {reason}")

    def value(self, field: str, table: Mapping[str, str], value: str, name: str) -> str:
        if value in table:
            return table[value]
        if self.m.covers(table):
            raise self.fail(field, f"{value!r} has no entry in [target.mappings] {name}")
        return value

    def folder(self, folder: str) -> str:
        folders = self.m.folders
        segments = [s for s in folder.strip("/").split("/") if s]
        for cut in range(len(segments), -1, -1):
            prefix = "/".join(segments[:cut])
            if prefix in folders:
                return "/".join(p for p in (folders[prefix], *segments[cut:]) if p)
        if segments and self.m.covers(folders):
            raise self.fail("folder", f"{folder!r} is under no entry of [target.mappings] folders")
        return folder

    def path(self, field: str, path: str) -> str:
        for prefix in self.prefixes:
            if path.startswith(prefix):
                return self.m.paths[prefix] + path[len(prefix) :]
        if self.m.covers(self.m.paths):
            raise self.fail(field, f"{path!r} starts with no prefix of [target.mappings] paths")
        return path

    def text(self, text: str) -> str:
        if self.in_text is None:
            return text
        return self.in_text.sub(lambda match: self.m.paths[match.group(0)], text)

    def texts(self, values: Mapping[str, str]) -> dict[str, str]:
        return {k: self.text(v) for k, v in values.items()}

    def task(self, task: Task) -> Task:
        where = f"task {task.name!r}"
        run = task.run
        run_update: dict[str, Any] = {}
        if run.user:
            run_update["user"] = self.value(f"{where} run.user", self.m.users, run.user, "users")
        if run.cluster:
            run_update["cluster"] = self.value(
                f"{where} run.cluster", self.m.clusters, run.cluster, "clusters"
            )
        resources = tuple(
            Resource(path=self.path(f"{where} resources[{i}].path", r.path), alias=r.alias)
            for i, r in enumerate(task.resources)
        )
        return task.model_copy(
            update={
                "content": self.text(task.content),
                "parameters": self.texts(task.parameters),
                "environment": self.texts(task.environment),
                "resources": resources,
                "run": run.model_copy(update=run_update),
            }
        )

    def workflow(self) -> Workflow:
        wf = self.wf
        owners = tuple(dict.fromkeys(self.value("owners", self.m.owners, o, "owners") for o in wf.owners))
        return wf.model_copy(
            update={
                "owners": owners,
                "folder": self.folder(wf.folder),
                "parameters": self.texts(wf.parameters),
                "tasks": tuple(self.task(t) for t in wf.tasks),
            }
        )


def apply(wf: Workflow, mappings: Mappings | None) -> Workflow:
    """``wf`` with every mapped value replaced; :class:`TranslationError` for an unmapped one.

    The item key (source system and id, or path) is kept: it names the workflow's origin, which
    a folder mapping does not change.
    """
    if mappings is None or mappings == _NONE:
        return wf
    mapped = _Mapper(wf, mappings).workflow()
    if mapped.key != wf.key:  # a source without ids keys by path; keep the key the engine knows
        mapped = mapped.model_copy(
            update={"source": wf.source.model_copy(update={"id": wf.source.id or wf.path})}
        )
    return mapped
