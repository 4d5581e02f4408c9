"""Token pooling at index time: Engine.add(pool_factor=...), the CLI's --pool-factor, explain."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from colmax import Engine
from colmax.cli import main
from colmax.errors import InvalidInputError
from colmax.explain import explain
from colmax.pooling import pool_vectors

TEXTS = [
    "the cat sat on the mat and the dog ran to the house",
    "paris is the capital of france",
    "a big red car and a small blue car",
]
IDS = ["cat", "paris", "car"]


def _rows(engine: Engine, ids: list[str]) -> list[int]:
    return [len(v) for v in engine.backend.get_vectors(ids)]


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_precomputed_vectors_are_pooled_before_storing(tmp_path: Path, factor: int) -> None:
    rng = np.random.default_rng(factor)
    docs = [rng.normal(size=(n, 8)).astype(np.float32) for n in (1, 5, 9)]
    engine = Engine(dim=8, path=tmp_path / "idx")
    engine.add(embeddings=docs, ids=["a", "b", "c"], pool_factor=factor)
    assert _rows(engine, ["a", "b", "c"]) == [math.ceil(len(d) / factor) for d in docs]
    for stored, doc in zip(engine.backend.get_vectors(["a", "b", "c"]), docs):
        np.testing.assert_allclose(stored, pool_vectors(doc, factor), atol=2e-3)  # float16
    engine.close()
    with Engine.load(tmp_path / "idx") as loaded:  # what was stored is what comes back
        assert _rows(loaded, ["a", "b", "c"]) == [math.ceil(len(d) / factor) for d in docs]
        assert loaded.info().tokens == sum(math.ceil(len(d) / factor) for d in docs)


def test_encoded_texts_are_pooled_and_still_searchable(tiny_colbert_model: Path) -> None:
    engine = Engine.from_pretrained(tiny_colbert_model, device="cpu")
    full = [len(v) for v in engine.encoder.encode_documents(TEXTS)]
    engine.add(TEXTS, ids=IDS, pool_factor=2)
    assert _rows(engine, IDS) == [math.ceil(n / 2) for n in full]
    q = engine.encoder.encode_queries(["capital of france"])[0].numpy()
    hits = engine.search("capital of france", k=3)
    stored = dict(zip(IDS, engine.backend.get_vectors(IDS)))
    for hit in hits:  # the score is the MaxSim over the pooled vectors
        expected = (q @ stored[hit.id].T).max(axis=1).sum()
        assert hit.score == pytest.approx(float(expected), abs=5e-3)
    # Upserting without pooling stores every vector again.
    engine.add([TEXTS[1]], ids=["paris"])
    assert _rows(engine, ["paris"]) == [full[1]]


def test_explaining_a_pooled_document_encodes_its_text(tiny_colbert_model: Path) -> None:
    engine = Engine.from_pretrained(tiny_colbert_model, device="cpu")
    engine.add(TEXTS, ids=IDS, pool_factor=3)
    query = "the dog ran to the house"
    hits = engine.search(query, k=3, explain=True)
    for hit in hits:
        e = hit.explanation
        assert e is not None and e.id == hit.id
        unpooled = explain(engine.encoder, query, hit.text)
        assert e.score == pytest.approx(unpooled.score, abs=1e-4)
        assert len(e.matches) == len(unpooled.matches)
        assert any(m.doc_span is not None for m in e.matches)
        for m in e.matches:
            if m.doc_span is not None:
                assert hit.text[m.doc_span[0] : m.doc_span[1]] == m.doc_token
    assert engine.explain(query, "cat").score == pytest.approx(
        explain(engine.encoder, query, TEXTS[0]).score, abs=1e-4
    )


@pytest.mark.parametrize("factor", [0, -2, 1.5, "2", True, None])
def test_bad_pool_factors_write_nothing(tmp_path: Path, factor: object) -> None:
    engine = Engine(dim=4, path=tmp_path / "idx")
    generation = engine.info().generation
    with pytest.raises(InvalidInputError, match="pool_factor must be a positive int"):
        engine.add(embeddings=[np.eye(4)], ids=["a"], pool_factor=factor)  # type: ignore[arg-type]
    assert len(engine) == 0 and engine.info().generation == generation


def test_missing_scipy_is_a_clear_error_before_any_work(
    tiny_colbert_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine.from_pretrained(tiny_colbert_model, device="cpu")
    monkeypatch.setitem(sys.modules, "scipy.cluster.hierarchy", None)  # import fails

    def no_encoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("encoded before the pool_factor check")

    monkeypatch.setattr(engine.encoder, "encode_documents", no_encoding)
    with pytest.raises(InvalidInputError, match=r"colmax\[pooling\]"):
        engine.add(TEXTS, ids=IDS, pool_factor=2)
    assert len(engine) == 0
    monkeypatch.undo()
    engine.add(TEXTS[:1], ids=IDS[:1], pool_factor=1)  # no scipy needed for 1
    assert len(engine) == 1


def test_cli_index_and_add_pool_factor(
    tiny_colbert_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(IDS, TEXTS)))
    out = tmp_path / "idx"
    argv = ["index", str(src), "--model", str(tiny_colbert_model), "--out", str(out), "-q"]
    assert main([*argv, "--pool-factor", "2"]) == 0
    with Engine.load(out, device="cpu") as engine:
        full = [len(v) for v in engine.encoder.encode_documents(TEXTS)]
        assert _rows(engine, IDS) == [math.ceil(n / 2) for n in full]
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"id": "new", "text": TEXTS[0]}) + "\n")
    assert main(["add", str(out), str(more), "-q", "--pool-factor", "3"]) == 0
    with Engine.load(out, device="cpu") as engine:
        assert _rows(engine, ["new"]) == [math.ceil(full[0] / 3)]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error
        main(["add", str(out), str(more), "--pool-factor", "0"])
    assert exit_.value.code == 2
    assert "--pool-factor: must be a positive integer" in capsys.readouterr().err
