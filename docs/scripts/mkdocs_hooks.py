"""MkDocs hooks for the colmax site (named under ``hooks:`` in ``mkdocs.yml``).

Two jobs:

- Pages that other people are still writing (:data:`PENDING_PAGES`) may be missing when the site
  is built; their nav entries and the links to them are dropped (logged at INFO) instead of
  failing ``mkdocs build --strict``. Any other missing page still fails the build. Empty the
  list once every page exists.
- Links from a page to repository files outside ``docs/`` (``../examples/01_index_and_search.py``)
  work on GitHub but not on the built site; they become links to the file in the repository
  (``repo_url``). A link to a file that does not exist is a warning, so ``--strict`` fails.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import Any

log = logging.getLogger("mkdocs.hooks.colmax")

#: Pages owned by other work in progress; see the module docstring.
PENDING_PAGES: frozenset[str] = frozenset()

_LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)\)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _missing_pending(docs_dir: Path) -> set[str]:
    return {p for p in PENDING_PAGES if not (docs_dir / p).is_file()}


def _filter_nav(nav: Any, missing: set[str]) -> Any:
    """The nav without entries that point to missing pending pages (empty sections dropped)."""
    if isinstance(nav, str):
        return None if nav in missing else nav
    if isinstance(nav, list):
        kept = [_filter_nav(item, missing) for item in nav]
        return [item for item in kept if item not in (None, [], {})]
    if isinstance(nav, dict):
        out = {}
        for title, value in nav.items():
            kept = _filter_nav(value, missing)
            if kept not in (None, [], {}):
                out[title] = kept
        return out
    return nav


def on_config(config: Any) -> Any:
    """Drop nav entries of pending pages that do not exist yet."""
    missing = _missing_pending(Path(config["docs_dir"]))
    if missing and config.get("nav"):
        log.info("pages not written yet, left out of the nav: %s", ", ".join(sorted(missing)))
        config["nav"] = _filter_nav(config["nav"], missing)
    return config


def _outside_fences(markdown: str, transform: Any) -> str:
    """Apply ``transform`` to the text outside fenced code blocks only."""
    out: list[str] = []
    chunk: list[str] = []
    fenced = False
    for line in markdown.splitlines(keepends=True):
        if _FENCE.match(line):
            text = "".join(chunk)
            out += [text if fenced else transform(text), line]
            chunk, fenced = [], not fenced
        else:
            chunk.append(line)
    text = "".join(chunk)
    out.append(text if fenced else transform(text))
    return "".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Rewrite links to missing pending pages and to repository files outside ``docs/``."""
    docs_dir = Path(config["docs_dir"]).resolve()
    repo_root = docs_dir.parent
    missing = _missing_pending(docs_dir)
    page_dir = (docs_dir / page.file.src_path).parent
    repo_url = (config.get("repo_url") or "").rstrip("/")

    def fix(match: re.Match[str]) -> str:
        text, target = match["text"], match["target"]
        if "://" in target or target.startswith(("#", "mailto:")):
            return match[0]
        path_part, _, anchor = target.partition("#")
        resolved = (page_dir / path_part).resolve()
        try:
            in_docs = PurePosixPath(resolved.relative_to(docs_dir).as_posix())
        except ValueError:
            in_docs = None
        if in_docs is not None:
            if str(in_docs) in missing:
                log.info(
                    "%s: link to %s dropped (page not written yet)", page.file.src_path, in_docs
                )
                return text
            file = files.get_file_from_path(str(in_docs))
            if file is not None and not file.inclusion.is_excluded():
                return match[0]  # a page or asset of the site: MkDocs checks it
        # A file of the repository: examples/..., or docs/scripts/... which the site excludes.
        try:
            in_repo = resolved.relative_to(repo_root).as_posix()
        except ValueError:
            log.warning("%s: link %r points outside the repository", page.file.src_path, target)
            return match[0]
        if not resolved.exists():
            log.warning("%s: link %r: no such file in the repository", page.file.src_path, target)
            return match[0]
        kind = "tree" if resolved.is_dir() else "blob"
        suffix = f"#{anchor}" if anchor else ""
        return f"[{text}]({repo_url}/{kind}/main/{in_repo}{suffix})"

    return _outside_fences(markdown, lambda text: _LINK.sub(fix, text))
