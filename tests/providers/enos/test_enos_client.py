"""EnOS client unit tests at the aiohttp boundary: token lifecycle and the signed envelope."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aioresponses import aioresponses
from pydantic import SecretStr

from migrator.auth import apim
from migrator.config import ProviderConfig
from migrator.errors import Action, ProviderError
from migrator.log import scrub
from migrator.providers.enos.client import ApimClient

TOKEN = re.compile(r"^http://enos\.test/apim-token-service/v2\.0/token/(get|refresh)$")
API = re.compile(r"^http://enos\.test/batch-processing-service/v2\.1/.*$")


@pytest.fixture
async def client() -> AsyncIterator[ApimClient]:
    cfg = ProviderConfig(
        name="enos",
        kind="enos",
        endpoint="http://enos.test",
        user_id="u1",
        org_id="o1",
        access_key_id=SecretStr("app-key"),
        access_key_secret=SecretStr("app-secret"),
    )
    async with aiohttp.ClientSession() as session:
        yield ApimClient(cfg, session)


def token(value: str, expire: int = 7200) -> dict[str, Any]:
    return {"status": 0, "msg": "SUCCESS", "data": {"accessToken": value, "expire": expire}}


def sent(mocked: aioresponses, pattern: str) -> list[Any]:
    return [call for (method, url), calls in mocked.requests.items() if pattern in str(url) for call in calls]


async def test_every_call_is_signed_and_the_token_is_reused(client: ApimClient) -> None:
    with aioresponses() as mocked:
        mocked.post(TOKEN, payload=token("T1"))
        mocked.get(API, payload={"code": 0, "msg": "OK", "data": [1]}, repeat=True)
        assert await client.call("flows", "getMyFlow") == [1]
        assert await client.call("flows", "getMyFlow", query={"expression": "a b"}) == [1]
        token_calls = sent(mocked, "token/get")
        api_calls = [
            (url, call)
            for (m, url), calls in mocked.requests.items()
            if "flows" in str(url)
            for call in calls
        ]
    assert len(token_calls) == 1
    body = json.loads(token_calls[0].kwargs["data"])
    assert body["encryption"] == apim.encryption("app-key", body["timestamp"], "app-secret")
    for url, call in api_calls:
        headers = call.kwargs["headers"]
        query = parse_qsl(urlsplit(str(url)).query)
        assert dict(query)["userId"] == "u1"
        assert apim.verify(
            "T1", query, b"", headers[apim.TIMESTAMP_HEADER], "app-secret", headers[apim.SIGNATURE_HEADER]
        )


async def test_an_expired_token_is_refreshed_and_the_call_sent_again(client: ApimClient) -> None:
    with aioresponses() as mocked:
        mocked.post(TOKEN, payload=token("T1"))
        mocked.post(TOKEN, payload=token("T2"))
        mocked.post(API, payload={"code": 1203, "msg": "access token has expired"})
        mocked.post(API, payload={"code": 0, "msg": "OK", "data": {"flowId": 7}})
        assert await client.call("flows", "enable", method="POST", body={"flowId": 7}) == {"flowId": 7}
        refresh = sent(mocked, "token/refresh")
        api = sent(mocked, "/flows")
    assert client.refreshes == 1
    assert json.loads(refresh[0].kwargs["data"])["accessToken"] == "T1"
    assert [c.kwargs["headers"][apim.TOKEN_HEADER] for c in api] == ["T1", "T2"]


async def test_a_refused_refresh_falls_back_to_a_new_token_and_errors_carry_the_code(
    client: ApimClient,
) -> None:
    with aioresponses() as mocked:
        mocked.post(TOKEN, payload=token("T1"))
        mocked.post(TOKEN, payload={"status": 1204, "msg": "failed to refresh"})
        mocked.post(TOKEN, payload=token("T3"))
        mocked.get(API, payload={"code": 1203, "msg": "expired"})
        mocked.get(API, payload={"code": 62102, "msg": "Flow does not exist"})
        with pytest.raises(ProviderError) as err:
            await client.call("flows", "export", query={"flowId": "9"})
        api = sent(mocked, "/flows")
    assert (err.value.code, err.value.action) == ("62102", Action.FAIL)
    assert [c.kwargs["headers"][apim.TOKEN_HEADER] for c in api] == ["T1", "T3"]


async def test_the_access_token_is_masked_in_log_lines_once_it_is_issued(client: ApimClient) -> None:
    """A bearer token is a credential: an error or a debug line quoting it must not show it."""
    with aioresponses() as mocked:
        mocked.post(TOKEN, payload=token("tok-4f9a2b7c"))
        mocked.get(API, payload={"code": 0, "msg": "OK", "data": []})
        await client.call("flows", "getMyFlow")
    assert scrub("refused token tok-4f9a2b7c") == "refused token ***"
