"""The documentation site builds with ``mkdocs build --strict`` and the public API is documented.

The build test needs the docs tools (``mkdocs-material``, ``mkdocstrings[python]``) and skips,
saying so, where they are not installed; CI installs them. The docstring checks need nothing.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

#: The modules of the API reference (docs/api/): every name in their ``__all__`` must have a
#: docstring, and so must the public methods and properties of every class among them.
PUBLIC_MODULES = [
    "colmax",
    "colmax.types",
    "colmax.errors",
    "colmax.encoders",
    "colmax.encoders.detect",
    "colmax.encoders.settings",
    "colmax.scoring",
    "colmax.backends",
    "colmax.backends.base",
    "colmax.filters",
    "colmax.evaluation",
    "colmax.beir",
]

#: Gaps known and reported, each with the file that must fix it. The test fails when a gap listed
#: here is filled, so that the entry is removed and the gap cannot come back unnoticed.
KNOWN_GAPS: dict[str, str] = {}


def _load_script(name: str) -> ModuleType:
    """A module of docs/scripts/ (they are not a package)."""
    spec = importlib.util.spec_from_file_location(name, DOCS / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _member_gaps(owner: str, cls: type) -> list[str]:
    gaps = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, property):
            documented = bool(value.__doc__) or any(
                isinstance(getattr(base, name, None), property) and getattr(base, name).__doc__
                for base in cls.__mro__[1:]
            )
        elif isinstance(value, (staticmethod, classmethod)) or inspect.isfunction(value):
            documented = bool(inspect.getdoc(getattr(cls, name)))  # inherits from base classes
        else:
            continue  # class attributes: documented in the class docstring's Attributes
        if not documented:
            gaps.append(f"{owner}.{name}")
    return gaps


def _gaps(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    gaps = [] if (module.__doc__ or "").strip() else [module_name]
    for name in getattr(module, "__all__", []):
        if name.startswith("__"):
            continue
        obj: Any = getattr(module, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # constants: documented with #: comments, checked by the docs build
        qualified = f"{module_name}.{name}"
        if not (obj.__doc__ or "").strip():
            gaps.append(qualified)
        if inspect.isclass(obj):
            gaps += _member_gaps(qualified, obj)
    return gaps


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_public_names_have_docstrings(module_name: str) -> None:
    gaps = set(_gaps(module_name))
    unexpected = sorted(gaps - set(KNOWN_GAPS))
    assert not unexpected, f"public names without a docstring: {unexpected}"
    fixed = sorted(g for g in KNOWN_GAPS if _owner_in(g, module_name) and g not in gaps)
    assert not fixed, f"documented now, remove from KNOWN_GAPS: {fixed}"


def _owner_in(gap: str, module_name: str) -> bool:
    """Whether ``module_name``'s ``__all__`` exports the class the gap belongs to."""
    owner = gap.rsplit(".", 1)[0]
    module = importlib.import_module(module_name)
    return any(f"{module_name}.{n}" == owner for n in getattr(module, "__all__", []))


def test_the_checker_finds_a_missing_docstring() -> None:
    class Undocumented:
        """Has a docstring itself."""

        def method(self) -> None:
            pass

        @property
        def value(self) -> int:
            return 1

    assert _member_gaps("x.Undocumented", Undocumented) == [
        "x.Undocumented.method",
        "x.Undocumented.value",
    ]


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    pages = {p for p in pages if not p.startswith("scripts/")}
    missing = sorted(p for p in pages if not re.search(rf"[:\s-] {re.escape(p)}\s*$", nav, re.M))
    assert not missing, f"pages not in the mkdocs.yml nav: {missing}"


def test_hook_drops_only_pending_pages_from_the_nav() -> None:
    hooks = _load_script("mkdocs_hooks")
    nav = [
        {"Home": "index.md"},
        {"Guides": [{"CLI": "cli.md"}, {"LangChain": "langchain.md"}]},
        {"Gone": [{"Server": "server.md"}]},
    ]
    assert hooks._filter_nav(nav, {"cli.md", "server.md"}) == [
        {"Home": "index.md"},
        {"Guides": [{"LangChain": "langchain.md"}]},
    ]


def test_hook_leaves_code_blocks_alone() -> None:
    hooks = _load_script("mkdocs_hooks")
    text = "[a](x.md)\n```\n[b](x.md)\n```\n[c](x.md)\n"
    out = hooks._outside_fences(text, lambda chunk: chunk.replace("x.md", "y.md"))
    assert out == "[a](y.md)\n```\n[b](x.md)\n```\n[c](y.md)\n"


def test_griffe_extension_splits_grouped_entries() -> None:
    pytest.importorskip("griffe", reason="the docs tools are not installed")
    roles = _load_script("griffe_roles")
    doc = (
        "Summary.\n\nArgs:\n    a, b: shared text\n        continued.\n    c: alone.\n\n"
        "Raises:\n    XError, YError,\n    ZError: bad input.\n"
    )
    assert roles._split_groups(doc).splitlines() == [
        "Summary.",
        "",
        "Args:",
        "    a: shared text",
        "        continued.",
        "    b: shared text",
        "        continued.",
        "    c: alone.",
        "",
        "Raises:",
        "    XError: bad input.",
        "    YError: bad input.",
        "    ZError: bad input.",
    ]


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(
            module, reason='docs tools missing: pip install mkdocs-material "mkdocstrings[python]"'
        )
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    engine_page = (site / "api" / "engine" / "index.html").read_text(encoding="utf-8")
    assert 'id="colmax.Engine.search"' in engine_page  # mkdocstrings rendered the API
    assert ":func:" not in engine_page and ":class:" not in engine_page  # roles became links
    concepts = (site / "concepts" / "index.html").read_text(encoding="utf-8")
    assert "img/concept-maxsim.svg" in concepts and (site / "img" / "concept-maxsim.svg").is_file()
    started = (site / "getting-started" / "index.html").read_text(encoding="utf-8")
    assert "/blob/main/examples/01_index_and_search.py" in started  # repository links


@pytest.mark.integration
def test_concept_figures_show_the_engine_score(minilm_path: Path) -> None:
    """The committed SVGs print the MaxSim that the current engine gives the figure's pair."""
    from colmax import Engine

    figures = _load_script("make_figures")
    engine = Engine.from_pretrained(minilm_path, device="cpu", dtype="float32")  # any host
    score = engine.rerank(figures.QUERY, [figures.PASSAGE])[0].score
    svg = (DOCS / "img" / "concept-maxsim.svg").read_text(encoding="utf-8")
    assert f"sum of the row maxima = {score:.2f}" in svg, "rerun docs/scripts/make_figures.py"
    concepts = (DOCS / "concepts.md").read_text(encoding="utf-8")
    assert f"scores {score:.2f}" in concepts, "update the numbers quoted in docs/concepts.md"
