"""The import rules that keep the layers apart (STYLE: dramatiq/httpx-like boundaries).

Two views of the same graph. Statically, every ``import`` in ``worker/``
(also the lazy ones inside functions) makes an edge; the graph must have no
cycle, so the modules can be laid out in layers with every import pointing
down. At run time, a fresh interpreter imports one module and reports what
got loaded: that is what "the service loads no Celery" means, transitively.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from worker.engines import ENGINES

PACKAGE = Path(__file__).resolve().parents[1] / "worker"
TESTS = Path(__file__).resolve().parent
WINGS = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_only(tree: ast.Module) -> set[int]:
    """Ids of the nodes inside ``if TYPE_CHECKING:`` blocks: imports Python never runs."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for stmt in node.body for inner in ast.walk(stmt))
    return skipped


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    tree = ast.parse(path.read_text())
    skipped = _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def internal_edges(name: str) -> set[str]:
    """The worker modules ``name`` imports (a package's own parents aside: Python loads them)."""
    edges = set()
    for imported in imports_of(MODULES[name]):
        while imported and imported not in MODULES:
            imported = imported.rpartition(".")[0]
        if imported and imported != name and not name.startswith(imported + "."):
            edges.add(imported)
    return edges


def loaded_by(module: str) -> set[str]:
    """Every module a fresh interpreter has loaded after ``import module``."""
    code = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(done.stdout))


def within(loaded: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == p or m.startswith(p + ".") for p in prefixes))


# ---------------------------------------------------------------- shape


def test_the_package_top_level_is_small_and_has_no_prefix_families() -> None:
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(top) <= 20, top
    prefixes = [name.split("_")[0] for name in top if "_" in name.strip("_")]
    families = {p for p in prefixes if prefixes.count(p) > 1}
    assert families == set(), f"feature families are packages, not filename prefixes: {families}"


@pytest.mark.parametrize("name", sorted(MODULES), ids=str)
def test_no_module_is_over_400_lines(name: str) -> None:
    assert len(MODULES[name].read_text().splitlines()) <= 400


def test_tests_mirror_the_package() -> None:
    """Each wing of worker/ has its folder of tests (tests/<wing>/)."""
    assert [w for w in WINGS if not (TESTS / w).is_dir()] == []


# ---------------------------------------------------------------- layers


def test_the_import_graph_has_no_cycle() -> None:
    """No cycle means the modules sort into layers where every import points down."""
    graph = {name: internal_edges(name) for name in MODULES}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            pytest.fail(" -> ".join(cycle))


def test_nothing_outside_local_imports_local_but_its_cli_commands() -> None:
    users = {
        name
        for name in MODULES
        if not name.startswith("worker.local")
        and any(e.startswith("worker.local") for e in internal_edges(name))
    }
    assert users <= {"worker.cli.local", "worker.cli.ops"}, users


def test_typer_only_in_the_cli() -> None:
    users = {
        name
        for name, path in MODULES.items()
        if "typer" in {n.split(".")[0] for n in imports_of(path)}
    }
    assert all(u.startswith("worker.cli") for u in users), users


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("engines/*.py")), ids=lambda p: p.name)
def test_adapters_import_no_service_celery_or_each_other(path: Path) -> None:
    """Adapters (the modules the registry names) never import each other; the helper
    modules beside them (base, http, auth, ...) are shared and import no adapter."""
    adapters = {spec.split(":")[0] for spec in ENGINES.values()}
    edges = internal_edges(module_name(path))
    assert not within(edges, ("worker.service", "worker.tasks", "worker.local"))
    assert not {n for n in imports_of(path) if n.split(".")[0] in ("celery", "typer")}
    assert edges & adapters == set()


@pytest.mark.parametrize("name", ["errors", "models", "keys", "validation"])
def test_leaf_modules_import_only_the_standard_library_and_pydantic(name: str) -> None:
    found = {n.split(".")[0] for n in imports_of(PACKAGE / f"{name}.py")}
    assert found - set(sys.stdlib_module_names) <= {"worker", "pydantic"}
    assert internal_edges(f"worker.{name}") <= {"worker.errors", "worker.validation"}


# ---------------------------------------------------------------- what each door loads


CELERY = ("celery", "worker.celery_app", "worker.tasks")  # kombu, the transport, is fine
WORKER_SIDE = ("worker.runtime", "worker.service", "worker.engines", "worker.delivery.ledger")


@pytest.mark.parametrize(
    "module",
    [
        "worker.service",
        "worker.delivery.ledger",
        "worker.metrics",
        "worker.engines.camunda8",
        "worker.tracing.context",
    ],
)
def test_the_service_and_what_it_uses_load_no_celery(module: str) -> None:
    assert within(loaded_by(module), ("celery", "worker.celery_app", "worker.tasks")) == []


@pytest.mark.parametrize(
    "module", ["worker", "worker.producer", "worker.batch", "worker.intake.app", "worker.cli"]
)
def test_producers_load_no_worker_machinery(module: str) -> None:
    """arq's producer never imports its worker: enqueueing needs no engines or ledger."""
    assert within(loaded_by(module), WORKER_SIDE + CELERY) == []
