"""LangChain structured-query filters -> colmax filter dicts, checked against a real engine."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_colmax import ColmaxTranslator
from langchain_colmax.filters import to_colmax_filter
from langchain_core.structured_query import (
    Comparator,
    Comparison,
    Operation,
    Operator,
    StructuredQuery,
)

from colmax import Engine
from colmax.errors import FilterError


def cmp(op: Comparator, attribute: str, value: object) -> Comparison:
    return Comparison(comparator=op, attribute=attribute, value=value)


@pytest.mark.parametrize(
    ("comparator", "expected"),
    [
        (Comparator.EQ, "$eq"),
        (Comparator.NE, "$ne"),
        (Comparator.GT, "$gt"),
        (Comparator.GTE, "$gte"),
        (Comparator.LT, "$lt"),
        (Comparator.LTE, "$lte"),
        (Comparator.CONTAIN, "$contains"),
    ],
    ids=lambda v: str(v),
)
def test_comparisons(comparator: Comparator, expected: str) -> None:
    assert cmp(comparator, "year", 2021).accept(ColmaxTranslator()) == {"year": {expected: 2021}}


def test_in_and_nin_take_lists() -> None:
    translator = ColmaxTranslator()
    assert cmp(Comparator.IN, "lang", ["en", "de"]).accept(translator) == {
        "lang": {"$in": ["en", "de"]}
    }
    assert cmp(Comparator.NIN, "lang", ["fr"]).accept(translator) == {"lang": {"$nin": ["fr"]}}


def test_operations_nest() -> None:
    flt = Operation(
        operator=Operator.AND,
        arguments=[
            cmp(Comparator.GTE, "year", 2020),
            Operation(
                operator=Operator.OR,
                arguments=[cmp(Comparator.EQ, "lang", "en"), cmp(Comparator.CONTAIN, "tags", "x")],
            ),
            Operation(operator=Operator.NOT, arguments=[cmp(Comparator.EQ, "draft", True)]),
        ],
    )
    assert flt.accept(ColmaxTranslator()) == {
        "$and": [
            {"year": {"$gte": 2020}},
            {"$or": [{"lang": {"$eq": "en"}}, {"tags": {"$contains": "x"}}]},
            {"$not": {"draft": {"$eq": True}}},
        ]
    }


def test_like_is_rejected() -> None:
    with pytest.raises(ValueError, match="disallowed comparator"):
        cmp(Comparator.LIKE, "title", "foo%").accept(ColmaxTranslator())


def test_structured_query() -> None:
    translator = ColmaxTranslator()
    assert translator.visit_structured_query(StructuredQuery(query="q", filter=None)) == ("q", {})
    query = StructuredQuery(query="q", filter=cmp(Comparator.LT, "year", 2000))
    assert translator.visit_structured_query(query) == ("q", {"filter": {"year": {"$lt": 2000}}})


def test_to_colmax_filter() -> None:
    assert to_colmax_filter(None) is None
    assert to_colmax_filter({"a": 1}) == {"a": 1}
    assert to_colmax_filter(cmp(Comparator.EQ, "a", 1)) == {"a": {"$eq": 1}}
    with pytest.raises(TypeError, match="filter must be a dict"):
        to_colmax_filter(lambda doc: True)  # type: ignore[arg-type]


def test_translated_filters_select_the_right_documents() -> None:
    """The translation is only right if the engine evaluates it as LangChain means it."""
    engine = Engine(dim=4)
    metas = [
        {"year": 2019, "lang": "en", "tags": ["x"]},
        {"year": 2021, "lang": "de", "tags": ["y"]},
        {"year": 2023, "lang": "en", "tags": ["x", "y"], "draft": True},
    ]
    engine.add(embeddings=[np.eye(4)[:2]] * 3, ids=["a", "b", "c"], metadatas=metas)
    translator = ColmaxTranslator()

    def ids(directive: Comparison | Operation) -> set[str]:
        hits = engine.search(
            query_embeddings=np.eye(4)[:1], k=10, filter=directive.accept(translator)
        )
        return {h.id for h in hits}  # type: ignore[union-attr]

    assert ids(cmp(Comparator.GTE, "year", 2021)) == {"b", "c"}
    assert ids(cmp(Comparator.CONTAIN, "tags", "y")) == {"b", "c"}
    assert ids(cmp(Comparator.NIN, "lang", ["de"])) == {"a", "c"}
    assert ids(Operation(operator=Operator.NOT, arguments=[cmp(Comparator.EQ, "draft", True)])) == {
        "a",
        "b",
    }
    assert ids(
        Operation(
            operator=Operator.OR,
            arguments=[cmp(Comparator.LT, "year", 2020), cmp(Comparator.EQ, "lang", "de")],
        )
    ) == {"a", "b"}
    with pytest.raises(FilterError):
        engine.search(query_embeddings=np.eye(4)[:1], filter={"year": {"$regex": "x"}})
