"""The Alibaba Cloud POP RPC client shared by the EMR and DataWorks providers.

Both products are RPC style on ``/`` with the same signing, the same error envelope (EMR's flow
APIs may answer a lowercase variant) and the same throttling codes, so one client serves both;
each provider decides only which parameters go in the query and which in the form body.
Errors are classified by :data:`ERRORS`, a table, not scattered conditions.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from migrator.auth import acs
from migrator.config import ProviderConfig
from migrator.errors import Action, ConfigError, ProviderError
from migrator.providers.transport import logged, send
from migrator.providers.triage import Rule, Triage

FORM = "application/x-www-form-urlencoded"

#: A refused signature is explained by the gateway quoting the string it signed (``server
#: string to sign is:...``): every parameter of the request, a secret variable's value among
#: them. The message is cut where that quote begins, so it reaches no log, state or report.
_SIGNED_ECHO = re.compile(r"[\s.]*\bserver string to sign is\b", re.IGNORECASE)


def provider_message(text: str) -> str:
    """The gateway's error message as it may be kept: without the request it quotes."""
    echo = _SIGNED_ECHO.search(text)
    return text if echo is None else text[: echo.start()] + " (the gateway's string to sign is not kept)"


#: The POP gateway's answers and what each means for the run (reference: alibaba-apis.md 4.2).
#: Throttling comes as HTTP 400 with a ``Throttling*`` code; ``Throttling.Api.Risk`` is risk
#: control that lasts, so it parks. A signature mismatch stops the provider when the account has
#: never worked (the secret is wrong); after that it may be one request's encoding, so it fails the
#: item unless it repeats. Unknown 4xx fail the item, unknown 5xx retry.
ERRORS = Triage(
    (
        Rule(Action.PARK, "Throttling.Api.Risk"),
        Rule(Action.THROTTLE, "Throttling*"),
        Rule(Action.THROTTLE, "Rejected.Throttling"),
        Rule(Action.RETRY, "ServiceUnavailable"),
        Rule(Action.RETRY, "InternalError"),
        Rule(Action.RETRY, "UnknownError"),
        Rule(Action.RESIGN, "SignatureNonceUsed"),
        Rule(Action.RESIGN, "InvalidTimeStamp.Expired"),
        Rule(Action.SUSPECT, "SignatureDoesNotMatch"),
        Rule(Action.SUSPECT, "IncompleteSignature"),
        Rule(Action.STOP, "InvalidAccessKeyId*"),
        Rule(Action.STOP, "Forbidden*"),
        Rule(Action.STOP, "InvalidApi.NotFound"),
        Rule(Action.STOP, "InvalidAction.NotFound"),
        Rule(Action.STOP, "InvalidVersion"),
        Rule(Action.STOP, "InvalidRegionId*"),
    )
)
#: Daily quotas are counted per calendar day in China Standard Time (UTC+8).
QUOTA_DAY_OFFSET = 8 * 3600


def until_quota_day(now: float) -> float:
    """Seconds from ``now`` to the next 00:00 UTC+8, when daily quotas reset."""
    return 86400 - (now + QUOTA_DAY_OFFSET) % 86400


NOT_FOUND_CODES = ("NotFound", "NotExist")
#: EMR's flow API answers every refusal with one code, ``FLOW_API_FAILED``: only its message says
#: that the flow or job acted on is missing ("flow [F-1] not exist"). Matched from the start, for
#: those two kinds alone: a missing project, cluster, folder or parent flow is not the object
#: being gone, and a message that quotes a workflow's name ("... AlertIfFileNotExist ...") must
#: not read as one. Taken for gone, a refusal would mark a prune done or make an object again.
_FLOW_API_GONE = re.compile(r"(flow|job) \[[^\]]*\] (does )?not exist", re.IGNORECASE)


def is_not_found(exc: ProviderError) -> bool:
    """The object a call acted on is not at the target: by HTTP status or error code, or for EMR's
    flow API (one code for every refusal) by the start of its message."""
    if exc.status == 404 or any(m in exc.code for m in NOT_FOUND_CODES):
        return True
    return exc.code == "FLOW_API_FAILED" and _FLOW_API_GONE.match(exc.message) is not None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    if (ms := headers.get("x-acs-retry-after")) and ms.isdigit():
        return int(ms) / 1000
    if (sec := headers.get("Retry-After")) and sec.isdigit():
        return float(sec)
    return None


class AcsClient:
    """Signs and sends one action; turns either error envelope into :class:`ProviderError`."""

    def __init__(self, cfg: ProviderConfig, session: aiohttp.ClientSession, version: str) -> None:
        if not cfg.endpoint or cfg.access_key_id is None or cfg.access_key_secret is None:
            raise ConfigError(f"provider {cfg.name!r}: endpoint and credentials are required")
        endpoint = cfg.endpoint if "://" in cfg.endpoint else f"https://{cfg.endpoint}"
        self._base = endpoint.rstrip("/")
        self._host = urlsplit(endpoint).netloc
        self._cfg = cfg
        self._version = version
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout)

    async def call(
        self,
        action: str,
        *,
        method: str = "POST",
        query: Mapping[str, str] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        ak, secret = self._cfg.access_key_id, self._cfg.access_key_secret
        assert ak is not None
        assert secret is not None
        params = dict(query or {})
        body = acs.form_body(form.items()) if form else b""
        headers: dict[str, str]
        if self._cfg.signature == "v3":
            headers = acs.v3_sign(
                ak.get_secret_value(),
                secret.get_secret_value(),
                method=method,
                host=self._host,
                action=action,
                version=self._version,
                query=params,
                body=body,
                content_type=FORM if body else None,
            )
        else:
            params = {**acs.v1_common_params(action, self._version, ak.get_secret_value()), **params}
            signed = [*params.items(), *(form or {}).items()]
            params["Signature"] = acs.v1_signature(secret.get_secret_value(), method, signed)
            headers = {"accept": "application/json", "x-acs-action": action, "x-acs-version": self._version}
            if body:
                headers["content-type"] = FORM
        headers.pop("host", None)
        url = URL(
            f"{self._base}/?{acs.query_string(params.items())}" if params else f"{self._base}/",
            encoded=True,
        )
        answer = await send(
            self._session, method, url, body=body, headers=headers, limits=self._timeout, what=action
        )
        raw, status, retry_after = answer.body, answer.status, _retry_after(answer.headers)
        # The gateway puts the request id in the body and in a header; a proxy's or a load
        # balancer's error page has only the header (if it reached the gateway at all).
        request_id = answer.headers.get("x-acs-request-id")
        try:
            data: dict[str, Any] = json.loads(raw) if raw else {}
        except ValueError:
            raise ProviderError(
                "BadResponse",
                f"{action}: HTTP {status} with a body that is not JSON",
                status=status,
                request_id=logged(answer, action, request_id),
                action=Action.RETRY if status >= 500 else Action.FAIL,
            ) from None
        found = data.get("RequestId") or data.get("requestId")
        request_id = logged(answer, action, str(found) if found else request_id)
        if status >= 400 or data.get("successResponse") is False:
            code = str(data.get("Code") or data.get("code") or f"HTTP{status}")
            action = ERRORS.action(code, status)
            if action is Action.PARK and retry_after is None:
                retry_after = until_quota_day(time.time())
            raise ProviderError(
                code,
                provider_message(str(data.get("Message") or data.get("message") or "")),
                status=status,
                request_id=request_id,
                action=action,
                retry_after=retry_after,
            )
        return data
