"""Retries and timeouts in each target's units and bounds, every change warned."""

from __future__ import annotations

import pytest

from migrator.model import Task
from migrator.providers.dataworks.render import LIMITS as DATAWORKS
from migrator.providers.emr.render import LIMITS as EMR
from migrator.providers.enos.render import LIMITS as ENOS
from migrator.translate.retries import Converted, Limits, convert


def run(limits: Limits, **task: object) -> tuple[Converted, list[str]]:
    warnings: list[str] = []
    sent = convert(
        Task.model_validate({"name": "t", **task}), limits, lambda r, m: warnings.append(f"{r}: {m}")
    )
    return sent, warnings


@pytest.mark.parametrize(
    ("retries", "interval", "sent", "warned"),
    [
        (0, 0, (0, 0), []),
        (5, 300, (5, 300), []),  # the bounds themselves pass
        (6, 300, (5, 300), ["retries: task 't': max_retries 6 clamped to EMR's 5"]),
        (5, 301, (5, 300), ["retries: task 't': retry_interval 301s clamped to EMR's 300s"]),
        (9, 900.5, (5, 300), ["max_retries 9 clamped", "retry_interval 900.5s clamped"]),
        (2, 12.4, (2, 12), ["retries: task 't': retry_interval 12.4s rounded to 12s"]),
    ],
)
def test_emr_bounds_retries_to_5_and_intervals_to_300_seconds(
    retries: int, interval: float, sent: tuple[int, int], warned: list[str]
) -> None:
    out, warnings = run(EMR, max_retries=retries, retry_interval=interval)
    assert (out.retries, out.interval) == sent
    assert len(warnings) == len(warned)
    for expected, got in zip(warned, warnings, strict=True):
        assert expected in got


def test_dataworks_intervals_are_milliseconds_and_unbounded() -> None:
    out, warnings = run(DATAWORKS, max_retries=12, retry_interval=2.5)
    assert (out.retries, out.interval, warnings) == (12, 2500, [])
    out, warnings = run(DATAWORKS, retry_interval=0.0004)
    assert out.interval == 0
    assert warnings == ["retries: task 't': retry_interval 0.0004s rounded to 0ms"]


@pytest.mark.parametrize("limits", [EMR, DATAWORKS, ENOS], ids=["emr", "dataworks", "enos"])
@pytest.mark.parametrize(
    ("timeout", "sent", "warned"),
    [(None, 0, False), (3600, 3600, False), (90.2, 91, True), (0.5, 1, True)],
)
def test_timeouts_are_whole_seconds_rounded_up_never_to_zero(
    limits: Limits, timeout: float | None, sent: int, warned: bool
) -> None:
    out, warnings = run(limits, timeout=timeout)
    assert out.timeout == sent
    assert warnings == ([f"timeout: task 't': timeout {timeout:g}s rounded up to {sent}s"] if warned else [])


def test_enos_takes_whole_seconds_without_bounds() -> None:
    out, warnings = run(ENOS, max_retries=10, retry_interval=600)
    assert (out.retries, out.interval, warnings) == (10, 600, [])
