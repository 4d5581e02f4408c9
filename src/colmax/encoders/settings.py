"""Encoder settings: one frozen dataclass, plus the defaults of each checkpoint format.

The defaults mirror what the reference libraries do when a checkpoint does not say:

- ``"pylate"``: PyLate 1.6 (``pylate.models.ColBERT.__init__``): prefixes ``"[Q] "`` /
  ``"[D] "``, ``query_length=32``, ``document_length=180``, query expansion on, expansion tokens
  not attended to, skiplist ``string.punctuation``, no prompt.
- ``"colbert"``: a colbert-ai (Stanford) checkpoint as PyLate loads it: markers
  ``"[unused0]"`` / ``"[unused1]"`` (colbert-ai's ``TokenizerSettings``), ``query_maxlen=32``,
  and PyLate's fallback ``document_length=180`` when ``artifact.metadata`` has no ``doc_maxlen``
  (colbert-ai's own default is 220; its saved checkpoints always record the value).
- ``"hf"``: a plain Hugging Face encoder used zero-shot: no markers, no expansion, no
  skiplist, queries cut at 32 tokens and documents at 256.
- ``"sentence-transformers"``: a sentence-transformers 6 ``MultiVectorEncoder`` folder. Its
  files record every setting; what they leave out is what sentence-transformers does then: no
  prompt, no expansion, no skiplist, and lengths up to the tokenizer's ``model_max_length``
  (filled in by the loader, which has the tokenizer; 32/256 here only for a bare settings
  object).
"""

from __future__ import annotations

import dataclasses
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from colmax.errors import InvalidInputError
from colmax.validation import check_positive_int

__all__ = ["FORMATS", "EncoderSettings", "default_settings"]

#: The checkpoint formats :func:`colmax.encoders.load_encoder` understands.
FORMATS = ("colbert", "pylate", "hf", "sentence-transformers")

_PUNCTUATION = tuple(string.punctuation)


@dataclass(frozen=True)
class EncoderSettings:
    """Everything that decides which vectors a text becomes (besides the weights).

    Attributes:
        format: checkpoint format, one of ``"colbert"``, ``"pylate"``, ``"hf"``,
            ``"sentence-transformers"``.
        query_prefix: marker token inserted after ``[CLS]`` in queries (``""``: none). For
            ``"sentence-transformers"``, the model's query prompt, which must tokenize to a
            single token (then prepending it as text, as sentence-transformers does, is the
            same as inserting it).
        document_prefix: marker token inserted after ``[CLS]`` in documents (``""``: none).
        prompt: text prepended to every query and document before tokenizing (``""``: none):
            PyLate's default prompt, ``prompts[default_prompt_name]`` in
            ``config_sentence_transformers.json``. Its tokens count in the lengths and become
            vectors like the text's.
        query_length: queries are cut to this many tokens (marker included) and, with
            ``do_query_expansion``, padded to exactly this many with ``[MASK]``.
        document_length: documents are cut to this many tokens (marker included).
        do_query_expansion: pad queries with ``[MASK]`` to ``query_length`` and keep every
            position (ColBERT query augmentation).
        attend_to_expansion_tokens: let the model attend to the ``[MASK]`` expansion tokens
            (colbert-ai's ``attend_to_mask_tokens``); only meaningful with expansion.
        skiplist_words: tokens dropped from documents (not from queries) after encoding.
        normalize: L2-normalise every output vector.
        do_lower_case: lowercase texts before tokenizing (sentence-transformers'
            ``sentence_bert_config.json`` flag; most uncased tokenizers lowercase anyway).
        batch_size: texts per forward pass.
    """

    format: str
    query_prefix: str = ""
    document_prefix: str = ""
    prompt: str = ""
    query_length: int = 32
    document_length: int = 256
    do_query_expansion: bool = False
    attend_to_expansion_tokens: bool = False
    skiplist_words: tuple[str, ...] = field(default_factory=tuple)
    normalize: bool = True
    do_lower_case: bool = False
    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise InvalidInputError(f"format must be one of {FORMATS}, got {self.format!r}")
        for name in ("query_prefix", "document_prefix", "prompt"):
            if not isinstance(getattr(self, name), str):
                raise InvalidInputError(f"{name} must be a string, got {getattr(self, name)!r}")
        for name in ("do_query_expansion", "attend_to_expansion_tokens", "normalize"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(
                    f"{name} must be True or False, got {getattr(self, name)!r}"
                )
        if not isinstance(self.do_lower_case, bool):
            raise InvalidInputError(
                f"do_lower_case must be True or False, got {self.do_lower_case!r}"
            )
        # A marker needs room for [CLS], the marker and [SEP].
        for name, prefix in (
            ("query_length", self.query_prefix),
            ("document_length", self.document_prefix),
        ):
            minimum = 3 if prefix else 2
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
        check_positive_int(self.batch_size, "batch_size")
        words = self.skiplist_words
        if isinstance(words, str) or not all(isinstance(w, str) for w in words):
            raise InvalidInputError(f"skiplist_words must be a list of strings, got {words!r}")
        object.__setattr__(self, "skiplist_words", tuple(words))
        if not self.do_query_expansion and self.attend_to_expansion_tokens:
            # PyLate: "If we do not do query expansion, we do not attend to the expansion tokens".
            object.__setattr__(self, "attend_to_expansion_tokens", False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy (``skiplist_words`` becomes a list).

        Examples:
            >>> EncoderSettings(format="hf").to_dict()["query_length"]
            32
        """
        out = dataclasses.asdict(self)
        out["skiplist_words"] = list(self.skiplist_words)
        return out

    def replace(self, **changes: Any) -> EncoderSettings:
        """A copy with some fields changed; unknown names raise :class:`InvalidInputError`.

        Examples:
            >>> EncoderSettings(format="hf").replace(query_length=64).query_length
            64
        """
        unknown = sorted(set(changes) - set(setting_names()))
        if unknown:
            raise InvalidInputError(
                f"unknown encoder setting(s) {unknown}; known: {sorted(setting_names())}"
            )
        return dataclasses.replace(self, **changes)


def setting_names() -> tuple[str, ...]:
    """Names of the :class:`EncoderSettings` fields."""
    return tuple(f.name for f in dataclasses.fields(EncoderSettings))


_DEFAULTS: dict[str, dict[str, Any]] = {
    "pylate": {
        "query_prefix": "[Q] ",
        "document_prefix": "[D] ",
        "query_length": 32,
        "document_length": 180,
        "do_query_expansion": True,
        "attend_to_expansion_tokens": False,
        "skiplist_words": _PUNCTUATION,
    },
    "colbert": {
        "query_prefix": "[unused0]",
        "document_prefix": "[unused1]",
        "query_length": 32,
        "document_length": 180,
        "do_query_expansion": True,
        "attend_to_expansion_tokens": False,
        "skiplist_words": _PUNCTUATION,
    },
    "hf": {
        "query_prefix": "",
        "document_prefix": "",
        "query_length": 32,
        "document_length": 256,
        "do_query_expansion": False,
        "attend_to_expansion_tokens": False,
        "skiplist_words": (),
    },
    "sentence-transformers": {
        "query_prefix": "",
        "document_prefix": "",
        "query_length": 32,
        "document_length": 256,
        "do_query_expansion": False,
        "attend_to_expansion_tokens": False,
        "skiplist_words": (),
    },
}


def default_settings(fmt: str, read: Mapping[str, Any] | None = None) -> EncoderSettings:
    """Settings for a format: its defaults, then the values ``read`` from the checkpoint files.

    Args:
        fmt: one of :data:`FORMATS`.
        read: values found in the checkpoint (``None`` values are ignored).

    Returns:
        The validated settings.

    Raises:
        InvalidInputError: unknown format or invalid value.

    Examples:
        >>> default_settings("pylate").query_prefix
        '[Q] '
        >>> default_settings("colbert", {"query_length": 64}).query_length
        64
    """
    if fmt not in _DEFAULTS:
        raise InvalidInputError(f"format must be one of {FORMATS}, got {fmt!r}")
    values: dict[str, Any] = {"format": fmt, **_DEFAULTS[fmt]}
    values.update({k: v for k, v in (read or {}).items() if v is not None})
    return EncoderSettings(**values)
