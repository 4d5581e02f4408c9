"""Token-level explanations of a MaxSim score: which query token matched which document text.

- :mod:`colmax.explain.model`: :class:`Explanation`, :class:`TokenMatch`, :class:`Passage`;
- :mod:`colmax.explain.align`: :func:`explain` (one query, one document text, through the
  encoder's token spans) and :func:`explain_vectors` (any vectors, spans optional);
- :mod:`colmax.explain.render`: HTML (``Explanation.to_html``, also ``_repr_html_`` in
  notebooks) and terminal output (``Explanation.to_terminal``, ``colmax search --explain``);
- :mod:`colmax.explain.stored`: explanations of stored documents, as the engine gives them.
"""

from __future__ import annotations

from colmax.explain.align import explain, explain_vectors
from colmax.explain.model import Explanation, Passage, Span, Token, TokenMatch

__all__ = ["Explanation", "Passage", "Span", "Token", "TokenMatch", "explain", "explain_vectors"]
