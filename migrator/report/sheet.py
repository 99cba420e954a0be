"""The report as CSV, one row per item in key order: what a user pastes into a spreadsheet to sort
and filter.

A cell that starts like a formula (``=``, ``+``, ``-``, ``@``) is prefixed with ``'`` so that a
spreadsheet shows it rather than evaluates it: names and messages are user and provider data.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncGenerator, AsyncIterable
from contextlib import aclosing
from typing import TextIO

from migrator.store import Item

COLUMNS = ("key", "name", "state", "target", "target_id", "error_code", "error_message", "warnings")


def cell(value: str | None) -> str:
    """A spreadsheet cell that shows, never evaluates, what it holds (plan's CSV uses it too)."""
    text = value or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


async def write(
    rows: AsyncIterable[Item], warned: AsyncGenerator[tuple[str, tuple[str, ...]], None], out: TextIO
) -> None:
    """Write the header and a row per item as the store yields them: a million rows are never
    held at once. ``warned`` (``Store.each_warned``) gives each row its warning count; both come
    in key order, so they are merged as they are read."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    async with aclosing(warned):
        warning = await anext(warned, None)
        async for i in rows:
            while warning is not None and warning[0] < i.key:
                warning = await anext(warned, None)
            count = len(warning[1]) if warning is not None and warning[0] == i.key else 0
            writer.writerow(
                [
                    *(cell(v) for v in (i.key, i.name, i.state.value, i.target, i.target_id)),
                    *(cell(v) for v in (i.error_code, i.error_message)),
                    count,
                ]
            )
