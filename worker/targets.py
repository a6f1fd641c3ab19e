"""The targets file: the engines a job may name, validated whole when a process starts.

A misspelt key or a missing secret stops the worker with ``file: key: reason
(did you mean …)`` instead of failing the first job at 3 a.m. Secrets are
``${VAR}`` references resolved from the environment into `SecretStr`, so no
repr, log line or result can show them; a command resolves only the targets
it uses (``need``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Collection, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from worker.config import settings
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
from worker.validation import describe_config, did_you_mean, named_tables

__all__ = ["AUTH_MODELS", "Auth", "BasicAuth", "BearerAuth", "NoAuth", "OAuth2Auth"]

ENGINE_NAMES = ("camunda8", "camunda7", "processmaker4", "blueworks", "tas")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


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
    name: str,
    raw: Any,
    env: Mapping[str, str],
    resolve: bool = True,
    base: Path | None = None,
) -> tuple[Target | None, list[str], list[str]]:
    """(the target, problems with the file, ``${VAR}``s left unresolved).

    With ``resolve`` false a missing variable is not a problem of the file:
    the target's shape is checked with a placeholder in its place (errors
    about the placeholder's own fields aside), and the missing variables are
    returned apart, so a command can refuse only when it uses the target.
    ``base``: the folder relative file names (``tls``) are read from.
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
        base: Path | None = None,
    ) -> Targets:
        """Validate every target; ``need``: the targets whose ``${VAR}``s must be set (all).

        ``base``: the folder relative file names (``tls``) are read from (else the cwd).
        """
        env = os.environ if env is None else env
        raw_targets, problems = named_tables(data, "targets", "target", TARGET_NAME)
        targets: dict[str, Target] = {}
        unresolved: dict[str, list[str]] = {}
        for name, raw in raw_targets.items():
            target, found, missing = _target_problems(
                name, raw, env, resolve=need is None or name in need, base=base
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
        targets = cls.from_dict(data, env, source=str(path), need=need, base=path.parent)
        targets.path = path
        return targets




@lru_cache(maxsize=8)
def load_targets(path: Path | None = None, need: frozenset[str] | None = None) -> Targets:
    """The targets file, parsed and validated once per process (``need``: see `Targets.load`)."""
    return Targets.load(path or settings().targets, need=need)
