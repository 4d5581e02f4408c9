"""sentence-transformers 6 ``MultiVectorEncoder`` folders (what ``MultiVectorEncoder.save`` writes).

The layout, as sentence-transformers 6.2-6.3 save it::

    modules.json                        Transformer, Dense..., MultiVectorMask, Normalize
    config_sentence_transformers.json   model_type "MultiVectorEncoder", prompts, similarity
    sentence_bert_config.json           the Transformer's query_length, document_length and
                                        query_expansion {strategy, attend, token, length}
    1_Dense/config.json + weights       token-level projection(s)
    2_MultiVectorMask/config.json       skiplist_words, skiplist_tasks, keep_only_token_ids
    3_Normalize/config.json             L2 normalisation of token embeddings

What sentence-transformers does with it, and how colmax reproduces it:

- the ``"query"`` / ``"document"`` prompt is prepended to the text. colmax accepts prompts that
  are a single token of the model's tokenizer (``""``, or a registered marker such as
  ``"[Q] "``): prepending those is the same as inserting the marker after ``[CLS]``;
- ``query_expansion`` with the ``"fixed"`` strategy pads queries to ``length`` with the
  expansion token (``[MASK]``), attended or not, and scores every position: colmax's ColBERT
  query expansion. A missing length falls back to the tokenizer's ``model_max_length``;
- ``MultiVectorMask`` drops skiplist tokens from documents; skiplist words that are not one
  token of the vocabulary are ignored (sentence-transformers drops them, PyLate keeps ``[UNK]``).

Anything else (multi-token prompts, the ``"min"`` expansion strategy, another expansion token,
image or retrieval backbones, token pooling modules, query-side skiplists) raises
:class:`~colmax.errors.ModelLoadError` naming what is not supported, rather than encoding
differently from sentence-transformers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from colmax.errors import ModelLoadError

__all__ = [
    "FORMAT",
    "is_multi_vector_encoder",
    "read_multi_vector_encoder",
    "resolve_prompt",
    "unknown_skiplist_words",
]

logger = logging.getLogger(__name__)

#: The format name colmax records for these folders.
FORMAT = "sentence-transformers"

_MODEL_TYPE = "MultiVectorEncoder"
_SUPPORTED = ("Transformer", "Dense", "MultiVectorMask", "Normalize")


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{str(path)!r} is not valid JSON: {exc}") from exc


def _object(path: Path) -> dict[str, Any]:
    value = _json(path)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ModelLoadError(f"{str(path)!r} is not a JSON object")
    return value


def _kind(module: dict[str, Any]) -> str:
    return str(module["type"]).rsplit(".", 1)[-1]


def is_multi_vector_encoder(st_config: dict[str, Any], modules: list[dict[str, Any]]) -> bool:
    """Whether a sentence-transformers folder was saved by ``MultiVectorEncoder``.

    Examples:
        >>> is_multi_vector_encoder({"model_type": "MultiVectorEncoder"}, [])
        True
        >>> is_multi_vector_encoder({"model_type": "ColBERT"}, [])
        False
    """
    return st_config.get("model_type") == _MODEL_TYPE or any(
        _kind(m) == "MultiVectorMask" for m in modules
    )


def read_multi_vector_encoder(
    folder: Path, modules: list[dict[str, Any]], backbone: Path
) -> tuple[dict[str, Any], tuple[Path, ...], str | None]:
    """The settings and projection folders a ``MultiVectorEncoder`` folder records.

    Args:
        folder: the model folder.
        modules: its parsed ``modules.json``.
        backbone: the Transformer module's folder.

    Returns:
        ``(read, dense_folders, expansion_token)``: settings under colmax's names (lengths
        only when the files give them), the ``Dense`` module folders in order, and the
        query expansion token when the files name one (``None``: the tokenizer's mask token).

    Raises:
        ModelLoadError: a module, prompt or option colmax does not reproduce.
    """
    kinds = [_kind(m) for m in modules]
    if not kinds or kinds[0] != "Transformer":
        raise ModelLoadError(
            f"{str(folder)!r}: the first module must be a Transformer, got {kinds}"
        )
    for module, kind in zip(modules, kinds):
        if kind not in _SUPPORTED:
            hint = (
                " (token pooling inside the model: index with colmax's pool_factor instead)"
                if "Pooling" in kind
                else ""
            )
            raise ModelLoadError(
                f"{str(folder)!r}: module {module['type']!r} is not supported{hint}; colmax reads "
                f"MultiVectorEncoder pipelines made of {', '.join(_SUPPORTED)}"
            )
    if "Normalize" in kinds and "Dense" in kinds[kinds.index("Normalize") :]:
        raise ModelLoadError(f"{str(folder)!r}: a Dense module after Normalize is not supported")
    # A Normalize module on another feature leaves token vectors as they are; like
    # sentence-transformers, a config without module_input_name means "sentence_embedding".
    read: dict[str, Any] = {
        "normalize": any(
            _object(folder / str(m.get("path", "")) / "config.json").get(
                "module_input_name", "sentence_embedding"
            )
            == "token_embeddings"
            for m, k in zip(modules, kinds)
            if k == "Normalize"
        )
    }
    read.update(_read_transformer(backbone))
    read.update(_read_prompts(folder))
    masks = [m for m, k in zip(modules, kinds) if k == "MultiVectorMask"]
    if len(masks) > 1:
        raise ModelLoadError(f"{str(folder)!r}: more than one MultiVectorMask module")
    if masks:
        read["skiplist_words"] = _read_mask(folder / str(masks[0].get("path", "")))
    elif read.get("do_query_expansion"):
        # Without the mask module, sentence-transformers scores attended tokens only, so the
        # expansion positions it pads with are never scored: nothing colmax reproduces.
        raise ModelLoadError(
            f"{str(folder)!r}: query_expansion without a MultiVectorMask module is not supported"
        )
    dense = []
    for module, kind in zip(modules, kinds):
        if kind == "Dense":
            dense_folder = folder / str(module.get("path", ""))
            _check_dense(dense_folder)
            dense.append(dense_folder)
    expansion = _object(backbone / "sentence_bert_config.json").get("query_expansion") or {}
    return read, tuple(dense), expansion.get("token")


def _read_transformer(backbone: Path) -> dict[str, Any]:
    path = backbone / "sentence_bert_config.json"
    config = _object(path)
    task = config.get("transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise ModelLoadError(
            f"{str(path)!r}: transformer_task {task!r} is not supported (text encoders only: "
            "'feature-extraction')"
        )
    text = (config.get("modality_config") or {"text": {}}).get("text")
    if not isinstance(text, dict) or text.get("method_output_name", "last_hidden_state") != (
        "last_hidden_state"
    ):
        raise ModelLoadError(
            f"{str(path)!r}: only a text modality read from last_hidden_state is supported"
        )
    if config.get("processing_kwargs"):
        raise ModelLoadError(f"{str(path)!r}: processing_kwargs are not supported")
    read: dict[str, Any] = {}
    fallback = config.get("max_seq_length")  # older configs: the tokenizer's length limit
    for name in ("query_length", "document_length"):
        value = config.get(name)
        if value is None:
            value = fallback
        if value is not None:
            read[name] = value
    read.update(_read_expansion(config.get("query_expansion"), path))
    return read


def _read_expansion(expansion: Any, path: Path) -> dict[str, Any]:
    if expansion is None:
        return {"do_query_expansion": False}
    if not isinstance(expansion, dict):
        raise ModelLoadError(f"{str(path)!r}: query_expansion must be an object or null")
    strategy = expansion.get("strategy")
    if strategy != "fixed":
        raise ModelLoadError(
            f"{str(path)!r}: query_expansion strategy {strategy!r} is not supported (only 'fixed', "
            "classic ColBERT: every query padded or cut to exactly 'length' tokens)"
        )
    length = expansion.get("length")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ModelLoadError(f"{str(path)!r}: query_expansion length must be a positive integer")
    read: dict[str, Any] = {
        "do_query_expansion": True,
        "attend_to_expansion_tokens": bool(expansion.get("attend", False)),
        # sentence-transformers: the fixed length is the query width, over query_length.
        "query_length": length,
    }
    return read


def _read_prompts(folder: Path) -> dict[str, Any]:
    """The query and document prompts as ``encode_query`` / ``encode_document`` pick them."""
    config = _object(folder / "config_sentence_transformers.json")
    prompts = config.get("prompts") or {}
    if not isinstance(prompts, dict):
        raise ModelLoadError(f"{str(folder)!r}: prompts must be an object")
    default = config.get("default_prompt_name")
    if config.get("similarity_fn_name") == "meanmaxsim":
        logger.info(
            "%s was trained with meanmaxsim; colmax reports the MaxSim sum (same ranking per query)",
            folder,
        )
    read: dict[str, Any] = {}
    for task, name in (("query", "query_prefix"), ("document", "document_prefix")):
        # encode_query uses prompts["query"] when the key exists, else the default prompt.
        prompt = prompts[task] if task in prompts else prompts.get(default) if default else None
        if prompt is not None and not isinstance(prompt, str):
            raise ModelLoadError(f"{str(folder)!r}: the {task} prompt must be a string")
        read[name] = prompt or ""
    return read


def _read_mask(path: Path) -> tuple[str, ...]:
    config = _object(path / "config.json")
    tasks = config.get("skiplist_tasks")
    if tasks is None:  # sentence-transformers' default
        tasks = ["document"]
    if isinstance(tasks, str):
        tasks = [tasks]
    words = config.get("skiplist_words") or []
    if not tasks:  # [] : the skiplist applies to no task
        words = []
    if words and list(tasks) != ["document"]:
        raise ModelLoadError(
            f"{str(path)!r}: skiplist_tasks {tasks} is not supported (documents only)"
        )
    if config.get("keep_only_token_ids"):
        raise ModelLoadError(f"{str(path)!r}: keep_only_token_ids is not supported")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise ModelLoadError(f"{str(path)!r}: skiplist_words must be a list of strings")
    return tuple(words)


def _check_dense(folder: Path) -> None:
    config = _object(folder / "config.json")
    name = config.get("module_input_name", "token_embeddings")
    if name != "token_embeddings":
        raise ModelLoadError(
            f"{str(folder)!r}: a Dense module on {name!r} is not supported (token_embeddings only)"
        )


def resolve_prompt(prompt: str, tokenizer: Any, source: str) -> str:
    """The one token a prompt tokenizes to (``""`` for no prompt).

    sentence-transformers prepends the prompt to the text; for a prompt that is exactly one
    token (a registered marker such as ``"[Q] "``), that equals inserting the token after
    ``[CLS]``, which is what colmax's encoder does.

    Raises:
        ModelLoadError: the prompt is several tokens.
    """
    if not prompt:
        return ""
    pieces = tokenizer.tokenize(prompt)
    if len(pieces) != 1:
        raise ModelLoadError(
            f"{source}: the prompt {prompt!r} is {len(pieces)} tokens {pieces}; colmax supports "
            "prompts of one token (a marker such as '[Q] ') for MultiVectorEncoder models"
        )
    return str(pieces[0])


def unknown_skiplist_words(words: tuple[str, ...], tokenizer: Any) -> set[str]:
    """Skiplist words that are not one vocabulary token (sentence-transformers ignores them)."""
    unk_id, unk = tokenizer.unk_token_id, tokenizer.unk_token
    return {
        w
        for w in words
        if unk_id is not None and tokenizer.convert_tokens_to_ids(w) == unk_id and w != unk
    }
