"""Logs off a terminal: JSON lines that carry each item's key and each provider call's request id,
so a failure can be followed into the provider's console; ``--quiet`` and ``--verbose``."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aioresponses import aioresponses
from pydantic import SecretStr
from structlog.contextvars import bound_contextvars

from migrator import log as logsetup
from migrator.config import ProviderConfig
from migrator.errors import ProviderError
from migrator.providers.dataworks.client import DataWorks
from migrator.sample import generate
from tests.engine.support import Harness, migrator

UUID = re.compile(r"^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$")
#: What the embedded Alibaba sandboxes hand out as the AccessKey secret (never to be logged).
SANDBOX_SECRET = "sandbox-access-key-secret"


def _json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every log line; anything else on stderr is the run's summary."""
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_a_failed_items_log_line_has_its_key_and_the_providers_request_id_and_quiet_keeps_only_warnings(
    tmp_path: Path,
) -> None:
    """A workspace id that is no number: DataWorks refuses every import (InvalidParameter.ProjectId)."""
    workflows = list(generate(6, seed=8))
    h = Harness(tmp_path, "dataworks", workflows, 'project_id = "ws-demo"\n')
    h.write("")
    result = migrator("run", h.job, "--config", h.config, "-q")
    assert result.returncode == 1, result.stderr[-3000:]
    lines = _json_lines(result.stderr)
    assert {line["level"] for line in lines} <= {"warning", "error"}, lines  # --quiet
    failed = [line for line in lines if line["event"] == "submit failed"]
    assert sorted(line["key"] for line in failed) == sorted(w.key for w in workflows)
    assert {line["code"] for line in failed} == {"InvalidParameter.ProjectId"}
    assert all(UUID.match(line["request_id"]) for line in failed), failed
    assert len({line["request_id"] for line in failed}) == len(workflows)  # one per call
    # The same request id is kept with the item, for `migrator report`.
    stored = dict(h.rows("SELECT key, error_message FROM items WHERE state = 'failed'"))
    for line in failed:
        assert f"(request {line['request_id']})" in stored[line["key"]]
    summary = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert any("f: finished with failed or invalid items - 6 items: 6 failed" in s for s in summary)


def test_verbose_logs_every_call_with_its_items_key_and_request_id(tmp_path: Path) -> None:
    workflows = list(generate(5, seed=9))
    h = Harness(tmp_path, "dataworks", workflows, "")
    h.write("")
    result = migrator("run", h.job, "--config", h.config, "--verbose")
    assert result.returncode == 0, result.stderr[-3000:]
    assert SANDBOX_SECRET not in result.stderr
    lines = _json_lines(result.stderr)
    calls = [line for line in lines if line["event"] == "call"]
    _, counted = h.sandbox()
    assert Counter(line["call"] for line in calls) == {
        action: sum(outcomes.values()) for action, outcomes in counted.items()
    }
    keys = {w.key for w in workflows}
    assert all(line["key"] in keys for line in calls), calls
    assert all(UUID.match(line["request_id"]) for line in calls), calls
    assert {line["key"] for line in calls if line["call"] == "ImportWorkflowDefinition"} == keys
    assert {line["level"] for line in lines} >= {"debug", "info"}


# --- the client's side, at the aiohttp boundary ----------------------------------------------------


def _dataworks(session: aiohttp.ClientSession) -> DataWorks:
    cfg = ProviderConfig(
        name="dw",
        kind="dataworks",
        endpoint="http://dw.test",
        project_id="10001",
        access_key_id=SecretStr("ak"),
        access_key_secret=SecretStr("sk-not-in-any-log"),
        max_attempts=2,
    )
    dw = DataWorks(cfg, session)

    async def no_wait(_seconds: float) -> None:
        pass

    dw.flow.sleep = no_wait
    return dw


@pytest.fixture
def json_logs() -> Iterator[None]:
    """The run's own log set-up (JSON, debug level), put back to structlog's defaults after."""
    logsetup.configure(verbose=True, json_logs=True)
    yield
    structlog.reset_defaults()


async def test_throttles_and_retries_log_the_request_id_the_header_gives_when_the_body_cannot(
    json_logs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """A throttle (the POP envelope), then a proxy's 502 page that is no JSON but went through the
    gateway (its x-acs-request-id header): each retry line names its call's request id and the
    item's key, and the secret appears nowhere."""
    any_url = re.compile(r"^http://dw\.test/.*$")
    throttled = {"Code": "Throttling.User", "Message": "flow control", "RequestId": "R-THROTTLE"}
    page = "<html>bad gateway</html>"
    async with aiohttp.ClientSession() as session:
        dw = _dataworks(session)
        with aioresponses() as mocked:
            mocked.get(any_url, status=400, payload=throttled)
            mocked.get(any_url, status=502, body=page, headers={"x-acs-request-id": "R-502"})
            mocked.get(any_url, status=502, body=page, headers={"x-acs-request-id": "R-LAST"})
            with bound_contextvars(key="emr:F-1"), pytest.raises(ProviderError) as failed:
                await dw.poll("J1")
    assert (failed.value.code, failed.value.request_id) == ("BadResponse", "R-LAST")
    err = capsys.readouterr().err
    logs = _json_lines(err)
    assert all(line["key"] == "emr:F-1" for line in logs), logs
    retries = [line for line in logs if line["event"] == "retry"]
    assert [(r["code"], r["request_id"]) for r in retries] == [
        ("Throttling.User", "R-THROTTLE"),
        ("BadResponse", "R-502"),
    ]
    calls = [(line["call"], line["status"], line["request_id"]) for line in logs if line["event"] == "call"]
    assert calls == [
        ("GetJobStatus", 400, "R-THROTTLE"),
        ("GetJobStatus", 502, "R-502"),
        ("GetJobStatus", 502, "R-LAST"),
    ]
    assert "sk-not-in-any-log" not in err
