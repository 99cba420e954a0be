"""The Alibaba Cloud POP gateway, emulated: what every Alibaba sandbox puts in front of its actions.

It does what the real gateway does before an action runs, so that clients (ours and the official
SDKs) meet the same failures they would meet in production: it reads the action and version (V3
headers or V1 parameters), verifies the V1 or V3 signature, refuses stale timestamps and replayed
nonces, applies the caller's quotas and the injected throttling and server errors (see
:mod:`migrator.sandbox.faults`), answers errors in the POP envelope with the gateway's codes and
HTTP statuses, and counts calls by action and outcome for ``GET /_sandbox/calls``. Shared by the
DataWorks and EMR sandboxes.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from migrator.auth import acs
from migrator.sandbox.base import sandbox_app
from migrator.sandbox.faults import FaultPlan, Refusal, Refused, is_alibaba_read
from migrator.sandbox.storage import SandboxStore

log = structlog.get_logger(__name__)

#: How far a request's timestamp may be from the gateway's clock, and how long a nonce is kept.
MAX_SKEW_SECONDS = 15 * 60
JSON_CONTENT_TYPE = "application/json;charset=utf-8"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

#: Gateway codes whose HTTP status is not the default 400 of a client error.
_STATUS_BY_CODE = {"InvalidAccessKeyId.NotFound": 404}
#: The header that tells a caller refused by its daily quota how many milliseconds to wait.
RETRY_AFTER_HEADER = "x-acs-retry-after"


class AcsError(Exception):
    """An error answer in the POP envelope; actions raise it for their business errors."""

    def __init__(
        self, code: str, message: str, status: int = 400, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.headers = dict(headers or {})


def refusal_error(refused: Refused) -> AcsError:
    """The gateway's answer to a call refused by a quota or an injected fault."""
    if refused.reason is Refusal.DAILY_CAP:
        message = (
            "Request was denied due to user flow control: "
            f"the daily call limit of {refused.daily_cap} is used up."
        )
        retry_ms = str(math.ceil(refused.retry_after * 1000))
        return AcsError("Throttling.User", message, 400, {RETRY_AFTER_HEADER: retry_ms})
    if refused.reason is Refusal.QUOTA:
        return AcsError("Throttling.User", "Request was denied due to user flow control.")
    if refused.reason is Refusal.THROTTLE:
        return AcsError("Throttling.Api", "Request was denied due to api flow control.")
    message = "The request has failed due to a temporary failure of the server."
    return AcsError("ServiceUnavailable", message, 503)


@dataclass(frozen=True, slots=True)
class Call:
    """A verified call as an action sees it: who, what, and the decoded query and form parameters."""

    action: str
    method: str
    params: Mapping[str, str]
    access_key_id: str

    def get(self, name: str, default: str = "") -> str:
        return self.params.get(name, default)

    def require(self, name: str) -> str:
        """The parameter's value, or the gateway's ``Missing{Name}`` error."""
        value = self.params.get(name, "")
        if value == "":
            raise AcsError(f"Missing{name}", f"{name} is mandatory for this action.")
        return value


Handler = Callable[[Call], Awaitable[dict[str, Any]]]


def json_response(
    body: Any,
    status: int = 200,
    *,
    request_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """JSON with the exact content type the POP gateway sends (the SDK reads it either way)."""
    sent = {"Content-Type": JSON_CONTENT_TYPE, **(headers or {})}
    if request_id:
        sent["x-acs-request-id"] = request_id
    return web.Response(body=json.dumps(body).encode(), status=status, headers=sent)


def call_name(request: web.Request) -> str:
    """A call's action as far as the request line and headers tell, before the body is read."""
    return request.headers.get("x-acs-action") or request.query.get("Action") or "-"


class AcsGateway:
    """One product's RPC endpoint on ``/``: signature, replay and version checks, then the action."""

    def __init__(
        self,
        *,
        product: str,
        version: str,
        actions: Mapping[str, Handler],
        store: SandboxStore,
        credentials: Mapping[str, str],
        faults: FaultPlan | None = None,
    ) -> None:
        self.product = product
        self.version = version
        self._actions = dict(actions)
        self._store = store
        self._credentials = dict(credentials)
        self._faults = faults
        self._nonces_pruned_at = 0.0

    def application(self, objects: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.Application:
        """A whole Alibaba sandbox: this gateway on ``/``, the inspection endpoints and the faults."""
        assert self._faults is not None, "a served sandbox always has its fault plan"
        app = sandbox_app(self._store, objects, self._faults, call_name)
        self.install(app)
        return app

    def install(self, app: web.Application) -> None:
        """Serve the RPC endpoint (GET and POST on ``/``) and ``GET /_sandbox/calls``."""
        app.router.add_get("/", self.handle, allow_head=False)
        app.router.add_post("/", self.handle)
        app.router.add_get("/_sandbox/calls", self._calls)

    async def _calls(self, _request: web.Request) -> web.Response:
        return json_response(self._store.calls())

    async def handle(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4()).upper()
        action = "-"
        try:
            wire = await _read(request)
            params = dict(wire.query)
            params.update(wire.form)
            if wire.headers.get("authorization", "").startswith(acs.V3_ALGORITHM):
                action, version = wire.headers.get("x-acs-action", ""), wire.headers.get("x-acs-version", "")
            else:  # V1: the signed parameters are authoritative, the x-acs-* headers are not signed
                action = params.get("Action") or wire.headers.get("x-acs-action", "")
                version = params.get("Version") or wire.headers.get("x-acs-version", "")
            action = action or "-"
            handler = self._dispatch(action, version)
            who = self._verify(wire)
            self._admit(who, action)
            result = await handler(Call(action, wire.method, params, who))
        except AcsError as exc:
            return self._error(request, request_id, action, exc)
        except Exception:
            log.exception(
                "sandbox.internal_error", product=self.product, action=action, request_id=request_id
            )
            message = "The request processing has failed due to some unknown error."
            return self._error(request, request_id, action, AcsError("InternalError", message, 500))
        self._store.count_call(action, "ok")
        return json_response({"RequestId": request_id, **result}, request_id=request_id)

    def _dispatch(self, action: str, version: str) -> Handler:
        if action == "-":
            raise AcsError("MissingAction", "Action is mandatory for this request.")
        if not version:
            raise AcsError("MissingVersion", "Version is mandatory for this request.")
        if version != self.version:
            raise AcsError("InvalidVersion", f"Specified parameter Version is not valid: {version}")
        handler = self._actions.get(action)
        if handler is None:
            raise AcsError(
                "InvalidAction.NotFound", "Specified api is not found, please check your url and method.", 404
            )
        return handler

    def _verify(self, wire: _Wire) -> str:
        """Check signature, clock skew and nonce; return the caller's access key id."""
        try:
            verified = acs.verify(
                method=wire.method, path=wire.path, query=wire.query, form=wire.form, headers=wire.headers,
                body=wire.body, secret_for=self._credentials,
            )  # fmt: skip
        except acs.SignatureError as exc:
            raise AcsError(exc.code, exc.message, _STATUS_BY_CODE.get(exc.code, 400)) from None
        now = time.time()
        signed_at = verified.timestamp.timestamp()
        if abs(now - signed_at) > MAX_SKEW_SECONDS:
            raise AcsError("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        if not verified.nonce:
            raise AcsError("MissingSignatureNonce", "SignatureNonce is mandatory for this action.")
        if now - self._nonces_pruned_at > 60:
            self._store.forget_nonces(now)
            self._nonces_pruned_at = now
        # Kept until the request's own timestamp leaves the skew window, so that a request signed
        # "in the future" cannot be replayed once an earlier expiry forgot its nonce.
        expires = max(now, signed_at) + MAX_SKEW_SECONDS
        if not self._store.use_nonce(verified.access_key_id, verified.nonce, expires=expires, now=now):
            raise AcsError("SignatureNonceUsed", "Specified signature nonce was used already.")
        return verified.access_key_id

    def _admit(self, access_key_id: str, action: str) -> None:
        """Quotas are per AccessKey, so they apply only once the signature names the caller."""
        if self._faults is None:
            return
        refused = self._faults.admit(access_key_id, write=not is_alibaba_read(action))
        if refused is not None:
            raise refusal_error(refused)

    def _error(self, request: web.Request, request_id: str, action: str, exc: AcsError) -> web.Response:
        self._store.count_call(action, exc.code)
        body = {
            "RequestId": request_id,
            "HostId": request.host,
            "Code": exc.code,
            "Message": exc.message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={exc.code}&product={self.product}"
            f"&requestId={request_id}",
        }
        return json_response(body, exc.status, request_id=request_id, headers=exc.headers)


@dataclass(frozen=True, slots=True)
class _Wire:
    """A request as the verifier needs it: decoded query and form pairs, lower-case headers, raw body."""

    method: str
    path: str
    query: list[tuple[str, str]]
    form: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes


async def _read(request: web.Request) -> _Wire:
    """Decode query and form (``+`` is a space on the wire); keep the body bytes for V3's hash."""
    query = acs.form_decode(request.rel_url.raw_query_string)
    body = await request.read()
    form: list[tuple[str, str]] = []
    if body and request.content_type == FORM_CONTENT_TYPE:
        form = acs.form_decode(body.decode("utf-8", errors="replace"))
    return _Wire(request.method, request.path, query, form, _lower_headers(request), body)


def _lower_headers(request: web.Request) -> dict[str, str]:
    """Lower-case header names; a repeated header's values joined with ``,`` as V3 canonicalises them."""
    headers: dict[str, str] = {}
    for name in request.headers:
        key = name.lower()
        if key not in headers:
            headers[key] = ",".join(sorted(v.strip() for v in request.headers.getall(name)))
    return headers
