"""Faults a sandbox can inject, as set in a faults file, on the command line or in ``config.toml``.

Every sandbox reads the same :class:`Faults`, so a test or a benchmark can put any provider under
the same pressure: per-account quotas (read/write and daily, as DataWorks editions have them),
throttling, server errors, connection resets, answers slower than the client's timeout, a latency
distribution, and asynchronous imports that fail or never finish. All are off by default.

At run time a :class:`FaultPlan` carries them out: its middleware adds latency, resets and slow
answers on every path but ``/_sandbox/*``; each sandbox asks :meth:`FaultPlan.admit` once the
caller is authenticated (quotas are per account) and words a refusal as its provider does.
"""

from __future__ import annotations

import enum
import json
import math
import random
import socket
import struct
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import anyio
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

if TYPE_CHECKING:
    from migrator.sandbox.storage import SandboxStore


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Latency(_Strict):
    """Added before every call: log-normal with this median and 99th percentile (fixed if no p99)."""

    median: float = Field(default=0.0, ge=0)
    p99: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Latency:
        if self.p99 is not None and self.p99 < self.median:
            raise ValueError("latency.p99 must not be below latency.median")
        return self


class Faults(_Strict):
    """What a sandbox does wrong, on purpose. Probabilities are per call, in [0, 1]."""

    qps: float | None = Field(default=None, gt=0, description="per-account quota on all calls")
    read_qps: float | None = Field(default=None, gt=0, description="per-account quota on read calls")
    write_qps: float | None = Field(default=None, gt=0, description="per-account quota on write calls")
    daily_cap: int | None = Field(default=None, ge=0, description="calls per account per quota day")
    quota_day: float = Field(default=86400.0, gt=0, description="length of a quota day in seconds")
    throttle: float = Field(default=0.0, ge=0, le=1, description="throttling answers, whatever the quota")
    server_error: float = Field(default=0.0, ge=0, le=1, description="5xx answers")
    reset: float = Field(default=0.0, ge=0, le=1, description="connections reset without an answer")
    slow: float = Field(default=0.0, ge=0, le=1, description="answers sent only after slow_seconds")
    slow_seconds: float = Field(default=35.0, ge=0)
    latency: Latency = Latency()
    job_fail: float = Field(default=0.0, ge=0, le=1, description="async imports that fail")
    job_hang: float = Field(default=0.0, ge=0, le=1, description="async imports that never finish")
    import_lost_answer: float = Field(
        default=0.0, ge=0, le=1, description="EnOS: an import commits, then answers 62109"
    )
    account_locked: float = Field(default=0.0, ge=0, le=1, description="EnOS: calls answered 62105")
    seed: int | None = Field(default=None, description="seed for the fault dice, for repeatable runs")


# --- the runtime ---------------------------------------------------------------------------------

#: Alibaba's daily quotas roll over at 00:00 Asia/Shanghai (UTC+8); quota days are aligned to it.
QUOTA_DAY_OFFSET = 8 * 3600.0
#: Sentinel's leap array for a QPS rule: a 1 s window made of two 500 ms buckets.
BUCKET_MS = 500
WINDOW_MS = 1000
#: The 99th percentile of the standard normal distribution, to turn a p99 into a log-normal sigma.
_Z99 = 2.3263478740408408
#: Alibaba actions that only read (the rest write), as DataWorks editions split their quotas.
ALIBABA_READ_PREFIXES = ("Get", "List", "Describe", "Query", "Search", "Check")

#: Names a request as the sandbox counts it in ``/_sandbox/calls``.
CallName = Callable[[web.Request], str]


def is_alibaba_read(action: str) -> bool:
    return action.startswith(ALIBABA_READ_PREFIXES)


def quota_day(now: float, length: float) -> tuple[int, float]:
    """The quota day ``now`` falls in, and the seconds left until the next one starts.

    Days are consecutive windows of ``length`` seconds, aligned so that 86400 s days start at
    00:00 UTC+8; the index is stable across restarts, so a persisted count keeps its meaning.
    """
    shifted = now + QUOTA_DAY_OFFSET
    index = math.floor(shifted / length)
    return index, (index + 1) * length - shifted


class Refusal(enum.Enum):
    """Why a call was refused before its action ran, in the order the checks are made."""

    DAILY_CAP = "daily_cap"
    QUOTA = "quota"
    THROTTLE = "throttle"
    SERVER_ERROR = "server_error"


@dataclass(frozen=True, slots=True)
class Refused:
    """A refusal; for the daily cap, the cap and the seconds until the next quota day."""

    reason: Refusal
    daily_cap: int = 0
    retry_after: float = 0.0


class LeapArray:
    """Sentinel's sliding window for one QPS rule: two 500 ms buckets, the count being the current
    bucket plus the previous one, so a burst admitted at the end of one bucket still counts for
    the first half of the next second, as the real limiter does."""

    __slots__ = ("_counts", "_starts")

    def __init__(self) -> None:
        self._starts = [-WINDOW_MS, -WINDOW_MS]
        self._counts = [0, 0]

    def count(self, now_ms: int) -> int:
        return sum(n for s, n in zip(self._starts, self._counts, strict=True) if now_ms - s < WINDOW_MS)

    def add(self, now_ms: int) -> None:
        start = now_ms - now_ms % BUCKET_MS
        i = (now_ms // BUCKET_MS) % 2
        if self._starts[i] != start:
            self._starts[i], self._counts[i] = start, 0
        self._counts[i] += 1


class FaultPlan:
    """The faults of one sandbox, at run time: one seeded die for every random choice, the QPS
    windows of every account, and the daily counts (kept in the sandbox's store, so that a
    restarted sandbox keeps them, as the real quota service does).

    Transport faults (latency, resets, slow answers) come from :meth:`middleware`; each sandbox
    asks :meth:`admit` once the caller is authenticated, and answers a refusal in its own words.
    """

    def __init__(
        self, faults: Faults, store: SandboxStore, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.faults = faults
        self._store = store
        self._clock = clock
        self._rng = random.Random(faults.seed)
        self._windows: dict[tuple[str, str], LeapArray] = {}

    def roll(self, probability: float) -> bool:
        """True with ``probability``; the die is not cast for an impossible fault, so enabling one
        fault does not change the draws of a seeded run more than it must."""
        return probability > 0 and self._rng.random() < probability

    def latency(self) -> float:
        """Seconds to add before a call: log-normal from median and p99, fixed without a p99."""
        median, p99 = self.faults.latency.median, self.faults.latency.p99
        if median <= 0:
            return 0.0
        if p99 is None or p99 <= median:
            return median
        return self._rng.lognormvariate(math.log(median), math.log(p99 / median) / _Z99)

    def job_fault(self) -> Literal["fail", "hang"] | None:
        """How a new async job ends by fault: ``"fail"``, ``"hang"``, or None (as it would)."""
        fail, hang = self.faults.job_fail, self.faults.job_hang
        if fail <= 0 and hang <= 0:
            return None
        draw = self._rng.random()
        if draw < fail:
            return "fail"
        return "hang" if draw < fail + hang else None

    def admit(self, account: str, *, write: bool) -> Refused | None:
        """Let an authenticated call through, or say why not: the daily cap, the QPS quotas, then
        the throttle and server-error dice. Only an admitted call counts against the quotas."""
        f = self.faults
        now = self._clock()
        day, left = quota_day(now, f.quota_day)
        if f.daily_cap is not None and self._store.quota_used(account, day) >= f.daily_cap:
            return Refused(Refusal.DAILY_CAP, f.daily_cap, left)
        now_ms = int(now * 1000)
        rules = {"all": f.qps, "write": f.write_qps} if write else {"all": f.qps, "read": f.read_qps}
        quotas = [(self._window(account, rule), limit) for rule, limit in rules.items() if limit is not None]
        if any(window.count(now_ms) + 1 > limit for window, limit in quotas):  # Sentinel's test
            return Refused(Refusal.QUOTA)
        if self.roll(f.throttle):
            return Refused(Refusal.THROTTLE)
        if self.roll(f.server_error):
            return Refused(Refusal.SERVER_ERROR)
        if f.daily_cap is not None and not self._store.use_quota(account, day, f.daily_cap):
            return Refused(Refusal.DAILY_CAP, f.daily_cap, left)  # another process took the last one
        for window, _limit in quotas:
            window.add(now_ms)
        return None

    def _window(self, account: str, rule: str) -> LeapArray:
        return self._windows.setdefault((account, rule), LeapArray())

    def middleware(self, call_name: CallName) -> Middleware:
        """Latency, connection resets and slow answers on every path but ``/_sandbox/*``.

        ``call_name`` names a call for ``/_sandbox/calls`` as the sandbox counts it, since a reset
        may strike before the sandbox has looked at the call.
        """

        @web.middleware
        async def faults(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.path.startswith("/_sandbox/"):
                return await handler(request)
            delay = self.latency()
            reset = self.roll(self.faults.reset)
            before = reset and self._rng.random() < 0.5
            slow = not reset and self.roll(self.faults.slow)
            if delay > 0:
                await anyio.sleep(delay)
            if before:  # nothing happens: the request never reached the service
                return self._reset(request, call_name)
            try:
                response = await handler(request)
            except web.HTTPException:
                if reset:
                    return self._reset(request, call_name)
                raise
            if reset:  # the change is made, the answer is lost
                return self._reset(request, call_name)
            if slow:
                self._store.count_call(call_name(request), "slow")
                await _hold(request, self.faults.slow_seconds)
            return response

        return faults

    def _reset(self, request: web.Request, call_name: CallName) -> web.StreamResponse:
        """Reset the connection (RST, no answer); the response returned is never written."""
        self._store.count_call(call_name(request), "reset")
        transport = request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:  # linger 0: close sends RST, as a dropped load balancer would
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            transport.abort()
        return web.Response(status=500)


async def _hold(request: web.Request, seconds: float) -> None:
    """Wait ``seconds`` before the answer goes out, or less if the client has gone meanwhile."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await anyio.sleep(min(left, 0.05))


# --- reading faults from the command line ------------------------------------------------------


class FaultsError(ValueError):
    """A faults file or ``--fault`` setting that cannot be used; the message names where and what."""


def load_faults(path: Path | None = None, overrides: Sequence[str] = ()) -> Faults:
    """Faults from a TOML or JSON file (``.json``: JSON, else TOML) whose top level is the
    :class:`Faults` fields, with ``NAME=VALUE`` overrides on top (``latency.median=0.01``).

    The file is validated on its own first, so an error names the file or ``--fault``.
    """
    data: dict[str, Any] = {}
    if path is not None:
        data = _read(path)
        _validate(data, str(path))
    for item in overrides:
        name, sep, raw = item.partition("=")
        keys = name.strip().split(".")
        if not sep or not all(keys):
            raise FaultsError(f"--fault {item}: expected NAME=VALUE, like qps=20 or latency.median=0.01")
        _assign(data, keys, _value(raw.strip()), item)
    return _validate(data, "--fault" if overrides else str(path))


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FaultsError(f"{path}: cannot read it: {exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise FaultsError(f"{path}: not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise FaultsError(f"{path}: the top level must be a table of fault settings")
    return data


def _value(raw: str) -> Any:
    """Numbers where the text looks like one, ``null``/``none`` for None, else the text."""
    if raw.lower() in ("null", "none"):
        return None
    for parse in (int, float):
        try:
            return parse(raw)
        except ValueError:
            pass
    return raw


def _assign(data: dict[str, Any], keys: list[str], value: Any, item: str) -> None:
    for key in keys[:-1]:
        inner = data.setdefault(key, {})
        if not isinstance(inner, dict):
            raise FaultsError(f"--fault {item}: {key} is not a table")
        data = inner
    data[keys[-1]] = value


def _validate(data: dict[str, Any], where: str) -> Faults:
    try:
        return Faults.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise FaultsError(f"{where}: {problems}") from None
