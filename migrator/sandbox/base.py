"""Settings every sandbox takes, and the application every sandbox starts from."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from migrator.sandbox.faults import CallName, FaultPlan, Faults

if TYPE_CHECKING:
    from migrator.sandbox.storage import SandboxStore


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    """How a sandbox behaves.

    ``data_path`` is the SQLite file that holds what the sandbox holds (objects, async jobs,
    nonces, call counts, daily quota counts) so that a killed and restarted sandbox behaves like
    the real service; ``None`` keeps it in memory for the process's life.
    """

    data_path: Path | None = None
    access_key_id: str = "sandbox-access-key-id"
    access_key_secret: str = "sandbox-access-key-secret"
    job_delay: tuple[float, float] = (0.5, 2.0)
    token_ttl: float = 7200.0
    faults: Faults = field(default_factory=Faults)
    """What the sandbox does wrong on purpose (quotas, throttling, latency, resets...); none by default."""


def sandbox_app(
    store: SandboxStore,
    objects: Callable[[web.Request], Awaitable[web.StreamResponse]],
    faults: FaultPlan,
    call_name: CallName,
) -> web.Application:
    """The application every sandbox starts from: the transport faults on every path but
    ``/_sandbox/*``, ``GET /_sandbox/objects``, and its store closed when the application is.

    ``call_name`` names a request as the sandbox counts it in ``/_sandbox/calls``, for the faults
    that strike before the sandbox has read the request.
    """
    app = web.Application(middlewares=[faults.middleware(call_name)])
    app.router.add_get("/_sandbox/objects", objects)

    async def close(_app: web.Application) -> None:
        store.close()

    app.on_cleanup.append(close)
    return app
