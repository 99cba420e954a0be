"""The DataWorks 2024-05-18 Provider: FlowSpec imports, polled to completion.

Reads are ``GET`` with query parameters and writes are ``POST`` with a form body, as the official
SDK sends them, through the shared :class:`~migrator.providers.acs.AcsClient`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from migrator import jsontext
from migrator.config import ProviderConfig, TargetConfig
from migrator.engine.flow import Flow
from migrator.errors import NAME_TAKEN, ConfigError, ProviderError
from migrator.model import Workflow
from migrator.providers.acs import AcsClient, is_not_found
from migrator.providers.base import Found, JobStatus, Parts, Polled, Rendered, Submitted, UpstreamTarget
from migrator.providers.dataworks.render import render
from migrator.store import Item, Part

VERSION = "2024-05-18"
#: How the service fails an import whose path (folder and name) another workflow holds (matched
#: anywhere in the job's error, in any case: a prefix or a capital must not turn it into a
#: failure no sync sends again).
TAKEN_PATH = "target folder already exists"
_TAKEN_HINT = (
    "another workflow holds this path (its folder and name) at the target. A sync sends this one "
    "again each night, so a path that a rename or a prune gives up is taken by the next night "
    "(a migration: `migrator retry JOB --failed`); but a removed workflow that others still "
    "depend on is never pruned, so if it is this one's old self (back under a new source id), "
    "rename one of them by hand"
)
READS = frozenset({"GetJobStatus", "GetWorkflowDefinition", "ListWorkflowDefinitions"})


class DataWorks:
    """The Provider for one DataWorks workspace."""

    kind = "dataworks"

    def __init__(self, cfg: ProviderConfig, session: aiohttp.ClientSession) -> None:
        if not cfg.project_id:
            raise ConfigError(f"provider {cfg.name!r}: project_id (the DataWorks workspace id) is required")
        self.project_id = cfg.project_id
        self.client = AcsClient(cfg, session, VERSION)
        self.flow = Flow.of(cfg)

    async def _call(self, action: str, params: dict[str, str]) -> dict[str, Any]:
        """Reads are GETs with a query, writes POSTs with a form. ImportWorkflowDefinition upserts
        by the definition id in the spec, so every call here may be sent again."""
        if action in READS:
            return await self.flow.call(action, lambda: self.client.call(action, method="GET", query=params))
        return await self.flow.call(action, lambda: self.client.call(action, form=params), write=True)

    def render(
        self, workflow: Workflow, target: TargetConfig, upstream: Mapping[str, UpstreamTarget]
    ) -> Rendered:
        wid, spec, warnings = render(
            workflow, target.folder, upstream, kinds=target.kinds, mappings=target.mappings
        )
        return Rendered(wid, jsontext.text(spec), warnings)

    async def submit(self, rendered: Rendered, parts: Parts, *, update: bool = False) -> Submitted:
        """An import is an upsert by the definition id the spec carries: an update is the same call."""
        data = await self._call(
            "ImportWorkflowDefinition", {"ProjectId": self.project_id, "Spec": rendered.payload}
        )
        job = data.get("AsyncJob") or {}
        if not job.get("Id"):
            raise ProviderError(
                "BadResponse",
                "ImportWorkflowDefinition returned no AsyncJob.Id",
                request_id=data.get("RequestId"),
            )
        return Submitted(str(job.get("Response") or rendered.target_id), str(job["Id"]))

    async def poll(self, remote_job_id: str) -> Polled:
        data = await self._call("GetJobStatus", {"JobId": remote_job_id})
        job = data.get("JobStatus") or {}
        status = str(job.get("Status", ""))
        # Completed is the *string* "True"/"False" here (a bool in AsyncJob); accept both.
        completed = str(job.get("Completed", "")).lower() == "true"
        if status == "Success":
            return Polled(JobStatus.SUCCESS)
        if status in {"Fail", "Cancel"} or (completed and status != "Success"):
            error = str(job.get("Error") or "no error given")
            if TAKEN_PATH in error.lower():
                return Polled(JobStatus.FAILED, f"{status}: {error}; {_TAKEN_HINT}", NAME_TAKEN)
            return Polled(JobStatus.FAILED, f"{status}: {error}")
        return Polled(JobStatus.RUNNING)

    async def reconcile(self, item: Item) -> Found | None:
        """Definition ids are derived from the key, so a lookup by id tells whether the import landed.

        Absent means either never sent or still running; re-importing is safe in both cases
        because an import with a known id is an update.
        """
        if not item.target_id:
            return None
        try:
            await self._call("GetWorkflowDefinition", {"ProjectId": self.project_id, "Id": item.target_id})
        except ProviderError as exc:
            if is_not_found(exc):
                return None
            raise
        return Found(item.target_id)

    async def delete(self, item: Item, parts: Mapping[str, Part]) -> None:
        if not item.target_id:
            return
        try:
            await self._call("DeleteWorkflowDefinition", {"ProjectId": self.project_id, "Id": item.target_id})
        except ProviderError as exc:
            if not is_not_found(exc):
                raise


def connect(cfg: ProviderConfig, session: aiohttp.ClientSession) -> DataWorks:
    return DataWorks(cfg, session)
