"""LangChain metadata filters mapped onto the colmax filter language.

colmax filters are dicts evaluated in SQLite over each document's JSON metadata
(``{"year": {"$gte": 2021}}``, ``$eq $ne $in $nin $gt $gte $lt $lte $contains $exists``,
``$and $or $not``; see :mod:`colmax.filters`). The Mongo-style dicts most LangChain
vector stores take (Chroma, PGVector, Qdrant's dict form, ...) are already that language and
pass through unchanged. LangChain's structured-query objects (``Comparison`` / ``Operation``, as
produced by ``SelfQueryRetriever``) are translated by :class:`ColmaxTranslator`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.structured_query import (
    Comparator,
    Comparison,
    FilterDirective,
    Operation,
    Operator,
    StructuredQuery,
    Visitor,
)

__all__ = ["ColmaxTranslator", "to_colmax_filter"]

_COMPARATORS: dict[Comparator, str] = {
    Comparator.EQ: "$eq",
    Comparator.NE: "$ne",
    Comparator.GT: "$gt",
    Comparator.GTE: "$gte",
    Comparator.LT: "$lt",
    Comparator.LTE: "$lte",
    Comparator.IN: "$in",
    Comparator.NIN: "$nin",
    # colmax's $contains means "the array field holds this value" (no substring match).
    Comparator.CONTAIN: "$contains",
}
_OPERATORS: dict[Operator, str] = {Operator.AND: "$and", Operator.OR: "$or", Operator.NOT: "$not"}


class ColmaxTranslator(Visitor):
    """Translate LangChain structured queries into colmax filter dicts.

    Use it with ``SelfQueryRetriever(..., structured_query_translator=ColmaxTranslator())``.
    ``LIKE`` has no colmax equivalent and is rejected.

    Examples:
        >>> from langchain_core.structured_query import Comparator, Comparison
        >>> Comparison(comparator=Comparator.GTE, attribute="year", value=2021).accept(
        ...     ColmaxTranslator()
        ... )
        {'year': {'$gte': 2021}}
    """

    allowed_comparators = tuple(_COMPARATORS)
    allowed_operators = tuple(_OPERATORS)

    def visit_operation(self, operation: Operation) -> dict[str, Any]:
        """Translate ``and`` / ``or`` / ``not`` over translated arguments."""
        self._validate_func(operation.operator)
        args = [arg.accept(self) for arg in operation.arguments]
        if operation.operator == Operator.NOT:
            inner = args[0] if len(args) == 1 else {"$and": args}
            return {"$not": inner}
        return {_OPERATORS[operation.operator]: args}

    def visit_comparison(self, comparison: Comparison) -> dict[str, Any]:
        """Translate one ``attribute <comparator> value`` condition."""
        self._validate_func(comparison.comparator)
        return {comparison.attribute: {_COMPARATORS[comparison.comparator]: comparison.value}}

    def visit_structured_query(
        self, structured_query: StructuredQuery
    ) -> tuple[str, dict[str, Any]]:
        """Return ``(query, search_kwargs)`` with the translated ``filter`` if there is one."""
        if structured_query.filter is None:
            return structured_query.query, {}
        return structured_query.query, {"filter": structured_query.filter.accept(self)}


def to_colmax_filter(flt: Mapping[str, Any] | FilterDirective | None) -> dict[str, Any] | None:
    """A colmax filter dict from a dict (passed through) or a LangChain filter directive.

    Args:
        flt: ``None``, a colmax/Mongo-style dict, or a ``Comparison`` / ``Operation``.

    Returns:
        The filter dict, or ``None`` for "no filter". The engine validates it when searching
        and raises :class:`colmax.errors.FilterError` if it is malformed.

    Raises:
        TypeError: ``flt`` is neither a mapping nor a filter directive.

    Examples:
        >>> to_colmax_filter({"lang": {"$in": ["en", "de"]}})
        {'lang': {'$in': ['en', 'de']}}
    """
    if flt is None:
        return None
    if isinstance(flt, FilterDirective):
        return flt.accept(ColmaxTranslator())  # type: ignore[no-any-return]
    if isinstance(flt, Mapping):
        return dict(flt)
    raise TypeError(
        "filter must be a dict in the colmax filter language (e.g. {'year': {'$gte': 2021}}) "
        f"or a langchain_core.structured_query Comparison/Operation, got {type(flt).__name__}"
    )
