"""Check the built wheels and sdists of the four distributions before a release.

::

    .venv/bin/python scripts/check_dists.py DIST_DIR

``DIST_DIR`` holds one wheel and one sdist of each of ``colmax``, ``langchain-colmax``,
``llama-index-retrievers-colmax`` and ``llama-index-postprocessor-colmax-rerank`` (``python -m
build``; ``scripts/check_release.sh`` builds them). ``twine check --strict`` checks that the
metadata and README render; this script checks what twine does not:

- every file of each package's source tree (``*.py``, ``py.typed``) is in its wheel and its
  sdist, and the wheel holds nothing else (LlamaIndex's PEP 420 levels stay without
  ``__init__.py``);
- one version for all four, and each integration's ``colmax`` requirement admits it;
- the Apache-2.0 licence expression and the LICENSE file in every wheel and sdist;
- a Markdown README without relative links (dead on PyPI), the classifiers and project URLs.

Exits 1 listing every problem found, 0 when there is none.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]

#: distribution -> (project folder, package folders inside it, PEP 420 levels without __init__)
PACKAGES: dict[str, tuple[Path, tuple[str, ...], tuple[str, ...]]] = {
    "colmax": (ROOT, ("src/colmax",), ()),
    "langchain-colmax": (ROOT / "integrations/langchain-colmax", ("langchain_colmax",), ()),
    "llama-index-retrievers-colmax": (
        ROOT / "integrations/llama-index-retrievers-colmax",
        ("llama_index/retrievers/colmax",),
        ("llama_index", "llama_index/retrievers"),
    ),
    "llama-index-postprocessor-colmax-rerank": (
        ROOT / "integrations/llama-index-postprocessor-colmax-rerank",
        ("llama_index/postprocessor/colmax_rerank",),
        ("llama_index", "llama_index/postprocessor"),
    ),
}
_RELATIVE_LINK = re.compile(r"\]\((?!https?://|#|mailto:)[^)\s]+\)")
_REQUIRED_CLASSIFIERS = ("Typing :: Typed", "Programming Language :: Python :: 3 :: Only")
_REQUIRED_URLS = ("Homepage", "Documentation", "Source", "Changelog", "Issues")


def _source_files(project: Path, package: str) -> set[str]:
    """Package files as they sit in the wheel (``src/`` dropped)."""
    base = project / package
    found = {p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    files = {
        str(p.relative_to(project)) for p in found if p.suffix == ".py" or p.name == "py.typed"
    }
    return {f.removeprefix("src/") for f in files}


def _dist_files(directory: Path, name: str) -> tuple[Path, Path]:
    stem = name.replace("-", "_")
    wheels = sorted(directory.glob(f"{stem}-*.whl"))
    sdists = sorted(directory.glob(f"{stem}-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        raise SystemExit(f"{name}: expected one wheel and one sdist in {directory}")
    return wheels[0], sdists[0]


def _check_wheel(name: str, wheel: Path, problems: list[str]) -> Message:
    project, packages, namespaces = PACKAGES[name]
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(info).decode("utf-8"))
    dist_info = info.rsplit("/", 1)[0]
    content = {n for n in names if not n.startswith(dist_info + "/")}
    expected = set().union(*(_source_files(project, p) for p in packages))
    for missing in sorted(expected - content):
        problems.append(f"{wheel.name}: missing {missing}")
    for extra in sorted(content - expected):
        problems.append(f"{wheel.name}: unexpected file {extra}")
    for level in namespaces:
        if f"{level}/__init__.py" in content:
            problems.append(f"{wheel.name}: {level}/__init__.py breaks the PEP 420 namespace")
    if f"{dist_info}/licenses/LICENSE" not in names:
        problems.append(f"{wheel.name}: no LICENSE in {dist_info}/licenses/")
    return metadata


def _check_sdist(name: str, sdist: Path, problems: list[str]) -> None:
    project, packages, _ = PACKAGES[name]
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        content = {n.removeprefix(top + "/") for n in archive.getnames()}
    expected = {
        f"{'src/' if name == 'colmax' else ''}{f}"
        for p in packages
        for f in _source_files(project, p)
    }
    for missing in sorted(expected - content):
        problems.append(f"{sdist.name}: missing {missing}")
    for needed in ("LICENSE", "README.md", "pyproject.toml", "PKG-INFO"):
        if needed not in content:
            problems.append(f"{sdist.name}: missing {needed}")


def _check_metadata(name: str, metadata: Message, problems: list[str]) -> None:
    where = f"{name} metadata"
    if metadata.get("License-Expression") != "Apache-2.0":
        problems.append(f"{where}: License-Expression is {metadata.get('License-Expression')!r}")
    if "LICENSE" not in (metadata.get_all("License-File") or []):
        problems.append(f"{where}: no License-File: LICENSE")
    if not str(metadata.get("Description-Content-Type", "")).startswith("text/markdown"):
        problems.append(f"{where}: the README is not declared as Markdown")
    description = metadata.get_payload()
    assert isinstance(description, str)
    if len(description) < 200:
        problems.append(f"{where}: the README is missing or nearly empty")
    for link in sorted(set(_RELATIVE_LINK.findall(description))):
        problems.append(f"{where}: relative link {link} (dead on PyPI)")
    classifiers = metadata.get_all("Classifier") or []
    for classifier in _REQUIRED_CLASSIFIERS:
        if classifier not in classifiers:
            problems.append(f"{where}: missing classifier {classifier!r}")
    urls = {u.split(",")[0].strip() for u in metadata.get_all("Project-URL") or []}
    for url in _REQUIRED_URLS:
        if url not in urls:
            problems.append(f"{where}: missing project URL {url!r}")


def check(directory: Path) -> list[str]:
    """Every problem found in ``directory``'s distributions (empty: all good)."""
    problems: list[str] = []
    versions: dict[str, Version] = {}
    requirements: dict[str, Requirement] = {}
    for name in PACKAGES:
        wheel, sdist = _dist_files(directory, name)
        metadata = _check_wheel(name, wheel, problems)
        _check_sdist(name, sdist, problems)
        _check_metadata(name, metadata, problems)
        versions[name] = Version(str(metadata["Version"]))
        for line in metadata.get_all("Requires-Dist") or []:
            requirement = Requirement(line)
            if requirement.name == "colmax" and requirement.marker is None:
                requirements[name] = requirement
    if len(set(versions.values())) != 1:
        problems.append(f"the four versions differ: {versions}")
    colmax = versions["colmax"]
    for name in PACKAGES:
        if name == "colmax":
            continue
        requirement = requirements.get(name)
        if requirement is None:
            problems.append(f"{name} does not require colmax")
        elif not requirement.specifier.contains(colmax, prereleases=True):
            problems.append(f"{name} requires {requirement}, which excludes colmax {colmax}")
    return problems


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    problems = check(Path(sys.argv[1]))
    for problem in problems:
        print(f"check_dists: {problem}", file=sys.stderr)
    if not problems:
        print(f"check_dists: {len(PACKAGES)} wheels and sdists are complete and consistent")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
