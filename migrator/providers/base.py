"""The Provider protocol: what the engine needs from a target, and nothing provider-specific."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import aiohttp
    from aiohttp import web

    from migrator.config import ProviderConfig, TargetConfig
    from migrator.engine.flow import Flow
    from migrator.inventory import Entry
    from migrator.model import Workflow
    from migrator.sandbox.base import SandboxSettings
    from migrator.store import Item, Part


@dataclass(frozen=True, slots=True)
class Rendered:
    """A workflow turned into the target's request(s), kept in memory only.

    ``target_id`` is derived deterministically from the item key where the target lets the
    client choose ids (DataWorks), so a re-run addresses the same remote object; it is None where
    the target assigns them (EMR). ``warnings`` say what the translation changed.
    """

    target_id: str | None
    payload: Any
    warnings: tuple[str, ...] = ()


def warning(rule: str, message: str) -> str:
    """A translation warning as items store it: ``rule: what happened`` (reports group by rule)."""
    return f"{rule}: {message}"


def warner(warnings: list[str], rule: str) -> Callable[[str], None]:
    """A callback adding ``rule``'s warnings to ``warnings``, for a renderer to hand on.

    It holds the list, not the renderer: a renderer's own method here closed a reference cycle
    (renderer, callback, renderer), so every rendering, and what it held, waited for the garbage
    collector (24,000 objects of cyclic garbage in a run of 2,000 DataWorks workflows).
    """
    return lambda message: warnings.append(warning(rule, message))


def split_warning(text: str) -> tuple[str, str]:
    """The rule and the message of a stored warning (see :func:`warning`)."""
    rule, _, message = text.partition(":")
    return rule.strip(), (message or text).strip()


@dataclass(frozen=True, slots=True)
class UpstreamTarget:
    """An upstream workflow as the target knows it, for rendering a dependency on it."""

    key: str
    name: str
    target_id: str
    external: bool = False
    """Outside the job (``[target.mappings] upstreams``): only the workflow's own id is known."""


@dataclass(frozen=True, slots=True)
class Submitted:
    """The remote result of a submit. ``remote_job_id`` is set when the target works asynchronously."""

    target_id: str
    remote_job_id: str | None = None


class JobStatus(StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Polled:
    """A poll's answer. ``code``: the error code a failed job fails its item with, where the
    provider can tell a kind of failure the engine treats apart (``NameTaken``: sent again by
    each sync); otherwise ``AsyncJobFailed``."""

    status: JobStatus
    error: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Found:
    """What reconciliation found at the target for an item left in ``submitting``."""

    target_id: str
    remote_job_id: str | None = None


class Parts(Protocol):
    """The checkpointed parts of one item (an EMR flow's jobs): intent first, then the remote id.

    A provider calls :meth:`begin` (committed) before each remote create and :meth:`done` after,
    so a resumed submit skips what exists and looks up what was left mid-call.
    """

    key: str
    """The item's key."""

    def get(self, part: str) -> Part | None: ...

    async def owner(self, target_id: str) -> str | None:
        """Another item one of whose parts is ``target_id``, as the store records it."""
        ...

    async def begin(self, part: str) -> None: ...

    async def done(self, part: str, target_id: str, content_hash: str | None = None) -> None:
        """The part exists as ``target_id``, made or updated with content ``content_hash``."""
        ...

    def known(self) -> Mapping[str, Part]: ...

    async def gone(self, part: str) -> None:
        """The part was deleted at the target (an update dropped it)."""
        ...


class Provider(Protocol):
    """A live connection to one target account."""

    kind: str
    flow: Flow

    def render(
        self, workflow: Workflow, target: TargetConfig, upstream: Mapping[str, UpstreamTarget]
    ) -> Rendered:
        """Translate; ``upstream`` maps each resolvable upstream workflow reference to what the
        target knows of it. Raise :class:`~migrator.errors.TranslationError` for what cannot be
        expressed."""
        ...

    async def submit(self, rendered: Rendered, parts: Parts, *, update: bool = False) -> Submitted:
        """Create the workflow, resuming from ``parts``; with ``update`` (a sync found it changed)
        bring what an earlier run made in line with ``rendered`` instead, keeping its ids."""
        ...

    async def delete(self, item: Item, parts: Mapping[str, Part]) -> None:
        """Delete what ``item`` made at the target (``--prune``); what is already gone is no error."""
        ...

    async def poll(self, remote_job_id: str) -> Polled: ...

    async def reconcile(self, item: Item) -> Found | None:
        """Look an item up at the target after a crash left it in ``submitting``; None if absent
        (and then submitting it again must be safe)."""
        ...


@runtime_checkable
class Lister(Protocol):
    """A provider that can read its live workflows back (``source.kind = "live"``, ``export``)."""

    def listing(self) -> AsyncGenerator[Entry, None]: ...


@dataclass(frozen=True, slots=True)
class ProviderPlugin:
    """What a provider folder registers: how to connect, serve its sandbox and read its exports."""

    kind: str
    connect: Callable[[ProviderConfig, aiohttp.ClientSession], Provider]
    sandbox_app: Callable[[SandboxSettings], web.Application]
    sandbox_identity: Callable[[SandboxSettings], dict[str, str]] = field(default=lambda _s: {})
    export_reader: Callable[[Sequence[Path]], Iterator[Entry]] | None = None
