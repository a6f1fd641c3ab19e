"""Targets file and settings: validated at start, with file, key and a suggestion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker.config import Settings
from worker.errors import ConfigError
from worker.targets import Targets


def load(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> Targets:
    path = tmp_path / "targets.toml"
    path.write_text(text)
    return Targets.load(path, env=env or {})


TAS = '[targets.a]\nengine = "tas"\nbase_url = "http://x"\n'
GOOD = """
[targets.orders]
engine = "camunda8"
base_url = "http://127.0.0.1:8088/"
timeout = 3
rate_limit = "50/s"
[targets.orders.auth]
type = "oauth2"
token_url = "http://127.0.0.1:8088/oauth/token"
client_id = "worker"
client_secret = "${ORDERS_SECRET}"
audience = "zeebe-api"
"""


def test_a_good_file_loads_with_secrets_hidden(tmp_path: Path) -> None:
    targets = load(GOOD, tmp_path, {"ORDERS_SECRET": "hunter2"})
    orders = targets["orders"]
    assert orders.base_url == "http://127.0.0.1:8088"
    assert orders.auth.type == "oauth2"
    assert orders.auth.client_secret.get_secret_value() == "hunter2"  # type: ignore[union-attr]
    assert "hunter2" not in repr(orders) and "hunter2" not in str(orders.model_dump())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD, "targets.orders.auth.client_secret: environment variable ORDERS_SECRET is not set"),
        ('[targets.a]\nengine = "camunda9"\nbase_url = "http://x"', "did you mean 'camunda8'"),
        ('[targets.a]\nbase_url = "http://x"', "targets.a.engine: missing"),
        ('[targets.a]\nengin = "tas"', "targets.a.engin: unknown field (did you mean 'engine'?)"),
        (
            '[targets.a]\nengine = "tas"\nbase_url = "http://x"\ntimout = 3',
            "did you mean 'timeout'",
        ),
        ('[targets.a]\nengine = "tas"\nbase_url = "ftp://x"', "targets.a.base_url"),
        ('[targets.a]\nengine = "tas"\nbase_url = "http://x"\nrate_limit = "fast"', "rate_limit"),
        (
            '[targets.a]\nengine = "tas"\nbase_url = "http://x"\napi_version = "8.8"',
            "api_version: unknown",
        ),
        (
            '[targets.a]\nengine = "camunda8"\nbase_url = "http://x"\napi_version = "9"',
            "api_version",
        ),
        ('[targets.A]\nengine = "tas"\nbase_url = "http://x"', "target names match"),
        ('[target.a]\nengine = "tas"', "did you mean 'targets'"),
        (
            TAS + '[targets.a.auth]\ntype = "basic"\nusername = "u"',
            "password: required field is missing",
        ),
        (
            TAS + '[targets.a.auth]\ntype = "oauth2"\n'
            'token_url = "http://x/t"\nclient_id = "c"\nclient_secrt = "s"',
            "did you mean 'client_secret'",
        ),
        (
            TAS + '[targets.a.auth]\ntype = "oauth2"\n'
            'token_url = "http://x/t"\nclient_id = "c"\ngrant = "password"\nclient_secret = "s"',
            "grant 'password' needs username and password",
        ),
        ("not toml = = =", "not valid TOML"),
    ],
)
def test_bad_files_fail_naming_file_key_and_suggestion(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(text, tmp_path)
    assert str(tmp_path / "targets.toml") in str(caught.value)
    assert expected in str(caught.value)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = '[targets.a]\nengine = "camunda9"\n' + TAS.replace("targets.a", "targets.b") + "foo = 1"
    with pytest.raises(ConfigError) as caught:
        load(text, tmp_path)
    assert "targets.a.engine" in str(caught.value) and "targets.b.foo" in str(caught.value)


def test_problems_are_our_own_sentences_with_suggestions(tmp_path: Path) -> None:
    text = (
        TAS
        + 'timeout = 0\n[targets.a.auth]\ntype = "oauth"\n'
        + '[targets.b]\nengine = "camunda8"\nbase_url = "http://x"\napi_version = "8.7"\n'
        + '[targets.c]\nbase_url = "http://x"\ntimout = 3\n'
    )
    with pytest.raises(ConfigError) as caught:
        load(text, tmp_path)
    lines = [line.split(": ", 1)[1] for line in str(caught.value).splitlines()]
    assert lines == [
        "targets.a.timeout: must be greater than 0, not 0",
        "targets.a.auth.type: unknown type 'oauth' (did you mean 'oauth2'?); "
        "one of none, basic, bearer, oauth2",
        "targets.b.api_version: '8.7' is not one of 8.8, 8.9, 8.6, 8.6-alpha (did you mean '8.9'?)",
        "targets.c.engine: missing; one of camunda8, camunda7, processmaker4, blueworks, tas",
        "targets.c.timout: unknown field (did you mean 'timeout'?)",
    ]


def test_a_wrongly_typed_secret_is_not_repeated(tmp_path: Path) -> None:
    text = TAS + '[targets.a.auth]\ntype = "basic"\nusername = "u"\npassword = 20250612\n'
    with pytest.raises(ConfigError) as caught:
        load(text, tmp_path)
    assert "targets.a.auth.password: must be a valid string" in str(caught.value)
    assert "20250612" not in str(caught.value)


TWO = GOOD + '[targets.other]\nengine = "tas"\nbase_url = "${TAS_URL}"\n'


def test_only_the_needed_targets_variables_must_be_set(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(TWO, tmp_path)  # a worker needs them all
    assert "ORDERS_SECRET is not set" in str(caught.value)
    assert "TAS_URL is not set" in str(caught.value)

    path = tmp_path / "targets.toml"
    targets = Targets.load(path, env={"TAS_URL": "http://tas"}, need={"other"})
    assert list(targets) == ["other"] and targets.names() == ["other", "orders"]
    assert targets.declares("orders") and targets.unknown("orders") is None
    with pytest.raises(ConfigError, match="ORDERS_SECRET is not set"):
        targets.require("orders")
    with pytest.raises(ConfigError, match="TAS_URL is not set"):
        Targets.load(path, env={}, need={"other"})
    assert (
        targets.unknown("ordres", listing=False)
        == "unknown target 'ordres' (did you mean 'orders'?)"
    )


def test_the_shape_is_checked_even_where_a_variable_is_missing(tmp_path: Path) -> None:
    text = TWO.replace('base_url = "${TAS_URL}"', 'base_url = "${TAS_URL}"\ntimeout = -1')
    with pytest.raises(ConfigError) as caught:
        load(text, tmp_path)
    assert "targets.other.timeout: must be greater than 0, not -1" in str(caught.value)
    path = tmp_path / "targets.toml"
    with pytest.raises(ConfigError) as unused:
        Targets.load(path, env={}, need=())
    assert str(unused.value) == f"{path}: targets.other.timeout: must be greater than 0, not -1"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("STARTPROC_BROKER_URL", "http://u:pw-secret@x", "'http://u:***@x' is not a broker URL"),
        ("STARTPROC_BROKER_URL", "localhost:6379", "is not a broker URL: localhost scheme"),
        ("STARTPROC_REDIS_URL", "amqp://x//", "'amqp://x//' is not a Redis URL: amqp scheme"),
    ],
)
def test_urls_of_another_kind_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    from worker.config import settings

    monkeypatch.setenv(variable, value)
    settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as caught:
            settings()
    finally:
        settings.cache_clear()
    assert str(caught.value).startswith(f"{variable}: ")
    assert expected in str(caught.value) and "pw-secret" not in str(caught.value)


def test_an_empty_url_is_unset() -> None:
    assert Settings(broker_url="", redis_url=" ").broker_url is None
    with pytest.raises(ConfigError, match=r"STARTPROC_BROKER_URL is not set \(nor STARTPROC_REDIS"):
        Settings().require_redis()


def test_missing_file_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="STARTPROC_TARGETS"):
        Targets.load(tmp_path / "nope.toml")


def test_unknown_target_suggestion(tmp_path: Path) -> None:
    targets = load(GOOD, tmp_path, {"ORDERS_SECRET": "x"})
    assert targets.suggest("ordres") == " (did you mean 'orders'?)"


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STARTPROC_BROKER_URL", "amqp://guest:guest@localhost//")
    monkeypatch.setenv("STARTPROC_REDIS_URL", "redis://localhost:6379/1")
    monkeypatch.setenv("STARTPROC_RESULTS_QUEUE", "my.results")
    cfg = Settings()
    assert cfg.results_queue == "my.results"
    assert cfg.effective_redis_url() == "redis://localhost:6379/1"


def test_ledger_redis_defaults_to_a_redis_broker() -> None:
    assert Settings(broker_url="redis://h:1/0").effective_redis_url() == "redis://h:1/0"
    assert Settings(broker_url="amqp://h//").effective_redis_url() is None
    with pytest.raises(ConfigError, match="STARTPROC_REDIS_URL"):
        Settings(broker_url="amqp://h//").require_redis()
    with pytest.raises(ConfigError, match="STARTPROC_BROKER_URL"):
        Settings().require_broker()


def test_visibility_timeout_must_outlast_tasks() -> None:
    with pytest.raises(ValueError, match="visibility_timeout"):
        Settings(visibility_timeout=100, task_time_limit=300)


def test_a_lease_shorter_than_one_http_attempt_is_refused(tmp_path: Path) -> None:
    from worker.runtime import check_lease

    targets = load('[targets.a]\nengine = "tas"\nbase_url = "http://x"\ntimeout = 10\n', tmp_path)
    with pytest.raises(ConfigError, match="STARTPROC_LEASE_SECONDS"):
        check_lease(Settings(lease_seconds=5), targets)
    check_lease(Settings(lease_seconds=20), targets)


def test_environment_sets_variables_for_a_block_and_puts_them_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from worker.config import environment, settings

    monkeypatch.setenv("STARTPROC_JOBS_QUEUE", "before")
    monkeypatch.delenv("STARTPROC_RESULTS_QUEUE", raising=False)
    settings.cache_clear()
    assert settings().jobs_queue == "before"
    with environment({"STARTPROC_JOBS_QUEUE": "inside", "STARTPROC_RESULTS_QUEUE": "r"}):
        assert settings().jobs_queue == "inside" and settings().results_queue == "r"
    assert os.environ["STARTPROC_JOBS_QUEUE"] == "before"
    assert "STARTPROC_RESULTS_QUEUE" not in os.environ
    assert settings().jobs_queue == "before"
    settings.cache_clear()


def test_every_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    prefix = str(Settings.model_config.get("env_prefix"))
    undocumented = [
        f"{prefix}{name.upper()}"
        for name in Settings.model_fields
        if f"`{prefix}{name.upper()}`" not in readme
    ]
    assert undocumented == [], "add these to the README's configuration table"
