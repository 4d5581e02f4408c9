"""MetadataFilters -> colmax filter dicts (pure translation; end-to-end checks are in
test_retriever.py)."""

from __future__ import annotations

import pytest
from llama_index.core.vector_stores import (
    ExactMatchFilter,
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)
from llama_index.retrievers.colmax import to_colmax_filter

from colmax.filters import compile_filter

F = MetadataFilter


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("==", 2020, {"year": {"$eq": 2020}}),
        ("!=", "en", {"year": {"$ne": "en"}}),
        (">", 1.5, {"year": {"$gt": 1.5}}),
        (">=", 2020, {"year": {"$gte": 2020}}),
        ("<", 2020, {"year": {"$lt": 2020}}),
        ("<=", 2020, {"year": {"$lte": 2020}}),
        ("in", [1, 2], {"year": {"$in": [1, 2]}}),
        ("nin", ["a"], {"year": {"$nin": ["a"]}}),
        ("contains", "x", {"year": {"$contains": "x"}}),
        ("any", ["a", "b"], {"$or": [{"year": {"$contains": "a"}}, {"year": {"$contains": "b"}}]}),
        ("all", ["a", "b"], {"$and": [{"year": {"$contains": "a"}}, {"year": {"$contains": "b"}}]}),
        ("any", [], {"year": {"$in": []}}),
        ("all", [], {"year": {"$exists": True}}),
    ],
)
def test_each_operator(operator: str, value: object, expected: dict) -> None:
    out = to_colmax_filter(MetadataFilters(filters=[F(key="year", value=value, operator=operator)]))
    assert out == expected
    compile_filter(out)  # the engine accepts it


def test_exact_match_filter_is_equality() -> None:
    filters = MetadataFilters(filters=[ExactMatchFilter(key="lang", value="en")])
    assert to_colmax_filter(filters) == {"lang": {"$eq": "en"}}


def test_conditions_and_nesting() -> None:
    a, b = F(key="a", value=1), F(key="b", value=2, operator=">")
    inner = MetadataFilters(filters=[a, b], condition=FilterCondition.OR)
    outer = MetadataFilters(filters=[inner, F(key="c", value="x")], condition="and")
    assert to_colmax_filter(outer) == {
        "$and": [{"$or": [{"a": {"$eq": 1}}, {"b": {"$gt": 2}}]}, {"c": {"$eq": "x"}}]
    }
    # "not" matches the nodes that match none of its filters (LlamaIndex's reference semantics).
    negated = MetadataFilters(filters=[a, b], condition=FilterCondition.NOT)
    assert to_colmax_filter(negated) == {"$not": {"$or": [{"a": {"$eq": 1}}, {"b": {"$gt": 2}}]}}
    assert to_colmax_filter(MetadataFilters(filters=[a], condition="not")) == {
        "$not": {"a": {"$eq": 1}}
    }
    assert to_colmax_filter(MetadataFilters(filters=[a], condition=None)) == {"a": {"$eq": 1}}


def test_no_filters_means_everything() -> None:
    assert to_colmax_filter(None) is None
    assert to_colmax_filter(MetadataFilters(filters=[])) is None


@pytest.mark.parametrize(
    "operator",
    [FilterOperator.TEXT_MATCH, FilterOperator.TEXT_MATCH_INSENSITIVE, FilterOperator.IS_EMPTY],
)
def test_unsupported_operators_raise(operator: FilterOperator) -> None:
    with pytest.raises(ValueError, match=operator.name):
        to_colmax_filter(MetadataFilters(filters=[F(key="a", value="x", operator=operator)]))


@pytest.mark.parametrize("operator", ["in", "nin", "any", "all"])
def test_list_operators_need_a_list(operator: str) -> None:
    with pytest.raises(ValueError, match="list"):
        to_colmax_filter(MetadataFilters(filters=[F(key="a", value="x", operator=operator)]))
