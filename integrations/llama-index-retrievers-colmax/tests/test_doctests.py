"""The package's doctests, run under the modules' real names (see the package conftest.py)."""

from __future__ import annotations

import doctest
from types import ModuleType

import llama_index.retrievers.colmax as package
import pytest
from llama_index.retrievers.colmax import base, filters, nodes


@pytest.mark.parametrize("module", [package, base, filters, nodes], ids=lambda m: m.__name__)
def test_doctests(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0
