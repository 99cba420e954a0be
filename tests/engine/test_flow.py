"""Flow control in isolation: what each action of an error table does to a call, its item and the run.

The provider side is a scripted coroutine, so each rule is seen exactly; the sandboxes exercise
the same code over real HTTP in tests/engine/test_faults.py.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
import pytest

from migrator.config import ProviderConfig
from migrator.engine.budget import RetryBudget
from migrator.engine.flow import RESIGNS, Flow, tally
from migrator.engine.rate import BETA, AdaptiveRate, Pace
from migrator.errors import Action, ProviderError, ProviderStopped
from migrator.providers.acs import ERRORS as ALIBABA
from migrator.providers.enos.client import ERRORS as ENOS


def script(*answers: ProviderError | str) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """A call that gives ``answers`` in turn (an error is raised, a string returned)."""
    queue = list(answers)
    sent: list[int] = []

    async def fn() -> str:
        sent.append(1)
        answer = queue.pop(0)
        if isinstance(answer, ProviderError):
            raise answer
        return answer

    return fn, sent


def err(code: str, action: Action, retry_after: float | None = None) -> ProviderError:
    return ProviderError(code, "scripted", action=action, retry_after=retry_after)


def quick(**kw: object) -> tuple[Flow, list[float]]:
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    flow = Flow(provider="p", sleep=sleep, **kw)  # type: ignore[arg-type]
    return flow, slept


async def test_throttling_and_5xx_are_retried_with_backoff_and_counted_on_the_item() -> None:
    flow, slept = quick()
    fn, sent = script(
        err("Throttling.User", Action.THROTTLE, 1.5), err("ServiceUnavailable", Action.RETRY), "ok"
    )
    with tally() as cost:
        assert await flow.call("x", fn) == "ok"
    assert len(sent) == 3
    assert slept[0] >= 1.5  # at least what the provider asked for
    assert (cost.calls, cost.retries, cost.throttled) == (3, 2, 1)
    assert (flow.totals.calls, flow.totals.retries, flow.totals.throttled) == (3, 2, 1)


async def test_a_definite_failure_is_raised_at_once_and_proves_the_account() -> None:
    flow, slept = quick()
    fn, sent = script(err("InvalidParameter", Action.FAIL))
    with pytest.raises(ProviderError):
        await flow.call("x", fn)
    assert (len(sent), slept, flow.circuit.proven, flow.circuit.stopped) == (1, [], True, None)


async def test_stop_opens_the_circuit_and_no_later_call_is_sent() -> None:
    flow, _ = quick()
    fn, sent = script(err("InvalidAccessKeyId.NotFound", Action.STOP))
    with pytest.raises(ProviderStopped) as stopped:
        await flow.call("x", fn)
    assert "InvalidAccessKeyId.NotFound" in stopped.value.reason
    later, later_sent = script("ok")
    with pytest.raises(ProviderStopped):
        await flow.call("y", later)
    assert (len(sent), len(later_sent)) == (1, 0)
    assert flow.circuit.opened.is_set()


async def test_a_refused_signature_stops_an_unproven_account_at_the_first_call() -> None:
    flow, _ = quick()
    fn, sent = script(err("SignatureDoesNotMatch", Action.SUSPECT))
    with pytest.raises(ProviderStopped) as stopped:
        await flow.call("x", fn)
    assert "check the credentials" in stopped.value.reason
    assert len(sent) == 1


async def test_a_refused_signature_after_success_is_the_calls_error_and_stops_only_when_it_repeats() -> None:
    flow, _ = quick()
    ok, _ = script("ok")
    await flow.call("x", ok)
    for _ in range(2):
        fn, _ = script(err("SignatureDoesNotMatch", Action.SUSPECT))
        with pytest.raises(ProviderError):
            await flow.call("x", fn)
    assert flow.circuit.stopped is None
    fn, _ = script(err("SignatureDoesNotMatch", Action.SUSPECT))
    with pytest.raises(ProviderStopped):
        await flow.call("x", fn)


async def test_resign_is_sent_again_without_backoff_a_few_times_then_blames_the_clock() -> None:
    """A used nonce can come back after a fresh signature: the HTTP client sends a GET again, nonce
    and all, on a kept-alive connection the server reset after taking it. Under the sandboxes'
    reset fault (10 % of calls, half of them after the change) two in a row stopped the provider
    about once in 400 GETs, and a CI run with it; a refusal that stays after RESIGNS fresh
    signatures still does."""
    flow, slept = quick()
    used = err("SignatureNonceUsed", Action.RESIGN)
    fn, sent = script(*[used] * RESIGNS, "ok")
    assert await flow.call("x", fn) == "ok"
    assert (len(sent), slept) == (RESIGNS + 1, [])
    fn, sent = script(*[err("InvalidTimeStamp.Expired", Action.RESIGN)] * (RESIGNS + 1))
    with pytest.raises(ProviderStopped) as stopped:
        await flow.call("x", fn)
    assert "clock" in stopped.value.reason
    assert len(sent) == RESIGNS + 1


async def test_park_and_a_throttle_asking_for_a_long_wait_stop_until_the_reset() -> None:
    flow, _ = quick()
    fn, _ = script(err("Throttling.User", Action.THROTTLE, retry_after=flow.park_after + 600))
    before = time.time()
    with pytest.raises(ProviderStopped) as stopped:
        await flow.call("x", fn)
    assert stopped.value.until is not None
    assert before + flow.park_after + 600 <= stopped.value.until <= time.time() + flow.park_after + 600
    flow2, _ = quick()
    fn, _ = script(err("Throttling.Api.Risk", Action.PARK, retry_after=30))
    with pytest.raises(ProviderStopped) as risk:
        await flow2.call("x", fn)
    assert risk.value.until is not None
    assert 25 < risk.value.until - time.time() <= 30


async def test_unanswered_creates_are_looked_up_before_being_sent_again() -> None:
    flow, _ = quick()
    fn, sent = script(err("Timeout", Action.RETRY))
    looked: list[int] = []

    async def find() -> str | None:
        looked.append(1)
        return "found-id"

    assert await flow.call("create", fn, write=True, find=find) == "found-id"
    assert (len(sent), len(looked)) == (1, 1)
    # Nothing found: sent again. A throttle proves nothing was made: sent again without a lookup.
    fn, sent = script(err("Transport", Action.RETRY), err("Throttling", Action.THROTTLE), "made")
    looked.clear()

    async def absent() -> str | None:
        looked.append(1)
        return None

    assert await flow.call("create", fn, write=True, find=absent) == "made"
    assert (len(sent), len(looked)) == (3, 1)


async def test_until_the_account_answers_one_call_at_a_time_then_full_concurrency() -> None:
    flow, _ = quick(concurrency=8)
    in_flight = peak = 0
    answered = False
    before_answer = 0

    async def fn() -> str:
        nonlocal in_flight, peak, answered, before_answer
        in_flight += 1
        peak = max(peak, in_flight)
        if not answered:
            before_answer = max(before_answer, in_flight)
        await anyio.sleep(0.05)
        in_flight -= 1
        answered = True
        return "ok"

    async with anyio.create_task_group() as tg:
        for _ in range(16):
            tg.start_soon(flow.call, "x", fn)
    assert before_answer == 1
    assert peak == 8


async def test_an_unreachable_provider_stops_after_a_few_unanswered_calls() -> None:
    flow, _ = quick(max_attempts=2)
    sent = 0

    async def down() -> str:
        nonlocal sent
        sent += 1
        raise err("Transport", Action.RETRY)

    for _ in range(5):  # each keeps its own answer: it may have landed
        with pytest.raises(ProviderError):
            await flow.call("x", down)
    with pytest.raises(ProviderStopped) as stopped:
        await flow.call("x", down)
    assert "unanswered" in stopped.value.reason
    assert sent == 10  # five calls, two attempts each; the sixth is not sent


async def test_a_spent_retry_budget_opens_the_circuit_instead_of_a_retry_storm() -> None:
    flow, _ = quick(retry_budget=20, max_attempts=10)
    ok, _ = script("ok")
    await flow.call("x", ok)  # proven: the account works, then the provider starts failing
    fn, sent = script(*[err("InternalError", Action.RETRY)] * 10)
    with pytest.raises(ProviderError):  # its own answer: it may have landed
        await flow.call("x", fn)
    assert len(sent) == 5  # 20 tokens pay for four retries of 5
    assert flow.circuit.stopped is not None
    assert "retry budget" in flow.circuit.stopped.reason


def test_the_budget_refunds_a_success_and_never_exceeds_its_capacity() -> None:
    budget = RetryBudget(10)
    assert budget.take(5)
    assert budget.take(5)
    assert not budget.take(5)
    budget.refund(5)
    budget.refund(100)
    assert budget.tokens == 10


def test_pacing_spaces_calls_evenly_at_the_rate() -> None:
    pace = Pace(rate=10)
    waits = [pace.reserve(now=100.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def test_cubic_cuts_once_per_episode_then_climbs_back_to_the_ceiling() -> None:
    now = [0.0]
    rate = AdaptiveRate(ceiling=20.0, clock=lambda: now[0])
    for _ in range(40):  # measured: 20 calls/s for two seconds
        rate.reserve()
        now[0] += 0.05
    sent_before = now[0] - 0.01
    rate.throttled(sent_at=sent_before)
    cut = rate.rate
    assert cut == pytest.approx(20 * BETA, rel=0.05)
    rate.throttled(sent_at=sent_before)  # a call of the same burst: no second cut
    assert rate.rate == cut
    for _ in range(200):
        now[0] += 0.05
        rate.reserve()
        rate.answered()
    assert rate.rate == pytest.approx(20.0)


def test_an_unconfigured_rate_is_unpaced_until_the_first_throttle() -> None:
    now = [0.0]
    rate = AdaptiveRate(ceiling=None, clock=lambda: now[0])
    assert [rate.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    for _ in range(30):
        now[0] += 0.01
        rate.reserve()
    rate.throttled(sent_at=now[0])
    assert rate.rate is not None
    assert rate.rate < 100


@pytest.mark.parametrize(
    ("table", "code", "status", "action"),
    [
        (ALIBABA, "Throttling", 400, Action.THROTTLE),
        (ALIBABA, "Throttling.User", 400, Action.THROTTLE),
        (ALIBABA, "Throttling.Api", 400, Action.THROTTLE),
        (ALIBABA, "Throttling.Api.Risk", 400, Action.PARK),
        (ALIBABA, "ServiceUnavailable", 503, Action.RETRY),
        (ALIBABA, "SomethingNew", 502, Action.RETRY),
        (ALIBABA, "SignatureNonceUsed", 400, Action.RESIGN),
        (ALIBABA, "InvalidTimeStamp.Expired", 400, Action.RESIGN),
        (ALIBABA, "SignatureDoesNotMatch", 400, Action.SUSPECT),
        (ALIBABA, "InvalidAccessKeyId.NotFound", 404, Action.STOP),
        (ALIBABA, "Forbidden.RAM", 403, Action.STOP),
        (ALIBABA, "InvalidParameter", 400, Action.FAIL),
        (ENOS, "429", 429, Action.THROTTLE),
        (ENOS, "1203", None, Action.REFRESH),
        (ENOS, "1001", None, Action.RESIGN),
        (ENOS, "1002", None, Action.STOP),
        (ENOS, "1003", None, Action.STOP),
        (ENOS, "497", None, Action.SUSPECT),
        (ENOS, "62105", None, Action.STOP),
        (ENOS, "62109", None, Action.RETRY),
        (ENOS, "62102", None, Action.FAIL),
        (ENOS, "503", 503, Action.RETRY),
    ],
)
def test_error_tables(table: object, code: str, status: int | None, action: Action) -> None:
    assert table.action(code, status) is action  # type: ignore[attr-defined]


def test_edition_defaults_and_sandboxes_without_quota() -> None:
    dw = ProviderConfig(name="dw", kind="dataworks")
    assert (dw.limits().read_qps, dw.limits().write_qps, dw.limits().qps) == (50, 20, None)
    basic = ProviderConfig(name="dw", kind="dataworks", edition="basic")
    assert basic.limits().qps == 5
    mixed = ProviderConfig(name="dw", kind="dataworks", write_qps=10)
    assert (mixed.limits().read_qps, mixed.limits().write_qps) == (50, 10)
    assert ProviderConfig(name="s", kind="dataworks", sandbox=True).limits().write_qps is None
    assert ProviderConfig(name="e", kind="emr").limits().qps == 20


async def test_a_stop_ends_the_backoff_of_calls_waiting_to_retry() -> None:
    flow = Flow(provider="p")  # real waits, which the circuit's opening cuts short
    ok, _ = script("ok")
    await flow.call("x", ok)
    waiting, _ = script(err("Throttling", Action.THROTTLE, retry_after=30), "never")
    ambiguous, _ = script(err("InternalError", Action.RETRY, retry_after=30), "never")
    stopper, _ = script(err("Forbidden.RAM", Action.STOP))
    outcomes: dict[str, BaseException] = {}

    async def run(name: str, fn: Callable[[], Awaitable[str]]) -> None:
        try:
            await flow.call(name, fn)
        except (ProviderError, ProviderStopped) as exc:
            outcomes[name] = exc

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "throttled", waiting)
        tg.start_soon(run, "ambiguous", ambiguous)
        await anyio.sleep(0.1)
        tg.start_soon(run, "stopper", stopper)
    assert time.monotonic() - started < 5
    assert isinstance(outcomes["throttled"], ProviderStopped)  # refused: goes back unsent
    assert isinstance(outcomes["ambiguous"], ProviderError)  # may have landed: keeps its answer
    assert outcomes["ambiguous"].code == "InternalError"


async def test_a_stop_met_after_a_try_that_may_have_landed_keeps_that_tries_answer() -> None:
    """Unanswered (it may have landed), then the quota is used up: the item must not go back as
    "not sent", or the next run would create it a second time; it keeps the unanswered error,
    which leaves it ``submitting`` for reconciliation."""
    flow, _ = quick()
    fn, sent = script(err("ServiceUnavailable", Action.RETRY), err("QuotaExceeded", Action.PARK, 3600))
    with pytest.raises(ProviderError) as raised:
        await flow.call("x", fn, write=True)
    assert not isinstance(raised.value, ProviderStopped)
    assert (raised.value.code, raised.value.action) == ("ServiceUnavailable", Action.RETRY)
    assert len(sent) == 2
    assert flow.circuit.stopped is not None, "the stop still holds for every later call"
    refused, _ = script(err("QuotaExceeded", Action.PARK, 3600))
    flow2, _ = quick()
    with pytest.raises(ProviderStopped):
        await flow2.call("x", refused, write=True)


@pytest.mark.parametrize("later", [Action.SUSPECT, Action.UNSENT])
async def test_an_unexecuted_answer_after_a_try_that_may_have_landed_keeps_that_tries_answer(
    later: Action,
) -> None:
    flow, _ = quick(max_attempts=2)
    flow.circuit.answered()  # a proven account: a refused signature does not stop it at once
    fn, sent = script(err("ServiceUnavailable", Action.RETRY), err("Later", later))
    with pytest.raises(ProviderError) as raised:
        await flow.call("x", fn, write=True)
    assert (raised.value.code, len(sent)) == ("ServiceUnavailable", 2)


async def test_a_definite_refusal_after_a_try_that_may_have_landed_stands() -> None:
    flow, _ = quick()
    fn, _ = script(err("ServiceUnavailable", Action.RETRY), err("InvalidParameter", Action.FAIL))
    with pytest.raises(ProviderError) as raised:
        await flow.call("x", fn, write=True)
    assert raised.value.code == "InvalidParameter"
