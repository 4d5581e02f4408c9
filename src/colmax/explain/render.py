"""Explanations drawn for people: HTML for notebooks, ANSI or plain text for terminals.

Both cut the text at every matched span and passage boundary into flat pieces, so the output
never needs nested or crossing tags, and both escape what the document holds (HTML escaping;
control characters shown as U+FFFD on a terminal).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from itertools import pairwise

from colmax.explain.model import Explanation, Passage, Span, TokenMatch

__all__ = ["to_html", "to_terminal"]

_PASSAGE_OPEN = (
    '<span class="colmax-passage" title="passage {}" style="border-bottom: 2px solid #1976d2">'
)


def to_html(e: Explanation) -> str:
    """:meth:`Explanation.to_html`: the document as HTML, matches highlighted."""
    contrib = e.contributions()
    top = max((abs(v) for v in contrib.values()), default=1.0) or 1.0
    who = _who_matched(e.matches)
    parts = ['<div class="colmax-explanation" style="white-space: pre-wrap; line-height: 1.6">']
    current = -1
    for start, end, span, passage in _segments(e.text, contrib, e.passages):
        if passage != current:
            parts.append("</span>" if current >= 0 else "")
            parts.append(_PASSAGE_OPEN.format(passage + 1) if passage >= 0 else "")
            current = passage
        piece = html.escape(e.text[start:end])
        if span is not None:
            alpha = 0.15 + 0.75 * max(contrib[span], 0.0) / top
            title = html.escape(who[span], quote=True)
            piece = (
                f'<mark style="background: rgba(255, 193, 7, {alpha:.2f})" '
                f'title="{title}">{piece}</mark>'
            )
        parts.append(piece)
    parts.append("</span>" if current >= 0 else "")
    parts.append(f'<div style="color: #666">MaxSim score {e.score:.3f}</div></div>')
    return "".join(parts)


def to_terminal(e: Explanation, *, color: bool = True, width: int | None = None) -> str:
    """:meth:`Explanation.to_terminal`: the document highlighted for a terminal."""
    contrib = e.contributions()
    lo, hi = _window(e.text, e.passages, width)
    on, off = ("\x1b[4m", "\x1b[24m") if color else ("»", "«")
    out, current = [], -1
    for start, end, span, passage in _segments(e.text, contrib, e.passages):
        start, end = max(start, lo), min(end, hi)
        if start >= end:
            continue
        if passage != current:
            out.append((off if current >= 0 else "") + (on if passage >= 0 else ""))
            current = passage
        piece = _printable(e.text[start:end])
        if span is not None:
            piece = f"\x1b[1;33m{piece}\x1b[22;39m" if color else f"[{piece}]"
        out.append(piece)
    if current >= 0:
        out.append(off)
    return ("..." if lo > 0 else "") + "".join(out) + ("..." if hi < len(e.text) else "")


def _who_matched(matches: Sequence[TokenMatch]) -> dict[Span, str]:
    lines: dict[Span, list[str]] = {}
    for m in matches:
        if m.doc_span is not None:
            lines.setdefault(m.doc_span, []).append(f"{m.query_token or '?'} {m.similarity:.3f}")
    return {span: ", ".join(v) for span, v in lines.items()}


def _segments(
    text: str, contrib: dict[Span, float], passages: Sequence[Passage]
) -> list[tuple[int, int, Span | None, int]]:
    """Cut ``text`` at every span and passage boundary; per piece, the matched span covering
    it (the strongest if spans overlap) and the passage it lies in (-1: none). Flat pieces, so
    the output never needs nested or crossing tags."""
    cuts = {0, len(text)}
    for a, b in contrib:
        cuts.update((a, b))
    for p in passages:
        cuts.update((p.start, p.end))
    bounds = sorted(c for c in cuts if 0 <= c <= len(text))
    spans = sorted(contrib, key=lambda s: -contrib[s])
    pieces = []
    for a, b in pairwise(bounds):
        if a == b:
            continue
        span = next((s for s in spans if s[0] <= a and b <= s[1] and s[0] < s[1]), None)
        passage = next((i for i, p in enumerate(passages) if p.start <= a and b <= p.end), -1)
        pieces.append((a, b, span, passage))
    return pieces


def _printable(text: str) -> str:
    # A stored document may carry escape sequences; printed raw they would restyle or move
    # the user's terminal. Control characters other than newline and tab become U+FFFD.
    return "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text)


def _window(text: str, passages: Sequence[Passage], width: int | None) -> Span:
    if width is None or len(text) <= width:
        return 0, len(text)
    center = (passages[0].start + passages[0].end) // 2 if passages else width // 2
    lo = max(0, min(center - width // 2, len(text) - width))
    return lo, lo + width
