"""Settings: the only module that reads the environment (the targets file: `worker.targets`).

Everything is validated when the process starts, so a misspelt key or a
missing secret stops the worker with ``file: key: reason (did you mean …)``
instead of failing the first job at 3 a.m. Secrets are `SecretStr` from the
moment they are read, so no repr, log line or result can show them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.errors import ConfigError
from worker.validation import describe_config, did_you_mean

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
    # Dead letters are kept this long, then the sweeper removes them (replays stay safe
    # after the ledger forgot a key: see worker.delivery.settle).
    dlq_retention_days: Annotated[int, Field(ge=1)] = 90
    # The results queue (Redis broker) has no cap and no TTL: past this many waiting
    # results, each sweep logs a warning (nobody consumes it?). 0 turns it off.
    results_queue_warn_depth: Annotated[int, Field(ge=0)] = 100_000
    # A message delivered this many times without being decided is poison: DLQ.
    max_deliveries: Annotated[int, Field(ge=1)] = 5
    sweep_interval: Annotated[float, Field(gt=0)] = 30.0
    # A worker process's heartbeat key lives this long (refreshed every quarter of it);
    # once it has expired, the sweeper re-drives the jobs that process was running.
    liveness_ttl: Annotated[float, Field(ge=2, le=600)] = 20.0
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
    # Operator console (`startproc serve`, /ui): the key that signs session cookies (default:
    # derived from STARTPROC_INTAKE_TOKENS), how long a sign-in lasts, whether the cookie is
    # sent over HTTPS only (set it behind a TLS proxy), and where uploaded batch files are kept.
    ui_secret: SecretStr | None = None
    ui_session_seconds: Annotated[int, Field(ge=60, le=7 * 86400)] = 8 * 3600
    ui_cookie_secure: bool = False
    ui_data_dir: Path | None = None
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
                from worker.broker.sentinel import SentinelURL, require_master

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


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


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
