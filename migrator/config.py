"""Config and job files -> validated pydantic models.

``config.toml`` says where things are (providers, credentials, limits, the state database);
a job file says what to move from where to where. Without a config file every provider kind is
an embedded sandbox, so ``migrator run jobs/demo.toml`` works on a fresh machine.

Secrets are never written in a config file: credential fields are ``$ENV_NAME`` references,
resolved at load time into :class:`pydantic.SecretStr` so they cannot leak through a repr.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from migrator.errors import ConfigError
from migrator.log import register_secret
from migrator.model import TaskKind
from migrator.providers.registry import KINDS
from migrator.sandbox.faults import Faults
from migrator.translate.kinds import check_overrides
from migrator.translate.mapping import Mappings

DEFAULT_STATE = Path("state/migrator.db")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PollPolicy(_Strict):
    """How an async import is polled: first after ``initial`` s, then ``factor`` x, capped at ``max``.

    The defaults keep the number of status calls per import at about two for jobs of 1-10 s,
    and give up on a job after ``deadline`` s (the item fails with a clear reason).
    """

    initial: float = Field(default=2.0, gt=0)
    factor: float = Field(default=2.0, ge=1)
    max: float = Field(default=60.0, gt=0)
    deadline: float = Field(default=1800.0, gt=0)

    def delay(self, polls_done: int) -> float:
        return float(min(self.max, self.initial * self.factor**polls_done))


class SandboxOptions(_Strict):
    """Behaviour of an embedded sandbox (only used when ``sandbox = true``)."""

    job_delay: tuple[float, float] = (0.2, 1.5)
    token_ttl: float = 7200.0
    faults: Faults = Faults()


@dataclass(frozen=True, slots=True)
class Limits:
    """Calls per second an account may make: overall, and per read/write class (None: no quota)."""

    qps: float | None = None
    read_qps: float | None = None
    write_qps: float | None = None


Edition = Literal["basic", "standard", "professional", "enterprise"]

#: Published quotas per account and region (reference: alibaba-apis.md 6.5). Basic to
#: Professional share 5 QPS over all calls and have a daily cap (which parks the run when hit:
#: the gateway's answer says so); Enterprise has separate read and write quotas.
DATAWORKS_EDITIONS: dict[str, Limits] = {
    "basic": Limits(qps=5),
    "standard": Limits(qps=5),
    "professional": Limits(qps=5),
    "enterprise": Limits(read_qps=50, write_qps=20),
}
#: Without a published quota, a conservative rate that adaptive pacing corrects downwards if the
#: gateway throttles: EMR Data Development publishes none, EnOS API owners set their own per API.
DEFAULT_LIMITS: dict[str, Limits] = {"emr": Limits(qps=20), "enos": Limits(qps=10)}


class ProviderConfig(_Strict):
    """One target (or source) account."""

    name: str
    kind: str
    sandbox: bool = False
    endpoint: str | None = None
    project_id: str | None = None
    region: str = "cn-hangzhou"
    cluster_id: str | None = Field(default=None, description="EMR: the cluster flows run on (C-...)")
    user_id: str | None = Field(default=None, description="EnOS: the user the API acts as (u...)")
    org_id: str | None = Field(default=None, description="EnOS: the user's organization (o...)")
    access_key_id: SecretStr | None = None
    access_key_secret: SecretStr | None = None
    signature: Literal["v3", "v1"] = "v3"
    concurrency: int = Field(default=16, ge=1, le=1024)
    edition: Edition | None = Field(
        default=None, description="DataWorks edition, for its quotas (default: enterprise)"
    )
    qps: float | None = Field(default=None, gt=0, description="quota on all calls per second")
    read_qps: float | None = Field(default=None, gt=0, description="quota on read calls per second")
    write_qps: float | None = Field(default=None, gt=0, description="quota on write calls per second")
    retry_budget: int = Field(default=500, ge=0, description="client-wide retry tokens (a retry costs 5)")
    max_attempts: int = Field(default=4, ge=1, le=20)
    park_after: float = Field(
        default=60.0, gt=0, description="a throttle asking to wait longer than this (s) parks the run"
    )
    timeout: float = Field(default=30.0, gt=0)
    poll: PollPolicy = PollPolicy()
    sandbox_options: SandboxOptions = SandboxOptions()

    def limits(self) -> Limits:
        """The quotas in force: each configured one, else the kind's (and edition's) default.

        A sandbox has no quota unless its faults give it one, so it gets none by default either.
        """
        if self.sandbox:
            base = Limits()
        elif self.kind == "dataworks":
            base = DATAWORKS_EDITIONS[self.edition or "enterprise"]
        else:
            base = DEFAULT_LIMITS.get(self.kind, Limits())
        return Limits(
            self.qps if self.qps is not None else base.qps,
            self.read_qps if self.read_qps is not None else base.read_qps,
            self.write_qps if self.write_qps is not None else base.write_qps,
        )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in KINDS:
            raise ValueError(f"unknown kind {v!r}; known kinds: {', '.join(KINDS)}")
        return v


class Config(_Strict):
    state: Path = DEFAULT_STATE
    providers: dict[str, ProviderConfig]

    def provider(self, name: str) -> ProviderConfig:
        if name in self.providers:
            return self.providers[name]
        known = ", ".join(sorted(self.providers)) or "none"
        raise ConfigError(f"provider {name!r} is not configured (configured: {known})")


class SourceConfig(_Strict):
    """Where workflows come from.

    ``inventory``: canonical JSON Lines / JSON array files; ``<kind>-export``: a provider's own
    export files (``emr-export``); ``live``: a configured provider's API, read page by page.
    """

    kind: str = "inventory"
    paths: tuple[Path, ...] = ()
    provider: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> SourceConfig:
        exports = {f"{k}-export" for k in KINDS}
        if self.kind not in {"inventory", "live", *exports}:
            known = ", ".join(["inventory", "live", *sorted(exports)])
            raise ValueError(f"source.kind {self.kind!r} is not one of {known}")
        if self.kind == "live" and not self.provider:
            raise ValueError("source.provider is required for a live source")
        if self.kind != "live" and not self.paths:
            raise ValueError(f"source.paths is required for a {self.kind} source")
        return self


class TargetConfig(_Strict):
    """Where workflows go, and how source values translate there (``[target]`` of a job file)."""

    provider: str
    folder: str = Field(default="", description="folder at the target under which source folders are placed")
    submitter: str | None = Field(default=None, description="EnOS: the big-data account flows run as (doAs)")
    kinds: dict[TaskKind, str] = Field(
        default_factory=dict,
        description="[target.kinds]: canonical task kind -> target type, over the tables",
    )
    mappings: Mappings = Field(
        default_factory=Mappings, description="[target.mappings]: source -> target values"
    )


class JobConfig(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    mode: Literal["migrate", "sync"] = "migrate"
    source: SourceConfig
    target: TargetConfig
    path: Path


def _read_toml(path: Path) -> dict[str, object]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _only(path: Path, where: str, table: dict[str, object], known: tuple[str, ...]) -> None:
    """Refuse keys a table does not have: a misspelt ``[state] pth`` or ``[job] nmae`` must not
    fall back to a default (checkpoints in another database, a job under another name)."""
    for key in table:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {near[0]!r}?" if near else f"known: {', '.join(known)}"
            raise ConfigError(f"{path}: {where}{key} is not a known key ({hint})")


def _explain(path: Path, exc: ValidationError) -> ConfigError:
    lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return ConfigError(f"{path}: " + "; ".join(lines))


def _resolve_env(path: Path, field: str, value: object) -> SecretStr | None:
    """``$NAME`` -> the environment variable's value. Literal secrets are refused."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("$"):
        raise ConfigError(f'{path}: {field} must be an environment reference like "$NAME", not a literal')
    name = value[1:]
    if name not in os.environ:
        raise ConfigError(f"{path}: {field} refers to environment variable {name}, which is not set")
    # Every credential is masked in log lines from the moment it is loaded, whichever provider
    # and command it serves (a live source's as much as the target's).
    register_secret(os.environ[name])
    return SecretStr(os.environ[name])


def default_config() -> Config:
    """No config file: every kind is an embedded sandbox named after its kind."""
    return Config(providers={k: ProviderConfig(name=k, kind=k, sandbox=True) for k in KINDS})


def load_config(path: Path | None) -> Config:
    if path is None:
        return default_config()
    raw = _read_toml(path)
    _only(path, "", raw, ("providers", "state"))
    base = path.parent
    providers: dict[str, object] = {}
    raw_providers = raw.get("providers", {})
    if not isinstance(raw_providers, dict):
        raise ConfigError(f"{path}: [providers] must be a table of [providers.NAME] tables")
    for name, body in raw_providers.items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: providers.{name} must be a table")
        entry = dict(body)
        entry["name"] = name
        entry.setdefault("kind", name)
        creds = entry.pop("credentials", {})
        if not isinstance(creds, dict):
            raise ConfigError(f"{path}: providers.{name}.credentials must be a table")
        _only(path, f"providers.{name}.credentials.", creds, ("access_key_id", "access_key_secret"))
        if not entry.get("sandbox"):
            creds.setdefault("access_key_id", "$ALIBABA_CLOUD_ACCESS_KEY_ID")
            creds.setdefault("access_key_secret", "$ALIBABA_CLOUD_ACCESS_KEY_SECRET")
            for field in ("access_key_id", "access_key_secret"):
                entry[field] = _resolve_env(path, f"providers.{name}.credentials.{field}", creds.get(field))
        providers[name] = entry
    state = raw.get("state", {})
    if not isinstance(state, dict):
        raise ConfigError(f"{path}: [state] must be a table")
    _only(path, "state.", state, ("path",))
    state_path = state.get("path")
    if state_path is not None and not isinstance(state_path, str):
        raise ConfigError(f"{path}: state.path must be a file path (a string)")
    try:
        return Config.model_validate(
            {
                "providers": providers,
                "state": base / state_path if isinstance(state_path, str) else DEFAULT_STATE,
            }
        )
    except ValidationError as exc:
        raise _explain(path, exc) from None


def _target_kind(provider: object, config: Config | None) -> str | None:
    """The target's provider kind, when it can be told before connecting: from ``config``, else
    from the default config's naming (each provider named after its kind)."""
    if not isinstance(provider, str):
        return None
    if config is not None and provider in config.providers:
        return config.providers[provider].kind
    return provider if config is None and provider in KINDS else None


def load_job(path: Path, config: Config | None = None) -> JobConfig:
    """Read and check a job file; with ``config``, ``[target.kinds]`` is checked against the types
    of the target's kind (without, against the kind its name gives, or every target's types)."""
    raw = _read_toml(path)
    _only(path, "", raw, ("job", "source", "target"))
    job = raw.get("job", {})
    if not isinstance(job, dict):
        raise ConfigError(f"{path}: [job] must be a table")
    _only(path, "job.", job, ("name", "mode"))
    target = raw.get("target", {})
    kinds = target.get("kinds") if isinstance(target, dict) else None
    if isinstance(target, dict) and isinstance(kinds, dict):
        errors = check_overrides(_target_kind(target.get("provider"), config), kinds)
        if errors:
            raise ConfigError(f"{path}: " + "; ".join(f"target.kinds: {e}" for e in errors))
    source = raw.get("source", {})
    if isinstance(source, dict) and isinstance(source.get("paths"), list):
        source = {**source, "paths": [path.parent / p for p in source["paths"]]}
    try:
        return JobConfig.model_validate(
            {
                "name": job.get("name", path.stem),
                "mode": job.get("mode", "migrate"),
                "source": source,
                "target": target,
                "path": path,
            }
        )
    except ValidationError as exc:
        raise _explain(path, exc) from None
