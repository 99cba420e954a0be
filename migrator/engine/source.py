"""Where a run's workflows come from: inventory files, a provider's export files, or its live API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from migrator import inventory
from migrator.config import Config, SourceConfig
from migrator.engine.target import open_provider
from migrator.errors import ConfigError
from migrator.inventory import Entry
from migrator.providers import registry
from migrator.providers.base import Lister

Source = Callable[[], AsyncIterator[Entry]]


@asynccontextmanager
async def open_source(source: SourceConfig, config: Config, state: Path) -> AsyncIterator[Source]:
    """Yield a callable that streams the source's entries (a live provider stays open meanwhile)."""
    if source.kind == "live":
        assert source.provider is not None
        cfg = config.provider(source.provider)
        async with open_provider(cfg, state) as (provider, _):
            if not isinstance(provider, Lister):
                raise ConfigError(f"provider {source.provider!r} ({cfg.kind}) cannot list its workflows yet")
            yield provider.listing
        return
    reader: Callable[[Sequence[Path]], Iterator[Entry]]
    if source.kind == "inventory":
        reader = inventory.read
    else:
        plugin = registry.plugin(source.kind.removesuffix("-export"))
        if plugin.export_reader is None:
            raise ConfigError(f"source.kind {source.kind!r}: {plugin.kind} export files cannot be read yet")
        reader = plugin.export_reader
    paths = source.paths

    async def entries() -> AsyncIterator[Entry]:
        for entry in reader(paths):
            yield entry

    yield entries
