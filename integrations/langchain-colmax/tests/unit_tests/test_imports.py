from __future__ import annotations

import langchain_colmax
from langchain_colmax import __all__

EXPECTED_ALL = [
    "ColmaxRerank",
    "ColmaxRetriever",
    "ColmaxTranslator",
    "ColmaxVectorStore",
    "__version__",
]


def test_all_imports() -> None:
    assert sorted(EXPECTED_ALL) == sorted(__all__)


def test_every_name_in_all_exists() -> None:
    for name in __all__:
        assert getattr(langchain_colmax, name) is not None
