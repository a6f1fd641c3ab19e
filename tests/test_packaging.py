"""The repository installs reproducibly and ships what a package should.

Every install path (Makefile, Dockerfile) installs from the committed lock,
and the lock pins a version inside every range pyproject.toml declares, so
the two cannot drift apart.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)==(?P<version>\S+) \\$", re.MULTILINE)


def pins(lock: str) -> dict[str, str]:
    text = (REPO / "requirements" / lock).read_text()
    return {canonicalize_name(m["name"]): m["version"] for m in PIN.finditer(text)}


def declared(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return found


@pytest.mark.parametrize(
    ("lock", "extras"), [("main.txt", ()), ("dev.txt", ("test", "dev", "flower"))]
)
def test_the_lock_pins_every_declared_dependency_inside_its_range(
    lock: str, extras: tuple[str, ...]
) -> None:
    pinned = pins(lock)
    for requirement in declared(*extras):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is declared in pyproject.toml but not pinned in {lock}"
        assert requirement.specifier.contains(pinned[name]), (
            f"{lock} pins {name}=={pinned[name]}, outside pyproject's {requirement.specifier}"
        )


@pytest.mark.parametrize("lock", ["main.txt", "dev.txt"])
def test_every_pin_carries_hashes_and_no_local_source(lock: str) -> None:
    text = (REPO / "requirements" / lock).read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n\n", 1)[-1])
    for entry in entries:
        if entry.startswith("#") or not entry.strip():
            continue
        assert "==" in entry.splitlines()[0] and "--hash=sha256:" in entry, entry.splitlines()[0]
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in lines if "file:" in line or line.startswith("--")]


def test_runtime_and_dev_locks_agree_on_shared_packages() -> None:
    main, dev = pins("main.txt"), pins("dev.txt")
    assert {name: dev[name] for name in main} == main


def test_every_install_path_installs_from_the_lock() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "--require-hashes -r requirements/main.txt" in makefile
    assert "--require-hashes -r requirements/dev.txt" in makefile
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/main.txt" in dockerfile
    for text in (makefile, dockerfile):
        unlocked = [
            line
            for line in text.splitlines()
            if re.search(r"pip install\b", line)
            and "--require-hashes" not in line
            and "--no-deps" not in line
            and "--upgrade pip" not in line
        ]
        assert unlocked == [], "every other pip install resolves from the lock"
    assert "make test" in (REPO / ".ci" / "run").read_text()


def test_the_package_ships_a_licence_types_and_its_example_configs() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert (
        "Apache License"
        in (REPO / "LICENSE").read_text().splitlines()[0] + (REPO / "LICENSE").read_text()[:200]
    )
    assert (REPO / "worker" / "py.typed").is_file()
    manifest = (REPO / "MANIFEST.in").read_text()
    assert "config/*.example.toml" in manifest and "LICENSE" in manifest


@pytest.mark.parametrize("path", ["config/targets.toml", "config/schedules.toml", ".env"])
def test_real_configuration_and_secrets_are_ignored_by_git(path: str) -> None:
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert path in ignored or path.split("/")[-1] in ignored
