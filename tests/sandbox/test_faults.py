"""Injected faults, seen from the client side over real loopback HTTP against the real sandboxes.

Each fault class is proven with plain aiohttp (or the official SDK) against the EMR, DataWorks
and EnOS sandboxes: quotas (QPS, read/write, daily) and their exact answers, the throttle and
server-error dice, connection resets, slow answers, async imports that fail or hang, seeds, and
the ``migrator sandbox --faults/--fault`` options.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import aiohttp
import anyio
import pytest
from alibabacloud_emr20160408 import models as emr_models
from alibabacloud_emr20160408.client import Client as EmrSdk
from alibabacloud_tea_openapi import models as openapi_models
from yarl import URL

from migrator.auth import acs, apim
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.faults import (
    FaultPlan,
    Faults,
    FaultsError,
    Latency,
    Refusal,
    Refused,
    load_faults,
    quota_day,
)
from migrator.sandbox.server import SandboxHandle, running
from migrator.sandbox.storage import SandboxStore

ROOT = Path(__file__).resolve().parent.parent.parent
VERSIONS = {"emr": "2016-04-08", "dataworks": "2024-05-18"}
FAST = (0.05, 0.1)
ENOS_FLOWS = "/batch-processing-service/v2.1/flows"
ENOS_DIRS = "/batch-processing-service/v2.1/directories"
ENOS_TOKEN = "/apim-token-service/v2.0/token"

USER_FLOW = "Request was denied due to user flow control."
API_FLOW = "Request was denied due to api flow control."
UNAVAILABLE = "The request has failed due to a temporary failure of the server."
T = TypeVar("T")


@asynccontextmanager
async def sandbox(kind: str, faults: Faults, data: Path | None = None) -> AsyncIterator[SandboxHandle]:
    async with running(kind, SandboxSettings(data_path=data, job_delay=FAST, faults=faults)) as handle:
        yield handle


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def fresh() -> AsyncIterator[Callable[[], aiohttp.ClientSession]]:
    """Sessions that are closed at the end (a reset connection must not be reused by accident)."""
    made: list[aiohttp.ClientSession] = []

    def make() -> aiohttp.ClientSession:
        made.append(aiohttp.ClientSession())
        return made[-1]

    yield make
    for s in made:
        await s.close()


async def inspect(session: aiohttp.ClientSession, handle: SandboxHandle, what: str) -> Any:
    async with session.get(f"{handle.endpoint}/_sandbox/{what}") as resp:
        assert resp.status == 200
        return await resp.json()


# --- Alibaba (EMR, DataWorks): V3-signed calls ----------------------------------------------------


async def pop(
    session: aiohttp.ClientSession,
    handle: SandboxHandle,
    action: str,
    *,
    patience: float | None = None,
    **params: str,
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One V3-signed POST; the status, the JSON body and the headers."""
    creds = handle.credentials
    body = urlencode(params).encode()
    host = urlsplit(handle.endpoint).netloc
    headers = acs.v3_sign(
        creds["access_key_id"], creds["access_key_secret"], method="POST", host=host, action=action,
        version=VERSIONS[handle.kind], body=body,
        content_type="application/x-www-form-urlencoded" if body else None,
    )  # fmt: skip
    client_timeout = aiohttp.ClientTimeout(total=patience)
    async with session.post(
        f"{handle.endpoint}/", data=body, headers=headers, timeout=client_timeout
    ) as resp:
        return resp.status, await resp.json(content_type=None), dict(resp.headers)


async def projects(
    session: aiohttp.ClientSession, handle: SandboxHandle
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """EMR's ListFlowProject, a read that needs nothing but the region."""
    return await pop(session, handle, "ListFlowProject", RegionId="cn-hangzhou")


def spec(workflow_id: int) -> str:
    """The smallest FlowSpec DataWorks accepts: one workflow, no nodes."""
    workflow = {"id": str(workflow_id), "name": f"w{workflow_id}"}
    doc = {"version": "2.0.0", "kind": "CycleWorkflow", "spec": {"workflows": [workflow]}}
    return json.dumps(doc)


async def dw_import(session: aiohttp.ClientSession, handle: SandboxHandle, workflow_id: int) -> str:
    status, body, _ = await pop(
        session, handle, "ImportWorkflowDefinition", ProjectId="10001", Spec=spec(workflow_id)
    )
    assert status == 200, body
    return str(body["AsyncJob"]["Id"])


async def dw_job(session: aiohttp.ClientSession, handle: SandboxHandle, job_id: str) -> dict[str, Any]:
    status, body, _ = await pop(session, handle, "GetJobStatus", JobId=job_id)
    assert status == 200, body
    job: dict[str, Any] = body["JobStatus"]
    return job


def refused_as(
    answer: tuple[int, dict[str, Any], dict[str, str]], status: int, code: str, message: str
) -> bool:
    got_status, body, _ = answer
    return (got_status, body.get("Code"), body.get("Message")) == (status, code, message)


async def until_bucket_start() -> None:
    """Sleep until 20 ms into the next 500 ms bucket of the sandbox's QPS windows (same clock)."""
    await anyio.sleep(0.5 - time.time() % 0.5 + 0.02)


async def test_qps_quota_admits_at_most_n_per_second_leap_array(session: aiohttp.ClientSession) -> None:
    async with sandbox("dataworks", Faults(qps=5)) as handle:
        await until_bucket_start()
        burst = await asyncio.gather(
            *(pop(session, handle, "ListWorkflowDefinitions", ProjectId="10001") for _ in range(8))
        )
        assert sorted(status for status, _, _ in burst) == [200] * 5 + [400] * 3
        refused = [answer for answer in burst if answer[0] == 400]
        assert all(refused_as(answer, 400, "Throttling.User", USER_FLOW) for answer in refused)
        assert all("x-acs-retry-after" not in {h.lower() for h in headers} for _, _, headers in refused)
        # The next 500 ms bucket still sees the previous one: the second is not over yet.
        await until_bucket_start()
        again = [await pop(session, handle, "ListWorkflowDefinitions", ProjectId="10001") for _ in range(2)]
        assert all(refused_as(answer, 400, "Throttling.User", USER_FLOW) for answer in again)
        # One bucket later the burst has left the window: 5 more, and only 5.
        await until_bucket_start()
        later = await asyncio.gather(
            *(pop(session, handle, "ListWorkflowDefinitions", ProjectId="10001") for _ in range(7))
        )
        assert sorted(status for status, _, _ in later) == [200] * 5 + [400] * 2
        calls = await inspect(session, handle, "calls")
        assert calls["ListWorkflowDefinitions"] == {"ok": 10, "Throttling.User": 7}


async def test_read_write_and_overall_quotas_are_separate(session: aiohttp.ClientSession) -> None:
    async with sandbox("dataworks", Faults(qps=3, read_qps=2, write_qps=2)) as handle:
        read = [await pop(session, handle, "ListWorkflowDefinitions", ProjectId="10001") for _ in range(3)]
        assert [status for status, _, _ in read] == [200, 200, 400]  # the read quota
        write = [
            await pop(session, handle, "ImportWorkflowDefinition", ProjectId="10001", Spec=spec(7))
            for _ in range(2)
        ]
        assert write[0][0] == 200  # the write quota is untouched by reads
        assert refused_as(write[1], 400, "Throttling.User", USER_FLOW)  # the overall quota: 3 admitted
        calls = await inspect(session, handle, "calls")
        assert calls == {
            "ListWorkflowDefinitions": {"ok": 2, "Throttling.User": 1},
            "ImportWorkflowDefinition": {"ok": 1, "Throttling.User": 1},
        }


async def test_daily_cap_survives_a_restart_and_resets_with_the_quota_day(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    faults, data = Faults(daily_cap=2, quota_day=1.0), tmp_path / "emr.db"
    _day, left = quota_day(time.time(), faults.quota_day)
    if left < 0.6:  # start early in a quota day, so the restart happens in the same one
        await anyio.sleep(left)
    async with sandbox("emr", faults, data) as handle:
        assert [(await projects(session, handle))[0] for _ in range(2)] == [200, 200]
        status, body, headers = await projects(session, handle)
        message = "Request was denied due to user flow control: the daily call limit of 2 is used up."
        assert (status, body["Code"], body["Message"]) == (400, "Throttling.User", message)
        assert 0 < int(headers["x-acs-retry-after"]) <= 1000
    async with sandbox("emr", faults, data) as handle:
        status, body, headers = await projects(session, handle)
        assert (status, body["Code"], body["Message"]) == (400, "Throttling.User", message)
        await anyio.sleep(int(headers["x-acs-retry-after"]) / 1000 + 0.02)
        assert [(await projects(session, handle))[0] for _ in range(3)] == [200, 200, 400]
        assert (await inspect(session, handle, "calls"))["ListFlowProject"] == {"ok": 4, "Throttling.User": 3}


def test_quota_days_start_at_midnight_in_shanghai() -> None:
    last_second = datetime(2024, 1, 1, 15, 59, 59, tzinfo=UTC).timestamp()  # 23:59:59 UTC+8
    day, left = quota_day(last_second, 86400)
    assert left == pytest.approx(1.0)
    assert quota_day(last_second + 1, 86400) == (day + 1, pytest.approx(86400.0))


def test_leap_array_counts_the_current_and_the_previous_bucket() -> None:
    now = [1000.0]
    plan = FaultPlan(Faults(qps=2, daily_cap=5), SandboxStore(None), clock=lambda: now[0])
    outcomes = []
    for at in (1000.10, 1000.45, 1000.49, 1000.55, 1000.99, 1001.00, 1001.01, 1001.50, 1002.00):
        now[0] = at
        refused = plan.admit("ak", write=True)
        outcomes.append(None if refused is None else refused.reason)
    q = Refusal.QUOTA
    # Buckets of 500 ms: [1000.0, 1000.5) admits two; [1000.5, 1001.0) still sees them;
    # [1001.0, 1001.5) does not, and admits two that [1001.5, 1002.0) still sees.
    assert outcomes == [None, None, q, q, q, None, None, q, None]
    now[0] = 1003.0
    refused = plan.admit("ak", write=False)  # 5 admitted: the daily cap; refusals did not count
    assert refused == Refused(Refusal.DAILY_CAP, 5, quota_day(1003.0, 86400)[1])
    assert plan.admit("other", write=True) is None  # quotas are per account


def test_read_and_write_quotas_are_kept_apart() -> None:
    plan = FaultPlan(Faults(read_qps=1, write_qps=1), SandboxStore(None), clock=lambda: 1000.0)
    reasons = [plan.admit("ak", write=write) for write in (False, False, True, True)]
    assert reasons == [None, Refused(Refusal.QUOTA), None, Refused(Refusal.QUOTA)]


async def test_throttle_and_server_error_dice_at_one_always_refuse(session: aiohttp.ClientSession) -> None:
    async with sandbox("emr", Faults(throttle=1.0)) as handle:
        answers = [await projects(session, handle) for _ in range(3)]
        assert all(refused_as(answer, 400, "Throttling.Api", API_FLOW) for answer in answers)
        client = emr_sdk(handle)
        with pytest.raises(Exception) as raised:  # noqa: PT011 - the SDK's exception classes vary by version
            await anyio.to_thread.run_sync(
                lambda: client.list_flow_project(emr_models.ListFlowProjectRequest(region_id="cn-hangzhou"))
            )
        assert getattr(raised.value, "code", None) == "Throttling.Api"
        assert (await inspect(session, handle, "calls")) == {"ListFlowProject": {"Throttling.Api": 4}}
    async with sandbox("dataworks", Faults(server_error=1.0)) as handle:
        answers = [await pop(session, handle, "ListWorkflowDefinitions", ProjectId="10001") for _ in range(3)]
        assert all(refused_as(answer, 503, "ServiceUnavailable", UNAVAILABLE) for answer in answers)
        assert set(answers[0][1]) == {"RequestId", "HostId", "Code", "Message", "Recommend"}


def emr_sdk(handle: SandboxHandle) -> EmrSdk:
    config = openapi_models.Config(
        access_key_id=handle.credentials["access_key_id"],
        access_key_secret=handle.credentials["access_key_secret"],
        endpoint=urlsplit(handle.endpoint).netloc,
        protocol="http",
        region_id="cn-hangzhou",
    )
    return EmrSdk(config)


async def test_quotas_apply_after_the_signature_is_verified(session: aiohttp.ClientSession) -> None:
    async with sandbox("emr", Faults(qps=1, throttle=1.0)) as handle:
        wrong = SandboxHandle(
            handle.kind, handle.endpoint, {**handle.credentials, "access_key_secret": "no"}, {}
        )
        status, body, _ = await projects(session, wrong)
        assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
        status, body, _ = await projects(session, handle)
        assert (status, body["Code"]) == (400, "Throttling.Api")


async def test_a_reset_loses_the_answer_and_sometimes_the_change(
    fresh: Callable[[], aiohttp.ClientSession], session: aiohttp.ClientSession
) -> None:
    async with sandbox("dataworks", Faults(reset=1.0, seed=3)) as handle:
        for workflow_id in range(1, 9):
            with pytest.raises(aiohttp.ClientConnectionError):
                await pop(
                    fresh(), handle, "ImportWorkflowDefinition", ProjectId="10001", Spec=spec(workflow_id)
                )
        jobs = (await inspect(session, handle, "objects"))["async_jobs"]
        assert 0 < len(jobs) < 8  # half the resets strike after the import was accepted
        calls = await inspect(session, handle, "calls")
        assert calls == {"ImportWorkflowDefinition": {"reset": 8, "ok": len(jobs)}}


async def test_a_slow_answer_outlasts_the_client_timeout_but_the_change_is_made(
    session: aiohttp.ClientSession,
) -> None:
    async with sandbox("dataworks", Faults(slow=1.0, slow_seconds=1.0)) as handle:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await pop(
                session, handle, "ImportWorkflowDefinition", patience=0.3, ProjectId="10001", Spec=spec(5)
            )
        assert time.monotonic() - started < 0.9
        [job] = (await inspect(session, handle, "objects"))["async_jobs"]
        assert job["workflow_id"] == "5"
        started = time.monotonic()
        status, _, _ = await pop(session, handle, "ListWorkflowDefinitions", ProjectId="10001")
        assert status == 200
        assert time.monotonic() - started >= 1.0  # a patient client gets the answer
        calls = await inspect(session, handle, "calls")
        assert calls["ImportWorkflowDefinition"] == {"ok": 1, "slow": 1}


async def test_async_imports_that_fail(session: aiohttp.ClientSession) -> None:
    async with sandbox("dataworks", Faults(job_fail=1.0)) as handle:
        job_id = await dw_import(session, handle, 11)
        await anyio.sleep(FAST[1] + 0.05)  # the job's delay is over
        job = await dw_job(session, handle, job_id)
        assert (job["Status"], job["Error"]) == ("Fail", "sandbox fault: injected import failure")
        assert (await inspect(session, handle, "objects"))["workflow_definitions"] == []


async def test_async_imports_that_hang_even_across_a_restart(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    data = tmp_path / "dw.db"
    async with sandbox("dataworks", Faults(job_hang=1.0), data) as handle:
        job_id = await dw_import(session, handle, 12)
        await anyio.sleep(FAST[1] + 0.05)
        assert (await dw_job(session, handle, job_id))["Status"] == "Running"
    async with sandbox("dataworks", Faults(), data) as handle:
        job = await dw_job(session, handle, job_id)
        assert (job["Status"], job["Completed"]) == ("Running", "False")
        objects = await inspect(session, handle, "objects")
        assert objects["workflow_definitions"] == []
        assert [j["status"] for j in objects["async_jobs"]] == ["Running"]


async def test_seeds_make_the_dice_repeatable(session: aiohttp.ClientSession) -> None:
    async def statuses(seed: int) -> list[int]:
        async with sandbox("emr", Faults(throttle=0.3, server_error=0.3, seed=seed)) as handle:
            return [(await projects(session, handle))[0] for _ in range(16)]

    first = await statuses(42)
    assert first == await statuses(42)
    assert {200, 400, 503} <= set(first)
    assert first != await statuses(43)


def test_latency_is_log_normal_between_median_and_p99() -> None:
    plan = FaultPlan(Faults(latency=Latency(median=0.01, p99=0.05), seed=1), SandboxStore(None))
    draws = sorted(plan.latency() for _ in range(4000))
    assert statistics.median(draws) == pytest.approx(0.01, rel=0.1)
    assert draws[int(0.99 * len(draws))] == pytest.approx(0.05, rel=0.2)
    again = FaultPlan(Faults(latency=Latency(median=0.01, p99=0.05), seed=1), SandboxStore(None))
    assert sorted(again.latency() for _ in range(4000)) == draws
    assert FaultPlan(Faults(latency=Latency(median=0.02)), SandboxStore(None)).latency() == 0.02
    assert FaultPlan(Faults(), SandboxStore(None)).latency() == 0.0


# --- EnOS: APIM-signed calls ---------------------------------------------------------------------


class Enos:
    """Gets a token, then signs each batch call as the APIM reference describes."""

    def __init__(self, session: aiohttp.ClientSession, handle: SandboxHandle) -> None:
        self.session, self.handle, self.creds = session, handle, handle.credentials
        self.token, self._last = "", 0

    def stamp(self) -> str:
        self._last = max(int(time.time() * 1000), self._last + 1)
        return str(self._last)

    async def token_call(self, verb: str, **extra: str) -> dict[str, Any]:
        stamp = self.stamp()
        key, secret = self.creds["app_key"], self.creds["app_secret"]
        body = {
            "appKey": key,
            "encryption": apim.encryption(key, stamp, secret),
            "timestamp": int(stamp),
            **extra,
        }
        async with self.session.post(f"{self.handle.endpoint}{ENOS_TOKEN}/{verb}", json=body) as resp:
            assert resp.status == 200
            found: dict[str, Any] = await resp.json()
        if found["status"] == 0:
            self.token = found["data"]["accessToken"]
        return found

    async def call(
        self, method: str, path: str, action: str, body: Any = None, *, secret: str | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if not self.token:
            assert (await self.token_call("get"))["status"] == 0
        params = {"action": action, "userId": self.creds["user_id"], "orgId": self.creds["org_id"]}
        raw = b"" if body is None else json.dumps(body).encode()
        headers = apim.sign(self.token, params.items(), raw, self.stamp(), secret or self.creds["app_secret"])
        headers["Content-Type"] = "application/json;charset=UTF-8"
        url = URL(f"{self.handle.endpoint}{path}?{urlencode(params)}", encoded=True)
        async with self.session.request(method, url, data=raw or None, headers=headers) as resp:
            return resp.status, await resp.json(content_type=None), dict(resp.headers)


EXHAUSTED = (429, {"code": 429, "msg": "Resource Exhausted", "data": None})


async def test_enos_quotas_answer_429_per_read_and_write(session: aiohttp.ClientSession) -> None:
    async with sandbox("enos", Faults(read_qps=2, write_qps=1)) as handle:
        api = Enos(session, handle)
        reads = [await api.call("GET", ENOS_FLOWS, "getMyFlow") for _ in range(3)]
        assert [status for status, _, _ in reads] == [200, 200, 429]
        assert reads[2][:2] == EXHAUSTED
        assert (await api.call("GET", ENOS_DIRS, "listWorkFlowDirs"))[:2] == EXHAUSTED  # also a read
        writes = [
            await api.call("POST", ENOS_DIRS, "create", {"parentId": "x", "dirName": "d"}) for _ in range(2)
        ]
        assert writes[0][1]["code"] == 62102  # admitted (and refused by the service itself)
        assert writes[1][:2] == EXHAUSTED
        calls = await inspect(session, handle, "calls")
        assert calls["flows.getMyFlow"] == {"0": 2, "429": 1}
        assert calls["directories.create"] == {"62102": 1, "429": 1}


async def test_enos_daily_cap_throttle_and_server_error_spare_the_token_service(
    session: aiohttp.ClientSession,
) -> None:
    async with sandbox("enos", Faults(daily_cap=1)) as handle:
        api = Enos(session, handle)
        assert (await api.call("GET", ENOS_FLOWS, "getMyFlow"))[0] == 200
        status, body, headers = await api.call("GET", ENOS_FLOWS, "search")
        msg = "Resource Exhausted: the daily call limit of 1 is used up"
        assert (status, body) == (429, {"code": 429, "msg": msg, "data": None})
        expected = math.ceil(quota_day(time.time(), 86400)[1])
        assert 1 <= int(headers["Retry-After"]) <= 86400
        assert abs(int(headers["Retry-After"]) - expected) <= 1
        assert (await api.token_call("refresh", accessToken=api.token))["status"] == 0  # exempt
    async with sandbox("enos", Faults(throttle=1.0)) as handle:
        api = Enos(session, handle)
        assert (await api.call("GET", ENOS_FLOWS, "getMyFlow"))[:2] == EXHAUSTED
        status, body, _ = await api.call("GET", ENOS_FLOWS, "getMyFlow", secret="wrong")
        assert (status, body["code"]) == (200, 497)  # authentication comes first
    async with sandbox("enos", Faults(server_error=1.0)) as handle:
        api = Enos(session, handle)
        answer = await api.call("POST", ENOS_FLOWS, "import", {"flowName": "x"})
        assert answer[:2] == (503, {"code": 503, "msg": "Service Unavailable", "data": None})
        assert (await inspect(session, handle, "calls")) == {
            "flows.import": {"503": 1},
            "token.get": {"0": 1},
        }


async def test_enos_resets_strike_the_token_service_too_and_are_counted_by_call(
    tmp_path: Path, fresh: Callable[[], aiohttp.ClientSession], session: aiohttp.ClientSession
) -> None:
    data = tmp_path / "enos.db"
    async with sandbox("enos", Faults(), data) as handle:
        token = (await Enos(session, handle).token_call("get"))["data"]["accessToken"]
    async with sandbox("enos", Faults(reset=1.0), data) as handle:
        with pytest.raises(aiohttp.ClientConnectionError):
            await Enos(fresh(), handle).token_call("get")
        api = Enos(fresh(), handle)
        api.token = token  # issued before the restart
        with pytest.raises(aiohttp.ClientConnectionError):
            await api.call("GET", ENOS_FLOWS, "getMyFlow")
        calls = await inspect(session, handle, "calls")
        assert calls["token.get"]["reset"] == 1
        assert calls["flows.getMyFlow"]["reset"] == 2  # aiohttp sends a GET again once, on a new connection
        assert set(calls["flows.getMyFlow"]) <= {"reset", "0"}  # "0" when the action ran before the reset


# --- the command line ----------------------------------------------------------------------------


def test_load_faults_merges_the_file_and_the_overrides(tmp_path: Path) -> None:
    toml = tmp_path / "faults.toml"
    toml.write_text("qps = 10\nthrottle = 0.5\n[latency]\nmedian = 0.1\np99 = 0.5\n")
    faults = load_faults(toml, ["qps=20", "latency.median=0.01", "daily_cap=100", "latency.p99=null"])
    assert (faults.qps, faults.throttle, faults.daily_cap) == (20, 0.5, 100)
    assert faults.latency == Latency(median=0.01, p99=None)
    as_json = tmp_path / "faults.json"
    as_json.write_text('{"server_error": 0.25, "seed": 7}')
    assert load_faults(as_json) == Faults(server_error=0.25, seed=7)
    toml.write_text("qps = -1\n")
    with pytest.raises(FaultsError, match=r"faults.toml: qps: Input should be greater than 0"):
        load_faults(toml)
    with pytest.raises(FaultsError, match=r"^--fault: latency.mediam: Extra inputs are not permitted"):
        load_faults(None, ["latency.mediam=1"])
    with pytest.raises(FaultsError, match=r"--fault qps: expected NAME=VALUE"):
        load_faults(None, ["qps"])


def test_sandbox_command_serves_the_faults_of_file_and_options(tmp_path: Path) -> None:
    faults = tmp_path / "faults.toml"
    faults.write_text("throttle = 1.0\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "migrator", "sandbox", "--faults", str(faults), "--fault", "throttle=0",
         "--fault", "server_error=1", "--fault", "latency.median=0.01"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = json.loads(server.stdout.readline())

        async def call() -> tuple[int, dict[str, Any], dict[str, str]]:
            handle = SandboxHandle("emr", line["emr"]["endpoint"], line["emr"]["credentials"], {})
            async with aiohttp.ClientSession() as s:
                return await projects(s, handle)

        assert refused_as(anyio.run(call), 503, "ServiceUnavailable", UNAVAILABLE)
    finally:
        server.terminate()
        server.wait(timeout=10)
    faults.write_text('qps = "lots"\n')
    bad = subprocess.run(
        [sys.executable, "-m", "migrator", "sandbox", "--faults", str(faults)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert f"{faults}: qps: Input should be a valid number" in bad.stderr
