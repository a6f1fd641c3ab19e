"""Settings and the targets file: the only module that reads the environment.

Everything is validated when the process starts, so a misspelt key or a
missing secret stops the worker with ``file: key: reason (did you mean …)``
instead of failing the first job at 3 a.m. Secrets are `SecretStr` from the
moment they are read, so no repr, log line or result can show them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ConfigError
from worker.models import TARGET_NAME
from worker.validation import describe_config, did_you_mean, named_tables

ENGINE_NAMES = ("camunda8", "camunda7", "processmaker4", "blueworks", "tas")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
QUEUE_TYPES = ("quorum", "classic")
BROKER_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp", "sentinel")
REDIS_SCHEMES = ("redis", "rediss", "unix", "sentinel")
REDIS_BROKERS = ("redis://", "rediss://", "unix://", "sentinel://")
"""A broker URL of one of these is a Redis the ledger can share."""


class Settings(BaseSettings):
    """Process-wide settings from ``STARTPROC_*`` variables or a ``.env`` file."""

    model_config = SettingsConfigDict(env_prefix="STARTPROC_", env_file=".env", extra="ignore")

    broker_url: str | None = None
    redis_url: str | None = None
    targets: Path = Path("config/targets.toml")
    schedules: Path = Path("config/schedules.toml")
    results_queue: str = "startproc.results"
    jobs_queue: str = "startproc.jobs"
    # RabbitMQ only: the type of both queues. "quorum" (replicated; the jobs queue is bound
    # to a topic exchange for Celery's native delayed delivery of countdown retries) or
    # "classic" (the layout before quorum queues, for servers that still hold classic ones).
    rabbitmq_queue_type: Literal["quorum", "classic"] = "quorum"
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    # In-call retries (tenacity): short, for blips and backpressure.
    http_attempts: Annotated[int, Field(ge=1, le=20)] = 4
    http_backoff_initial: Annotated[float, Field(gt=0)] = 0.2
    http_backoff_max: Annotated[float, Field(gt=0)] = 5.0
    # Celery-level retries: long, for outages; after the last one the job is "exhausted".
    task_max_retries: Annotated[int, Field(ge=0)] = 8
    task_retry_backoff_max: Annotated[float, Field(gt=0)] = 600.0
    task_time_limit: Annotated[int, Field(ge=1)] = 300
    visibility_timeout: Annotated[int, Field(ge=2)] = 3600
    lease_seconds: Annotated[int, Field(ge=1)] = 120
    # How long a lookup keeps searching before "not there" (C8 search lags seconds).
    reconcile_window: Annotated[float, Field(ge=0)] = 10.0
    retention_days: Annotated[int, Field(ge=1)] = 30
    # A message delivered this many times without being decided is poison: DLQ.
    max_deliveries: Annotated[int, Field(ge=1)] = 5
    sweep_interval: Annotated[float, Field(gt=0)] = 30.0
    # Jobs our producers sent that have no result after this many seconds are
    # re-enqueued by the sweeper (the broker may have lost them); 0 turns it off.
    redrive_after: Annotated[float, Field(ge=0)] = 3600.0
    worker_pool: Literal["threads", "prefork", "solo", "gevent", "eventlet"] = "threads"
    worker_concurrency: Annotated[int, Field(ge=1, le=1024)] = 16
    # Python's GIL switch interval in the worker (seconds; Python's default is 0.005).
    # Shorter lets Celery's consumer thread fetch the next job sooner while pool
    # threads run: +20-25 % jobs/s with the threads pool (benchmarks/README.md).
    worker_switch_interval: Annotated[float, Field(gt=0, le=0.1)] = 0.001
    # HTTP intake (`startproc serve`): comma-separated bearer tokens, any one of which is accepted.
    intake_tokens: SecretStr | None = None
    # Largest request body accepted by POST /jobs and by POST /batches (bytes; over -> 413).
    intake_max_body_bytes: Annotated[int, Field(ge=1024)] = 1024 * 1024
    intake_max_batch_bytes: Annotated[int, Field(ge=1024)] = 64 * 1024 * 1024
    # Worker-side Prometheus exporter port (`celery -A worker worker`); unset = no exporter.
    metrics_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    # Redis Sentinel (sentinel:// URLs): the monitored master's name, and the sentinels' own
    # password when they have one (the master's password goes in the URL).
    sentinel_master: str | None = None
    sentinel_password: SecretStr | None = None
    # JSON-lines file every process appends its spans to (debugging, tests); tracing otherwise
    # follows the standard OTEL_* variables (README "Tracing").
    traces_file: Path | None = None

    @model_validator(mode="after")
    def _visibility_outlasts_tasks(self) -> Settings:
        """A broker that redelivers a job still running would start it twice."""
        if self.visibility_timeout <= self.task_time_limit:
            raise ValueError(
                f"visibility_timeout ({self.visibility_timeout}s) must be longer than "
                f"task_time_limit ({self.task_time_limit}s)"
            )
        return self

    @model_validator(mode="after")
    def _sentinel_named(self) -> Settings:
        """A sentinel:// URL finds its master by name: without one, nothing could connect."""
        for url in (self.broker_url, self.redis_url):
            if url and url.lower().startswith("sentinel://"):
                from worker.sentinel import SentinelURL, require_master

                try:
                    SentinelURL.parse(url)
                    require_master(self.sentinel_master)
                except ConfigError as exc:
                    raise ValueError(str(exc)) from None
        return self

    @field_validator("broker_url", "redis_url", mode="before")
    @classmethod
    def _url(cls, value: object, info: ValidationInfo) -> object:
        """Empty is unset; another scheme than the ones that work is refused at start."""
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        text = str(value).strip()
        scheme = urlsplit(text).scheme.lower()
        allowed = BROKER_SCHEMES if info.field_name == "broker_url" else REDIS_SCHEMES
        if scheme not in allowed:
            shown = _without_password(text)
            example = (
                "redis://host:6379/0 or amqp://user:password@host:5672//"
                if info.field_name == "broker_url"
                else "redis://host:6379/0"
            )
            raise ValueError(
                f"{shown!r} is not a {'broker' if info.field_name == 'broker_url' else 'Redis'} "
                f"URL: {scheme or 'no'} scheme, expected {', '.join(allowed)} (e.g. {example})"
            )
        return text

    @field_validator("rabbitmq_queue_type", mode="before")
    @classmethod
    def _queue_type(cls, value: object) -> object:
        """Either case; anything else names the variable, the choices and a suggestion."""
        text = str(value).strip().lower()
        if text not in QUEUE_TYPES:
            raise ValueError(
                f"STARTPROC_RABBITMQ_QUEUE_TYPE must be 'quorum' or 'classic', "
                f"not {value!r}{did_you_mean(text, QUEUE_TYPES)}"
            )
        return text

    def effective_redis_url(self) -> str | None:
        """The ledger/results Redis: explicit, else the broker when it is Redis."""
        if self.redis_url:
            return self.redis_url
        if self.broker_url and self.broker_url.startswith(REDIS_BROKERS):
            return self.broker_url
        return None

    def require_broker(self) -> str:
        if not self.broker_url:
            raise ConfigError(
                "STARTPROC_BROKER_URL is not set: run `startproc up` and export the URL it "
                "prints, or point it at your Redis or RabbitMQ"
            )
        return self.broker_url

    def require_redis(self) -> str:
        url = self.effective_redis_url()
        if url:
            return url
        if not self.broker_url:
            raise ConfigError(
                "STARTPROC_BROKER_URL is not set (nor STARTPROC_REDIS_URL): run `startproc up` "
                "and export the URL it prints, or point them at your Redis"
            )
        raise ConfigError(
            "STARTPROC_REDIS_URL is not set and the broker is not Redis: "
            "the idempotency ledger and results index need a Redis"
        )


# ---------------------------------------------------------------- auth blocks


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoAuth(_Strict):
    type: Literal["none"] = "none"


class BasicAuth(_Strict):
    type: Literal["basic"]
    username: Annotated[str, Field(min_length=1)]
    password: SecretStr


class BearerAuth(_Strict):
    type: Literal["bearer"]
    token: SecretStr


class OAuth2Auth(_Strict):
    type: Literal["oauth2"]
    token_url: str
    client_id: Annotated[str, Field(min_length=1)]
    client_secret: SecretStr | None = None
    audience: str | None = None
    scope: str | None = None
    grant: Literal["client_credentials", "password"] = "client_credentials"
    username: str | None = None
    password: SecretStr | None = None
    refresh_margin: Annotated[float, Field(ge=0)] = 30.0

    @field_validator("token_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _http_url(value)

    @model_validator(mode="after")
    def _grant_fields(self) -> OAuth2Auth:
        if self.grant == "password" and (not self.username or self.password is None):
            raise ValueError("grant 'password' needs username and password")
        if self.grant == "client_credentials" and self.client_secret is None:
            raise ValueError("grant 'client_credentials' needs client_secret")
        return self


Auth = Annotated[NoAuth | BasicAuth | BearerAuth | OAuth2Auth, Field(discriminator="type")]
AUTH_MODELS: dict[str, type[_Strict]] = {
    "none": NoAuth,
    "basic": BasicAuth,
    "bearer": BearerAuth,
    "oauth2": OAuth2Auth,
}


# ---------------------------------------------------------------- targets


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {value!r}")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    return value.rstrip("/")


class TargetBase(_Strict):
    """Keys every engine's target accepts (CONTRACT section 2)."""

    name: Annotated[str, Field(pattern=TARGET_NAME)]
    base_url: str
    timeout: Annotated[float, Field(gt=0, le=600)] = 10.0
    connect_timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    rate_limit: Annotated[str, Field(pattern=r"^\d+(\.\d+)?/(s|m|h)$")] | None = None
    auth: Auth = NoAuth()
    retry_ambiguous: bool = False
    verify_tls: bool = True
    max_connections: Annotated[int, Field(ge=1, le=1024)] = 64

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return _http_url(value)


class Camunda8Target(TargetBase):
    engine: Literal["camunda8"]
    api_version: Literal["8.8", "8.9", "8.6", "8.6-alpha"] = "8.8"


class Camunda7Target(TargetBase):
    engine: Literal["camunda7"]


class ProcessMaker4Target(TargetBase):
    engine: Literal["processmaker4"]


class BlueworksTarget(TargetBase):
    engine: Literal["blueworks"]
    on_behalf_of: str | None = None


class TasTarget(TargetBase):
    engine: Literal["tas"]
    mark_created_by_api: bool = False


Target = Camunda8Target | Camunda7Target | ProcessMaker4Target | BlueworksTarget | TasTarget
TARGET_MODELS: dict[str, type[TargetBase]] = {
    "camunda8": Camunda8Target,
    "camunda7": Camunda7Target,
    "processmaker4": ProcessMaker4Target,
    "blueworks": BlueworksTarget,
    "tas": TasTarget,
}


def expand_vars(value: Any, env: Mapping[str, str], where: str, problems: list[str]) -> Any:
    """Replace ``${VAR}`` in every string, recording each missing variable."""
    if isinstance(value, str):

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env:
                problems.append(f"{where}: environment variable {name} is not set")
                return ""
            return env[name]

        return _VAR.sub(lookup, value)
    if isinstance(value, dict):
        return {k: expand_vars(v, env, f"{where}.{k}", problems) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_vars(v, env, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    return value


PLACEHOLDER = "placeholder"
AUTH_TYPES = tuple(AUTH_MODELS)
FORMATS = {
    "rate_limit": "a rate like '50/s', '10/m' or '100/h'",
    "name": f"a target name matching {TARGET_NAME}",
}
ALL_TARGET_KEYS = sorted({"engine", *(f for m in TARGET_MODELS.values() for f in m.model_fields)})


def _under(problem: str, paths: list[str]) -> bool:
    """``problem`` ("path: reason") is about one of ``paths`` or something inside it."""
    where = problem.split(": ", 1)[0]
    return any(where == p or where.startswith((f"{p}.", f"{p}[")) for p in paths)


def _target_problems(
    name: str, raw: Any, env: Mapping[str, str], resolve: bool = True
) -> tuple[Target | None, list[str], list[str]]:
    """(the target, problems with the file, ``${VAR}``s left unresolved).

    With ``resolve`` false a missing variable is not a problem of the file:
    the target's shape is checked with a placeholder in its place (errors
    about the placeholder's own fields aside), and the missing variables are
    returned apart, so a command can refuse only when it uses the target.
    """
    where = f"targets.{name}"
    if not isinstance(raw, dict):
        return None, [f"{where}: expected a table"], []
    engine = raw.get("engine")
    if engine not in TARGET_MODELS:
        hint = did_you_mean(str(engine), ENGINE_NAMES) if engine else ""
        reason = "missing" if engine is None else f"unknown engine {engine!r}{hint}"
        unknown = [
            f"{where}.{key}: unknown field{did_you_mean(key, ALL_TARGET_KEYS)}"
            for key in raw
            if key not in ALL_TARGET_KEYS
        ]
        return None, [f"{where}.engine: {reason}; one of {', '.join(ENGINE_NAMES)}", *unknown], []
    missing: list[str] = []
    expanded = expand_vars(raw, env, where, missing)
    if missing:
        placeholders = {**env, **{var: PLACEHOLDER for var in _VAR.findall(str(raw))}}
        expanded = expand_vars(raw, placeholders, where, [])
    model = TARGET_MODELS[engine]
    auth = expanded.get("auth")
    auth_fields = (
        AUTH_MODELS.get(auth.get("type", "none"), NoAuth).model_fields
        if isinstance(auth, dict)
        else {}
    )
    try:
        target = model.model_validate({**expanded, "name": name})
    except ValidationError as exc:
        known = [*model.model_fields, *auth_fields]
        found = describe_config(
            exc,
            known,
            prefix=where,
            choices={"type": AUTH_TYPES},
            unions={"auth": AUTH_TYPES},
            formats=FORMATS,
        )
        paths = [m.split(": ", 1)[0] for m in missing]
        shape = [p for p in found if not _under(p, paths)]
        return None, [*shape, *missing] if resolve else shape, [] if resolve else missing
    if missing:
        return None, missing if resolve else [], [] if resolve else missing
    return target, [], []  # type: ignore[return-value]


class Targets(Mapping[str, Target]):
    """The validated targets file: a read-only mapping of name -> target.

    Loaded for a command that uses only some targets (``need``), the file is
    still validated whole, but a target whose ``${VAR}``s are not set is left
    out of the mapping and kept in `unresolved` with the missing variables:
    `declares` still knows it, and `require` says what is missing.
    """

    def __init__(
        self,
        targets: dict[str, Target],
        path: Path | None = None,
        unresolved: Mapping[str, list[str]] | None = None,
    ) -> None:
        self._targets = targets
        self.path = path
        self.unresolved: dict[str, list[str]] = dict(unresolved or {})

    def __getitem__(self, name: str) -> Target:
        return self._targets[name]

    def __iter__(self) -> Any:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def names(self) -> list[str]:
        """Every target the file declares, resolved or not, in file order."""
        return [*self._targets, *(n for n in self.unresolved if n not in self._targets)]

    def declares(self, name: str) -> bool:
        return name in self._targets or name in self.unresolved

    def suggest(self, name: str) -> str:
        return did_you_mean(name, self.names())

    def unknown(self, name: str, listing: bool = True) -> str | None:
        """Why ``name`` is not a target of this file (with a suggestion), or None if it is.

        ``listing``: also name the file and its targets (for an operator, not over HTTP).
        """
        if self.declares(name):
            return None
        message = f"unknown target {name!r}{self.suggest(name)}"
        if not listing:
            return message
        where = f" in {self.path}" if self.path else ""
        return f"{message}; the targets{where}: {', '.join(self.names()) or 'none'}"

    def require(self, name: str) -> Target:
        """The target ``name``, or a `ConfigError` saying it is unknown or what it lacks."""
        if name in self._targets:
            return self._targets[name]
        if name in self.unresolved:
            source = f"{self.path}: " if self.path else ""
            raise ConfigError("\n".join(f"{source}{p}" for p in self.unresolved[name]))
        raise ConfigError(str(self.unknown(name)))

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        env: Mapping[str, str] | None = None,
        source: str = "targets",
        need: Collection[str] | None = None,
    ) -> Targets:
        """Validate every target; ``need``: the targets whose ``${VAR}``s must be set (all)."""
        env = os.environ if env is None else env
        raw_targets, problems = named_tables(data, "targets", "target", TARGET_NAME)
        targets: dict[str, Target] = {}
        unresolved: dict[str, list[str]] = {}
        for name, raw in raw_targets.items():
            target, found, missing = _target_problems(
                name, raw, env, resolve=need is None or name in need
            )
            problems.extend(found)
            if target is not None:
                targets[name] = target
            elif missing:
                unresolved[name] = missing
        if problems:
            raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
        return cls(targets, unresolved=unresolved)

    @classmethod
    def load(
        cls, path: Path, env: Mapping[str, str] | None = None, need: Collection[str] | None = None
    ) -> Targets:
        """The file at ``path``, validated whole; ``${VAR}``s must be set for ``need`` (all)."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"{path}: targets file not found (set STARTPROC_TARGETS; "
                "config/targets.example.toml shows every engine)"
            ) from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: a directory, not a targets file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        targets = cls.from_dict(data, env, source=str(path), need=need)
        targets.path = path
        return targets


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings, read once."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(
            "\n".join(describe_config(exc, Settings.model_fields, env_prefix="STARTPROC_"))
        ) from None


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """`settings()` reads ``values`` (set in ``os.environ``, so child processes inherit them)
    for the block; then the variables are put back as they were.

    For embedding: tests, benchmarks and tools that run a stack in-process.
    """
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    settings.cache_clear()
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        settings.cache_clear()


@lru_cache(maxsize=8)
def load_targets(path: Path | None = None, need: frozenset[str] | None = None) -> Targets:
    """The targets file, parsed and validated once per process (``need``: see `Targets.load`)."""
    return Targets.load(path or settings().targets, need=need)
