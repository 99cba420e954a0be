"""DataWorks client unit tests at the aiohttp boundary (aioresponses): wire format and error table."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aioresponses import aioresponses
from pydantic import SecretStr

from migrator.auth import acs
from migrator.config import ProviderConfig
from migrator.errors import Action, ProviderError, ProviderStopped
from migrator.providers.acs import is_not_found
from migrator.providers.base import JobStatus, Rendered
from migrator.providers.dataworks.client import DataWorks
from migrator.store import Item, Part, State

ANY = re.compile(r"^http://dw\.test/.*$")


class _NoParts:
    """DataWorks imports are single calls: it never touches parts."""

    def get(self, part: str) -> Part | None:
        raise AssertionError(part)

    async def begin(self, part: str) -> None:
        raise AssertionError(part)

    async def done(self, part: str, target_id: str) -> None:
        raise AssertionError(part)


NO_PARTS = _NoParts()


def item(target_id: str) -> Item:
    return Item(
        "j",
        "k",
        "n",
        "o",
        "dw",
        None,
        None,
        State.SUBMITTING,
        1,
        target_id,
        None,
        None,
        None,
        0,
        None,
        None,
        (),
        None,
        0.0,
        0.0,
        None,
    )


def config(**kw: Any) -> ProviderConfig:
    return ProviderConfig(
        name="dw",
        kind="dataworks",
        endpoint="http://dw.test",
        project_id="10001",
        access_key_id=SecretStr("ak"),
        access_key_secret=SecretStr("sk"),
        **kw,
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def provider(session: aiohttp.ClientSession, **kw: Any) -> tuple[DataWorks, list[float]]:
    dw = DataWorks(config(**kw), session)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    dw.flow.sleep = sleep
    return dw, slept


def only_call(mocked: aioresponses) -> tuple[str, str, Any]:
    (((method, url), calls),) = mocked.requests.items()
    return method, str(url), calls


async def test_import_is_a_v3_signed_form_post(session: aiohttp.ClientSession) -> None:
    dw, _ = provider(session)
    with aioresponses() as mocked:
        mocked.post(
            ANY,
            payload={
                "RequestId": "r",
                "AsyncJob": {"Id": "J1", "Status": "Running", "Completed": False, "Response": "42"},
            },
        )
        result = await dw.submit(Rendered("42", '{"spec": "a b"}'), NO_PARTS)
        method, url, calls = only_call(mocked)
    assert (result.target_id, result.remote_job_id) == ("42", "J1")
    kwargs = calls[0].kwargs
    headers = kwargs["headers"]
    body = kwargs["data"]
    assert method == "POST"
    assert urlsplit(url).query == ""
    assert dict(parse_qsl(body.decode())) == {"ProjectId": "10001", "Spec": '{"spec": "a b"}'}
    assert headers["x-acs-action"] == "ImportWorkflowDefinition"
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    verified = acs.verify(
        method="POST",
        path="/",
        query=[],
        form=[],
        headers={**headers, "host": "dw.test"},
        body=body,
        secret_for={"ak": "sk"},
    )
    assert verified.version == "v3"


async def test_v1_signs_query_and_form_together(session: aiohttp.ClientSession) -> None:
    dw, _ = provider(session, signature="v1")
    with aioresponses() as mocked:
        mocked.post(ANY, payload={"AsyncJob": {"Id": "J1"}})
        await dw.submit(Rendered("42", "{}"), NO_PARTS)
        _, url, calls = only_call(mocked)
    query = parse_qsl(urlsplit(url).query)
    form = parse_qsl(calls[0].kwargs["data"].decode())
    assert dict(query)["SignatureMethod"] == "HMAC-SHA1"
    assert (
        acs.verify(
            method="POST", path="/", query=query, form=form, headers={}, body=b"", secret_for={"ak": "sk"}
        ).version
        == "v1"
    )


async def test_throttling_is_retried_after_the_servers_delay(session: aiohttp.ClientSession) -> None:
    dw, slept = provider(session)
    with aioresponses() as mocked:
        mocked.post(
            ANY,
            status=400,
            headers={"x-acs-retry-after": "1500"},
            payload={"Code": "Throttling.User", "Message": "slow down", "RequestId": "r1"},
        )
        mocked.post(
            ANY, status=503, payload={"Code": "ServiceUnavailable", "Message": "later", "RequestId": "r2"}
        )
        mocked.post(ANY, payload={"AsyncJob": {"Id": "J9"}})
        result = await dw.submit(Rendered("42", "{}"), NO_PARTS)
    assert result.remote_job_id == "J9"
    assert len(slept) == 2
    assert slept[0] >= 1.5
    assert dw.flow.retries == 2


async def test_terminal_errors_are_not_retried_and_carry_code_and_request_id(
    session: aiohttp.ClientSession,
) -> None:
    dw, slept = provider(session)
    with aioresponses() as mocked:
        mocked.post(
            ANY,
            status=400,
            payload={
                "Code": "InvalidParameter",
                "Message": "bad spec",
                "RequestId": "r7",
                "HostId": "dw.test",
                "Recommend": "x",
            },
        )
        with pytest.raises(ProviderError) as err:
            await dw.submit(Rendered("42", "{}"), NO_PARTS)
    assert (err.value.code, err.value.request_id, err.value.status, err.value.action) == (
        "InvalidParameter",
        "r7",
        400,
        Action.FAIL,
    )
    assert slept == []


async def test_a_refused_signature_keeps_none_of_the_request_the_gateway_quotes(
    session: aiohttp.ClientSession,
) -> None:
    """The gateway explains a refused signature with the string it signed: every parameter,
    a secret among them. Neither the error nor the provider's stop reason may keep it."""
    dw, _ = provider(session)
    quoted = "POST&%2F&Spec%3D%257B%2522password%2522%253A%2522hunter2-secret%2522%257D"
    with aioresponses() as mocked:
        mocked.post(
            ANY,
            status=400,
            payload={
                "Code": "SignatureDoesNotMatch",
                "Message": "Specified signature is not matched with our calculation. "
                f"server string to sign is:{quoted}",
                "RequestId": "r8",
            },
        )
        with pytest.raises(ProviderStopped) as stopped:  # the first call: check the credentials
            await dw.submit(Rendered("42", "{}"), NO_PARTS)
    error = stopped.value.__cause__
    assert isinstance(error, ProviderError)
    assert error.code == "SignatureDoesNotMatch"
    assert error.message == (
        "Specified signature is not matched with our calculation (the gateway's string to sign is not kept)"
    )
    assert "hunter2" not in f"{error} {stopped.value} {stopped.value.reason}"


async def test_retries_stop_at_max_attempts(session: aiohttp.ClientSession) -> None:
    dw, slept = provider(session, max_attempts=3)
    with aioresponses() as mocked:
        for _ in range(3):
            mocked.post(ANY, exception=aiohttp.ClientConnectionError("reset"))
        with pytest.raises(ProviderError) as err:
            await dw.submit(Rendered("42", "{}"), NO_PARTS)
    assert err.value.code == "Transport"
    assert len(slept) == 2


@pytest.mark.parametrize(
    ("job", "status", "error"),
    [
        ({"Status": "Running", "Completed": "False"}, JobStatus.RUNNING, None),
        ({"Status": "Success", "Completed": "True"}, JobStatus.SUCCESS, None),
        (
            {"Status": "Fail", "Completed": "True", "Error": "$.spec.x: bad"},
            JobStatus.FAILED,
            "Fail: $.spec.x: bad",
        ),
        ({"Status": "Cancel", "Completed": "True"}, JobStatus.FAILED, "Cancel: no error given"),
    ],
)
async def test_job_status_completed_is_a_string(
    session: aiohttp.ClientSession, job: dict[str, str], status: JobStatus, error: str | None
) -> None:
    dw, _ = provider(session)
    with aioresponses() as mocked:
        mocked.get(ANY, payload={"RequestId": "r", "JobStatus": {"JobId": "J1", **job}})
        polled = await dw.poll("J1")
        method, url, _ = only_call(mocked)
    assert (polled.status, polled.error) == (status, error)
    assert method == "GET"
    assert dict(parse_qsl(urlsplit(url).query)) == {"JobId": "J1"}


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("target folder already exists: mig/etl/orders", "NameTaken"),
        ("Import failed: Target folder already exists: mig/etl/orders", "NameTaken"),
        ("$.spec.x: bad", None),
    ],
)
async def test_an_import_refused_a_held_path_fails_name_taken_saying_what_to_do(
    session: aiohttp.ClientSession, error: str, code: str | None
) -> None:
    """NameTaken is what a sync sends again each night: a prefix or a capital in the service's
    wording must not make it a failure that is never tried again."""
    dw, _ = provider(session)
    with aioresponses() as mocked:
        job = {"JobId": "J1", "Status": "Fail", "Completed": "True", "Error": error}
        mocked.get(ANY, payload={"RequestId": "r", "JobStatus": job})
        polled = await dw.poll("J1")
    assert (polled.status, polled.code) == (JobStatus.FAILED, code)
    assert polled.error is not None
    assert polled.error.startswith(f"Fail: {error}")
    assert ("`migrator retry JOB --failed`" in polled.error) is (code is not None)


@pytest.mark.parametrize(
    ("code", "message", "status", "gone"),
    [
        ("InvalidWorkflowDefinition.NotFound", "The workflow definition 1 does not exist.", 404, True),
        ("InvalidJobId.NotFound", "job", 400, True),
        ("FLOW_API_FAILED", "flow [F-1] not exist", 400, True),
        ("FLOW_API_FAILED", "job [FJ-1] not exist", 400, True),
        # Not the object acted on: a wrong project, a missing parent, a name quoted in a refusal.
        ("FLOW_API_FAILED", "project not exist", 400, False),
        ("FLOW_API_FAILED", "parent flow [F-2] not exist", 400, False),
        ("FLOW_API_FAILED", "cluster [C-1] not exist", 400, False),
        (
            "Forbidden.NotInProject",
            "The current user is not a member of workspace 9, or the workspace does not exist.",
            403,
            False,
        ),
        (
            "InvalidWorkflowDefinition.HasDescendants",
            "workflows 7 (AlertIfFileNotExist) depend on it",
            400,
            False,
        ),
    ],
)
def test_not_found_is_the_object_acted_on_missing_and_nothing_else(
    code: str, message: str, status: int, gone: bool
) -> None:
    """Taken for gone, a refusal marks a prune done though the object stays, or makes it again."""
    assert is_not_found(ProviderError(code, message, status=status)) is gone


async def test_reconcile_treats_not_found_as_absent(session: aiohttp.ClientSession) -> None:
    dw, _ = provider(session)
    with aioresponses() as mocked:
        mocked.get(ANY, status=404, payload={"Code": "WorkflowDefinition.NotFound", "Message": "no"})
        mocked.get(ANY, payload={"WorkflowDefinition": {"Id": "42"}})
        assert await dw.reconcile(item("42")) is None
        found = await dw.reconcile(item("42"))
    assert found is not None
    assert found.target_id == "42"
