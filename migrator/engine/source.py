"""Where a run's workflows come from: inventory files, a provider's export files, or its live API."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from migrator import inventory
from migrator.config import Config, SourceConfig
from migrator.engine.target import open_provider
from migrator.errors import ConfigError
from migrator.inventory import Entry
from migrator.providers import registry
from migrator.providers.base import Lister

Source = Callable[[], AsyncGenerator[Entry, None]]


class Files:
    """A source read from files: called, ``reader`` streams every record of ``paths``."""

    def __init__(self, reader: Callable[[Sequence[Path]], Iterator[Entry]], paths: Sequence[Path]) -> None:
        self.reader = reader
        self.paths = tuple(paths)

    async def __call__(self) -> AsyncGenerator[Entry, None]:
        for entry in self.reader(self.paths):
            yield entry


class Inventory(Files):
    """A canonical inventory source. Called, it reads its files in full; a migration reads them
    through their read frontier instead (engine.frontier), which needs their paths."""

    def __init__(self, paths: Sequence[Path]) -> None:
        super().__init__(inventory.read, paths)


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
    if source.kind == "inventory":
        yield Inventory(source.paths)
        return
    plugin = registry.plugin(source.kind.removesuffix("-export"))
    if plugin.export_reader is None:
        raise ConfigError(f"source.kind {source.kind!r}: {plugin.kind} export files cannot be read yet")
    yield Files(plugin.export_reader, source.paths)
