"""The import rules that keep the layers apart (STYLE: dramatiq/httpx-like boundaries)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "worker"


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def modules(pattern: str) -> list[Path]:
    return sorted(PACKAGE.glob(pattern))


def forbidden(path: Path, prefixes: tuple[str, ...]) -> list[str]:
    return sorted(
        name
        for name in imports_of(path)
        if name.split(".")[0] in prefixes
        or name in prefixes
        or any(name.startswith(p + ".") for p in prefixes)
    )


@pytest.mark.parametrize("path", modules("engines/*.py"), ids=lambda p: p.name)
def test_engines_import_no_service_celery_or_each_other(path: Path) -> None:
    bad = forbidden(path, ("celery", "typer", "worker.service", "worker.tasks", "worker.sandbox"))
    siblings = {f"worker.engines.{p.stem}" for p in modules("engines/*.py")} - {
        "worker.engines.base",
        "worker.engines._shared",
        "worker.engines.__init__",
    }
    bad += sorted(imports_of(path) & siblings)
    assert bad == []


@pytest.mark.parametrize(
    "name", ["service", "ledger", "results", "models", "errors", "keys", "config", "retry"]
)
def test_core_modules_never_import_celery_typer_or_the_sandbox(name: str) -> None:
    path = PACKAGE / f"{name}.py"
    assert forbidden(path, ("celery", "typer", "fastapi", "worker.sandbox", "worker.cli")) == []


@pytest.mark.parametrize("name", ["errors", "models", "keys", "validation"])
def test_leaf_modules_import_only_the_standard_library_and_pydantic(name: str) -> None:
    allowed = {"worker.errors", "worker.validation", "pydantic"}
    third_party = {
        n
        for n in imports_of(PACKAGE / f"{name}.py")
        if n.split(".")[0]
        not in {
            "__future__",
            "json",
            "math",
            "re",
            "hashlib",
            "difflib",
            "datetime",
            "typing",
            "collections",
        }
    }
    assert third_party <= allowed


def test_only_the_sandbox_package_the_demo_and_the_cli_import_the_sandbox() -> None:
    users = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "sandbox" not in path.parts
        and any(n.startswith("worker.sandbox") for n in imports_of(path))
    }
    assert users <= {"demo.py", "cli/ops.py", "cli/local.py"}


def test_typer_only_in_the_cli() -> None:
    users = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "typer" in {n.split(".")[0] for n in imports_of(path)}
    }
    assert all(u.startswith("cli/") for u in users), users


@pytest.mark.parametrize(
    "module", ["worker.service", "worker.engines.camunda8", "worker.tracing", "worker.metrics"]
)
def test_the_decision_path_loads_no_celery_even_transitively(module: str) -> None:
    """Celery's signal glue lives in celery_app.py and tasks.py, never below the service."""
    code = (
        f"import sys, {module}\n"
        "print(sorted(m for m in sys.modules if m == 'celery' or m.startswith('celery.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
