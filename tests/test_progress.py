"""Live progress: the figures a run shows (rate, ETA, totals), the terminal view, and a real run
under a pseudo-terminal."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from migrator.engine.flow import Flow
from migrator.progress import LiveProgress, RateWindow, Tracker, duration, eta, eta_text
from migrator.store import State
from tests.engine.support import ROOT


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_is_measured_over_the_last_minute() -> None:
    clock = Clock()
    window = RateWindow(clock)
    for second in range(1, 121):  # 10 items/s for a minute, then 1 item/s
        clock.now += 1
        window.sample(second * 10 if second <= 60 else 600 + (second - 60))
        if second == 60:
            assert window.rate() == pytest.approx(10.0)
    assert window.rate() == pytest.approx(1.0)
    clock.now += 30  # nothing for half a minute
    window.sample(660)
    assert window.rate() == pytest.approx(30 / 60)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.2, "1s"), (45, "45s"), (60, "1m 00s"), (185, "3m 05s"), (7380, "2h 03m")]
)
def test_durations_read_as_people_say_them_rounded_up(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_eta_is_what_is_left_at_the_rate_and_unknown_when_nothing_moves() -> None:
    assert eta(100, 4.0) == 25.0
    assert eta(100, 0.0) is None
    assert eta(0, 0.0) == 0.0


def test_tracker_counts_earlier_settlements_as_done_but_not_in_the_rate() -> None:
    clock = Clock()
    flow = Flow(provider="dw")
    tracker = Tracker("j", "dw", flow, known=50, clock=clock)
    tracker.read(30)
    tracker.settled(State.DONE, 20, earlier=True)  # settled by an earlier run, read again
    clock.now += 10
    tracker.settled(State.DONE, 4)
    tracker.settled(State.FAILED)
    tracker.tick()
    f = tracker.figures()
    assert (f["settled"], f["total"], f["reading"]) == (25, 50, True)  # at least what the store knew
    assert f["rate"] == 0.5  # 5 items in 10 s, the 20 earlier ones left out
    assert f["eta"] == 50.0
    assert eta_text(f) == ">= 50s"  # the total may still grow
    tracker.read(40, finished=True)
    f = tracker.figures()
    assert (f["total"], f["reading"]) == (70, False)
    assert eta_text(f) == "1m 30s"


def _drawn(tracker: Tracker) -> str:
    console = Console(file=io.StringIO(), force_terminal=True, record=True, width=120)
    console.print(LiveProgress(tracker))
    return console.export_text()


def test_the_terminal_view_shows_done_total_rate_eta_throttles_and_retries() -> None:
    clock = Clock()
    flow = Flow(provider="dw")
    tracker = Tracker("j", "dataworks", flow, known=60, clock=clock)
    tracker.read(60, finished=True)
    clock.now += 10
    tracker.settled(State.DONE, 40)
    tracker.settled(State.INVALID, 5)
    tracker.tick()
    flow.totals.throttled, flow.totals.retries = 3, 7
    drawn = _drawn(tracker)
    row, states = drawn.splitlines()[:2]
    assert re.search(r"dataworks\s+[━╸]+\s+45/60\s+4\.5/s\s+ETA 4s\s+3 throttled\s+7 retries", row), drawn
    assert states.strip() == "40 done, 5 invalid"

    tracker.settled(State.DONE, 15)
    tracker.tick()
    assert "60/60" in _drawn(tracker)
    assert "ETA done" in _drawn(tracker)

    flow.circuit.open("quota used up until tomorrow", time.time() + 3600)
    stopped = _drawn(tracker)
    assert "ETA stopped" in stopped
    assert "stopped: quota used up until tomorrow" in stopped


def test_a_run_on_a_terminal_draws_live_progress_then_the_summary(tmp_path: Path) -> None:
    """The demo job under a pseudo-terminal: rich draws the progress rows, logs are readable
    lines (not JSON), and the final frame and summary say all is done."""
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "140", "LINES": "40"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "migrator", "run", "jobs/demo.toml", "--state", str(tmp_path / "s.db")],
        cwd=ROOT,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the follower side closed: the run has ended
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    assert proc.wait(timeout=30) == 0
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", "replace"))
    row = r"dataworks\s+[━╸]+\s+(\d+)/(\d+)\+?\s+[\d.]+/s\s+ETA ([^\n]+?)\s+\d+ throttled"
    frames = re.findall(row, screen)
    assert frames, screen[-3000:]
    assert frames[-1] == ("60", "60", "done")
    assert "run started" in screen
    assert '{"' not in screen  # readable log lines on a terminal, not JSON
    assert "demo: all done - 60 items: 60 done" in screen


def test_a_syncs_orphans_count_in_the_total_though_they_were_not_read() -> None:
    tracker = Tracker("j", "dw", Flow(provider="dw"), known=100)
    tracker.read(90, finished=True)
    tracker.settled(State.SKIPPED, 90)
    tracker.settled(State.ORPHANED, 10)
    assert (tracker.figures()["settled"], tracker.figures()["total"]) == (100, 100)
