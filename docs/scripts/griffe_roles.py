"""Griffe extension for the API pages: Sphinx roles become links; folders without ``__init__.py``.

colmax docstrings name other objects the Sphinx way (``:func:`load_encoder```,
``:class:`~colmax.types.Hit```), which reads well in ``help()`` and in editors. Markdown has no
such roles, so mkdocstrings would print them literally. This extension, listed under the
mkdocstrings ``extensions`` option in ``mkdocs.yml``, rewrites each role to an *optional*
autorefs link: it links when the target is on the site and is plain code otherwise (no
warning, so ``--strict`` does not depend on which objects happen to be documented).

Grouped entries (``batch_size, show_progress: passed to the encoder.`` under ``Args:``, or
several exceptions before one description under ``Raises:``), a convention of this code base,
are split into one entry per name, as Google style expects; griffe would otherwise render the
group as one odd parameter and warn.

A paragraph ending in ``::`` (reST's literal-block marker) keeps a single colon.

It also loads the subfolders of ``colmax`` that have no ``__init__.py`` (``colmax/store``,
``colmax/indexes``): Python imports them as namespace packages, but griffe skips them, so
``::: colmax.store.documents`` would not be found. Once those folders get an ``__init__.py``
this part does nothing.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import griffe

_ROLE = re.compile(
    r":(?:py:)?(?:func|meth|class|mod|attr|data|exc|obj|const|type):`(?P<tilde>~?)(?P<name>[^`]+)`"
)


def _resolve(obj: griffe.Object, name: str) -> str:
    """Full dotted path of ``name`` as seen from ``obj`` (best effort, ``name`` if unknown)."""
    if name.startswith("colmax."):
        return name
    if name.startswith("."):  # relative to the object's package: ":mod:`.base`"
        module = obj if obj.is_module else obj.module
        package = module.path if module.is_package else module.path.rpartition(".")[0]
        return f"{package}{name}"
    head, _, rest = name.partition(".")
    scope: griffe.Object | None = obj
    while scope is not None:  # a method's docstring naming a sibling method: ":meth:`load`"
        if head in scope.members:
            return f"{scope.members[head].path}{'.' + rest if rest else ''}"
        scope = scope.parent
    try:
        return obj.resolve(head) + (f".{rest}" if rest else "")
    except Exception:  # griffe's NameResolutionError, or an object without a scope
        return name


def _rewrite(obj: griffe.Object, text: str) -> str:
    def repl(match: re.Match[str]) -> str:
        name = match["name"].strip().removesuffix("()")
        title = name.rsplit(".", 1)[-1] if match["tilde"] else name
        target = _resolve(obj, name)
        return (
            f'<autoref identifier="{html.escape(target, quote=True)}" optional>'
            f"<code>{html.escape(title)}</code></autoref>"
        )

    return _ROLE.sub(repl, text)


_SECTION = re.compile(
    r"^(?P<indent> *)(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|"
    r"Other Parameters|Attributes|Raises|Exceptions|Warns):\s*$"
)
_LITERAL = re.compile(r"(?m)(\S)::$")
_GROUP = re.compile(r"^(?P<names>[\w.*]+(?: *, *[\w.*]+)+) *: *(?P<desc>.*)$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _split_groups(text: str) -> str:
    """One entry per name in the sections of a Google docstring (see the module docstring)."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        header = _SECTION.match(lines[i])
        out.append(lines[i])
        i += 1
        if not header:
            continue
        base = len(header["indent"])
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > base):
            if not lines[i].strip():
                out.append(lines[i])
                i += 1
                continue
            item_indent, first = _indent(lines[i]), lines[i].strip()
            i += 1
            while first.endswith(",") and ":" not in first and i < len(lines) and lines[i].strip():
                first = f"{first} {lines[i].strip()}"  # a list of names continued below
                i += 1
            rest = []
            while i < len(lines) and lines[i].strip() and _indent(lines[i]) > item_indent:
                rest.append(lines[i])
                i += 1
            group = _GROUP.match(first)
            names = [n.strip() for n in group["names"].split(",")] if group else []
            if not group:
                out += [" " * item_indent + first, *rest]
                continue
            for name in names:
                out += [f"{' ' * item_indent}{name}: {group['desc']}", *rest]
    return "\n".join(out)


def _load_namespace_folders(pkg: griffe.Module, loader: Any) -> None:
    """Load ``pkg``'s subfolders that hold modules but no ``__init__.py`` (see above)."""
    if not isinstance(pkg.filepath, Path) or pkg.filepath.name != "__init__.py":
        return
    for folder in sorted(pkg.filepath.parent.iterdir()):
        if (
            folder.is_dir()
            and folder.name.isidentifier()
            and folder.name not in pkg.members
            and not (folder / "__init__.py").exists()
            and any(folder.glob("*.py"))
        ):
            namespace = griffe.Module(folder.name, filepath=[folder])
            pkg.set_member(folder.name, namespace)
            loader._load_submodules(namespace)  # griffe's own walk, as for any package


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`target``` in every docstring of the loaded package."""

    def on_package(self, *, pkg: griffe.Module, loader: Any = None, **kwargs: Any) -> None:
        """Walk the package once it is loaded (all names resolvable) and rewrite docstrings."""
        if loader is not None:
            _load_namespace_folders(pkg, loader)
        seen: set[str] = set()
        stack: list[griffe.Object] = [pkg]
        while stack:
            obj = stack.pop()
            if obj.path in seen:
                continue
            seen.add(obj.path)
            if obj.docstring is not None:
                obj.docstring.value = _split_groups(_rewrite(obj, obj.docstring.value))
                # reST's "text::" introduces a literal block; Markdown's indented block needs
                # only the blank line, so keep one colon.
                obj.docstring.value = _LITERAL.sub(r"\1:", obj.docstring.value)
            stack.extend(m for m in obj.members.values() if isinstance(m, griffe.Object))
