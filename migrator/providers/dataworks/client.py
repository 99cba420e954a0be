"""The DataWorks 2024-05-18 client: signed RPC calls, and the Provider the engine drives.

Reads are ``GET`` with query parameters and writes are ``POST`` with a form body, as the official
SDK sends them; both are signed with ACS3-HMAC-SHA256 by default (V1 on request). Errors are
classified by :data:`RETRYABLE` (a table, not scattered conditions); everything else fails the
item with the provider's code and request id.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from yarl import URL

from migrator.auth import acs
from migrator.config import ProviderConfig, TargetConfig
from migrator.engine.flow import Flow
from migrator.errors import ConfigError, ProviderError
from migrator.model import Workflow
from migrator.providers.base import Found, JobStatus, Polled, Rendered, Submitted
from migrator.providers.dataworks.render import render

VERSION = "2024-05-18"
READS = frozenset({"GetJobStatus", "GetWorkflowDefinition", "ListWorkflowDefinitions"})
FORM = "application/x-www-form-urlencoded"

#: Codes worth another attempt. Every attempt is signed afresh (new nonce and timestamp), which
#: is exactly the cure for the last two.
RETRYABLE = frozenset(
    {
        "ServiceUnavailable",
        "InternalError",
        "UnknownError",
        "Transport",
        "Timeout",
        "SignatureNonceUsed",
        "InvalidTimeStamp.Expired",
    }
)
NOT_FOUND_MARKERS = ("NotFound", "NotExist", "NotExists")


def is_retryable(code: str, status: int | None) -> bool:
    return code in RETRYABLE or code.startswith("Throttling") or (status is not None and status >= 500)


class DataWorksClient:
    """Signs and sends one action; turns the Alibaba error envelope into :class:`ProviderError`."""

    def __init__(self, cfg: ProviderConfig, session: aiohttp.ClientSession) -> None:
        if not cfg.endpoint or cfg.access_key_id is None or cfg.access_key_secret is None:
            raise ConfigError(f"provider {cfg.name!r}: endpoint and credentials are required")
        endpoint = cfg.endpoint if "://" in cfg.endpoint else f"https://{cfg.endpoint}"
        self._base = endpoint.rstrip("/")
        self._host = urlsplit(endpoint).netloc
        self._cfg = cfg
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout)

    async def call(self, action: str, params: dict[str, str]) -> dict[str, Any]:
        ak = self._cfg.access_key_id
        secret = self._cfg.access_key_secret
        assert ak is not None
        assert secret is not None
        method = "GET" if action in READS else "POST"
        query = params if method == "GET" else {}
        body = urlencode(params, quote_via=quote).encode() if method == "POST" else b""
        headers: dict[str, str]
        if self._cfg.signature == "v3":
            headers = acs.v3_sign(
                ak.get_secret_value(),
                secret.get_secret_value(),
                method=method,
                host=self._host,
                action=action,
                version=VERSION,
                query=query,
                body=body,
                content_type=FORM if body else None,
            )
        else:
            common = acs.v1_common_params(action, VERSION, ak.get_secret_value())
            query = {**common, **query}
            signed = [*query.items(), *(params.items() if method == "POST" else ())]
            query["Signature"] = acs.v1_signature(secret.get_secret_value(), method, signed)
            headers = {"accept": "application/json", "x-acs-action": action, "x-acs-version": VERSION}
            if body:
                headers["content-type"] = FORM
        headers.pop("host", None)
        url = URL(
            f"{self._base}/?{urlencode(query, quote_via=quote)}" if query else f"{self._base}/", encoded=True
        )
        try:
            async with self._session.request(
                method, url, data=body or None, headers=headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                status = resp.status
                retry_after = _retry_after(resp.headers)
        except TimeoutError:
            raise ProviderError(
                "Timeout", f"{action}: no answer within {self._cfg.timeout}s", retryable=True
            ) from None
        except aiohttp.ClientError as exc:
            raise ProviderError(
                "Transport", f"{action}: {type(exc).__name__}: {exc}", retryable=True
            ) from None
        try:
            data: dict[str, Any] = json.loads(raw) if raw else {}
        except ValueError:
            raise ProviderError(
                "BadResponse",
                f"{action}: HTTP {status} with a body that is not JSON",
                status=status,
                retryable=status >= 500,
            ) from None
        if status >= 400:
            code = str(data.get("Code") or data.get("code") or f"HTTP{status}")
            raise ProviderError(
                code,
                str(data.get("Message") or data.get("message") or ""),
                status=status,
                request_id=data.get("RequestId") or data.get("requestId"),
                retryable=is_retryable(code, status),
                retry_after=retry_after,
            )
        return data


def _retry_after(headers: Any) -> float | None:
    if (ms := headers.get("x-acs-retry-after")) and str(ms).isdigit():
        return int(ms) / 1000
    if (sec := headers.get("Retry-After")) and str(sec).isdigit():
        return float(sec)
    return None


class DataWorks:
    """The Provider for one DataWorks workspace."""

    kind = "dataworks"

    def __init__(self, cfg: ProviderConfig, session: aiohttp.ClientSession) -> None:
        if not cfg.project_id:
            raise ConfigError(f"provider {cfg.name!r}: project_id (the DataWorks workspace id) is required")
        self.project_id = cfg.project_id
        self.client = DataWorksClient(cfg, session)
        self.flow = Flow(concurrency=cfg.concurrency, max_attempts=cfg.max_attempts)

    async def _call(self, action: str, params: dict[str, str]) -> dict[str, Any]:
        return await self.flow.call(action, lambda: self.client.call(action, params))

    def render(self, workflow: Workflow, target: TargetConfig) -> Rendered:
        wid, spec, warnings = render(workflow, target.folder)
        return Rendered(wid, json.dumps(spec, ensure_ascii=False, separators=(",", ":")), warnings)

    async def submit(self, rendered: Rendered) -> Submitted:
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
        return Submitted(rendered.target_id, str(job["Id"]))

    async def poll(self, remote_job_id: str) -> Polled:
        data = await self._call("GetJobStatus", {"JobId": remote_job_id})
        job = data.get("JobStatus") or {}
        status = str(job.get("Status", ""))
        # Completed is the *string* "True"/"False" here (a bool in AsyncJob); accept both.
        completed = str(job.get("Completed", "")).lower() == "true"
        if status == "Success":
            return Polled(JobStatus.SUCCESS)
        if status in {"Fail", "Cancel"} or (completed and status != "Success"):
            return Polled(JobStatus.FAILED, f"{status}: {job.get('Error') or 'no error given'}")
        return Polled(JobStatus.RUNNING)

    async def reconcile(self, key: str, target_id: str) -> Found | None:
        """Definition ids are derived from the key, so a lookup by id tells whether the import landed.

        Absent means either never sent or still running; re-importing is safe in both cases
        because an import with a known id is an update.
        """
        try:
            await self._call("GetWorkflowDefinition", {"ProjectId": self.project_id, "Id": target_id})
        except ProviderError as exc:
            if exc.status == 404 or any(m in exc.code for m in NOT_FOUND_MARKERS):
                return None
            raise
        return Found(target_id)


def connect(cfg: ProviderConfig, session: aiohttp.ClientSession) -> DataWorks:
    return DataWorks(cfg, session)
