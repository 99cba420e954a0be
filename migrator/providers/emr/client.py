"""The EMR Data Development 2016-04-08 Provider: jobs, then the flow, resumable part by part.

EMR assigns ids and (per the official SDK) has no idempotency token for jobs, so every remote
create is a checkpointed *part* of its item: the intent is committed before the call and the id
after it. A resumed submit skips parts that exist and, for a part whose answer was lost, looks
the object up by name in its folder before creating it again. The flow also carries a
``ClientToken`` derived from the item key, which the seed documents (and the sandbox honours).

A name is not an identity: EMR takes two flows or jobs of one name in one folder, and two
workflows can render to one name (the same name from two source systems; job names are
``workflow.task``). An object found by name is taken only if it is no other item's: not made
for another item by this process, nor recorded as another item's part in the store, nor made
(by hand, say) well before this item's create was begun. Two such objects left fail the item
rather than take either.

Folders are categories (a FLOW tree for flows, a JOB tree for jobs), found or created once per
path and shared by every workflow of the run.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import anyio

from migrator.config import ProviderConfig, TargetConfig
from migrator.engine.flow import Flow
from migrator.errors import ConfigError, ProviderError
from migrator.inventory import Entry
from migrator.model import Workflow
from migrator.providers.acs import AcsClient, is_not_found
from migrator.providers.base import Found, Parts, Polled, Rendered, Submitted, UpstreamTarget
from migrator.providers.emr.read import EmrDocumentError, folder_path, workflow_from_emr, write_export
from migrator.providers.emr.render import (
    FLOW_CLEARED_QUERY,
    STOP_SCHEDULE,
    UNDER_SCHEDULE,
    FlowPlan,
    JobPlan,
    listed,
    render,
)
from migrator.store import Item, Part, State

VERSION = "2016-04-08"
#: Actions that only read (separate quota class where the account has one).
READS = ("List", "Describe")
Finder = Callable[[], Awaitable[str | None]]
#: Brings an object an earlier rendering made in line: what it still holds, None if it is gone.
Modify = Callable[[str], Awaitable[list[str] | None]]
PAGE = 100  # below the API's limit of 250
#: The skew between a request's signed timestamp and the gateway's clock it accepts (15 minutes,
#: else InvalidTimeStamp.Expired): a client whose calls are answered is that close to EMR's clock.
CLOCK_SKEW = 15 * 60


class Emr:
    """The Provider for one EMR Data Development project."""

    kind = "emr"

    def __init__(self, cfg: ProviderConfig, session: aiohttp.ClientSession) -> None:
        if not cfg.project_id or not cfg.cluster_id:
            raise ConfigError(
                f"provider {cfg.name!r}: project_id (FP-...) and cluster_id (C-...) are required"
            )
        self.project_id, self.region, self.cluster_id = cfg.project_id, cfg.region, cfg.cluster_id
        self.client = AcsClient(cfg, session, VERSION)
        self.flow = Flow.of(cfg)
        self._categories: dict[tuple[str, str], str] = {}
        #: Objects made or found for an item whose part is not committed yet, by id: the item each
        #: is for (claimed the moment the create answers, so a twin's lookup cannot take it).
        self._made_for: dict[str, str] = {}
        self._category_locks: defaultdict[tuple[str, str], anyio.Lock] = defaultdict(anyio.Lock)

    async def _call(
        self,
        action: str,
        query: Mapping[str, str],
        form: Mapping[str, str] | None = None,
        *,
        find: Finder | None = None,
    ) -> dict[str, Any]:
        """One action; a create passes ``find`` (EMR has no idempotency token for it), so that an
        answer lost to a timeout or a 5xx is looked up by name instead of being sent again."""
        scoped = {"RegionId": self.region, "ProjectId": self.project_id, **query}

        async def adopt() -> dict[str, Any] | None:
            assert find is not None
            found = await find()
            return None if found is None else {"Id": found}

        return await self.flow.call(
            action,
            lambda: self.client.call(action, query=scoped, form=form),
            write=not action.startswith(READS),
            find=adopt if find is not None else None,
        )

    # --- writing ------------------------------------------------------------------------------

    def render(
        self, workflow: Workflow, target: TargetConfig, upstream: Mapping[str, UpstreamTarget]
    ) -> Rendered:
        plan = render(
            workflow,
            project_id=self.project_id,
            region=self.region,
            cluster_id=self.cluster_id,
            upstream=upstream,
            folder=target.folder,
            kinds=target.kinds,
            mappings=target.mappings,
        )
        return Rendered(None, plan, plan.warnings)

    async def submit(self, rendered: Rendered, parts: Parts, *, update: bool = False) -> Submitted:
        """Jobs, then the flow over them, then its schedule: each a part, resumed from the store.

        An update (a sync found the workflow changed) modifies the jobs and the flow an earlier
        run made, in place and by id; tasks that are new get jobs, and jobs of tasks the workflow
        no longer has are deleted once the flow stops pointing at them. What the target still
        holds that this rendering dropped and EMR cannot remove fails the item once every part
        was brought as far in line as it can be (see :meth:`_replaced`).
        """
        plan: FlowPlan = rendered.payload
        held: list[str] = []
        job_folder = await self.category(plan.folder, "JOB")
        flow_folder = await self.category(plan.folder, "FLOW")
        job_ids: dict[str, str] = {}
        for job in plan.jobs:
            find_job = self._finder("ListFlowJob", "JobList", "Job", job.name, job_folder, parts, job.part)
            create = partial(self._create_job, job, job_folder, find_job)
            digest = _digest(job.query, job.form)
            modify_job = partial(self._modify_job, job, parts)
            made = _made(parts, job.part) if update else None
            if made is not None and await self._updated(parts, job.part, made, digest, modify_job, held):
                job_ids[job.task] = made
                continue
            job_ids[job.task] = await self._ensure(
                parts, job.part, find_job, create, digest, modify_job, held, again=made is not None
            )
        graph = plan.graph(job_ids)
        digest = _digest(plan.query, plan.form, graph, plan.scheduled, flow_folder)
        flow_id = _made(parts, "flow") if update else None
        modify = partial(self._modify_flow, plan, flow_folder, graph)
        if flow_id is None or not await self._updated(parts, "flow", flow_id, digest, modify, held):
            find_flow = self._finder("ListFlow", "Flow", "Flow", plan.name, flow_folder, parts, "flow")
            flow_id = await self._ensure(
                parts,
                "flow",
                find_flow,
                lambda: self._create_flow(plan, flow_folder, graph, find_flow),
                digest,
                modify,
                held,
                again=flow_id is not None,
            )
        # The flow now points at this rendering's jobs only, however it was brought in line.
        await self._drop_stale_jobs(plan, parts)
        # Also after an update: a submit resumed with its flow made may have stopped before the
        # schedule (a flow modified with a schedule has it already: its part is then one call).
        if plan.scheduled:
            await self._ensure(
                parts, "schedule", None, lambda: self._schedule(plan, flow_folder, graph, flow_id)
            )
        if held:
            raise ProviderError(
                "NotCleared",
                f"EMR still has what the workflow no longer has, which its Modify cannot remove "
                f"(a field it is sent no value for stays as it was): {'; '.join(held)}. Remove "
                "them in the EMR console, then `migrator retry JOB --failed` and run again",
            )
        return Submitted(flow_id)

    @staticmethod
    async def _updated(
        parts: Parts, part: str, target_id: str, digest: str, modify: Modify, held: list[str]
    ) -> bool:
        """Bring a part an earlier run made in line (no call if its content is the same); False if
        it is gone at the target. What it still holds is added to ``held``."""
        known = parts.get(part)
        if known is not None and known.content_hash == digest:
            return True
        kept = await modify(target_id)
        if kept is None:
            return False
        held.extend(kept)
        # Not known to hold this rendering while it holds more: the next submit modifies it again.
        await parts.done(part, target_id, None if kept else digest)
        return True

    async def _modified(
        self, action: str, target_id: str, query: Mapping[str, str], form: Mapping[str, str]
    ) -> bool:
        """Modify an object an earlier run made; False if it is gone (deleted at the target by hand)."""
        try:
            await self._call(action, {**query, "Id": target_id}, form)
        except ProviderError as exc:
            if is_not_found(exc):
                return False
            raise
        return True

    async def _modify_job(self, job: JobPlan, parts: Parts, job_id: str) -> list[str] | None:
        """A job an earlier rendering made, made this one's: what it still holds that a Modify
        cannot remove, None if it is gone or of another type.

        ``Type`` is create-only: a task whose kind changed gets a new job, and the old one is
        kept as a part of its own (``job:TASK@FJ-...``) until the flow stops pointing at it and
        it is deleted like a removed task's job. The job is read first to know its type; what it
        holds that a Modify cannot remove (resources not sent) reads the same after the Modify.
        """
        try:
            found = await self._call("DescribeFlowJob", {"Id": job_id})
        except ProviderError as exc:
            if is_not_found(exc):
                return None
            raise
        if found.get("Type") != job.query["Type"]:
            await parts.done(f"{job.part}@{job_id}", job_id)
            return None
        query, form = job.replacing()
        if not await self._modified("ModifyFlowJob", job_id, query, form):
            return None
        kept = job.kept(found)
        return [f"job {job_id} ({job.name}): {', '.join(kept)}"] if kept else []

    async def _modify_flow(
        self, plan: FlowPlan, folder: str | None, graph: str, flow_id: str, *, replace: bool = True
    ) -> list[str] | None:
        """The flow as ``plan`` has it, schedule switch included (a flow's ClientToken names its
        creation only). ``replace``: it may hold an earlier rendering (see :meth:`_replaced`);
        not so when it only goes under schedule right after this rendering created it."""
        query, form = self._flow_params(plan, folder, graph)
        query = {k: v for k, v in query.items() if k != "ClientToken"}
        if replace:
            query = {**FLOW_CLEARED_QUERY, **query}
        if plan.scheduled:
            query |= {"Status": UNDER_SCHEDULE, "Periodic": "true"}
        else:
            query["Status"] = STOP_SCHEDULE
        if not await self._modified("ModifyFlowForWeb", flow_id, query, form):
            return None
        return await self._replaced(plan, flow_id) if replace else []

    async def _replaced(self, plan: FlowPlan, flow_id: str) -> list[str]:
        """What a modified flow still holds that this rendering dropped and EMR's Modify cannot
        remove (parent flows, a schedule, its end), read back: the documents do not say whether
        an empty value clears them. Its part is then recorded without a digest, so the next
        submit modifies and checks it again, and takes it once it was mended by hand."""
        if not plan.leaves_out_unclearable():
            return []  # this rendering sets each of them, which replaces what was held
        kept = plan.kept(await self._call("DescribeFlow", {"Id": flow_id}))
        return [f"flow {flow_id}: {', '.join(kept)}"] if kept else []

    async def _drop_stale_jobs(self, plan: FlowPlan, parts: Parts) -> None:
        """Delete the jobs of tasks the workflow no longer has (the flow no longer points at them)."""
        wanted = {job.part for job in plan.jobs}
        for name, part in parts.known().items():
            if name.startswith("job:") and name not in wanted and part.state is State.DONE and part.target_id:
                await self._delete("DeleteFlowJob", part.target_id)
                await parts.gone(name)

    async def delete(self, item: Item, parts: Mapping[str, Part]) -> None:
        """The flow first (EMR refuses to delete a job a flow uses), then its jobs."""
        flow = parts.get("flow")
        flow_id = flow.target_id if flow is not None and flow.target_id else item.target_id
        if flow_id:
            await self._delete("DeleteFlow", flow_id)
        for name, part in parts.items():
            if name.startswith("job:") and part.target_id:
                await self._delete("DeleteFlowJob", part.target_id)

    async def _delete(self, action: str, target_id: str) -> None:
        try:
            await self._call(action, {"Id": target_id})
        except ProviderError as exc:
            if not is_not_found(exc):
                raise

    async def _ensure(
        self,
        parts: Parts,
        part: str,
        find: Finder | None,
        create: Callable[[], Awaitable[str]],
        digest: str | None = None,
        modify: Modify | None = None,
        held: list[str] | None = None,
        *,
        again: bool = False,
    ) -> str:
        """Create ``part`` (with content ``digest``) unless it exists; a part left mid-call is looked
        up before it is created again. ``again``: the store's part is gone at the target.

        A part found by name was made from an earlier rendering (a create killed before its
        answer was recorded, a delete that --prune began): ``modify`` brings it in line with this
        one before it is taken, since the source may have changed meanwhile; what it still holds
        is added to ``held``.
        """
        known = parts.get(part)
        if known is not None and known.state is State.DONE and known.target_id and not again:
            return known.target_id
        if known is not None and known.state is State.SUBMITTING and find is not None:
            found = await find()
            kept = ([] if modify is None else await modify(found)) if found else None
            if found and kept is not None:
                if held is not None:
                    held.extend(kept)
                return await self._taken(parts, part, found, None if kept else digest)
            self._made_for.pop(found or "", None)
        await parts.begin(part)
        return await self._taken(parts, part, await create(), digest)

    async def _taken(self, parts: Parts, part: str, target_id: str, digest: str | None) -> str:
        """Record ``target_id`` as ``part``: claimed for this item until the store says so, and no
        longer (a claim per object made would grow with the run)."""
        self._made_for[target_id] = parts.key
        try:
            await parts.done(part, target_id, digest)
        finally:
            del self._made_for[target_id]
        return target_id

    def _finder(
        self, action: str, outer: str, inner: str, name: str, folder: str | None, parts: Parts, part: str
    ) -> Finder:
        """The object of ``name`` in ``folder`` that may be ``part`` of this item (see the module's
        docstring): not one made before its create was begun (by hand, say), give or take the
        clock skew EMR's gateway allows, nor one that is another item's."""

        async def find() -> str | None:
            data = await self._call(action, {"Name": name, "PageSize": str(PAGE)})
            known = parts.get(part)
            since = known.since if known is not None and known.state is State.SUBMITTING else None
            named = [
                str(found["Id"])
                for found in listed(data, outer, inner)
                if found.get("Name") == name
                and (folder is None or found.get("CategoryId") == folder)
                and not _made_before(found, since)
            ]
            # This item's other parts: a job kept until its flow lets go of it (see _modify_job).
            own = {p.target_id for n, p in parts.known().items() if n != part}
            free: list[str] = []
            for object_id in named:
                if (
                    object_id not in own
                    and self._made_for.get(object_id, parts.key) == parts.key
                    and await parts.owner(object_id) is None
                ):
                    free.append(object_id)
            if len(free) > 1:
                raise ProviderError(
                    "DuplicateName",
                    f"{len(free)} objects named {name!r} in folder {folder or '(root)'} ({', '.join(free)}) "
                    "and none is another workflow's: cannot tell which one this workflow's create "
                    "made; delete the extra ones at the target, then run again",
                )
            if free:
                self._made_for[free[0]] = parts.key
            return free[0] if free else None

        return find

    async def _create_job(self, job: JobPlan, folder: str | None, find: Finder) -> str:
        query = {**job.query, **({"ParentCategory": folder} if folder else {})}
        return str((await self._call("CreateFlowJob", query, job.form, find=find))["Id"])

    def _flow_params(
        self, plan: FlowPlan, folder: str | None, graph: str
    ) -> tuple[dict[str, str], dict[str, str]]:
        query = {**plan.query, **({"ParentCategory": folder} if folder else {})}
        # The SDK sends Graph in the query; a large DAG would overrun URL limits, and the gateway
        # takes any parameter from the form body alike.
        return query, {**plan.form, "Graph": graph}

    async def _create_flow(self, plan: FlowPlan, folder: str | None, graph: str, find: Finder) -> str:
        query, form = self._flow_params(plan, folder, graph)
        return str((await self._call("CreateFlowForWeb", query, form, find=find))["Id"])

    async def _schedule(self, plan: FlowPlan, folder: str | None, graph: str, flow_id: str) -> str:
        """EMR creates flows stopped; a scheduled workflow is put under schedule as its own part."""
        if await self._modify_flow(plan, folder, graph, flow_id, replace=False) is None:
            raise ProviderError("FLOW_API_FAILED", f"flow [{flow_id}] not exist (deleted meanwhile?)")
        return flow_id

    async def category(self, path: str, kind: str) -> str | None:
        """The FC- id of folder ``path`` in the ``kind`` tree, created level by level if missing."""
        parent: str | None = None
        walked: list[str] = []
        for name in (p for p in path.split("/") if p):
            walked.append(name)
            key = (kind, "/".join(walked))
            async with self._category_locks[key]:
                if key not in self._categories:
                    self._categories[key] = await self._find_or_create_category(name, parent, kind)
            parent = self._categories[key]
        return parent

    async def _find_or_create_category(self, name: str, parent: str | None, kind: str) -> str:
        find = partial(self._find_category, name, parent, kind)
        found = await find()
        if found is not None:
            return found
        query = {"Name": name, "Type": kind, **({"ParentId": parent} if parent else {})}
        return str((await self._call("CreateFlowCategory", query, find=find))["Id"])

    async def _find_category(self, name: str, parent: str | None, kind: str) -> str | None:
        scope = {"ParentId": parent} if parent else {"Root": "true"}
        page = 1
        while True:
            data = await self._call(
                "ListFlowCategory", {**scope, "PageNumber": str(page), "PageSize": str(PAGE)}
            )
            categories = listed(data, "Categories", "Category")
            for cat in categories:
                if (
                    cat.get("Name") == name
                    and cat.get("Type", kind) == kind
                    and cat.get("ParentId") in (parent, None, "")
                ):
                    return str(cat["Id"])
            if len(categories) < PAGE:
                return None
            page += 1

    async def poll(self, remote_job_id: str) -> Polled:
        raise ProviderError("Unsupported", "EMR creates flows synchronously; there is no job to poll")

    async def reconcile(self, item: Item) -> Found | None:
        """Always resubmit: the submit resumes part by part. A part left mid-call is looked up by
        name (``ListFlowJob``, ``ListFlow``) before it is created, and a flow create sent again
        carries the same ``ClientToken``, so it names the flow an unanswered first call made."""
        return None

    # --- reading ------------------------------------------------------------------------------

    async def _pages(self, action: str, outer: str, inner: str) -> AsyncIterator[dict[str, Any]]:
        page = 1
        while True:
            data = await self._call(action, {"PageNumber": str(page), "PageSize": str(PAGE)})
            items = listed(data, outer, inner)
            for item in items:
                yield item
            if len(items) < PAGE or page * PAGE >= int(data.get("Total") or 0):
                return
            page += 1

    async def documents(
        self,
    ) -> AsyncIterator[tuple[dict[str, Any], dict[str, Any], dict[str, dict[str, Any]], str]]:
        """Every flow of the project as (ListFlow item, DescribeFlow, its jobs by id, folder path)."""
        jobs: dict[str, dict[str, Any]] = {}
        categories: dict[str, dict[str, Any]] = {}
        async for entry in self._pages("ListFlow", "Flow", "Flow"):
            flow = await self._call("DescribeFlow", {"Id": str(entry["Id"])})
            for job_id in _job_ids(flow):
                if job_id not in jobs:
                    jobs[job_id] = await self._call("DescribeFlowJob", {"Id": job_id})
            category = flow.get("CategoryId")
            while category and category not in categories:
                categories[category] = await self._call("DescribeFlowCategory", {"Id": category})
                category = categories[category].get("ParentId")
            mine = {j: jobs[j] for j in _job_ids(flow)}
            yield entry, flow, mine, folder_path(flow.get("CategoryId"), categories)

    async def project(self) -> dict[str, Any]:
        """The project's ListFlowProject item (a MigrationX dump starts from it)."""
        data = await self._call("ListFlowProject", {"PageSize": str(PAGE)})
        for found in listed(data, "Projects", "Project"):
            if found.get("Id") == self.project_id:
                return found
        raise ProviderError("FLOW_API_FAILED", f"project {self.project_id} not exist")

    async def snapshot(self, directory: Path) -> int:
        """Write the live project in MigrationX's dump layout, flow by flow; return the flow count."""
        project = await self.project()
        count = 0
        async for entry, flow, jobs, folder in self.documents():
            write_export(directory, project, [(entry, {**flow, "Path": folder})], jobs.values())
            count += 1
        return count

    async def listing(self) -> AsyncGenerator[Entry, None]:
        """The live project as canonical workflows (errors name the flow and the field)."""
        async for _listed_flow, flow, jobs, folder in self.documents():
            origin = f"emr:{self.project_id}/{flow.get('Id')}"
            try:
                wf = workflow_from_emr(flow, jobs, folder=folder)
            except EmrDocumentError as exc:
                yield Entry(
                    origin, f"emr:{flow.get('Id')}", str(flow.get("Name") or "?"), error=f"{origin}: {exc}"
                )
                continue
            yield Entry(origin, wf.key, wf.name, workflow=wf)


def _digest(*content: Any) -> str:
    """What a part was sent with, to tell on an update whether it changed."""
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _made_before(found: Mapping[str, Any], since: float | None) -> bool:
    """Whether a listed object was made before ``since`` (epoch seconds) by more than the clock
    skew the gateway allows a signed request (so this client's clock is within it of EMR's)."""
    created = str(found.get("GmtCreate"))
    return since is not None and created.isdigit() and int(created) / 1000 < since - CLOCK_SKEW


def _made(parts: Parts, part: str) -> str | None:
    """The id of a part an earlier run finished."""
    known = parts.get(part)
    return known.target_id if known is not None and known.state is State.DONE else None


def _job_ids(flow: Mapping[str, Any]) -> list[str]:
    try:
        graph = json.loads(flow.get("Graph") or "{}")
    except ValueError:
        return []
    ids = [n.get("attribute", {}).get("jobId") for n in graph.get("nodes", []) if isinstance(n, dict)]
    return sorted({i for i in ids if isinstance(i, str)})


def connect(cfg: ProviderConfig, session: aiohttp.ClientSession) -> Emr:
    return Emr(cfg, session)
