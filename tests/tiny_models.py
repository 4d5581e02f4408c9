"""Tiny random BERT models in the three checkpoint layouts colmax reads, built in well under a
second each from a config (no download, no reference library needed).

- :func:`make_tiny_hf_model`: a plain Hugging Face BERT folder (``BertModel``), with a
  ``sentence_bert_config.json`` like a sentence-transformers model;
- :func:`make_tiny_colbert_model`: the same backbone saved as colbert-ai does
  (``architectures: ["HF_ColBERT"]``, ``bert.``-prefixed weights plus a bias-free
  ``linear.weight`` 32 -> 16, ``artifact.metadata``);
- :func:`make_tiny_pylate_model`: the same backbone saved as ``pylate.models.ColBERT.save`` does
  (``modules.json``, ``config_sentence_transformers.json``, ``sentence_bert_config.json``,
  markers ``"[Q] "``/``"[D] "`` added to the tokenizer with mean-initialised embedding rows, and
  ``1_Dense/`` with an Identity activation, no bias, 32 -> 16);
- :func:`make_tiny_st_model`: the same backbone in sentence-transformers 6's
  ``MultiVectorEncoder`` layout, file for file what ``MultiVectorEncoder(<tiny PyLate
  folder>).save`` writes (``tests/peers/test_parity_st6.py`` checks the real library on it).

Every builder takes the same ``seed`` so the three share one backbone and one projection.
"""

from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import AddedToken, AutoTokenizer, BertConfig, BertModel

__all__ = [
    "HIDDEN_SIZE",
    "PROJECTION_DIM",
    "TINY_VOCAB",
    "make_tiny_colbert_model",
    "make_tiny_hf_model",
    "make_tiny_pylate_model",
    "make_tiny_st_model",
    "tiny_projection",
]

HIDDEN_SIZE = 32
PROJECTION_DIM = 16
MAX_POSITIONS = 512

_WORDS = (  # noqa: SIM905 (a word list reads better as prose)
    "the a of and to in is was for on with as by at it an be this that from are or what how "
    "which do does not no yes cat dog sat mat house car red blue big small run ran hello world "
    "search engine query document paris france capital late interaction model token"
).split()
_SUBWORDS = ["##s", "##ing", "##ed", "##er", "##ly"]

#: The tiny vocabulary: specials, ColBERT markers, all ASCII punctuation, ~70 words/pieces.
TINY_VOCAB: list[str] = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "[unused0]",
    "[unused1]",
    *string.punctuation,
    *_WORDS,
    *_SUBWORDS,
]


def _vocab(extra_words: tuple[str, ...]) -> list[str]:
    """TINY_VOCAB plus ``extra_words`` (appended, so the shared ids do not move)."""
    return TINY_VOCAB + [w for w in dict.fromkeys(extra_words) if w not in TINY_VOCAB]


def _config(extra_words: tuple[str, ...] = ()) -> BertConfig:
    return BertConfig(
        vocab_size=len(_vocab(extra_words)),
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
    )


def _backbone(seed: int, extra_words: tuple[str, ...] = ()) -> BertModel:
    torch.manual_seed(seed)
    return BertModel(_config(extra_words)).eval()


def tiny_projection(seed: int = 0) -> torch.Tensor:
    """The ``(16, 32)`` projection weight every tiny ColBERT layout uses for this seed."""
    generator = torch.Generator().manual_seed(seed + 1000)
    return torch.randn(PROJECTION_DIM, HIDDEN_SIZE, generator=generator) / HIDDEN_SIZE**0.5


def _write_tokenizer(
    folder: Path,
    added: tuple[str, ...] = (),
    extra_words: tuple[str, ...] = (),
    special: tuple[str, ...] = (),
) -> Any:
    """vocab.txt + tokenizer_config.json, then the tokenizer's own save (tokenizer.json)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(_vocab(extra_words)), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": True,
                "model_max_length": MAX_POSITIONS,
            }
        ),
        encoding="utf-8",
    )
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if added:
        tokenizer.add_tokens(list(added))
    if special:  # as sentence-transformers 6 registers prompt markers: special, not normalised
        tokenizer.add_special_tokens(
            {
                "additional_special_tokens": [
                    AddedToken(t, normalized=False, special=True) for t in special
                ]
            }
        )
    tokenizer.save_pretrained(str(folder))
    return tokenizer


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2), encoding="utf-8")


def make_tiny_hf_model(
    folder: str | Path, *, seed: int = 0, max_seq_length: int | None = 64
) -> Path:
    """A plain BERT folder: ``config.json``, ``model.safetensors``, tokenizer files.

    Args:
        folder: where to write (created).
        seed: weights seed.
        max_seq_length: written to ``sentence_bert_config.json`` (None: no such file).

    Returns:
        The folder.
    """
    folder = Path(folder)
    _write_tokenizer(folder)
    _backbone(seed).save_pretrained(str(folder))
    if max_seq_length is not None:
        _write_json(
            folder / "sentence_bert_config.json",
            {"max_seq_length": max_seq_length, "do_lower_case": False},
        )
    return folder


def make_tiny_colbert_model(
    folder: str | Path,
    *,
    seed: int = 0,
    metadata: dict[str, Any] | None = None,
    write_metadata: bool = True,
    weights: str = "safetensors",
    extra_words: tuple[str, ...] = (),
) -> Path:
    """The tiny backbone in colbert-ai's layout.

    Args:
        folder: where to write (created).
        seed: weights seed (same backbone and projection as the other layouts).
        metadata: entries merged into ``artifact.metadata``.
        write_metadata: False leaves ``artifact.metadata`` out (config.json alone marks it).
        weights: ``"safetensors"`` or ``"bin"`` (``torch.save`` of the state dict).
        extra_words: words appended to the vocabulary (a different backbone from the shared
            one: its embedding table is larger), for tests whose texts need them.

    Returns:
        The folder.
    """
    folder = Path(folder)
    _write_tokenizer(folder, extra_words=extra_words)
    model = _backbone(seed, extra_words)
    state = {f"bert.{k}": v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    state["linear.weight"] = tiny_projection(seed)
    if weights == "safetensors":
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(state, folder / "pytorch_model.bin")
    config = model.config.to_dict()
    config["architectures"] = ["HF_ColBERT"]
    _write_json(folder / "config.json", config)
    if write_metadata:
        meta = {
            "query_token_id": "[unused0]",
            "doc_token_id": "[unused1]",
            "query_token": "[Q]",
            "doc_token": "[D]",
            "query_maxlen": 32,
            "doc_maxlen": 180,
            "dim": PROJECTION_DIM,
            "mask_punctuation": True,
            "attend_to_mask_tokens": False,
            "similarity": "cosine",
            **(metadata or {}),
        }
        _write_json(folder / "artifact.metadata", meta)
    return folder


def make_tiny_pylate_model(
    folder: str | Path,
    *,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    activation: str = "torch.nn.modules.linear.Identity",
    dense_bias: bool = False,
) -> Path:
    """The tiny backbone in PyLate's layout (as ``pylate.models.ColBERT.save`` writes it).

    Args:
        folder: where to write (created).
        seed: weights seed (same backbone and projection as the other layouts).
        config: entries merged into ``config_sentence_transformers.json``.
        activation: the Dense module's ``activation_function``.
        dense_bias: give the Dense module a (seeded) bias.

    Returns:
        The folder.
    """
    folder = Path(folder)
    tokenizer = _write_tokenizer(folder, added=("[Q] ", "[D] "))
    model = _backbone(seed)
    before = model.get_input_embeddings().weight.shape[0]
    mean = model.get_input_embeddings().weight.detach()[:before].mean(dim=0)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight[before:] = mean  # what PyLate's resize leaves
    model.save_pretrained(str(folder))
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
        ],
    )
    st_config = {
        "similarity_fn_name": "MaxSim",
        "query_prefix": "[Q] ",
        "document_prefix": "[D] ",
        "query_length": 32,
        "document_length": 180,
        "attend_to_expansion_tokens": False,
        "skiplist_words": list(string.punctuation),
        "do_query_expansion": True,
        **(config or {}),
    }
    _write_json(folder / "config_sentence_transformers.json", st_config)
    _write_json(
        folder / "sentence_bert_config.json", {"max_seq_length": 256, "do_lower_case": False}
    )
    dense = {"linear.weight": tiny_projection(seed)}
    if dense_bias:
        dense["linear.bias"] = torch.linspace(-0.5, 0.5, PROJECTION_DIM)
    _write_json(
        folder / "1_Dense" / "config.json",
        {
            "in_features": HIDDEN_SIZE,
            "out_features": PROJECTION_DIM,
            "bias": dense_bias,
            "activation_function": activation,
            "use_residual": False,
        },
    )
    save_file(dense, str(folder / "1_Dense" / "model.safetensors"))
    return folder


_ST = "sentence_transformers"
_EXPANSION_32 = {"strategy": "fixed", "attend": False, "token": None, "length": 32}


def make_tiny_st_model(
    folder: str | Path,
    *,
    seed: int = 0,
    prompts: dict[str, str] | None = None,
    transformer: dict[str, Any] | None = None,
    query_expansion: dict[str, Any] | None = _EXPANSION_32,
    skiplist_words: list[str] | None = None,
    mask: dict[str, Any] | None = None,
    normalize: bool = True,
    extra_modules: list[dict[str, Any]] | None = None,
) -> Path:
    """The tiny backbone in sentence-transformers 6's ``MultiVectorEncoder`` layout.

    Defaults: what ``MultiVectorEncoder(make_tiny_pylate_model(...)).save`` writes: prompts
    ``"[Q] "`` / ``"[D] "`` (special tokens of the tokenizer), documents cut at 180, fixed
    query expansion to 32, punctuation skiplist, Dense 32 -> 16 then Normalize.

    Args:
        folder: where to write (created).
        seed: weights seed (same backbone and projection as the other layouts).
        prompts: ``config_sentence_transformers.json`` prompts.
        transformer: entries merged into ``sentence_bert_config.json``.
        query_expansion: the Transformer's ``query_expansion`` (None: off).
        skiplist_words: the MultiVectorMask's words (None: ``string.punctuation``).
        mask: entries merged into the MultiVectorMask config.
        normalize: end with a token-level Normalize module.
        extra_modules: ``modules.json`` entries appended (no folders written for them).

    Returns:
        The folder.
    """
    folder = Path(folder)
    tokenizer = _write_tokenizer(folder, special=("[Q] ", "[D] "))
    model = _backbone(seed)
    before = model.get_input_embeddings().weight.shape[0]
    mean = model.get_input_embeddings().weight.detach()[:before].mean(dim=0)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        model.get_input_embeddings().weight[before:] = mean
    model.save_pretrained(str(folder))
    modules = [
        ("", f"{_ST}.base.modules.transformer.Transformer"),
        ("1_Dense", f"{_ST}.base.modules.dense.Dense"),
        (
            "2_MultiVectorMask",
            f"{_ST}.multi_vector_encoder.modules.multi_vector_mask.MultiVectorMask",
        ),
    ]
    if normalize:
        modules.append(("3_Normalize", f"{_ST}.base.modules.normalize.Normalize"))
    entries = [{"idx": i, "name": str(i), "path": p, "type": t} for i, (p, t) in enumerate(modules)]
    _write_json(folder / "modules.json", entries + list(extra_modules or []))
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "__version__": {"sentence_transformers": "6.3.0"},
            "default_prompt_name": None,
            "model_type": "MultiVectorEncoder",
            "prompts": {"query": "[Q] ", "document": "[D] "} if prompts is None else prompts,
            "similarity_fn_name": "maxsim",
        },
    )
    config: dict[str, Any] = {
        "transformer_task": "feature-extraction",
        "modality_config": {
            "text": {"method": "forward", "method_output_name": "last_hidden_state"}
        },
        "module_output_name": "token_embeddings",
        "document_length": 180,
    }
    if query_expansion is not None:
        config["query_expansion"] = dict(query_expansion)
    _write_json(folder / "sentence_bert_config.json", {**config, **(transformer or {})})
    _write_json(
        folder / "1_Dense" / "config.json",
        {
            "in_features": HIDDEN_SIZE,
            "out_features": PROJECTION_DIM,
            "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity",
            "module_input_name": "token_embeddings",
            "module_output_name": "token_embeddings",
        },
    )
    save_file(
        {"linear.weight": tiny_projection(seed)}, str(folder / "1_Dense" / "model.safetensors")
    )
    words = list(string.punctuation) if skiplist_words is None else skiplist_words
    _write_json(
        folder / "2_MultiVectorMask" / "config.json",
        {
            "skiplist_words": words,
            "skiplist_tasks": ["document"],
            "keep_only_token_ids": None,
            **(mask or {}),
        },
    )
    if normalize:
        _write_json(
            folder / "3_Normalize" / "config.json",
            {"module_input_name": "token_embeddings", "module_output_name": "token_embeddings"},
        )
    return folder


def make_tiny_bpe_roberta(
    folder: Path, *, max_positions: int = 514, model_max_length: int | None = 512
) -> Path:
    """A 1-layer RoBERTa with a byte-level BPE tokenizer trained here (offline, about a
    second): where a leading space or a newline is a token of its own, and positions start
    at ``padding_idx + 1``.

    Args:
        folder: where to save it.
        max_positions: rows of the position table (``max_position_embeddings``).
        model_max_length: the tokenizer's recorded limit; ``None`` records none.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["the cat sat on the mat " * 50, "paris is the capital\n\t"], trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    )  # fmt: skip
    fast.save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config.pop("model_max_length", None)
    if model_max_length is not None:
        tokenizer_config["model_max_length"] = model_max_length
    _write_json(config_path, tokenizer_config)
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(fast), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=max_positions, pad_token_id=1,
    )  # fmt: skip
    RobertaModel(config).save_pretrained(folder)
    return folder
