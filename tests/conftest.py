"""Shared test set-up."""

from __future__ import annotations

import os
import socket
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import aioresponses.core
import pytest
from aiohttp.client_reqrep import ClientResponse


class _WriterlessResponse(ClientResponse):
    """aiohttp 3.14 made ``stream_writer`` a required argument, which aioresponses <= 0.7.9 does not
    pass (pnuckowski/aioresponses#289, open). aiohttp 3.14 is a security release, so rather than
    pinning aiohttp down, mocked responses get a stand-in writer that reports nothing uploaded."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        class _Done:
            output_size = 0

        kwargs.setdefault("stream_writer", _Done())
        super().__init__(method, url, **kwargs)


if "stream_writer" in ClientResponse.__init__.__code__.co_varnames:
    _build = aioresponses.core.RequestMatch._build_response

    def _build_response(
        self: Any, *args: Any, response_class: type[ClientResponse] | None = None, **kwargs: Any
    ) -> aiohttp.ClientResponse:
        return _build(self, *args, response_class=response_class or _WriterlessResponse, **kwargs)

    aioresponses.core.RequestMatch._build_response = _build_response  # type: ignore[method-assign]


# --- fixed ports under pytest-xdist ------------------------------------------------------------------
# A test that must tell a server its port cannot take "any free port" (port 0) from the kernel. A
# port found free and released again can be taken by someone else before the server binds it: by the
# kernel, for another worker's port-0 listener or outgoing connection, or by another worker picking
# the same number. So fixed ports come from below the kernel's ephemeral range (which it never hands
# out by itself), in blocks: each xdist worker of a run has its own block, and another run (a second
# checkout's suite on the same machine) most likely other blocks. Each port is still checked free.

_PORT_FLOOR = 10000
_PORT_BLOCK = 200
_port_cursor = 0


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default; macOS starts at 49152


def _worker_block() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...; unset without xdist
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())  # one value per run
    blocks = max(1, (_ephemeral_low() - _PORT_FLOOR) // _PORT_BLOCK)
    start = _PORT_FLOOR + (zlib.crc32(run.encode()) + index) % blocks * _PORT_BLOCK
    return range(start, start + _PORT_BLOCK)


def _all_free(ports: range) -> bool:
    """Bindable on loopback without SO_REUSEADDR, so a port still in TIME_WAIT counts as taken too."""
    socks: list[socket.socket] = []
    try:
        for port in ports:
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", port))
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()
    return True


def _free_ports(count: int) -> int:
    global _port_cursor  # noqa: PLW0603 - one cursor per worker process, so picks move through the block
    block = _worker_block()
    bases = len(block) - count + 1
    for step in range(bases):
        base = block.start + (_port_cursor + step) % bases
        if _all_free(range(base, base + count)):
            _port_cursor = (_port_cursor + step + count) % bases
            return base
    raise RuntimeError(f"no {count} consecutive free ports in {block}")


@pytest.fixture
def free_ports() -> Callable[[int], int]:
    """``free_ports(n)`` gives a base port N with N .. N+n-1 free on loopback and reserved to this
    xdist worker, for a server that must be given its port rather than pick one."""
    return _free_ports


# --- the longest tests at the head of each worker's share ------------------------------------------
#: Tests that take minutes. pytest-xdist's worksteal first hands each worker a contiguous slice of
#: the collection and later steals from the tails; in collection order all three chaos tests sat
#: in the first worker's slice and ran one after another (5 of the suite's 6 minutes). Each now
#: heads a different worker's slice, so they run side by side and the rest fills in around them.
_LONGEST = ("tests/engine/test_chaos.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    longest = [i for i in items if i.nodeid.startswith(_LONGEST)]
    rest = [i for i in items if not i.nodeid.startswith(_LONGEST)]
    spread: list[pytest.Item] = []
    for w in range(workers):
        spread += longest[w::workers] + rest[w * len(rest) // workers : (w + 1) * len(rest) // workers]
    items[:] = spread
