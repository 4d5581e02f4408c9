"""RoBERTa-style models number positions from ``padding_idx + 1``: with no
``model_max_length`` in the tokenizer files, the input limit is the position table minus that
offset (a 66-row table takes 64 tokens). It was the whole table, and a document of 65-66
tokens crashed inside the model with an index error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from colmax.encoders import load_encoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_models import make_tiny_bpe_roberta

tokenizers = pytest.importorskip("tokenizers")


def test_long_documents_are_cut_to_the_usable_positions(tmp_path: Path) -> None:
    encoder = load_encoder(
        make_tiny_bpe_roberta(tmp_path / "roberta", max_positions=66, model_max_length=None),
        device="cpu",
    )
    assert encoder.settings.document_length == 64
    lengths = [
        encoder.encode_documents([" ".join(["cat"] * words)])[0].shape[0]
        for words in (40, 63, 64, 200)  # 63 and 64 words crashed: 65-66 tokens
    ]
    assert lengths[0] < 64 and lengths[1:] == [64, 64, 64]
