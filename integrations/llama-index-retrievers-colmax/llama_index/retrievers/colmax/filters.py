"""LlamaIndex ``MetadataFilters`` translated into the colmax filter language.

The translation follows the semantics of LlamaIndex's reference implementation
(``llama_index.core.vector_stores.utils.build_metadata_filter_fn``): ``condition="not"`` matches
the nodes that match *none* of its filters, ``ANY``/``ALL`` test membership in a list field.
The resulting dict is evaluated by the engine in SQLite (see :mod:`colmax.filters`), so
comparisons are typed: ``2024`` does not match ``"2024"``.

Examples:
    >>> from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
    >>> to_colmax_filter(MetadataFilters(filters=[
    ...     MetadataFilter(key="year", value=2020, operator=">="),
    ...     MetadataFilter(key="lang", value=["en", "de"], operator="in"),
    ... ]))
    {'$and': [{'year': {'$gte': 2020}}, {'lang': {'$in': ['en', 'de']}}]}
"""

from __future__ import annotations

from typing import Any

from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
)

__all__ = ["SUPPORTED_OPERATORS", "to_colmax_filter"]

_DIRECT = {
    FilterOperator.EQ: "$eq",
    FilterOperator.NE: "$ne",
    FilterOperator.GT: "$gt",
    FilterOperator.GTE: "$gte",
    FilterOperator.LT: "$lt",
    FilterOperator.LTE: "$lte",
    FilterOperator.IN: "$in",
    FilterOperator.NIN: "$nin",
    FilterOperator.CONTAINS: "$contains",
}
_LIST_OPERATORS = (FilterOperator.IN, FilterOperator.NIN, FilterOperator.ANY, FilterOperator.ALL)

#: The ``FilterOperator`` values ColmaxRetriever understands.
SUPPORTED_OPERATORS = frozenset({*_DIRECT, FilterOperator.ANY, FilterOperator.ALL})


def to_colmax_filter(filters: MetadataFilters | None) -> dict[str, Any] | None:
    """Translate LlamaIndex metadata filters into a colmax filter dict.

    Args:
        filters: ``MetadataFilters`` (nested ``MetadataFilters`` allowed) or ``None``.

    Returns:
        A filter for ``Engine.search(filter=...)``, or ``None`` for "every node".

    Raises:
        ValueError: an operator colmax cannot evaluate (``TEXT_MATCH``,
            ``TEXT_MATCH_INSENSITIVE``, ``IS_EMPTY``), a scalar where a list is required, or
            an unknown condition.
    """
    if filters is None or not filters.filters:
        return None
    return _filters(filters)


def _filters(filters: MetadataFilters) -> dict[str, Any]:
    parts = [_filters(f) if isinstance(f, MetadataFilters) else _filter(f) for f in filters.filters]
    condition = filters.condition or FilterCondition.AND
    if condition == FilterCondition.NOT:
        # LlamaIndex's reference: "match when none of the filters match".
        return {"$not": parts[0] if len(parts) == 1 else {"$or": parts}}
    if len(parts) == 1:
        return parts[0]
    if condition == FilterCondition.AND:
        return {"$and": parts}
    if condition == FilterCondition.OR:
        return {"$or": parts}
    raise ValueError(f"unknown filter condition {condition!r}; use 'and', 'or' or 'not'")


def _filter(flt: MetadataFilter) -> dict[str, Any]:
    op, key, value = flt.operator, flt.key, flt.value
    if op not in SUPPORTED_OPERATORS:
        supported = sorted(o.name for o in SUPPORTED_OPERATORS)
        raise ValueError(
            f"ColmaxRetriever cannot evaluate the filter operator {op.name} (on {key!r}); "
            f"supported: {supported}"
        )
    if op not in _LIST_OPERATORS:
        return {key: {_DIRECT[op]: value}}
    if not isinstance(value, list):
        raise ValueError(f"the {op.name} filter on {key!r} takes a list of values, got {value!r}")
    if op == FilterOperator.ANY:  # an empty list matches nothing, as any([]) is False
        return {"$or": [{key: {"$contains": v}} for v in value]} if value else {key: {"$in": []}}
    if op == FilterOperator.ALL:  # an empty list matches every node that has the field
        return (
            {"$and": [{key: {"$contains": v}} for v in value]}
            if value
            else {key: {"$exists": True}}
        )
    return {key: {_DIRECT[op]: value}}
