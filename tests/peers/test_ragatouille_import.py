"""An index that RAGatouille built opens in colmax, without re-encoding, and searches alike.

The peers' environment builds a RAGatouille (colbert-ai PLAID) index of 100 Cranfield documents
on the colbert-ai format MiniLM checkpoint, searches it, then deletes ten documents with
``delete_from_index`` and searches again. colmax imports both states of the folder and must
decode the vectors exactly as colbert-ai does, keep ids, texts and metadata, and return the
same top 10 (overlap@10 >= 0.9 on average; PLAID's candidate pruning is approximate, colmax
scores every document exactly).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from colmax import Engine
from colmax.beir import load_beir
from colmax.compat import import_ragatouille_index, read_plaid_index

N_DOCS = 100
N_QUERIES = 40
DELETED = 10
MIN_OVERLAP = 0.9


@dataclass
class Built:
    before: Path  # the folder as index() left it
    after: Path  # the same after delete_from_index
    corpus: dict[str, str]
    metadatas: dict[str, dict[str, Any]]
    queries: list[str]
    deleted: list[str]
    results_before: list[list[dict[str, Any]]]
    results_after: list[list[dict[str, Any]]]


@pytest.fixture(scope="module")
def built(
    peer: Callable[..., None],
    stanford_checkpoint: Path,
    cranfield_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Built:
    data = load_beir(cranfield_dir)
    ids = [i for i, text in data.corpus.items() if text.strip()][:N_DOCS]
    metadatas = {i: {"cranfield_id": int(i), "even": int(i) % 2 == 0} for i in ids}
    # RAGatouille stretches the query length past 32 tokens for queries over 23 words.
    queries = [q for q in data.judged_queries().values() if len(q.split(" ")) <= 23]
    queries = queries[:N_QUERIES]
    deleted = ids[5 : 5 + DELETED]
    folder = tmp_path_factory.mktemp("ragatouille")
    request = {
        "ids": ids,
        "texts": [data.corpus[i] for i in ids],
        "metadatas": [metadatas[i] for i in ids],
        "queries": queries,
        "k": 10,
        "delete": deleted,
        "keep_before_delete": str(folder / "before"),
    }
    (folder / "request.json").write_text(json.dumps(request), encoding="utf-8")
    out = folder / "out.json"
    peer("index", stanford_checkpoint, folder / "request.json", folder / "root", out)
    result = json.loads(out.read_text(encoding="utf-8"))
    return Built(
        before=folder / "before",
        after=Path(result["index_path"]),
        corpus={i: data.corpus[i] for i in ids},
        metadatas=metadatas,
        queries=queries,
        deleted=deleted,
        results_before=result["results_before_delete"],
        results_after=result["results"],
    )


@pytest.fixture(scope="module")
def imported(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    engine = import_ragatouille_index(built.before, tmp_path_factory.mktemp("imp") / "index")
    yield engine
    engine.close()


def _overlaps(
    engine: Engine, queries: list[str], theirs: list[list[dict[str, Any]]]
) -> list[float]:
    ours: Any = engine.search(queries, k=10)
    out = []
    for hits, rows in zip(ours, theirs, strict=True):
        expected = {str(r["document_id"]) for r in rows}
        out.append(len(expected & {h.id for h in hits}) / max(len(expected), 1))
    return out


def test_decoding_equals_colbertai(built: Built, peer: Callable[..., None], tmp_path: Path) -> None:
    out = tmp_path / "decoded.npy"
    peer("decode", built.before, out)
    theirs = np.load(out, allow_pickle=False)
    doclens = json.loads(Path(f"{out}.doclens.json").read_text(encoding="utf-8"))
    plaid = read_plaid_index(built.before)
    assert plaid.nbits == 4  # RAGatouille's choice below 10,000 documents
    ours = [v for _, batch in plaid.iter_vectors(batch=64) for v in batch]
    assert [len(v) for v in ours] == doclens
    np.testing.assert_allclose(np.concatenate(ours), theirs, atol=1e-6)


def test_import_keeps_ids_texts_metadata_and_model(
    built: Built, imported: Engine, stanford_checkpoint: Path
) -> None:
    assert len(imported) == N_DOCS
    assert sorted(imported.ids()) == sorted(built.corpus)
    for doc in imported.get(list(built.corpus)[::17]):
        assert doc.text == built.corpus[doc.id]
        assert doc.metadata == built.metadatas[doc.id]
    encoder = imported.info().encoder
    assert Path(encoder["model_name_or_path"]) == stanford_checkpoint
    assert encoder["document_length"] == 256  # RAGatouille's max_document_length
    assert encoder["query_length"] == 32
    # Filters work on the imported metadata.
    hits: Any = imported.search(built.queries[0], k=5, filter={"even": True})
    assert hits and all(int(h.id) % 2 == 0 for h in hits)


def test_search_agrees_with_ragatouille(built: Built, imported: Engine) -> None:
    overlaps = _overlaps(imported, built.queries, built.results_before)
    assert len(overlaps) == N_QUERIES
    assert float(np.mean(overlaps)) >= MIN_OVERLAP, sorted(overlaps)[:5]


def test_import_after_delete_from_index(built: Built, tmp_path: Path) -> None:
    with import_ragatouille_index(built.after, tmp_path / "index") as engine:
        assert len(engine) == N_DOCS - DELETED
        assert not set(built.deleted) & set(engine.ids())
        # collection.json was compacted by the delete: texts still belong to their ids.
        for doc in engine.get(engine.ids()):
            assert doc.text == built.corpus[doc.id]
        overlaps = _overlaps(engine, built.queries, built.results_after)
        assert float(np.mean(overlaps)) >= MIN_OVERLAP, sorted(overlaps)[:5]
