"""Settings every sandbox takes; each provider's sandbox reads what applies to it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from migrator.sandbox.storage import SandboxStore


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    """How a sandbox behaves.

    ``data_path`` is the SQLite file that holds what the sandbox holds (objects, async jobs,
    nonces, call counts) so that a killed and restarted sandbox behaves like the real service;
    ``None`` keeps it in memory for the process's life.
    """

    data_path: Path | None = None
    access_key_id: str = "sandbox-access-key-id"
    access_key_secret: str = "sandbox-access-key-secret"
    job_delay: tuple[float, float] = (0.5, 2.0)
    latency: float = 0.0
    token_ttl: float = 7200.0
    faults: Mapping[str, float] = field(default_factory=dict)
    """Named fault probabilities a sandbox understands, e.g. ``{"import_lost_answer": 0.3}``."""


def sandbox_app(
    store: SandboxStore, objects: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.Application:
    """The application every sandbox starts from: ``GET /_sandbox/objects``, and its store closed
    when the application is."""
    app = web.Application()
    app.router.add_get("/_sandbox/objects", objects)

    async def close(_app: web.Application) -> None:
        store.close()

    app.on_cleanup.append(close)
    return app
