"""Image-page multi-vectors (ColPali-style) through the engine: the flow of examples/08."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from colmax import Engine

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "08_colpali_vectors.py"


@pytest.fixture(scope="module")
def example() -> ModuleType:
    pytest.importorskip("PIL", reason="the example draws pages with Pillow")
    spec = importlib.util.spec_from_file_location("colpali_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def flow(example: ModuleType) -> dict:
    model, processor = example.build_tiny_colpali()
    ids = list(example.PAGES)
    pages = [example.render_page(*example.PAGES[i]) for i in ids]
    image_batch = processor.process_images(pages)
    queries = ["total of the invoice", "revenue chart"]
    query_batch = processor.process_queries(queries)
    return {
        "model": model,
        "ids": ids,
        "pages": example.embed(model, image_batch),
        "queries": example.embed(model, query_batch),
        "query_lengths": query_batch["attention_mask"].sum(1).tolist(),
    }


def _engine(flow: dict, example: ModuleType, path: Path | None = None) -> Engine:
    engine = Engine(dim=flow["model"].embedding_dim, path=path)
    engine.add(
        embeddings=flow["pages"],
        documents=[example.PAGES[i][0] for i in flow["ids"]],
        metadatas=[{"file": f"{i}.png"} for i in flow["ids"]],
        ids=flow["ids"],
    )
    return engine


def test_vector_shapes(flow: dict, example: ModuleType) -> None:
    patches = (example.IMAGE_SIZE // example.PATCH) ** 2
    for v in flow["pages"]:
        assert v.dtype == np.float32
        assert v.shape[1] == flow["model"].embedding_dim == 24
        assert v.shape[0] > patches  # image patches plus the visual prompt tokens
        np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert [q.shape[0] for q in flow["queries"]] == flow["query_lengths"]


def test_text_queries_return_pages_with_their_payload(flow: dict, example: ModuleType) -> None:
    engine = _engine(flow, example)
    assert len(engine) == 3
    hits = engine.search(query_embeddings=flow["queries"], k=3)
    for per_query, q in zip(hits, flow["queries"]):
        assert sorted(h.id for h in per_query) == sorted(flow["ids"])
        for h in per_query:
            assert h.text == example.PAGES[h.id][0] and h.metadata == {"file": f"{h.id}.png"}
            assert -q.shape[0] <= h.score <= q.shape[0]
    reranked = engine.rerank(None, ids=flow["ids"], query_embedding=flow["queries"][0])
    assert [(h.id, h.score) for h in reranked] == [
        (h.id, pytest.approx(h.score, abs=1e-4)) for h in hits[0]
    ]


def test_a_page_indexed_twice_returns_itself_first(
    flow: dict, example: ModuleType, tmp_path: Path
) -> None:
    engine = _engine(flow, example, tmp_path / "pages")
    engine.add(embeddings=[flow["pages"][1]], documents=["again"], ids=[flow["ids"][1]])  # upsert
    assert len(engine) == 3
    for page_id, vectors in zip(flow["ids"], flow["pages"]):
        hits = engine.search(query_embeddings=vectors, k=3)
        assert hits[0].id == page_id
        assert hits[0].score == pytest.approx(vectors.shape[0], abs=1e-2)  # float16 storage
        assert hits[1].score < hits[0].score
    engine.close()
    reopened = Engine.load(tmp_path / "pages")
    assert reopened.get([flow["ids"][1]])[0].text == "again"
    assert reopened.search(query_embeddings=flow["pages"][0], k=1)[0].id == flow["ids"][0]
    reopened.close()


def test_example_runs(example: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    example.main()
    out = capsys.readouterr().out
    assert "3 pages -> vectors" in out and "self-search: chart score=21.000 of 21" in out
