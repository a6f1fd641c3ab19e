"""The engine registry: adapters by name, imported only when a target uses them.

Like kombu's transport aliases, names map to ``"module:Class"`` strings so a
worker that talks to one engine never imports the other four.
"""

from __future__ import annotations

import importlib
import threading

import redis

from worker.engines.auth import credentials_for
from worker.engines.base import Engine
from worker.engines.http import make_session
from worker.errors import ConfigError, InvalidJob
from worker.targets import TargetBase, Targets
from worker.validation import did_you_mean

ENGINES: dict[str, str] = {
    "camunda8": "worker.engines.camunda8:Camunda8",
    "camunda7": "worker.engines.camunda7:Camunda7",
    "processmaker4": "worker.engines.processmaker4:ProcessMaker4",
    "blueworks": "worker.engines.blueworks:Blueworks",
    "tas": "worker.engines.tas:Tas",
}


def engine_class(name: str) -> type[Engine]:
    """The adapter class registered as ``name``."""
    try:
        module_name, class_name = ENGINES[name].split(":")
    except KeyError:
        raise ConfigError(f"unknown engine {name!r}{did_you_mean(name, ENGINES)}") from None
    cls: type[Engine] = getattr(importlib.import_module(module_name), class_name)
    return cls


def build_engine(target: TargetBase, client: redis.Redis | None = None) -> Engine:
    """An adapter for ``target`` with its own pooled session and credentials.

    ``client``: the Redis that OAuth2 tokens are shared through (``token_cache = "redis"``).
    """
    session = make_session(
        pool_size=target.max_connections,
        verify=target.tls.verify(target.verify_tls),
        base_url=target.base_url,
        cert=target.tls.cert(),
    )
    credentials = credentials_for(target.auth, session, target.timeout, client)
    engine = getattr(target, "engine", "")
    return engine_class(engine)(target, session, credentials)


class EngineCache:
    """One adapter per target per process, so sessions and tokens are shared by threads."""

    def __init__(self, targets: Targets, client: redis.Redis | None = None) -> None:
        self.targets = targets
        self.client = client
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def get(self, target_name: str) -> Engine:
        engine = self._engines.get(target_name)
        if engine is not None:
            return engine
        with self._lock:
            if target_name not in self._engines:
                if target_name not in self.targets:
                    raise InvalidJob(
                        f"target: unknown target {target_name!r}{self.targets.suggest(target_name)}"
                    )
                self._engines[target_name] = build_engine(self.targets[target_name], self.client)
            return self._engines[target_name]

    def close(self) -> None:
        with self._lock:
            for engine in self._engines.values():
                engine.session.close()
            self._engines.clear()
