"""Find provider plug-ins by kind. Adding a provider is adding a folder and a name here."""

from __future__ import annotations

import importlib

from migrator.errors import ConfigError
from migrator.providers.base import ProviderPlugin

#: Known kinds, in the order ``migrator sandbox --port N`` assigns ports (N, N+1, N+2).
KINDS: tuple[str, ...] = ("emr", "enos", "dataworks")


def available() -> list[str]:
    """Kinds whose package exists in this build."""
    found = []
    for kind in KINDS:
        try:
            module = importlib.import_module(f"migrator.providers.{kind}")
        except ModuleNotFoundError:
            continue
        if isinstance(getattr(module, "PLUGIN", None), ProviderPlugin):
            found.append(kind)
    return found


def plugin(kind: str) -> ProviderPlugin:
    if kind not in KINDS:
        raise ConfigError(f"unknown provider kind {kind!r}; known kinds: {', '.join(KINDS)}")
    try:
        module = importlib.import_module(f"migrator.providers.{kind}")
    except ModuleNotFoundError as exc:
        raise ConfigError(f"provider kind {kind!r} is not available in this build yet") from exc
    found: ProviderPlugin = module.PLUGIN
    return found
