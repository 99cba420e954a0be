"""The poller against a provider that never answers a job's status: the deadline still holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from migrator.config import PollPolicy
from migrator.engine.flow import Flow
from migrator.engine.poller import Poller
from migrator.errors import Action, ProviderError
from migrator.store import Move, Record, State, Store

JOB = "j"


class Unanswered:
    """A provider whose every status call ends in a retryable error (a 5xx after retries)."""

    def __init__(self) -> None:
        self.flow = Flow(provider="x", concurrency=2)
        self.polls = 0

    async def poll(self, job: str) -> Any:
        self.polls += 1
        raise ProviderError("ServiceUnavailable", "try later", action=Action.RETRY, status=503)


async def test_a_job_whose_status_is_never_answered_fails_at_its_deadline(tmp_path: Path) -> None:
    """Polled only on answers, the deadline never struck a job whose polls all ended in errors:
    the run polled it for ever. It fails at the deadline, with the last error in its message."""
    async with await Store.open(tmp_path / "s.db") as store:
        run = await store.start_run(JOB, "migrate", "x")
        start = anyio.current_time()
        polling = {"remote_job_id": "J1", "polls": 0, "next_poll_at": 0.0, "deadline_at": 0.3}
        await store.apply(
            JOB,
            run,
            [
                Record("a", "a", "inv:1", "x", State.SUBMITTED, "h", "T1"),
                Move("a", frozenset({State.SUBMITTED}), State.POLLING, polling),
            ],
        )
        provider = Unanswered()
        settled: list[tuple[str, State]] = []

        async def on_settled(key: str, name: str, state: State) -> None:
            settled.append((key, state))

        class Quiet:
            def read(self, n: int, *, finished: bool = False) -> None:
                pass

            def settled(self, state: State, n: int = 1, *, earlier: bool = False) -> None:
                pass

        done = anyio.Event()
        done.set()
        clock = lambda: anyio.current_time() - start  # noqa: E731
        policy = PollPolicy(initial=0.05, factor=1, max=0.05, deadline=0.3)
        poller = Poller(JOB, run, policy, provider, store, Quiet(), clock, done, on_settled)  # type: ignore[arg-type]
        with anyio.fail_after(10):
            await poller.run()
        item = await store.item(JOB, "a")
        assert item is not None
        assert (item.state, item.error_code) == (State.FAILED, "AsyncJobTimeout")
        assert item.error_message is not None
        assert "not known to have finished (ServiceUnavailable: try later) after 0.3s" in item.error_message
        assert provider.polls >= 2
        assert settled == [("a", State.FAILED)]
