"""Run RAGatouille (colbert-ai) in the peers' virtual environment and write its answers as JSON.

The peer tests start this file with ``.venv-peers/bin/python``; colmax itself never imports
RAGatouille. Every peer import sits inside a function, so pytest's doctest collection can
import this module in colmax's environment too.

Commands::

    rerank CHECKPOINT REQUEST.json OUT.json
        REQUEST: {"queries": [...], "documents": [...]}. OUT: one list per query of
        {"index": i, "score": s}, every document ranked (RAGatouille's ``rerank``).
    index CHECKPOINT REQUEST.json INDEX_ROOT OUT.json
        REQUEST: {"ids": [...], "texts": [...], "metadatas": [...], "queries": [...], "k": 10,
        "delete": [...]}. Builds a RAGatouille PLAID index named "peer" under INDEX_ROOT,
        deletes the ids in "delete" (when any), searches every query and writes
        {"index_path": ..., "results": [[{"document_id", "score", "passage_id"}, ...], ...]}.
        With "keep_before_delete": DIR, the folder is copied to DIR before deleting, and
        "results_before_delete" holds the searches made then.
    decode INDEX_FOLDER OUT.npy
        colbert-ai's own decompression of every stored vector (``ResidualCodec.decompress``),
        float32, in storage order; doclens beside it as OUT.npy.doclens.json.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import types
from pathlib import Path
from typing import Any


def alias_langchain() -> None:
    """RAGatouille 0.0.9 imports a LangChain 0.x module that LangChain 1.x removed."""
    import langchain_core.documents.compressor as compressor

    for name in ("langchain", "langchain.retrievers", "langchain.retrievers.document_compressors"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["langchain.retrievers.document_compressors.base"] = compressor


def _model(checkpoint: str, index_root: str | None = None) -> Any:
    alias_langchain()
    from ragatouille import RAGPretrainedModel

    return RAGPretrainedModel.from_pretrained(checkpoint, index_root=index_root, verbose=0)


def rerank(checkpoint: str, request: dict[str, Any]) -> list[list[dict[str, float]]]:
    model = _model(checkpoint)
    documents, queries = request["documents"], request["queries"]
    # One call for all queries: RAGatouille encodes the documents once.
    ranked = model.rerank(queries, documents, k=len(documents))
    if len(queries) == 1:
        ranked = [ranked]
    return [
        [{"index": r["result_index"], "score": float(r["score"])} for r in per_query]
        for per_query in ranked
    ]


def index(checkpoint: str, request: dict[str, Any], index_root: str) -> dict[str, Any]:
    model = _model(checkpoint, index_root=index_root)
    path = model.index(
        request["texts"],
        document_ids=request["ids"],
        document_metadatas=request.get("metadatas"),
        index_name="peer",
        split_documents=request.get("split_documents", False),
        max_document_length=request.get("max_document_length", 256),
    )
    out: dict[str, Any] = {"index_path": str(path)}
    if request.get("delete"):
        out["results_before_delete"] = _search(model, request)
        shutil.copytree(path, request["keep_before_delete"])
        model.delete_from_index(request["delete"], index_name="peer")
        # Reopen from disk: search what a user who loads the folder gets.
        alias_langchain()
        from ragatouille import RAGPretrainedModel

        model = RAGPretrainedModel.from_index(path, verbose=0)
        # RAGPretrainedModel.search fails here (IndexError): delete_from_index compacts
        # collection.json but keeps the passage ids, and search indexes the texts by passage
        # id. Read the PLAID results by passage id, as search does before that lookup.
        out["results"] = _search_by_pid(model, request)
    else:
        out["results"] = _search(model, request)
    return out


def _search_by_pid(rag: Any, request: dict[str, Any]) -> list[list[dict[str, Any]]]:
    colbert = rag.model
    rows = []
    for query in request["queries"]:
        (pids, _ranks, scores) = colbert.model_index.search(
            colbert.config,
            colbert.checkpoint,
            colbert.collection,
            colbert.index_name,
            colbert.base_model_max_tokens,
            query,
            request.get("k", 10),
        )[0]
        rows.append(
            [
                {"document_id": colbert.pid_docid_map[p], "score": float(s), "passage_id": p}
                for p, s in zip(pids, scores)
            ]
        )
    return rows


def _search(model: Any, request: dict[str, Any]) -> list[list[dict[str, Any]]]:
    results = model.search(request["queries"], k=request.get("k", 10))
    if request["queries"] and isinstance(results[0], dict):
        results = [results]
    return [
        [
            {
                "document_id": r["document_id"],
                "score": float(r["score"]),
                "passage_id": r["passage_id"],
            }
            for r in per_query
        ]
        for per_query in results
    ]


def decode(folder: str, out: str) -> None:
    import numpy as np
    from colbert.indexing.codecs.residual import ResidualCodec
    from colbert.indexing.codecs.residual_embeddings import ResidualEmbeddings

    meta = json.loads(Path(folder, "metadata.json").read_text(encoding="utf-8"))
    codec = ResidualCodec.load(folder)
    chunks = range(meta["num_chunks"])
    parts, doclens = [], []
    for i in chunks:
        parts.append(codec.decompress(ResidualEmbeddings.load(folder, i)).float().numpy())
        doclens += json.loads(Path(folder, f"doclens.{i}.json").read_text(encoding="utf-8"))
    np.save(out, np.concatenate(parts))
    Path(out + ".doclens.json").write_text(json.dumps(doclens), encoding="utf-8")


def main(argv: list[str]) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if argv[0] == "decode":
        decode(argv[1], argv[2])
        return 0
    command, checkpoint, request_path = argv[:3]
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    if command == "rerank":
        result: Any = rerank(checkpoint, request)
        out = argv[3]
    elif command == "index":
        result = index(checkpoint, request, argv[3])
        out = argv[4]
    else:
        print(f"unknown command {command!r}", file=sys.stderr)
        return 2
    Path(out).write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
