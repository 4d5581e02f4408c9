"""The four distributions agree with each other (the built files are checked by
``scripts/check_release.sh``, which .ci/run runs: build, twine check, fresh-venv tests)."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
INTEGRATIONS = (
    "langchain-colmax",
    "llama-index-retrievers-colmax",
    "llama-index-postprocessor-colmax-rerank",
)


def _project(folder: Path) -> dict[str, Any]:
    return dict(tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))["project"])


def _version(folder: Path) -> Version:
    project = _project(folder)
    if "version" in project:
        return Version(project["version"])
    config = tomllib.loads((folder / "pyproject.toml").read_text(encoding="utf-8"))
    source = folder / config["tool"]["hatch"]["version"]["path"]
    found = re.search(r'^__version__ = "([^"]+)"', source.read_text(encoding="utf-8"), re.M)
    assert found, source
    return Version(found.group(1))


def _requirement(folder: Path, name: str) -> Requirement:
    for line in _project(folder)["dependencies"]:
        requirement = Requirement(line)
        if requirement.name == name:
            return requirement
    raise AssertionError(f"{folder.name} does not depend on {name}")


def test_one_version_and_compatible_colmax_ranges() -> None:
    import colmax

    version = _version(ROOT)
    assert str(version) == colmax.__version__
    for name in INTEGRATIONS:
        folder = ROOT / "integrations" / name
        assert _version(folder) == version, name
        assert _requirement(folder, "colmax").specifier.contains(version), name


def test_release_check_tests_the_lowest_framework_versions() -> None:
    """check_release.sh installs exactly the lower bounds the integrations declare."""
    script = (ROOT / "scripts" / "check_release.sh").read_text(encoding="utf-8")
    oldest = dict(re.findall(r"([a-z-]+-core)==([0-9.]+)", script.split("OLDEST=(", 1)[1]))
    for name in INTEGRATIONS:
        folder = ROOT / "integrations" / name
        core = "langchain-core" if name.startswith("langchain") else "llama-index-core"
        bounds = [s for s in _requirement(folder, core).specifier if s.operator == ">="]
        assert len(bounds) == 1, name
        assert Version(bounds[0].version) == Version(oldest[core]), name


def test_licence_files_and_changelog() -> None:
    licence = (ROOT / "LICENSE").read_bytes()
    assert b"Apache License" in licence and b"Version 2.0" in licence
    for name in INTEGRATIONS:
        assert (ROOT / "integrations" / name / "LICENSE").read_bytes() == licence, name
    for folder in (ROOT, *(ROOT / "integrations" / n for n in INTEGRATIONS)):
        project = _project(folder)
        assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert f"## [{_version(ROOT)}]" in changelog


def test_mcp_extra_is_in_all_and_test() -> None:
    extras = _project(ROOT)["optional-dependencies"]
    assert any(Requirement(r).name == "mcp" for r in extras["mcp"])
    assert "mcp" in Requirement(extras["all"][0]).extras
    assert "all" in Requirement(extras["test"][0]).extras
