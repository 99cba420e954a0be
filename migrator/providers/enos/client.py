"""The EnOS Batch Processing v2.1 Provider: APIM-signed calls, name-checked imports, directories.

Every call carries an APIM access token and a signature over its query and exact body bytes.
The token is fetched once, refreshed a minute before it expires and whenever the gateway says it
has (1203), under a lock so concurrent calls share one token; each token request uses a fresh
timestamp, since the service rejects a repeated ``encryption`` (1001).

``import`` is not idempotent (a repeat makes a second flow, or fails on the duplicate name), so
it is never retried blindly: the flow is looked up by name before it is created, and again after
any answer that leaves it unknown whether it was (62109, a timeout, a reset); what is found is
adopted.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import anyio
from yarl import URL

from migrator import jsontext
from migrator.auth import apim
from migrator.config import ProviderConfig, TargetConfig
from migrator.engine.flow import Flow
from migrator.errors import NAME_TAKEN, Action, ConfigError, ProviderError
from migrator.inventory import Entry
from migrator.log import register_secret
from migrator.model import Workflow
from migrator.providers.base import Found, Parts, Polled, Rendered, Submitted, UpstreamTarget
from migrator.providers.enos.read import EnosDocumentError, workflow_from_enos
from migrator.providers.enos.render import FlowPlan, render
from migrator.providers.transport import logged, send
from migrator.providers.triage import Rule, Triage
from migrator.store import Item, Part, State

SERVICE = "/batch-processing-service/v2.1"
#: Calls that only read (a separate quota class where the account has one).
READS = frozenset(
    {"flows.get", "flows.export", "flows.getMyFlow", "flows.search", "directories.listWorkFlowDirs"}
)
TOKEN_SERVICE = "/apim-token-service/v2.0/token"
REFRESH_MARGIN = 60.0
#: EnOS answers and what each means for the run (reference: enos-api.md 3). Gateway codes come as
#: the HTTP status or in the body; token-service codes in ``status``; batch codes in ``code``.
#: 1203 is handled where it happens (the token is renewed and the call sent again once).
ERRORS = Triage(
    (
        Rule(Action.REFRESH, "1203"),
        Rule(Action.RESIGN, "1001"),
        Rule(Action.STOP, "1002"),
        Rule(Action.STOP, "1003"),
        Rule(Action.STOP, "1204"),
        Rule(Action.RETRY, "1005"),
        # The token service's own refusals are about the account or this machine, never the item:
        # 1004 is mostly a clock more than 5 minutes off, 1202 a missing credential.
        Rule(Action.STOP, "1004"),
        Rule(Action.STOP, "1202"),
        Rule(Action.SUSPECT, "497"),
        Rule(Action.STOP, "498"),
        Rule(Action.STOP, "401"),
        Rule(Action.STOP, "403"),
        Rule(Action.THROTTLE, "429"),
        Rule(Action.RETRY, "500"),
        Rule(Action.RETRY, "503"),
        Rule(Action.RETRY, "504"),
        Rule(Action.STOP, "62101"),
        Rule(Action.FAIL, "62102"),
        Rule(Action.STOP, "62103"),
        Rule(Action.FAIL, "62104"),
        Rule(Action.STOP, "62105"),
        Rule(Action.RETRY, "62109"),
    )
)


class ApimClient:
    """Signs and sends one call; turns the ``{code, msg, data}`` envelope into data or an error."""

    def __init__(self, cfg: ProviderConfig, session: aiohttp.ClientSession) -> None:
        if not cfg.endpoint or cfg.access_key_id is None or cfg.access_key_secret is None:
            raise ConfigError(
                f"provider {cfg.name!r}: endpoint and credentials (app key and secret) are required"
            )
        if not cfg.user_id or not cfg.org_id:
            raise ConfigError(f"provider {cfg.name!r}: user_id and org_id are required")
        endpoint = cfg.endpoint if "://" in cfg.endpoint else f"https://{cfg.endpoint}"
        self._base = endpoint.rstrip("/")
        self._cfg = cfg
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout)
        self._token: str | None = None
        self._renew_at = 0.0
        self._token_lock = anyio.Lock()
        self._last_ms = 0
        self.refreshes = 0

    def _timestamp(self) -> str:
        """Epoch ms, strictly increasing: the token service refuses a repeated encryption."""
        self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
        return str(self._last_ms)

    async def _post_json(
        self, path: str, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> dict[str, Any]:
        raw = jsontext.data(body)
        return await self._send("POST", URL(f"{self._base}{path}"), raw, headers)

    async def _send(self, method: str, url: URL, raw: bytes, headers: Mapping[str, str]) -> dict[str, Any]:
        answer = await send(
            self._session, method, url, body=raw, headers=headers, limits=self._timeout, what=url.path
        )
        status, text = answer.status, answer.body
        retry_after = answer.headers.get("Retry-After")
        try:
            data: dict[str, Any] = json.loads(text) if text else {}
        except ValueError:
            logged(answer, _call_name(url), None)
            raise ProviderError(
                str(status),
                f"{url.path}: HTTP {status} with a body that is not JSON",
                status=status,
                action=ERRORS.action(str(status), status),
            ) from None
        # EnOS's v2 envelope may carry a ``requestId``; the batch service's samples omit it.
        request_id = logged(answer, _call_name(url), data.get("requestId"))
        if status >= 400:
            code = str(data.get("code") or data.get("status") or status)
            raise ProviderError(
                code,
                str(data.get("msg") or ""),
                status=status,
                request_id=request_id,
                action=ERRORS.action(code, status),
                retry_after=float(retry_after) if retry_after and retry_after.isdigit() else None,
            )
        return data

    async def token(self, *, stale: str | None = None) -> str:
        """A valid access token, renewed before it expires or when ``stale`` was found expired.

        Concurrent callers that saw the same expired token renew it once: whoever comes second
        finds a newer token and uses it.
        """
        async with self._token_lock:
            fresh = self._token is not None and self._token != stale
            if fresh and time.time() < self._renew_at:
                assert self._token is not None
                return self._token
            if self._token is not None:
                try:
                    return await self._fetch("refresh")
                except ProviderError:
                    self._token = None  # the refresh was refused: start over with a new token
            return await self._fetch("get")

    async def _fetch(self, kind: str) -> str:
        ak, sk = self._cfg.access_key_id, self._cfg.access_key_secret
        assert ak is not None
        assert sk is not None
        stamp = self._timestamp()
        body: dict[str, Any] = {
            "appKey": ak.get_secret_value(),
            "encryption": apim.encryption(ak.get_secret_value(), stamp, sk.get_secret_value()),
            "timestamp": stamp,
        }
        if kind == "refresh":
            body["accessToken"] = self._token
            self.refreshes += 1
        answer = await self._post_json(
            f"{TOKEN_SERVICE}/{kind}", body, {"content-type": "application/json;charset=UTF-8"}
        )
        if answer.get("status", answer.get("code")) != 0:
            code = str(answer.get("status", answer.get("code")))
            raise ProviderError(
                code, f"token service: {answer.get('msg') or 'refused'}", action=ERRORS.action(code, None)
            )
        data = answer.get("data") or {}
        self._token = str(data["accessToken"])
        register_secret(self._token)  # a bearer credential: masked in every log line from now on
        lifetime = float(data.get("expire") or 0)
        # Renew a minute early (a tenth of the lifetime for short-lived tokens), so that calls in
        # flight do not meet an expired token; one that still does gets 1203 and is sent again.
        self._renew_at = time.time() + lifetime - min(REFRESH_MARGIN, lifetime / 10)
        return self._token

    async def call(
        self,
        resource: str,
        action: str,
        *,
        method: str = "GET",
        query: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> Any:
        """One signed call; an expired token is renewed and the call signed and sent again."""
        stale: str | None = None
        for renewed in (False, True):
            token = await self.token(stale=stale)
            params = {
                "action": action,
                "userId": str(self._cfg.user_id),
                "orgId": str(self._cfg.org_id),
                **(query or {}),
            }
            raw = b"" if body is None else jsontext.data(body)
            secret = self._cfg.access_key_secret
            assert secret is not None
            headers = apim.sign(token, params.items(), raw, self._timestamp(), secret.get_secret_value())
            headers["content-type"] = "application/json;charset=UTF-8"
            url = URL(f"{self._base}{SERVICE}/{resource}?{urlencode(params, quote_via=quote)}", encoded=True)
            answer = await self._send(method, url, raw, headers)
            code = str(answer.get("code", answer.get("status", 0)))
            if code == "0":
                return answer.get("data")
            verdict = ERRORS.action(code, None)
            if verdict is Action.REFRESH and not renewed:
                stale = token
                continue
            raise ProviderError(
                code,
                str(answer.get("msg") or ""),
                request_id=answer.get("requestId"),
                action=verdict,
            )
        raise AssertionError("unreachable")


class Enos:
    """The Provider for one EnOS organization, acting as one user."""

    kind = "enos"

    def __init__(self, cfg: ProviderConfig, session: aiohttp.ClientSession) -> None:
        self.client = ApimClient(cfg, session)
        self.flow = Flow.of(cfg)
        self._dirs: dict[str, dict[str, Any]] = {}  # path -> its node in the directory tree
        self._dir_locks: defaultdict[str, anyio.Lock] = defaultdict(anyio.Lock)
        self._tree: list[dict[str, Any]] | None = None
        self._placed: dict[str, str] | None = None  # flowId -> folder, as first asked (see _folder_of)
        self._naming: dict[str, anyio.Lock] = {}  # flow name -> held while one import of it is decided

    async def _call(
        self, resource: str, action: str, *, find: Callable[[], Awaitable[Any]] | None = None, **kw: Any
    ) -> Any:
        """One call; ``import`` passes ``find`` (it is not idempotent), see the module docstring."""
        what = f"{resource}.{action}"
        return await self.flow.call(
            what, lambda: self.client.call(resource, action, **kw), write=what not in READS, find=find
        )

    # --- writing ------------------------------------------------------------------------------

    def render(
        self, workflow: Workflow, target: TargetConfig, upstream: Mapping[str, UpstreamTarget]
    ) -> Rendered:
        plan = render(
            workflow,
            upstream=upstream,
            folder=target.folder,
            submitter=target.submitter or "",
            kinds=target.kinds,
            mappings=target.mappings,
        )
        return Rendered(None, plan, plan.warnings)

    async def submit(self, rendered: Rendered, parts: Parts, *, update: bool = False) -> Submitted:
        """Import the flow (looked up by name first), or with ``update`` bring the existing one in
        line; then switch it on or off as the source has it."""
        plan: FlowPlan = rendered.payload
        known = parts.get("flow")
        made = known.target_id if known is not None and known.state is State.DONE else None
        try:
            if made is not None and update:
                flow_id = await self._update(made, plan, parts)
            elif made is not None:
                flow_id = made
            else:
                flow_id = await self._import(plan, parts)
        except ProviderError as exc:
            holder = await self.find(plan.name) if _name_refused(exc) else None
            if holder is None:
                raise
            # Another flow took the name between the look-up and the write.
            raise await self._taken(plan.name, holder, parts, f" (EnOS {exc.code}: {exc.message})") from None
        switch = "disable" if plan.paused else "enable"
        await self._call("flows", switch, method="POST", body={"flowId": int(flow_id)})
        return Submitted(flow_id)

    async def _import(self, plan: FlowPlan, parts: Parts) -> str:
        """Import the flow, or adopt the one an earlier attempt's unanswered import made.

        Names are unique per owner and an unanswered import is settled by looking its name up,
        so the name is looked up first: a flow of this name that no attempt of this item began
        belongs to another workflow (or to someone else) and the item fails saying so, where
        adopting it lost one of the two workflows without a word. One import per name is decided
        at a time, so two workflows of one name in flight cannot take each other's flow either.
        An adopted flow may hold an earlier rendering: it is brought in line with this one.
        """
        async with self._one_import_of(plan.name):
            found = await self.find(plan.name)
            if not found:
                return await self._import_new(plan, parts)
            known = parts.get("flow")
            if known is None or known.state is not State.SUBMITTING:
                raise await self._taken(plan.name, found, parts)
            await parts.done("flow", found)
        return await self._update(found, plan, parts)  # outside the lock: it may import again

    async def _import_new(self, plan: FlowPlan, parts: Parts) -> str:
        dir_id = await self.directory(plan.folder)
        await parts.begin("flow")

        async def adopt() -> dict[str, Any] | None:  # did the unanswered import create it?
            found = await self.find(plan.name)
            return None if found is None else {"flowId": found}

        try:
            data = await self._call(
                "flows", "import", method="POST", body={**plan.body, "dirId": dir_id}, find=adopt
            )
        except ProviderError as exc:
            if exc.action.unexecuted:
                # Refused outright: no flow was made, so no intent is left to adopt a flow of
                # this name by (another's, which took the name meanwhile) when it is sent again.
                await parts.gone("flow")
            raise
        flow_id = str(data["flowId"])
        await parts.done("flow", flow_id)
        return flow_id

    async def _taken(self, name: str, holder: str, parts: Parts, refusal: str = "") -> ProviderError:
        """The refusal of a name another flow holds, saying whose it is: the engine sends the
        item once more when the run's other submits have settled, in case that flow is one of
        this job's and gives the name up in the same run (a rename, or a removed workflow)."""
        owner = await parts.owner(holder)
        whose = f"this job's item {owner}" if owner else "a flow this job did not make; it is not taken over"
        return ProviderError(
            NAME_TAKEN,
            f"the name {name!r} is taken at the target by flow {holder} ({whose}){refusal}",
            action=Action.TAKEN,
            holder=holder,
        )

    @asynccontextmanager
    async def _one_import_of(self, name: str) -> AsyncIterator[None]:
        """Hold ``name``'s lock; dropped when no one waits, so names do not pile up over a run."""
        lock = self._naming.setdefault(name, anyio.Lock())
        async with lock:
            try:
                yield
            finally:
                if not lock.statistics().tasks_waiting:
                    del self._naming[name]

    async def _update(self, flow_id: str, plan: FlowPlan, parts: Parts) -> str:
        """``save`` in place where it can express the change, else replace the flow.

        ``save`` keeps the flow id and its task ids, and changes the flow's own settings and its
        graph; it only names tasks by the ids the target has, so it cannot add a task, change a
        task's definition or set task links, and it has no folder and refuses another scheduling
        type (a schedule added or dropped). For those the flow is deleted and imported again (a
        new flow id). EnOS refuses to delete a flow other flows depend on (62104): the update
        then fails with that reason, and the flow stays as it was.
        """
        try:
            current = await self._call("flows", "export", query={"flowId": flow_id})
        except ProviderError as exc:
            if not _gone(exc):
                raise
            return await self._import(plan, parts)  # deleted at the target: import it again
        if current.get("name") != plan.name:
            # Checked before anything changes: a rename that also needs the flow imported again
            # deleted it first, then failed on the name and left the workflow with no flow at all.
            holder = await self.find(plan.name)
            if holder is not None and holder != flow_id:
                raise await self._taken(plan.name, holder, parts)
        struct = plan.body["flowJson"]
        if current.get("tasks") != struct["tasks"] or (current.get("taskLinks") or []) != (
            struct.get("taskLinks") or []
        ):
            changed = "its tasks changed"
        elif current.get("type") != struct["type"]:
            changed = "its schedule was added or dropped"
        elif await self._folder_of(flow_id) != _path(plan.folder):
            changed = "it moved to another folder"
        else:
            await self._save(flow_id, plan)
            return flow_id
        try:
            await self._call("flows", "delete", query={"flowId": flow_id})
        except ProviderError as exc:
            if exc.code == "62104":
                raise ProviderError(
                    exc.code,
                    f"{exc.message}: {changed}, and EnOS changes that only by importing the flow "
                    "again, which needs it deleted; update its dependants' links by hand, or "
                    "delete them first",
                    request_id=exc.request_id,
                ) from None
            if not _gone(exc):
                raise
        return await self._import(plan, parts)

    async def _save(self, flow_id: str, plan: FlowPlan) -> None:
        """The flow's settings and graph through ``save``, naming its tasks by their current ids."""
        info = await self._call("flows", "get", query={"flowId": flow_id})
        graph = json.loads(info.get("graph") or "{}")
        ids = {t["taskName"]: str(t["taskId"]) for t in graph.get("tasks", [])}
        struct = plan.body["flowJson"]
        links = {link["linkId"]: link for link in struct.get("flowLinks", [])}
        old_virtual = {n["nodeId"]: n for n in graph.get("flows", []) if n.get("isVirtual")}
        nodes: dict[str, str] = {}
        flows: list[dict[str, Any]] = list(old_virtual.values())
        for link_id, link in links.items():
            upstream = await self.find(link["sourceFlowName"])
            if upstream is None:
                raise ProviderError("62102", f"upstream flow {link['sourceFlowName']!r} does not exist")
            nodes[link_id] = f"f_{upstream}"
            flows.append(
                {
                    "flowId": upstream,
                    "flowName": link["sourceFlowName"],
                    "nodeId": f"f_{upstream}",
                    "isVirtual": False,
                    "x": 0.0,
                    "y": 0.0,
                }
            )
        gap = f"{struct['cycle']}0"
        relations = (
            [
                {
                    "source": f"t_{ids[r['sourceTaskName']]}",
                    "target": f"t_{ids[r['targetTaskName']]}",
                    "cycleGap": gap,
                    "rerun": r["rerun"],
                }
                for r in struct["relations"]
            ]
            + [
                {
                    "source": nodes[r["linkId"]],
                    "target": f"t_{ids[r['targetTaskName']]}",
                    "cycleGap": gap,
                    "rerun": r["rerun"],
                }
                for r in struct["linkRelations"]
                if r["linkId"] in nodes
            ]
            + [r for r in graph.get("relations", []) if r.get("source") in old_virtual]
        )
        body = {
            "id": flow_id,
            "type": struct["type"],
            "name": plan.name,
            "freq": struct["cron"],
            "cycle": struct["cycle"],
            "alertMode": struct["alertMode"],
            "doAs": struct["submitter"],
            "owners": struct["owners"],
            "visitors": struct["visitors"],
            "startTime": struct.get("startTime", ""),
            "active": 0 if plan.paused else 1,
            "parameters": struct["parameters"],
            "desc": struct["desc"],
            "queue": graph.get("queue", ""),
            "tasks": [
                {
                    "taskName": t["name"],
                    "taskId": ids[t["name"]],
                    "nodeId": f"t_{ids[t['name']]}",
                    "x": 0.0,
                    "y": 0.0,
                }
                for t in struct["tasks"]
            ],
            "flows": flows,
            "relations": relations,
        }
        await self._call("flows", "save", method="POST", body=body)

    async def delete(self, item: Item, parts: Mapping[str, Part]) -> None:
        known = parts.get("flow")
        flow_id = known.target_id if known is not None and known.target_id else item.target_id
        if not flow_id:
            return
        try:
            await self._call("flows", "delete", query={"flowId": flow_id})
        except ProviderError as exc:
            if not _gone(exc):
                raise

    async def find(self, name: str) -> str | None:
        """The id of this user's flow called ``name`` (names are unique per owner), if any."""
        listed = await self._call("flows", "getMyFlow", query={"expression": name}) or []
        for flow in listed:
            if flow.get("flowName") == name:
                return str(flow["flowId"])
        return None

    async def _folder_of(self, flow_id: str) -> str | None:
        """The folder a flow an earlier run made is in. The tree is read once per run (it lists
        every flow) and again only for a flow it did not have, one this run imported."""
        if self._placed is None or flow_id not in self._placed:
            self._placed = await self._folders()
        return self._placed.get(flow_id)

    async def _dir_tree(self) -> list[dict[str, Any]]:
        if self._tree is None:
            self._tree = list(await self._call("directories", "listWorkFlowDirs") or [])
        return self._tree

    async def directory(self, path: str) -> str:
        """The id of workflow directory ``path`` under the root, created level by level if missing."""
        tree = await self._dir_tree()
        if not tree:
            raise ProviderError("62102", "no workflow root directory is visible to this user")
        node: dict[str, Any] = tree[0]
        walked = ""
        for name in (p for p in path.split("/") if p):
            walked = f"{walked}/{name}"
            async with self._dir_locks[walked]:
                if walked not in self._dirs:
                    children = node.setdefault("children", [])
                    child = next(
                        (c for c in children if c.get("isDirectory") and c.get("title") == name), None
                    )
                    if child is None:
                        parent = str(node["key"])
                        body = {"parentId": parent, "dirName": name}
                        created = await self._call(
                            "directories",
                            "create",
                            method="POST",
                            body=body,
                            find=partial(self._dir, parent, name),
                        )
                        child = {"title": name, "key": created["dirId"], "isDirectory": True, "children": []}
                        children.append(child)
                    self._dirs[walked] = child
            node = self._dirs[walked]
        return str(node["key"])

    async def _dir(self, parent: str, name: str) -> dict[str, Any] | None:
        """Directory ``name`` under ``parent`` as the target lists it now (after a lost answer)."""
        stack = list(await self._call("directories", "listWorkFlowDirs") or [])
        while stack:
            node = stack.pop()
            children = node.get("children") or []
            if str(node.get("key")) == parent:
                for child in children:
                    if child.get("isDirectory") and child.get("title") == name:
                        return {"dirId": child["key"]}
                return None
            stack.extend(children)
        return None

    async def poll(self, remote_job_id: str) -> Polled:
        raise ProviderError("Unsupported", "EnOS imports are synchronous; there is no job to poll")

    async def reconcile(self, item: Item) -> Found | None:
        """Always resubmit: the submit looks the flow up by name before it imports anything."""
        return None

    # --- reading ------------------------------------------------------------------------------

    async def _folders(self) -> dict[str, str]:
        """flowId -> directory path, from the directory tree (files are listed under their folder)."""
        found: dict[str, str] = {}

        def walk(nodes: list[dict[str, Any]], path: str) -> None:
            for node in nodes:
                if node.get("isDirectory"):
                    title = str(node.get("title"))
                    walk(node.get("children") or [], f"{path}/{title}" if path else title)
                else:
                    found[str(node.get("key"))] = path

        tree = await self._call("directories", "listWorkFlowDirs") or []
        for root in tree:
            walk(root.get("children") or [], "")
        return found

    async def documents(self) -> AsyncIterator[tuple[str, str, dict[str, Any]]]:
        """This user's flows as (flowId, folder, Flow Struct with the ``active`` flag of ``get``)."""
        folders = await self._folders()
        for listed in await self._call("flows", "getMyFlow") or []:
            flow_id = str(listed["flowId"])
            struct = await self._call("flows", "export", query={"flowId": flow_id})
            info = await self._call("flows", "get", query={"flowId": flow_id})
            yield flow_id, folders.get(flow_id, ""), {**struct, "active": info.get("active")}

    async def snapshot(self, directory: Path) -> int:
        """One ``{flowId, folder, flow}`` document per flow (``enos-export`` reads them); 0600 files."""
        await anyio.Path(directory).mkdir(mode=0o700, parents=True, exist_ok=True)
        count = 0
        async for flow_id, folder, struct in self.documents():
            doc = json.dumps(
                {"flowId": flow_id, "folder": folder, "flow": struct}, ensure_ascii=False, indent=1
            )
            fd = os.open(directory / f"{flow_id}.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with open(fd, "w", encoding="utf-8") as fh:  # noqa: ASYNC230 - one small local file per flow
                fh.write(doc)
            count += 1
        return count

    async def listing(self) -> AsyncGenerator[Entry, None]:
        """This user's flows as canonical workflows."""
        async for flow_id, folder, struct in self.documents():
            origin = f"enos:{flow_id}"
            try:
                wf = workflow_from_enos(struct, folder=folder, flow_id=flow_id)
            except EnosDocumentError as exc:
                yield Entry(origin, origin, str(struct.get("name") or "?"), error=f"{origin}: {exc}")
                continue
            yield Entry(origin, wf.key, wf.name, workflow=wf)


def _call_name(url: URL) -> str:
    """``flows.import`` for a batch call, ``token.get`` for the token service, for the log."""
    *_, resource, last = url.path.split("/")
    action = url.query.get("action")
    return f"{last}.{action}" if action else f"{resource}.{last}"


def _path(folder: str) -> str:
    """A folder as :meth:`Enos._folders` spells it: names joined by "/", none empty."""
    return "/".join(p for p in folder.split("/") if p)


def _name_refused(exc: ProviderError) -> bool:
    """62102 about ``flowName`` (EnOS: "Invalid parameter: flowName"): the name is refused,
    because another flow holds it if a look-up finds one."""
    return exc.code == "62102" and "flowName" in exc.message and exc.action is Action.FAIL


def _gone(exc: ProviderError) -> bool:
    """62102 is every invalid parameter; with a flow id alone, "Flow does not exist"."""
    return exc.code == "62102" and "not exist" in exc.message


def connect(cfg: ProviderConfig, session: aiohttp.ClientSession) -> Enos:
    return Enos(cfg, session)
