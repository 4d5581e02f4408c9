"""colmax's MaxSim scores equal RAGatouille's ``rerank`` scores on the same colbert-ai checkpoint.

RAGatouille's in-memory ``rerank`` (``RAGPretrainedModel.rerank``) encodes with colbert-ai's
``Checkpoint``: queries padded with ``[MASK]`` to ``max(32, 1.35 x words)`` tokens, documents
cut at the model's ``max_position_embeddings - 4`` tokens (508 for MiniLM). colmax is given the
same lengths; the queries here are short enough (<= 23 words) that 32 applies.

One documented difference: RAGatouille scores padded batches in which padding and punctuation
are zero vectors (colbert-ai's ``D * mask``), so a query token whose best cosine similarity is
negative counts as 0 there. colmax drops those positions (the STYLE.md pitfall), so its score
is the plain sum. The tests check both: RAGatouille's score equals colmax's token similarities
with that clamp, and colmax's ``rerank`` equals RAGatouille's wherever no clamp applies (the
usual case: 102 of 112 pairs here).

A document that spells ``[Q]`` / ``[unused0]`` literally is left out: colbert-ai's tokenizer
splits those markers differently (colmax follows PyLate, see test_parity_pylate.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from colmax import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from make_checkpoints import DOCUMENTS, QUERIES

CRANFIELD_IDS = ("1", "12", "51", "184", "300")
RAGATOUILLE_DOC_MAXLEN = 512 - 4  # MiniLM's max_position_embeddings - 4


@pytest.fixture(scope="module")
def rerank_case(
    peer: Callable[..., None],
    stanford_checkpoint: Path,
    cranfield_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[str], list[str], list[list[dict[str, float]]]]:
    from colmax.beir import load_beir

    data = load_beir(cranfield_dir)
    documents = [d for d in DOCUMENTS if "[Q]" not in d] + [data.corpus[i] for i in CRANFIELD_IDS]
    queries = [q for q in QUERIES if len(q.split(" ")) <= 23]
    queries += list(data.judged_queries().values())[:3]
    folder = tmp_path_factory.mktemp("rerank")
    request = folder / "request.json"
    request.write_text(json.dumps({"queries": queries, "documents": documents}))
    out = folder / "out.json"
    peer("rerank", stanford_checkpoint, request, out)
    return queries, documents, json.loads(out.read_text(encoding="utf-8"))


def test_rerank_scores_equal_ragatouille(
    rerank_case: tuple[list[str], list[str], list[list[dict[str, float]]]],
    stanford_checkpoint: Path,
) -> None:
    queries, documents, theirs = rerank_case
    engine = Engine.from_pretrained(
        stanford_checkpoint, device="cpu", dtype="float32", document_length=RAGATOUILLE_DOC_MAXLEN
    )
    encoder = engine.encoder
    assert encoder is not None
    doc_vectors = encoder.encode_documents(documents)
    unclamped = clamped = 0
    for query, qvec, ranked in zip(queries, encoder.encode_queries(queries), theirs, strict=True):
        ours = {int(h.id): h.score for h in engine.rerank(query, documents)}
        assert sorted(row["index"] for row in ranked) == list(range(len(documents)))
        for row in ranked:
            i, score = row["index"], row["score"]
            best = (qvec @ doc_vectors[i].T).max(dim=1).values  # per query token
            assert ours[i] == pytest.approx(float(best.sum()), abs=1e-4)
            assert score == pytest.approx(float(best.clamp(min=0).sum()), abs=1e-4)
            if bool((best >= 0).all()):
                assert ours[i] == pytest.approx(score, abs=1e-4)
                unclamped += 1
            else:
                assert ours[i] < score
                clamped += 1
    assert unclamped > 4 * clamped  # the equality above is the common case, not an exception
