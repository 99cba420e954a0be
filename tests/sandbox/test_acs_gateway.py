"""The emulated POP gateway over real loopback HTTP: signatures, replay, errors, call counts.

The gateway fronts a one-action product (``Echo`` returns the parameters it saw), so these tests
pin the gateway alone; the DataWorks tests cover it again behind real actions and the SDK.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from migrator.auth import acs
from migrator.sandbox.acs import JSON_CONTENT_TYPE, AcsError, AcsGateway, Call, call_name, json_response
from migrator.sandbox.base import sandbox_app
from migrator.sandbox.faults import FaultPlan, Faults, Latency
from migrator.sandbox.storage import SandboxStore

AK, SECRET, VERSION = "test-ak", "test-secret-value", "2099-01-01"
FORM = "application/x-www-form-urlencoded"


async def echo(call: Call) -> dict[str, Any]:
    if call.get("Fail"):
        raise AcsError("Invalid.Echo", "asked to fail", 409)
    return {
        "Action": call.action,
        "Method": call.method,
        "Caller": call.access_key_id,
        "Params": dict(call.params),
    }


async def no_objects(_request: web.Request) -> web.Response:
    return json_response({})


@asynccontextmanager
async def gateway(
    data: Path | None = None, faults: Faults | None = None, credentials: dict[str, str] | None = None
) -> AsyncIterator[str]:
    """The gateway in a sandbox's application (so with its transport faults); the host it serves on."""
    store = SandboxStore(data)
    plan = FaultPlan(faults or Faults(), store)
    gw = AcsGateway(
        product="test", version=VERSION, actions={"Echo": echo, "GetEcho": echo}, store=store,
        credentials=credentials or {AK: SECRET}, faults=plan,
    )  # fmt: skip
    app = sandbox_app(store, no_objects, plan, call_name)
    gw.install(app)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield f"{host}:{port}"
    finally:
        await runner.cleanup()  # closes the store


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def send_v3(
    session: aiohttp.ClientSession,
    host: str,
    *,
    method: str = "POST",
    query: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    secret: str = SECRET,
    ak: str = AK,
    action: str = "Echo",
    version: str = VERSION,
    nonce: str | None = None,
    date: str | None = None,
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    body = urlencode(form).encode() if form else b""  # quote_plus: spaces travel as '+', like the SDK
    headers = acs.v3_sign(
        ak, secret, method=method, host=host, action=action, version=version, query=query, body=body,
        content_type=FORM if body else None, nonce=nonce, date=date,
    )  # fmt: skip
    url = URL(f"http://{host}/" + (f"?{urlencode(query)}" if query else ""), encoded=True)
    async with session.request(method, url, data=body or None, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), resp


async def send_v1(
    session: aiohttp.ClientSession,
    host: str,
    *,
    query: dict[str, str],
    form: dict[str, str],
    secret: str = SECRET,
    nonce: str | None = None,
) -> tuple[int, dict[str, Any]]:
    params = {**acs.v1_common_params("Echo", VERSION, AK, nonce=nonce), **query}
    params["Signature"] = acs.v1_signature(secret, "POST", [*params.items(), *form.items()])
    url = URL(f"http://{host}/?{urlencode(params)}", encoded=True)
    async with session.post(url, data=urlencode(form).encode(), headers={"content-type": FORM}) as resp:
        return resp.status, await resp.json(content_type=None)


async def calls(session: aiohttp.ClientSession, host: str) -> dict[str, dict[str, int]]:
    async with session.get(f"http://{host}/_sandbox/calls") as resp:
        assert resp.status == 200
        result: dict[str, dict[str, int]] = await resp.json()
        return result


async def test_v3_post_with_query_and_form_is_accepted(session: aiohttp.ClientSession) -> None:
    async with gateway() as host:
        form = {"Name": "my job", "Spec": '{"a": "b+c/é*~"}'}
        query = {"Q": "x y", "Tricky": "a&b=c+d%25/é?#"}
        status, body, resp = await send_v3(session, host, query=query, form=form)
        assert status == 200, body
        assert resp.headers["Content-Type"] == JSON_CONTENT_TYPE
        uuid.UUID(body["RequestId"])
        assert body["Params"] == {**query, **form}
        assert (body["Method"], body["Caller"]) == ("POST", AK)


async def test_v3_get_with_query_is_accepted(session: aiohttp.ClientSession) -> None:
    async with gateway() as host:
        status, body, _ = await send_v3(session, host, method="GET", query={"JobId": "123", "Empty": ""})
        assert status == 200, body
        assert body["Params"] == {"JobId": "123", "Empty": ""}


async def test_v1_signed_call_is_accepted_and_tampering_is_not(session: aiohttp.ClientSession) -> None:
    async with gateway() as host:
        query = {"Name": "a b", "Tricky": "x%2By&z=1+é"}
        status, body = await send_v1(session, host, query=query, form={"Params": "ls -l * | a&b"})
        assert status == 200, body
        assert body["Params"]["Params"] == "ls -l * | a&b"
        assert (body["Params"]["Name"], body["Params"]["Tricky"]) == ("a b", "x%2By&z=1+é")
        status, body = await send_v1(session, host, query={}, form={}, secret="not-the-secret")
        assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
        assert "server string to sign is:POST&%2F&" in body["Message"]


async def test_wrong_secret_is_signature_does_not_match_in_the_envelope(
    session: aiohttp.ClientSession,
) -> None:
    async with gateway() as host:
        status, body, resp = await send_v3(session, host, form={"A": "1"}, secret="wrong-secret")
        assert status == 400
        assert body["Code"] == "SignatureDoesNotMatch"
        assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
        assert body["HostId"] == host
        assert body["RequestId"] in body["Recommend"]
        assert resp.headers["Content-Type"] == JSON_CONTENT_TYPE
        assert SECRET not in await resp.text()


async def test_unknown_access_key_is_not_found(session: aiohttp.ClientSession) -> None:
    async with gateway() as host:
        status, body, _ = await send_v3(session, host, ak="nobody")
        assert (status, body["Code"]) == (404, "InvalidAccessKeyId.NotFound")


async def test_replayed_nonce_is_refused(session: aiohttp.ClientSession) -> None:
    async with gateway() as host:
        nonce = acs.new_nonce()
        first, _, _ = await send_v3(session, host, nonce=nonce)
        status, body, _ = await send_v3(session, host, nonce=nonce)
        assert first == 200
        assert (status, body["Code"]) == (400, "SignatureNonceUsed")


async def test_a_restarted_gateway_still_refuses_a_replay(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    data = tmp_path / "gw.db"
    nonce = acs.new_nonce()
    async with gateway(data) as host:
        assert (await send_v1(session, host, query={}, form={}, nonce=nonce))[0] == 200
    async with gateway(data) as host:
        status, body = await send_v1(session, host, query={}, form={}, nonce=nonce)
        assert (status, body["Code"]) == (400, "SignatureNonceUsed")


async def test_stale_timestamp_is_expired(session: aiohttp.ClientSession) -> None:
    async with gateway() as host:
        stale = acs.utc_timestamp(datetime.now(UTC) - timedelta(minutes=16))
        status, body, _ = await send_v3(session, host, date=stale)
        assert (status, body["Code"]) == (400, "InvalidTimeStamp.Expired")
        fresh_enough = acs.utc_timestamp(datetime.now(UTC) - timedelta(minutes=14))
        status, body, _ = await send_v3(session, host, date=fresh_enough)
        assert status == 200, body


async def test_version_and_action_are_checked(session: aiohttp.ClientSession) -> None:
    async with gateway() as host:
        status, body, _ = await send_v3(session, host, version="2016-04-08")
        assert (status, body["Code"]) == (400, "InvalidVersion")
        status, body, _ = await send_v3(session, host, action="DeleteEverything")
        assert (status, body["Code"]) == (404, "InvalidAction.NotFound")


async def test_action_errors_use_the_envelope_and_their_status(session: aiohttp.ClientSession) -> None:
    async with gateway() as host:
        status, body, _ = await send_v3(session, host, form={"Fail": "yes"})
        assert (status, body["Code"], body["Message"]) == (409, "Invalid.Echo", "asked to fail")


async def test_calls_are_counted_by_action_and_outcome(session: aiohttp.ClientSession) -> None:
    async with gateway() as host:
        await send_v3(session, host)
        await send_v3(session, host)
        await send_v3(session, host, secret="wrong")
        await send_v3(session, host, action="Nope")
        assert await calls(session, host) == {
            "Echo": {"ok": 2, "SignatureDoesNotMatch": 1},
            "Nope": {"InvalidAction.NotFound": 1},
        }


async def test_latency_is_added_to_api_calls_not_to_the_inspection_paths(
    session: aiohttp.ClientSession,
) -> None:
    async with gateway(faults=Faults(latency=Latency(median=0.2))) as host:
        started = time.monotonic()
        await calls(session, host)
        assert time.monotonic() - started < 0.2
        started = time.monotonic()
        status, _, _ = await send_v3(session, host)
        assert status == 200
        assert time.monotonic() - started >= 0.2
        started = time.monotonic()
        status, _, _ = await send_v3(session, host, secret="wrong")  # the network is slow for everyone
        assert status == 400
        assert time.monotonic() - started >= 0.2


async def test_quotas_are_per_access_key_and_reads_are_told_from_writes_by_name(
    session: aiohttp.ClientSession,
) -> None:
    other, other_secret = "other-ak", "other-secret"
    faults = Faults(read_qps=1, write_qps=1)
    async with gateway(faults=faults, credentials={AK: SECRET, other: other_secret}) as host:
        first = [(await send_v3(session, host, action=action))[0] for action in ("Echo", "Echo", "GetEcho")]
        assert first == [200, 400, 200]  # Echo writes, GetEcho reads
        status, body, _ = await send_v3(session, host, ak=other, secret=other_secret)
        assert (status, body["Caller"]) == (200, other)  # another key has its own quota
        status, body, _ = await send_v3(session, host)
        assert (status, body["Code"], body["Message"]) == (
            400, "Throttling.User", "Request was denied due to user flow control."
        )  # fmt: skip
        assert await calls(session, host) == {
            "Echo": {"ok": 2, "Throttling.User": 2},
            "GetEcho": {"ok": 1},
        }
