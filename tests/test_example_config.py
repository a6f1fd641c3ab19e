"""The example config files load, cover every engine and auth kind, and keep secrets out.

``config/targets.example.toml`` is what operators copy, so it must stay valid
against ``worker.config`` as that evolves: every knob the target and auth
models accept has to be documented in it, and every secret has to be a
``${VAR}`` reference.
"""

from __future__ import annotations

import re
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from worker.errors import ConfigError
from worker.targets import (
    AUTH_MODELS,
    ENGINE_NAMES,
    TARGET_MODELS,
    Camunda8Target,
    OAuth2Auth,
    Targets,
)

REPO = Path(__file__).resolve().parents[1]
TARGETS = REPO / "config" / "targets.example.toml"
SCHEDULES = REPO / "config" / "schedules.example.toml"
ENV_EXAMPLE = REPO / "deploy" / "env.example"

VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRET_KEYS = {"password", "token", "client_secret"}


def _strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, string) for every string value in a parsed TOML document."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")


def _raw() -> dict[str, Any]:
    return tomllib.loads(TARGETS.read_text(encoding="utf-8"))


def _variables() -> set[str]:
    """The ${VAR} names the file's values use (comments do not count)."""
    return {name for _, text in _strings(_raw()) for name in VAR.findall(text)}


def _fake_env() -> dict[str, str]:
    return {name: f"fake-{name.lower()}" for name in _variables()}


@pytest.fixture(scope="module")
def targets() -> Targets:
    return Targets.load(TARGETS, env=_fake_env())


def test_example_loads_with_every_variable_set(targets: Targets) -> None:
    assert len(targets) >= 8
    assert targets.path == TARGETS


def test_every_engine_appears(targets: Targets) -> None:
    assert {t.engine for t in targets.values()} == set(ENGINE_NAMES)


def test_every_auth_type_and_grant_appears(targets: Targets) -> None:
    assert {t.auth.type for t in targets.values()} == set(AUTH_MODELS)
    grants = {t.auth.grant for t in targets.values() if isinstance(t.auth, OAuth2Auth)}
    assert grants == set(typing.get_args(OAuth2Auth.model_fields["grant"].annotation))


def test_the_engine_specific_cases_the_operators_need(targets: Targets) -> None:
    by_case = {(t.engine, t.auth.type, getattr(t.auth, "grant", None)): t for t in targets.values()}
    c8 = by_case[("camunda8", "oauth2", "client_credentials")]
    assert isinstance(c8.auth, OAuth2Auth) and c8.auth.audience
    c8_versions = {t.api_version for t in targets.values() if isinstance(t, Camunda8Target)}
    assert "8.9" in c8_versions
    assert ("camunda7", "basic", None) in by_case
    assert ("processmaker4", "bearer", None) in by_case
    assert ("processmaker4", "oauth2", "password") in by_case
    blueworks = by_case[("blueworks", "oauth2", "client_credentials")]
    assert getattr(blueworks, "on_behalf_of", None)
    tas = by_case[("tas", "bearer", None)]
    assert getattr(tas, "mark_created_by_api", False) is True
    assert any(t.auth.type == "none" for t in targets.values())


def test_secrets_are_variable_references_only() -> None:
    raw = _raw()
    secrets = [(key, text) for key, text in _strings(raw) if key.rsplit(".", 1)[-1] in SECRET_KEYS]
    assert secrets, "the example shows no secret at all"
    for key, text in secrets:
        assert VAR.fullmatch(text), f"{key} = {text!r}: secrets must be a ${{VAR}} reference"


def test_secrets_arrive_as_secretstr_with_the_environment_value(targets: Targets) -> None:
    env = _fake_env()
    for name, target in targets.items():
        for field in SECRET_KEYS:
            value = getattr(target.auth, field, None)
            if value is None:
                continue
            assert isinstance(value, SecretStr), f"{name}.auth.{field}"
            assert value.get_secret_value() in env.values()
            assert value.get_secret_value() not in repr(target)


def test_without_the_environment_loading_fails_naming_every_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        Targets.load(TARGETS, env={})
    message = str(caught.value)
    assert str(TARGETS) in message
    for name in _variables():
        assert f"environment variable {name} is not set" in message


def test_one_missing_variable_is_named_alone() -> None:
    env = _fake_env()
    missing = sorted(env)[0]
    del env[missing]
    with pytest.raises(ConfigError) as caught:
        Targets.load(TARGETS, env=env)
    message = str(caught.value)
    assert f"environment variable {missing} is not set" in message
    assert message.count("is not set") == 1


def _documented(word: str, text: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", text) is not None


def test_every_knob_of_the_models_is_documented() -> None:
    text = TARGETS.read_text(encoding="utf-8")
    fields = {f for model in TARGET_MODELS.values() for f in model.model_fields} - {"name"}
    fields |= {f for model in AUTH_MODELS.values() for f in model.model_fields}
    undocumented = sorted(f for f in fields if not _documented(f, text))
    assert not undocumented, f"not mentioned in {TARGETS.name}: {undocumented}"


def test_every_camunda8_api_version_is_explained() -> None:
    text = TARGETS.read_text(encoding="utf-8")
    versions = typing.get_args(Camunda8Target.model_fields["api_version"].annotation)
    assert versions
    for version in versions:
        assert f'"{version}"' in text, f"api_version {version!r} is not explained"


def test_every_variable_is_listed_in_deploy_env_example() -> None:
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    missing = sorted(_variables() - listed)
    assert not missing, f"{ENV_EXAMPLE.name} does not list {missing}"


def test_schedules_example_is_valid_toml_with_the_sketched_shape() -> None:
    data = tomllib.loads(SCHEDULES.read_text(encoding="utf-8"))
    schedules = data["schedules"]
    assert schedules
    target_names = set(_raw()["targets"])
    for name, schedule in schedules.items():
        assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name)
        assert ("cron" in schedule) != ("every" in schedule), f"{name}: cron xor every"
        assert "timezone" not in schedule or "cron" in schedule, f"{name}: timezone needs cron"
        assert schedule["target"] in target_names, f"{name}: unknown target"
        assert schedule["process"]
        assert schedule.get("catch_up", "skip") in {"skip", "latest", "all"}
        assert isinstance(schedule.get("enabled", True), bool)
    used = {s.get("catch_up", "skip") for s in schedules.values()}
    assert used == {"skip", "latest", "all"}
    text = SCHEDULES.read_text(encoding="utf-8")
    assert "{{ scheduled_at }}" in text
