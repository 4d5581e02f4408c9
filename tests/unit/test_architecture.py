"""The dependency rules of docs/architecture.md, checked on the source.

- A door (``integrations/*``, tests aside, and the MCP server ``colmax.mcp``) imports colmax's
  public modules only: the engine is the whole API, so a door has no reason to reach into its
  internals. The MCP door also shares the HTTP door's request models, settings, fault wording
  and middleware (``colmax.server``), the limits every door enforces (``colmax.limits``) and
  the request deadline a door sets around its work (``colmax.deadline``).
- The engine names no backend: it finds them through ``colmax.backends.registry``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: What a door may import from colmax.
PUBLIC = {
    "colmax",
    "colmax.types",
    "colmax.errors",
    "colmax.filters",
    "colmax.hybrid",
    "colmax.limits",
}
#: What the MCP door may import besides: the HTTP door it shares its limits and models with.
MCP_SHARED = {
    "colmax.deadline",
    "colmax.server.faults",
    "colmax.server.middleware",
    "colmax.server.schemas",
    "colmax.server.settings",
}


def _colmax_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n == "colmax" or n.startswith("colmax.")}


def _door_modules() -> list[Path]:
    return sorted(
        p
        for p in (ROOT / "integrations").rglob("*.py")
        if "tests" not in p.relative_to(ROOT / "integrations").parts
        and p.name not in ("conftest.py",)
    )


def test_the_doors_import_only_the_public_api() -> None:
    modules = _door_modules()
    assert len(modules) >= 8  # the three door packages are there
    private = {str(p.relative_to(ROOT)): sorted(_colmax_imports(p) - PUBLIC) for p in modules}
    assert {k: v for k, v in private.items() if v} == {}


def test_the_mcp_door_imports_only_the_public_api() -> None:
    modules = sorted((ROOT / "src" / "colmax" / "mcp").glob("*.py"))
    assert len(modules) >= 3
    own = {"colmax.mcp", "colmax.mcp.server", "colmax.mcp.tools"}
    private = {
        str(p.relative_to(ROOT)): sorted(_colmax_imports(p) - PUBLIC - MCP_SHARED - own)
        for p in modules
    }
    assert {k: v for k, v in private.items() if v} == {}


@pytest.mark.parametrize(
    "module", sorted((ROOT / "src" / "colmax" / "engine").glob("*.py")), ids=lambda p: p.name
)
def test_the_engine_names_no_backend(module: Path) -> None:
    named = {
        n
        for n in _colmax_imports(module)
        if n.startswith("colmax.backends.")
        and n not in ("colmax.backends.base", "colmax.backends.registry")
    }
    assert named == set()
    assert len(module.read_text(encoding="utf-8").splitlines()) < 400  # small, by concept
