"""The proof that the HTML report works where it is read: the demo migration, reported as HTML,
opened in a real headless Chromium. The chart must be drawn from the run's own numbers (one bar
group per time bucket, totals equal to the store's), and the page must render to a real image.

CI installs Debian's chromium (.ci/run); without it this test fails rather than skips, so a
machine that cannot check the report never passes as one that did.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from tests.engine.support import migrator
from tests.report.dom import read_chart

CHROMIUM = Path("/usr/bin/chromium")
QUIET = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
DONE_RGB = (0x2E, 0x7D, 0x32)  # COLORS["done"] of migrator/report/chart.py
# The tallest bar is at least 1/1.625 of the plot's 220 px (a 1-2-5 axis tops the peak by less
# than a step), so about 135 px at this window width; nothing else on the page is that tall.
TALLEST_BAR_PX = 100


def chromium(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to check the "
            "HTML report; .ci/run installs it"
        )
    return subprocess.run(
        [str(CHROMIUM), *QUIET, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def longest_run(img: Image.Image, rgb: tuple[int, int, int]) -> int:
    """The longest vertical run of pixels of exactly ``rgb`` in any column."""
    width, height = img.size
    pixels = img.load()
    assert pixels is not None
    best = 0
    for x in range(width):
        run = 0
        for y in range(height):
            run = run + 1 if pixels[x, y][:3] == rgb else 0
            best = max(best, run)
    return best


def test_demo_report_draws_its_throughput_chart_in_chromium(tmp_path: Path) -> None:
    state = tmp_path / "demo.db"
    run = migrator("run", "jobs/demo.toml", "--state", state)
    assert run.returncode == 0, run.stderr[-2000:]
    page = tmp_path / "out.html"
    made = migrator("report", "--format", "html", "-o", page, "--state", state)
    assert made.returncode == 0, made.stderr[-2000:]
    assert made.stdout == ""
    data = json.loads(migrator("report", "--format", "json", "--state", state).stdout)
    with sqlite3.connect(state) as db:
        (done,) = db.execute("SELECT COUNT(*) FROM items WHERE job = 'demo' AND state = 'done'").fetchone()
    assert done == 60

    dom = chromium(tmp_path / "profile-dom", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    chart = read_chart(dom.stdout)
    buckets = data["throughput"]["buckets"]
    assert len(chart.svgs) == 1
    assert int(chart.svgs[0]["data-buckets"]) == len(chart.buckets) == len(buckets) >= 1
    assert [int(b["data-done"]) for b in chart.buckets] == [b["done"] for b in buckets]
    assert sum(int(b["data-done"]) for b in chart.buckets) == done
    assert sum(int(b["data-settled"]) for b in chart.buckets) == done
    assert int(chart.svgs[0]["data-settled"]) == done
    for bucket, title, rects in zip(chart.buckets, chart.titles, chart.rects, strict=True):
        settled = int(bucket["data-settled"])
        assert f": {settled} settled" in title
        assert [r["class"] for r in rects] == (["done"] if settled else [])
    # Bar heights are proportional to the counts: one height per item, whichever the bucket. They
    # are drawn to 0.1 px, so the tallest bar gives the height per item within 0.05 px over its
    # count, and every bar matches its count times that within 0.1 px. (Dividing each height by
    # its count and rounding gave two values, 3.6 and 3.7, when a bucket held few items.)
    bars = [
        (float(r["height"]), int(b["data-done"]))
        for b, rects in zip(chart.buckets, chart.rects, strict=True)
        for r in rects
    ]
    tallest, most = max(bars, key=lambda bar: bar[1])
    per_item = tallest / most
    assert per_item > 1
    assert all(abs(height - count * per_item) <= 0.1 + 1e-9 for height, count in bars), (per_item, bars)
    text = " ".join(chart.text)
    assert "Migration report: demo" in text
    assert f"{done} items settled in this run" in text
    assert "Run history" in text

    shot = tmp_path / "report.png"
    taken = chromium(
        tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.exists(), taken.stderr[-2000:]
    assert shot.stat().st_size > 20_000
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
    assert rgb.size == (1280, 2000)
    colors = rgb.getcolors(maxcolors=1 << 20)
    assert colors is not None
    assert len(colors) > 100  # text, cards, bars: not a blank or error page
    assert max(n for n, _ in colors) < 0.9 * 1280 * 2000
    assert longest_run(rgb, DONE_RGB) >= TALLEST_BAR_PX  # the chart's bars were painted
