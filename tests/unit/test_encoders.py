"""ColBERTEncoder behaviour on the tiny models: shapes, markers, skiplist, order, settings."""

from __future__ import annotations

import json
import string
from pathlib import Path

import pytest
import torch

import colmax.encoders
import colmax.encoders.colbert as colbert_module
from colmax.encoders import ColBERTEncoder, Encoder, EncoderSettings, load_encoder
from colmax.errors import EmptyTextError, InvalidInputError
from tiny_models import PROJECTION_DIM, TINY_VOCAB

FORMATS = ["tiny_colbert_model", "tiny_pylate_model", "tiny_hf_model"]
TEXTS = [
    "the cat sat on the mat.",
    "hello",
    "what is the capital of france? paris, of course! " * 6,
    "a dog ran to the big red house; it was small.",
]


@pytest.fixture(params=FORMATS)
def encoder(request: pytest.FixtureRequest) -> ColBERTEncoder:
    # float32: these tests check 1e-5 agreements; the precisions have their own tests.
    return load_encoder(request.getfixturevalue(request.param), device="cpu", dtype="float32")


def test_public_api_is_pinned() -> None:
    assert sorted(colmax.encoders.__all__) == sorted(
        [
            "FORMATS",
            "PROGRESS_THRESHOLD",
            "ColBERTEncoder",
            "Encoder",
            "EncoderSettings",
            "detect_format",
            "load_encoder",
        ]
    )


def test_protocol_and_attributes(encoder: ColBERTEncoder) -> None:
    assert isinstance(encoder, Encoder)
    assert isinstance(encoder.settings, EncoderSettings)
    assert encoder.format in ("colbert", "pylate", "hf")
    assert encoder.dim == (32 if encoder.format == "hf" else PROJECTION_DIM)
    assert Path(encoder.name).is_absolute()


@pytest.mark.parametrize("fixture", ["tiny_colbert_model", "tiny_pylate_model"])
def test_query_expansion_shape_and_markers(fixture: str, request: pytest.FixtureRequest) -> None:
    enc = load_encoder(request.getfixturevalue(fixture))
    vectors = enc.encode_queries(["the cat", TEXTS[2]])
    assert [tuple(v.shape) for v in vectors] == [(32, PROJECTION_DIM)] * 2
    tok = enc.tokenizer
    short = enc.plan.prepare(["the cat"], is_query=True)[0]
    marker = tok.convert_tokens_to_ids(enc.settings.query_prefix)
    the, cat = tok.convert_tokens_to_ids(["the", "cat"])
    assert short.input_ids[:5] == [tok.cls_token_id, marker, the, cat, tok.sep_token_id]
    assert short.input_ids[5:] == [tok.mask_token_id] * 27
    assert short.n_attended == 5  # the model does not attend to [MASK] expansion
    doc = enc.plan.prepare(["the cat"], is_query=False)[0]
    assert doc.input_ids == [
        tok.cls_token_id,
        tok.convert_tokens_to_ids(enc.settings.document_prefix),
        the,
        cat,
        tok.sep_token_id,
    ]


def test_pylate_markers_are_added_tokens(tiny_pylate_model: Path) -> None:
    enc = load_encoder(tiny_pylate_model)
    ids = enc.tokenizer.convert_tokens_to_ids(["[Q] ", "[D] "])
    assert ids == [len(TINY_VOCAB), len(TINY_VOCAB) + 1]


def test_attending_to_expansion_tokens_changes_queries(tiny_colbert_model: Path) -> None:
    plain = load_encoder(tiny_colbert_model).encode_queries(["the cat"])[0]
    attend = load_encoder(tiny_colbert_model, attend_to_expansion_tokens=True)
    assert attend.plan.prepare(["the cat"], is_query=True)[0].n_attended == 32
    assert not torch.allclose(plain, attend.encode_queries(["the cat"])[0], atol=1e-3)


def test_no_expansion_keeps_real_tokens_only(tiny_colbert_model: Path) -> None:
    enc = load_encoder(tiny_colbert_model, do_query_expansion=False)
    # [CLS] [unused0] the cat , sat [SEP]: queries keep punctuation (no skiplist).
    assert enc.encode_queries(["the cat, sat", TEXTS[2]])[0].shape == (7, PROJECTION_DIM)


@pytest.mark.parametrize("fixture", ["tiny_colbert_model", "tiny_pylate_model"])
def test_documents_drop_skiplist_and_padding(fixture: str, request: pytest.FixtureRequest) -> None:
    enc = load_encoder(request.getfixturevalue(fixture))
    short, long = enc.encode_documents(["the cat, sat; on the mat!", TEXTS[2]])
    assert short.shape == (9, PROJECTION_DIM)  # [CLS] [D] the cat sat on the mat [SEP]
    kept = [
        enc.plan.prepare(["the cat, sat; on the mat!"], is_query=False)[0].input_ids[k]
        for k in enc.plan.prepare(["the cat, sat; on the mat!"], is_query=False)[0].keep
    ]
    assert not set(enc.tokenizer.convert_ids_to_tokens(kept)) & set(string.punctuation)
    keep_punct = load_encoder(request.getfixturevalue(fixture), skiplist_words=[])
    assert keep_punct.encode_documents(["the cat, sat; on the mat!"])[0].shape == (
        12,
        PROJECTION_DIM,
    )
    assert long.shape[0] <= 180


def test_hf_format_is_zero_shot(tiny_hf_model: Path) -> None:
    enc = load_encoder(tiny_hf_model)
    q, d = enc.encode_queries(["the cat, sat"])[0], enc.encode_documents(["the cat, sat"])[0]
    assert q.shape == d.shape == (6, 32)  # no marker, no expansion, punctuation kept
    torch.testing.assert_close(q, d)
    long = "the cat sat on the mat " * 40
    assert enc.encode_queries([long])[0].shape[0] == 32
    assert enc.encode_documents([long])[0].shape[0] == 64  # sentence_bert_config max_seq_length


@pytest.mark.parametrize("normalize", [True, False], ids=["normalized", "raw"])
def test_normalisation(encoder: ColBERTEncoder, normalize: bool) -> None:
    enc = load_encoder(encoder.name, normalize=normalize)
    norms = torch.cat([v.norm(dim=-1) for v in enc.encode_documents(TEXTS)])
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5) is normalize


def test_outputs_are_plain_float32_cpu_tensors(encoder: ColBERTEncoder) -> None:
    for v in encoder.encode_queries(TEXTS) + encoder.encode_documents(TEXTS):
        assert v.dtype == torch.float32 and v.device.type == "cpu" and v.ndim == 2
        assert not v.is_inference()
        v.mul_(2)  # callers may modify what they get


def test_batch_order_independence(encoder: ColBERTEncoder) -> None:
    for encode in (encoder.encode_queries, encoder.encode_documents):
        together = encode(TEXTS, batch_size=3)
        alone = [encode([t])[0] for t in TEXTS]
        reversed_ = encode(TEXTS[::-1], batch_size=2)[::-1]
        for a, b, c in zip(together, alone, reversed_, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
            torch.testing.assert_close(a, c, atol=1e-5, rtol=0)


def test_overrides(tiny_pylate_model: Path) -> None:
    enc = load_encoder(
        tiny_pylate_model, query_length=16, document_length=8, query_prefix="", batch_size=2
    )
    assert enc.settings.batch_size == 2
    assert enc.encode_queries(["the cat"])[0].shape == (16, PROJECTION_DIM)
    assert enc.plan.prepare(["the cat"], is_query=True)[0].input_ids[
        1
    ] == enc.tokenizer.convert_tokens_to_ids("the")
    assert enc.encode_documents([TEXTS[2]])[0].shape[0] <= 8


def test_do_lower_case(tiny_hf_model: Path) -> None:
    # The tiny tokenizer lowercases by itself; do_lower_case must not change anything then.
    a = load_encoder(tiny_hf_model).encode_documents(["The CAT"])[0]
    b = load_encoder(tiny_hf_model, do_lower_case=True).encode_documents(["the cat"])[0]
    torch.testing.assert_close(a, b)


def test_lengths_are_capped_to_the_model(
    tiny_hf_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    enc = load_encoder(tiny_hf_model, document_length=100_000)
    assert enc.settings.document_length == 512
    assert "exceeds" in caplog.text


def test_config_round_trip(tiny_pylate_model: Path) -> None:
    enc = load_encoder(
        tiny_pylate_model, query_length=24, skiplist_words=[".", ","], dtype="float32"
    )
    config = json.loads(json.dumps(enc.config()))
    again = load_encoder(**config)
    assert again.config() == config
    assert again.settings == enc.settings and again.format == enc.format
    for a, b in zip(
        enc.encode_documents(TEXTS) + enc.encode_queries(TEXTS),
        again.encode_documents(TEXTS) + again.encode_queries(TEXTS),
        strict=True,
    ):
        torch.testing.assert_close(a, b)


def test_forced_hf_format_uses_the_backbone(tiny_colbert_model: Path) -> None:
    enc = load_encoder(tiny_colbert_model, format="hf")
    assert enc.format == "hf" and enc.dim == 32
    assert load_encoder(**enc.config()).format == "hf"


def test_marker_missing_from_vocab_gets_mean_embedding(tiny_hf_model: Path) -> None:
    enc = load_encoder(tiny_hf_model, query_prefix="[QQ]", query_length=8, do_query_expansion=True)
    new_id = enc.tokenizer.convert_tokens_to_ids("[QQ]")
    assert new_id == len(TINY_VOCAB)
    weight = enc.model.get_input_embeddings().weight
    torch.testing.assert_close(weight[new_id], weight[: len(TINY_VOCAB)].mean(dim=0))
    assert enc.encode_queries(["the cat"])[0].shape == (8, 32)


def test_reduced_precision_outputs_stay_float32(tiny_colbert_model: Path) -> None:
    full = load_encoder(tiny_colbert_model).encode_documents(TEXTS)
    half = load_encoder(tiny_colbert_model, dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and half.config()["dtype"] == "bfloat16"
    for a, b in zip(full, half.encode_documents(TEXTS), strict=True):
        assert b.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=0.05, rtol=0)


def test_progress_bar(tiny_hf_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc = load_encoder(tiny_hf_model)
    enc.encode_documents(["the cat"], show_progress=True)
    assert "Encoding documents" in capsys.readouterr().err
    enc.encode_documents(["the cat"])
    assert "Encoding" not in capsys.readouterr().err  # off by default for short inputs


def test_token_spans_align_with_rows(tiny_colbert_model: Path) -> None:
    enc = load_encoder(tiny_colbert_model)
    text = "  the cat, sat"
    spans = enc.token_spans([text])[0]
    assert len(spans) == enc.encode_documents([text])[0].shape[0]
    assert [
        text[s:e] if s is not None else None for s, e in (x or (None, None) for x in spans)
    ] == [
        None,
        None,
        "the",
        "cat",
        "sat",
        None,
    ]
    assert len(enc.token_spans(["the cat"], is_query=True)[0]) == 32


def test_empty_input_gives_empty_output(encoder: ColBERTEncoder) -> None:
    assert encoder.encode_queries([]) == [] and encoder.encode_documents([]) == []


@pytest.mark.parametrize("bad", ["", "   ", "\n\t"], ids=["empty", "spaces", "newline-tab"])
def test_empty_text_names_its_position(tiny_hf_model: Path, bad: str) -> None:
    enc = load_encoder(tiny_hf_model)
    with pytest.raises(EmptyTextError, match=r"texts\[1\]"):
        enc.encode_documents(["fine", bad])
    with pytest.raises(EmptyTextError, match=r"texts\[0\]"):
        enc.encode_queries([bad])


@pytest.mark.parametrize(
    "bad", [None, 3, b"bytes", ["nested"]], ids=["none", "int", "bytes", "list"]
)
def test_non_string_names_its_position(tiny_hf_model: Path, bad: object) -> None:
    with pytest.raises(InvalidInputError, match=r"texts\[2\] must be a string"):
        load_encoder(tiny_hf_model).encode_documents(["a", "b", bad])  # type: ignore[list-item]


def test_bare_string_is_refused(tiny_hf_model: Path) -> None:
    with pytest.raises(InvalidInputError, match="wrap it in a list"):
        load_encoder(tiny_hf_model).encode_queries("the cat")


def test_invalid_arguments(tiny_hf_model: Path) -> None:
    with pytest.raises(InvalidInputError, match="unknown load_encoder argument"):
        load_encoder(tiny_hf_model, query_maxlen=32)
    with pytest.raises(InvalidInputError, match="query_length"):
        load_encoder(tiny_hf_model, query_length=1)
    with pytest.raises(InvalidInputError, match="dtype"):
        load_encoder(tiny_hf_model, dtype="int4")
    with pytest.raises(InvalidInputError, match="device"):
        load_encoder(tiny_hf_model, device="tpu")
    with pytest.raises(InvalidInputError, match="batch_size"):
        load_encoder(tiny_hf_model).encode_documents(["a"], batch_size=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_without_cuda(tiny_hf_model: Path) -> None:
    with pytest.raises(InvalidInputError, match="CUDA is not available"):
        load_encoder(tiny_hf_model, device="cuda")


def test_long_inputs_are_tokenized_in_windows(
    monkeypatch: pytest.MonkeyPatch, tiny_colbert_model: Path
) -> None:
    enc = load_encoder(tiny_colbert_model)
    texts = TEXTS * 3
    expected = enc.encode_documents(texts)
    monkeypatch.setattr(colbert_module, "_SORT_WINDOW", 5)
    got = enc.encode_documents(texts, batch_size=2)
    assert len(got) == len(texts)
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_defaults_to_half_precision(tiny_colbert_model: Path) -> None:
    gpu = load_encoder(tiny_colbert_model)
    assert gpu.device.type == "cuda" and gpu.dtype == torch.float16
    assert gpu.config()["dtype"] is None  # "automatic" survives a round trip to a CPU machine
    cpu = load_encoder(tiny_colbert_model, device="cpu")
    for a, b in zip(cpu.encode_documents(TEXTS), gpu.encode_documents(TEXTS), strict=True):
        assert b.device.type == "cpu" and b.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=1e-2, rtol=0)
