"""Keep pytest's doctest collection out of the ``llama_index`` namespace tree.

With ``--import-mode=importlib`` and without ``consider_namespace_packages``, pytest imports
``llama_index/<kind>/<name>/__init__.py`` under the bare name of its last package folder; for
``llama_index/retrievers/colmax`` that name is ``colmax`` and would shadow the core package.
``tests/test_doctests.py`` runs the same doctests under the modules' real names instead.
"""

from __future__ import annotations

collect_ignore = ["llama_index"]
