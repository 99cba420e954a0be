"""The canonical workflow model every provider reads into and renders from.

One shape holds everything the provider seeds can express, so that a translation is always
provider -> canonical -> provider and never a pairwise special case. These models are the
boundary for inventory files (validated on the way in) and are frozen afterwards.

Times are in seconds throughout (providers convert: EMR seconds, DataWorks milliseconds), and
cron expressions are kept in the Quartz form (seconds first, ``?`` for the unused day field),
which both Alibaba products use natively.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    StringConstraints,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)

from migrator import jsontext
from migrator.translate.cron import CronError, Dialect
from migrator.translate.cron import parse as parse_cron
from migrator.translate.cron import translate as translate_cron
from migrator.translate.dag import find_cycle

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=256)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class TaskKind(StrEnum):
    """Provider-neutral job kinds; the provider renderers map them to their own type names."""

    SHELL = "shell"
    PYTHON = "python"
    HIVE_SQL = "hive_sql"
    HIVE = "hive"
    SPARK = "spark"
    SPARK_SQL = "spark_sql"
    SPARK_STREAMING = "spark_streaming"
    MR = "mr"
    PIG = "pig"
    SQOOP = "sqoop"
    ODPS_SQL = "odps_sql"
    DATA_INTEGRATION = "data_integration"
    VIRTUAL = "virtual"


class FailureAction(StrEnum):
    """What the scheduler does with the workflow instance when this task finally fails."""

    STOP = "stop"
    CONTINUE = "continue"


class Resource(_Frozen):
    """A file the task needs at run time (EMR ``ResourceList``, EnOS ``filePackage``)."""

    path: Name
    alias: str | None = None


class RunSettings(_Frozen):
    """Where and how a task runs: queue, memory (MB), cores, priority and the submitting user."""

    queue: str | None = None
    memory_mb: int | None = Field(default=None, ge=0)
    cores: float | None = Field(default=None, ge=0)
    priority: int | None = None
    user: str | None = None
    mode: str | None = Field(default=None, description="EMR submit mode: YARN (worker) or LOCAL (gateway)")
    cluster: str | None = None


class Variable(_Frozen):
    """A custom variable; ``secret`` ones (EMR ``password: true``) never reach logs, store or reports."""

    name: Name
    value: SecretStr
    secret: bool = False

    def plain(self) -> str:
        return self.value.get_secret_value()

    @field_serializer("value")
    def _dump_value(self, value: SecretStr, info: SerializationInfo) -> str:
        """Plain unless secret; secrets only with ``context={"secrets": "plain"}`` (see ``to_record``)."""
        if not self.secret or (info.context or {}).get("secrets") == "plain":
            return value.get_secret_value()
        return "**********"


class Task(_Frozen):
    """One node of a workflow DAG."""

    name: Name
    kind: TaskKind = TaskKind.SHELL
    content: str = ""
    description: str = ""
    resources: tuple[Resource, ...] = ()
    max_retries: int = Field(default=0, ge=0)
    retry_interval: float = Field(default=0, ge=0, description="seconds between retries")
    timeout: float | None = Field(default=None, ge=0, description="seconds; None means no limit")
    failure_action: FailureAction = FailureAction.STOP
    run: RunSettings = RunSettings()
    parameters: dict[str, str] = Field(default_factory=dict)
    environment: dict[str, str] = Field(default_factory=dict)
    variables: tuple[Variable, ...] = ()


class Edge(_Frozen):
    """``downstream`` runs after ``upstream`` succeeds; both name tasks of the same workflow."""

    upstream: Name
    downstream: Name


class Schedule(_Frozen):
    """When the workflow fires. ``cron`` is Quartz (6 or 7 fields, seconds first); a 5-field Unix
    cron in an inventory is read as Unix and held as the Quartz cron firing at the same times."""

    cron: Name
    timezone: str = "Asia/Shanghai"
    start: datetime | None = None
    end: datetime | None = None
    paused: bool = False

    @model_validator(mode="before")
    @classmethod
    def _unix(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("cron"), str) and len(value["cron"].split()) == 5:
            try:
                return {**value, "cron": translate_cron(value["cron"], Dialect.UNIX, Dialect.QUARTZ)}
            except CronError as exc:
                raise ValueError(f"cron (read as Unix, 5 fields): {exc.reason}") from None
        return value

    @field_validator("cron")
    @classmethod
    def _quartz(cls, value: str) -> str:
        """A cron no platform would take (minute 61, month 13, a sixth week) is refused as the
        record is read, naming the field, not submitted to fire at times nobody wrote."""
        try:
            parse_cron(value, Dialect.QUARTZ)
        except CronError as exc:
            raise ValueError(exc.reason) from None
        return value

    @model_validator(mode="after")
    def _window(self) -> Schedule:
        if self.start is None or self.end is None:
            return self
        if (self.start.tzinfo is None) != (self.end.tzinfo is None):
            raise ValueError("schedule.start and schedule.end must both carry a UTC offset, or neither")
        if self.start >= self.end:
            raise ValueError(f"schedule.start ({self.start}) must be before schedule.end ({self.end})")
        return self


class Alerts(_Frozen):
    """Who hears about the workflow's outcome, and for which events."""

    on_failure: bool = False
    on_success: bool = False
    on_task_failure: bool = False
    channels: tuple[str, ...] = Field(default=(), description="e.g. email, sms, dingtalk")
    recipients: tuple[str, ...] = Field(default=(), description="user or user-group ids")
    dingtalk_groups: tuple[str, ...] = ()


class Dependency(_Frozen):
    """A dependency on another workflow, as precise as the source says it.

    On the whole upstream workflow (``task`` None) or on one of its tasks; gating this workflow's
    entry tasks (``gates`` empty) or the named ones. A plain string in an inventory is the common
    case, a dependency on the whole workflow gating the entry tasks, and is written back as one.
    """

    workflow: Name = Field(description="key or name of the upstream workflow")
    task: Name | None = None
    gates: tuple[Name, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return {"workflow": value} if isinstance(value, str) else value

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> Any:
        return self.workflow if self.task is None and not self.gates else handler(self)


class Source(_Frozen):
    """Where a workflow came from; ``system:id`` is the item key everything else derives from."""

    system: Name = "inventory"
    id: Name | None = None


class Workflow(_Frozen):
    """A scheduler workflow: a DAG of tasks with a schedule, owned by someone, in a folder."""

    name: Name
    source: Source = Source()
    description: str = ""
    folder: str = Field(default="", description="slash-separated folder path at the source")
    owners: tuple[str, ...] = ()
    schedule: Schedule | None = None
    parameters: dict[str, str] = Field(default_factory=dict)
    alerts: Alerts = Alerts()
    upstream: tuple[Dependency, ...] = Field(
        default=(), description="workflows (keys or names, or Dependency objects) this one waits for"
    )
    tasks: tuple[Task, ...] = Field(min_length=1)
    edges: tuple[Edge, ...] = ()
    _hash: str | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _dag(self) -> Workflow:
        seen: set[str] = set()
        for task in self.tasks:
            if task.name in seen:
                raise ValueError(f"workflow {self.name!r}: duplicate task name {task.name!r}")
            seen.add(task.name)
        for edge in self.edges:
            for end in (edge.upstream, edge.downstream):
                if end not in seen:
                    raise ValueError(
                        f"workflow {self.name!r}: edge {edge.upstream!r} -> {edge.downstream!r} "
                        f"names unknown task {end!r}"
                    )
        for dep in self.upstream:
            for gated in dep.gates:
                if gated not in seen:
                    raise ValueError(
                        f"workflow {self.name!r}: dependency on {dep.workflow!r} gates unknown task {gated!r}"
                    )
        cycle = find_cycle([t.name for t in self.tasks], [(e.upstream, e.downstream) for e in self.edges])
        if cycle:
            raise ValueError(f"workflow {self.name!r}: tasks form a cycle: {' -> '.join(cycle)}")
        return self

    @property
    def path(self) -> str:
        """Folder plus name: the workflow's human identity, stable across systems."""
        return f"{self.folder.strip('/')}/{self.name}" if self.folder.strip("/") else self.name

    @property
    def key(self) -> str:
        """The stable item key: source system plus source id (or path when the source has no ids)."""
        return f"{self.source.system}:{self.source.id or self.path}"

    def upstream_of(self, task: str) -> list[str]:
        return [e.upstream for e in self.edges if e.downstream == task]

    def entry_tasks(self) -> list[str]:
        """Tasks with no upstream inside the workflow: where a dependency on another one attaches."""
        inside = {e.downstream for e in self.edges}
        return [t.name for t in self.tasks if t.name not in inside]

    def upstream_workflows(self) -> list[str]:
        """Each upstream workflow reference once, in order."""
        return list(dict.fromkeys(d.workflow for d in self.upstream))

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy may differ: it must not inherit the memoised content hash."""
        copy = super().model_copy(update=update, deep=deep)
        copy._hash = None
        return copy

    def to_record(self) -> dict[str, Any]:
        """The inventory record of this workflow, secrets in plain: for inventory files only."""
        return self.model_dump(mode="json", context={"secrets": "plain"})

    def parameter_names(self) -> frozenset[str]:
        """Every name a ``${name}`` in the workflow's texts may refer to: its parameters, and its
        tasks' parameters, variables and environment."""
        names = set(self.parameters)
        for task in self.tasks:
            names.update(task.parameters, task.environment, (v.name for v in task.variables))
        return frozenset(names)

    def content_hash(self) -> str:
        """SHA-256 over the canonical record, secrets included, so a changed secret is a change.

        Computed once per (frozen) workflow: the pipeline asks for it at several stages.
        """
        if self._hash is None:
            blob = jsontext.canonical(self.to_record(), self.floats())
            self._hash = hashlib.sha256(blob).hexdigest()
        return self._hash

    def floats(self) -> Iterator[float | None]:
        """Every float field of the workflow (a test holds this to the model's fields)."""
        for task in self.tasks:
            yield task.retry_interval
            yield task.timeout
            yield task.run.cores


def inventory_schema() -> dict[str, Any]:
    """JSON Schema of one inventory record (``migrator schema``)."""
    schema = Workflow.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "migrator inventory record (one workflow)"
    return schema
