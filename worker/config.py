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
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.config_auth import (
    AUTH_MODELS,
    Auth,
    BasicAuth,
    BearerAuth,
    NoAuth,
    OAuth2Auth,
    _Strict,
    http_url,
)
from worker.errors import ConfigError
from worker.models import TARGET_NAME
from worker.tls import TargetTls, resolve_paths
from worker.validation import describe, did_you_mean, named_tables

__all__ = ["AUTH_MODELS", "Auth", "BasicAuth", "BearerAuth", "NoAuth", "OAuth2Auth"]

ENGINE_NAMES = ("camunda8", "camunda7", "processmaker4", "blueworks", "tas")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
QUEUE_TYPES = ("quorum", "classic")


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

    @model_validator(mode="after")
    def _visibility_outlasts_tasks(self) -> Settings:
        """A broker that redelivers a job still running would start it twice."""
        if self.visibility_timeout <= self.task_time_limit:
            raise ValueError(
                f"visibility_timeout ({self.visibility_timeout}s) must be longer than "
                f"task_time_limit ({self.task_time_limit}s)"
            )
        return self

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
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://", "unix://")):
            return self.broker_url
        return None

    def require_broker(self) -> str:
        if not self.broker_url:
            raise ConfigError(
                "STARTPROC_BROKER_URL is not set (use `startproc up` for an embedded Redis)"
            )
        return self.broker_url

    def require_redis(self) -> str:
        url = self.effective_redis_url()
        if not url:
            raise ConfigError(
                "STARTPROC_REDIS_URL is not set and the broker is not Redis: "
                "the idempotency ledger and results index need a Redis"
            )
        return url


# ---------------------------------------------------------------- targets


class TargetBase(_Strict):
    """Keys every engine's target accepts (CONTRACT section 2)."""

    name: Annotated[str, Field(pattern=TARGET_NAME)]
    base_url: str
    timeout: Annotated[float, Field(gt=0, le=600)] = 10.0
    connect_timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    rate_limit: Annotated[str, Field(pattern=r"^\d+(\.\d+)?/(s|m|h)$")] | None = None
    adaptive_rate: bool = True  # with rate_limit: follow the engine's backpressure below it
    auth: Auth = NoAuth()
    retry_ambiguous: bool = False
    verify_tls: bool = True
    tls: TargetTls = TargetTls()
    max_connections: Annotated[int, Field(ge=1, le=1024)] = 64

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return http_url(value)

    @model_validator(mode="after")
    def _verification(self) -> TargetBase:
        if not self.verify_tls and self.tls.ca_file is not None:
            raise ValueError(
                "verify_tls = false turns certificate checks off, so tls.ca_file would "
                "never be used: drop one of them"
            )
        return self


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


def _target_problems(
    name: str, raw: Any, env: Mapping[str, str], base: Path | None = None
) -> tuple[Target | None, list[str]]:
    where = f"targets.{name}"
    if not isinstance(raw, dict):
        return None, [f"{where}: expected a table"]
    engine = raw.get("engine")
    if engine not in TARGET_MODELS:
        hint = did_you_mean(str(engine), ENGINE_NAMES) if engine else ""
        reason = "missing" if engine is None else f"unknown engine {engine!r}{hint}"
        misspelt = [
            f"{where}.{key}: unknown field (did you mean 'engine'?)"
            for key in raw
            if engine is None and did_you_mean(key, ["engine"])
        ]
        return None, [f"{where}.engine: {reason}; one of {', '.join(ENGINE_NAMES)}", *misspelt]
    problems: list[str] = []
    expanded = expand_vars(raw, env, where, problems)
    if problems:
        return None, problems
    model = TARGET_MODELS[engine]
    if "tls" in expanded:
        expanded["tls"] = resolve_paths(expanded["tls"], base or Path.cwd())
    auth = expanded.get("auth")
    auth_fields = (
        AUTH_MODELS.get(auth.get("type", "none"), NoAuth).model_fields
        if isinstance(auth, dict)
        else {}
    )
    try:
        target = model.model_validate({**expanded, "name": name})
    except ValidationError as exc:
        known = [*model.model_fields, *auth_fields, *TargetTls.model_fields]
        return None, describe(exc, known, prefix=where)
    return target, []  # type: ignore[return-value]


class Targets(Mapping[str, Target]):
    """The validated targets file: a read-only mapping of name -> target."""

    def __init__(self, targets: dict[str, Target], path: Path | None = None) -> None:
        self._targets = targets
        self.path = path

    def __getitem__(self, name: str) -> Target:
        return self._targets[name]

    def __iter__(self) -> Any:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def suggest(self, name: str) -> str:
        return did_you_mean(name, self._targets)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        env: Mapping[str, str] | None = None,
        source: str = "targets",
        base: Path | None = None,
    ) -> Targets:
        """``base``: the folder relative file names (``tls``) are read from (else the cwd)."""
        env = os.environ if env is None else env
        raw_targets, problems = named_tables(data, "targets", "target", TARGET_NAME)
        targets: dict[str, Target] = {}
        for name, raw in raw_targets.items():
            target, found = _target_problems(name, raw, env, base)
            problems.extend(found)
            if target is not None:
                targets[name] = target
        if problems:
            raise ConfigError("\n".join(f"{source}: {p}" for p in problems))
        return cls(targets)

    @classmethod
    def load(cls, path: Path, env: Mapping[str, str] | None = None) -> Targets:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: targets file not found (set STARTPROC_TARGETS)") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        targets = cls.from_dict(data, env, source=str(path), base=path.parent)
        targets.path = path
        return targets


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process's settings, read once."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(
            "\n".join(describe(exc, Settings.model_fields, prefix="STARTPROC"))
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


@lru_cache(maxsize=4)
def load_targets(path: Path | None = None) -> Targets:
    """The targets file, parsed and validated once per process."""
    return Targets.load(path or settings().targets)
