"""Serving sandboxes on loopback: one for the engine (embedded) or all of them (``migrator sandbox``).

Both paths go through :func:`running`, so an embedded sandbox and a served one are the same
program: the provider plug-in's aiohttp app on its own port, plus what a client needs to reach it
(endpoint, credentials it accepts, and identity such as the DataWorks workspace id).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import anyio
from aiohttp import web

from migrator.providers import registry
from migrator.sandbox.base import SandboxSettings

#: Kinds whose sandbox sits behind the emulated Alibaba POP gateway (AccessKey credentials).
ALIBABA_KINDS = frozenset({"emr", "dataworks"})


@dataclass
class SandboxHandle:
    """A running sandbox: where it listens and what a client needs to call it."""

    kind: str
    endpoint: str
    credentials: dict[str, str]
    identity: dict[str, str]

    def describe(self) -> dict[str, Any]:
        """The per-kind entry of the ``migrator sandbox`` JSON line."""
        return {"endpoint": self.endpoint, "credentials": dict(self.credentials), **self.identity}


def _credentials(kind: str, settings: SandboxSettings) -> dict[str, str]:
    if kind in ALIBABA_KINDS:
        return {"access_key_id": settings.access_key_id, "access_key_secret": settings.access_key_secret}
    if kind == "enos":  # APIM: the app key and secret, plus the user and org every batch call names
        identity = registry.plugin(kind).sandbox_identity(settings)
        return {"app_key": settings.access_key_id, "app_secret": settings.access_key_secret, **identity}
    return {}


@asynccontextmanager
async def running(
    kind: str, settings: SandboxSettings, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[SandboxHandle]:
    """Serve ``kind``'s sandbox on ``host:port`` (0: any free port) for the duration of the block."""
    plugin = registry.plugin(kind)
    runner = web.AppRunner(plugin.sandbox_app(settings), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield SandboxHandle(
            kind=kind,
            endpoint=f"http://{bound_host}:{bound_port}",
            credentials=_credentials(kind, settings),
            identity=plugin.sandbox_identity(settings),
        )
    finally:
        await runner.cleanup()


async def inspect(kind: str, data: Path) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """What a sandbox's data file holds and the calls it counted, as its inspection endpoints
    (``/_sandbox/objects``, ``/_sandbox/calls``) answer, served briefly from that file."""
    async with running(kind, SandboxSettings(data_path=data)) as handle, aiohttp.ClientSession() as s:
        async with s.get(f"{handle.endpoint}/_sandbox/objects") as resp:
            objects: dict[str, Any] = await resp.json()
        async with s.get(f"{handle.endpoint}/_sandbox/calls") as resp:
            calls: dict[str, dict[str, int]] = await resp.json()
    return objects, calls


def data_file(data: Path | None, kind: str) -> Path | None:
    """Each kind's own SQLite file beside ``data``: ``state/sandbox.db`` -> ``state/sandbox.dataworks.db``."""
    return None if data is None else data.with_name(f"{data.stem}.{kind}.db")


async def serve(
    port: int | None,
    data: Path | None,
    *,
    settings: SandboxSettings | None = None,
    out: TextIO | None = None,
) -> None:
    """Serve every available sandbox until cancelled; print one JSON line once all are listening.

    With ``port`` the ports are ``port + index in registry.KINDS`` (emr, enos, dataworks), so they
    do not move when a kind is missing from the build; otherwise each takes a free port.
    ``settings`` is the common base; each kind gets its own data file derived from ``data``.
    """
    base = settings or SandboxSettings()
    out = out or sys.stdout
    async with AsyncExitStack() as stack:
        described: dict[str, Any] = {}
        for kind in registry.available():
            kind_settings = dataclasses.replace(base, data_path=data_file(data, kind))
            kind_port = 0 if port is None else port + registry.KINDS.index(kind)
            handle = await stack.enter_async_context(running(kind, kind_settings, port=kind_port))
            described[kind] = handle.describe()
        out.write(json.dumps(described) + "\n")
        out.flush()
        await anyio.sleep_forever()
