"""The package's doctests, run under the modules' real names (see the package conftest.py)."""

from __future__ import annotations

import doctest
from types import ModuleType

import llama_index.postprocessor.colmax_rerank as package
import pytest
from llama_index.postprocessor.colmax_rerank import base


@pytest.mark.parametrize("module", [package, base], ids=lambda m: m.__name__)
def test_doctests(module: ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0
