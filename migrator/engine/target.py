"""Open a connection to a configured provider, starting its embedded sandbox when asked to.

An embedded sandbox keeps its data beside the state database (``<state>.sandbox-<name>.db``),
so a killed and restarted run finds what the "remote" side already holds, exactly as it would
against the real service.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import aiohttp
from pydantic import SecretStr

from migrator.config import ProviderConfig
from migrator.providers import registry
from migrator.providers.base import Provider
from migrator.sandbox.base import SandboxSettings
from migrator.sandbox.server import running


def sandbox_data_path(state: Path, name: str) -> Path:
    return state.with_name(f"{state.stem}.sandbox-{name}.db")


@asynccontextmanager
async def open_provider(cfg: ProviderConfig, state: Path) -> AsyncIterator[tuple[Provider, ProviderConfig]]:
    """Yield the provider and the effective config (endpoint and credentials filled for a sandbox)."""
    plugin = registry.plugin(cfg.kind)
    async with AsyncExitStack() as stack:
        if cfg.sandbox:
            settings = SandboxSettings(
                data_path=sandbox_data_path(state, cfg.name),
                job_delay=cfg.sandbox_options.job_delay,
                token_ttl=cfg.sandbox_options.token_ttl,
                faults=cfg.sandbox_options.faults,
            )
            handle = await stack.enter_async_context(running(cfg.kind, settings))
            creds, ident = handle.credentials, handle.identity
            cfg = cfg.model_copy(
                update={
                    "endpoint": handle.endpoint,
                    # Alibaba sandboxes hand out an AccessKey pair, EnOS an app key and secret.
                    "access_key_id": SecretStr(creds.get("access_key_id") or creds["app_key"]),
                    "access_key_secret": SecretStr(creds.get("access_key_secret") or creds["app_secret"]),
                    "project_id": cfg.project_id or ident.get("project_id"),
                    "region": ident.get("region_id", cfg.region),
                    "cluster_id": cfg.cluster_id or ident.get("cluster_id"),
                    "user_id": cfg.user_id or creds.get("user_id") or ident.get("user_id"),
                    "org_id": cfg.org_id or creds.get("org_id") or ident.get("org_id"),
                }
            )
        connector = aiohttp.TCPConnector(limit=cfg.concurrency * 2)
        # Every call carries its own signature or token: cookies a gateway sets are not read, and
        # not keeping them saves parsing each response's headers into a jar.
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        )
        yield plugin.connect(cfg, session), cfg
