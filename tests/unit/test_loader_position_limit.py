"""RoBERTa-style models number positions from ``padding_idx + 1``: with no
``model_max_length`` in the tokenizer files, the input limit is the position table minus that
offset (a 66-row table takes 64 tokens). It was the whole table, and a document of 65-66
tokens crashed inside the model with an index error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from colmax.encoders import load_encoder

tokenizers = pytest.importorskip("tokenizers")


def _tiny_roberta(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["the cat sat on the mat " * 50, "paris is the capital"], trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
    )  # fmt: skip
    fast.save_pretrained(folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("model_max_length", None)
    config_path.write_text(json.dumps(config))
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(fast), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=66, pad_token_id=1,
    )  # fmt: skip
    RobertaModel(config).save_pretrained(folder)
    return folder


def test_long_documents_are_cut_to_the_usable_positions(tmp_path: Path) -> None:
    encoder = load_encoder(_tiny_roberta(tmp_path / "roberta"), device="cpu")
    assert encoder.settings.document_length == 64
    lengths = [
        encoder.encode_documents([" ".join(["cat"] * words)])[0].shape[0]
        for words in (40, 63, 64, 200)  # 63 and 64 words crashed: 65-66 tokens
    ]
    assert lengths[0] < 64 and lengths[1:] == [64, 64, 64]
