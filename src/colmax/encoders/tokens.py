"""Turn texts into model inputs the way PyLate does, and say which positions become vectors.

For each text (PyLate 1.6 ``ColBERT.tokenize`` on sentence-transformers 5.3 ``Transformer``):

1. prepend the checkpoint's default prompt (``prompt``; PyLate's
   ``prompts[default_prompt_name]``), strip the result (and lowercase it when the checkpoint
   says ``do_lower_case``). sentence-transformers 6 folders are not stripped: its
   ``Transformer`` tokenizes texts as given, and with byte-level BPE vocabularies (RoBERTa,
   ModernBERT) a leading space or a trailing newline changes the tokens;
2. tokenize with the special tokens, truncated to ``length - 1`` when a marker is used
   (``length`` otherwise);
3. insert the marker id at position 1, right after ``[CLS]`` (colbert-ai >= 0.2.14 does the
   same; its older releases replaced a ``". "`` placeholder token instead, which gives the same
   ids for BERT wordpiece vocabularies);
4. queries with expansion are padded to exactly ``query_length`` with the expansion token
   (``[MASK]``; ``eos`` for models without one), attention 0 there unless
   ``attend_to_expansion_tokens``.

Vectors kept: every position of an expanded query; otherwise the attended positions, minus,
for documents, the tokens whose id is in the skiplist. Padding is always on the right.

Thread safety: a Hugging Face fast tokenizer stores truncation and padding as state of its one
Rust tokenizer, set just before each call, so two threads tokenizing with different lengths can
each run with the other's settings (a query cut at 180 tokens, a document at 32), or fail with
"Already borrowed". Every call that tokenizes goes through :func:`tokenizer_lock` of that
tokenizer. The lock covers the tokenizer only, never the model, and costs well under a
microsecond when no other thread holds it.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from colmax import limits
from colmax.encoders.settings import EncoderSettings

__all__ = ["PreparedText", "TokenPlan", "strips_texts", "tokenizer_lock"]

Span = tuple[int, int]

logger = logging.getLogger(__name__)

_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def tokenizer_lock(tokenizer: Any) -> threading.Lock:
    """The one lock every call of ``tokenizer`` must hold (the same object for every caller).

    Hold it around anything that encodes text with a Hugging Face tokenizer (``tokenizer(...)``,
    ``encode``, ``tokenize``): those calls first set the shared truncation and padding state.

    Examples:
        >>> class Tok: ...
        >>> tok = Tok()
        >>> tokenizer_lock(tok) is tokenizer_lock(tok)
        True
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(tokenizer)
        if lock is None:
            lock = _LOCKS[tokenizer] = threading.Lock()
        return lock


@dataclass(frozen=True)
class PreparedText:
    """One tokenized text, marker inserted, not yet padded to its batch.

    Attributes:
        input_ids: token ids, including ``[MASK]`` expansion for expanded queries.
        token_type_ids: matching segment ids, or None when the model takes none.
        n_attended: leading positions the model attends to (the rest are expansion tokens).
        keep: positions whose vectors are returned, ascending.
        spans: per position, the ``(start, end)`` characters of the original text it covers,
            None for special, marker and expansion tokens; only when asked for.
    """

    input_ids: list[int]
    token_type_ids: list[int] | None
    n_attended: int
    keep: list[int]
    spans: list[Span | None] | None = None


def strips_texts(fmt: str) -> bool:
    """Whether texts are stripped before tokenizing, as the format's reference library does.

    PyLate (on sentence-transformers 5's ``Transformer.tokenize``) strips every text, and so
    colmax does for colbert-ai checkpoints (read as PyLate reads them) and plain models;
    sentence-transformers 6's ``Transformer`` tokenizes texts as given.

    Examples:
        >>> strips_texts("pylate"), strips_texts("sentence-transformers")
        (True, False)
    """
    return fmt != "sentence-transformers"


def _shift_span(start: int, end: int, shift: int) -> Span | None:
    """A token's characters in the original text; None for a token of the prompt alone."""
    if start + shift < 0 and end + shift <= 0:
        return None
    return (max(start + shift, 0), end + shift)


class TokenPlan:
    """Tokenization rules for one encoder (tokenizer + settings + special ids)."""

    def __init__(
        self,
        tokenizer: Any,
        settings: EncoderSettings,
        *,
        query_prefix_id: int | None,
        document_prefix_id: int | None,
        expansion_id: int | None,
        skiplist_ids: frozenset[int],
    ) -> None:
        self.tokenizer = tokenizer
        self.lock = tokenizer_lock(tokenizer)
        self.settings = settings
        self.query_prefix_id = query_prefix_id
        self.document_prefix_id = document_prefix_id
        self.expansion_id = expansion_id
        self.skiplist_ids = skiplist_ids
        names = list(getattr(tokenizer, "model_input_names", []))
        self.uses_token_types = "token_type_ids" in names
        self.pad_id = next((i for i in (expansion_id, tokenizer.pad_token_id) if i is not None), 0)
        self.pad_type_id = int(getattr(tokenizer, "pad_token_type_id", 0) or 0)
        self.strip = strips_texts(settings.format)

    def _preprocess(self, text: str) -> tuple[str, int]:
        """The text the tokenizer reads, and the shift from its character offsets to the
        original text's (negative while the prompt comes first; a position below zero is the
        prompt's)."""
        full = self.settings.prompt + text
        lead = 0
        if self.strip:
            lead = len(full) - len(full.lstrip())
            full = full.strip()
        if self.settings.do_lower_case:
            full = full.lower()
        return full, lead - len(self.settings.prompt)

    def prepare(
        self, texts: Sequence[str], *, is_query: bool, with_spans: bool = False
    ) -> list[PreparedText]:
        """Tokenize ``texts`` (already validated non-empty strings).

        Args:
            texts: the texts.
            is_query: query rules (marker, expansion) or document rules (skiplist).
            with_spans: also compute character spans (needs a fast tokenizer).

        Returns:
            One :class:`PreparedText` per text, in order.
        """
        s = self.settings
        prefix_id = self.query_prefix_id if is_query else self.document_prefix_id
        length = s.query_length if is_query else s.document_length
        max_length = length - 1 if prefix_id is not None else length
        processed = self._cut([self._preprocess(t) for t in texts], length)
        with self.lock:  # the truncation length is shared tokenizer state (module docstring)
            encoded = self.tokenizer(
                [p for p, _ in processed],
                add_special_tokens=True,
                truncation=True,
                max_length=max_length,
                return_attention_mask=False,
                return_token_type_ids=self.uses_token_types,
                return_offsets_mapping=with_spans,
                return_special_tokens_mask=with_spans,
            )
        out = []
        for i, (_, shift) in enumerate(processed):
            ids = list(encoded["input_ids"][i])
            types = list(encoded["token_type_ids"][i]) if self.uses_token_types else None
            spans: list[Span | None] | None = None
            if with_spans:
                spans = [
                    None if special else _shift_span(start, end, shift)
                    for (start, end), special in zip(
                        encoded["offset_mapping"][i], encoded["special_tokens_mask"][i], strict=True
                    )
                ]
            out.append(self._finish(ids, types, spans, prefix_id, max_length, is_query))
        return out

    @staticmethod
    def _cut(processed: list[tuple[str, int]], length: int) -> list[tuple[str, int]]:
        """Texts cut at ``length * limits.MAX_CHARS_PER_TOKEN`` characters: the model reads
        ``length`` tokens, and tokenizing all of a 9 MB text to keep them took seconds and
        gigabytes. Only text made mostly of whitespace runs can lose a token to the cut. The
        cut keeps the start, so character spans are unchanged."""
        limit = length * limits.MAX_CHARS_PER_TOKEN
        long = [i for i, (text, _) in enumerate(processed) if len(text) > limit]
        if not long:
            return processed
        logger.warning(
            "%d text(s) longer than %d characters cut there before tokenizing (the model reads "
            "at most %d tokens; the longest had %d characters); split long documents into "
            "chunks to index all of them",
            len(long),
            limit,
            length,
            max(len(processed[i][0]) for i in long),
        )
        out = list(processed)
        for i in long:
            text, lead = out[i]
            out[i] = (text[:limit], lead)
        return out

    def _finish(
        self,
        ids: list[int],
        types: list[int] | None,
        spans: list[Span | None] | None,
        prefix_id: int | None,
        max_length: int,
        is_query: bool,
    ) -> PreparedText:
        s = self.settings
        expand = is_query and s.do_query_expansion
        missing = max_length - len(ids) if expand else 0
        if missing:
            ids = ids + [self.pad_id] * missing
            types = None if types is None else types + [self.pad_type_id] * missing
            spans = None if spans is None else spans + [None] * missing
        n_attended = len(ids) - missing
        if prefix_id is not None:
            ids = [*ids[:1], prefix_id, *ids[1:]]
            types = None if types is None else [*types[:1], 0, *types[1:]]
            spans = None if spans is None else [*spans[:1], None, *spans[1:]]
            n_attended += 1
        if expand:
            keep = list(range(len(ids)))
            if s.attend_to_expansion_tokens:
                n_attended = len(ids)
        elif is_query:
            keep = list(range(n_attended))
        else:
            keep = [p for p in range(n_attended) if ids[p] not in self.skiplist_ids]
        return PreparedText(ids, types, n_attended, keep, spans)

    def collate(self, items: Sequence[PreparedText]) -> dict[str, torch.Tensor]:
        """Pad a batch on the right into ``input_ids``, ``attention_mask`` (and
        ``token_type_ids``), each ``(batch, longest)`` int64."""
        width = max(len(item.input_ids) for item in items)
        ids = torch.full((len(items), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        types = torch.full((len(items), width), self.pad_type_id, dtype=torch.long)
        for row, item in enumerate(items):
            ids[row, : len(item.input_ids)] = torch.tensor(item.input_ids, dtype=torch.long)
            mask[row, : item.n_attended] = 1
            if item.token_type_ids is not None:
                types[row, : len(item.token_type_ids)] = torch.tensor(
                    item.token_type_ids, dtype=torch.long
                )
        batch = {"input_ids": ids, "attention_mask": mask}
        if self.uses_token_types:
            batch["token_type_ids"] = types
        return batch
