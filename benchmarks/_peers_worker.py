"""One system of ``benchmarks/peers.py`` in its own process (colmax's or the peers' Python).

Started as ``python _peers_worker.py SYSTEM INPUT.json CHECKPOINT WORKDIR``. ``INPUT.json``
holds the corpus and the judged queries exactly as the parent read them (``ids``, ``texts``,
``qids``, ``queries``), so every system sees the same data. Then it answers JSON lines on
stdin, one JSON line each on stdout:

- ``{"cmd": "build"}`` -> ``{"encode_s", "index_s", "documents", "tokens", "disk_bytes"}``:
  encode the corpus (timed alone where the library allows) and build the index;
- ``{"cmd": "search", "k": 100}`` -> ``{"latencies": [s, ...], "search_latencies": [s, ...]
  | null, "run": {qid: {id: score}}}``: every query alone, end to end (query encoding +
  search), in input order; then, where the system takes query vectors, the same search again
  from the query's vectors (encoded beforehand, untimed): the search alone;
- ``{"cmd": "encode", "n": 256}`` -> ``{"seconds": s}`` or ``{"seconds": null}``: encode the
  first ``n`` documents again (the parent interleaves these passes across systems);
- ``{"cmd": "memory"}`` -> ``{"peak_rss_mib": ...}``: the process's peak resident memory.

Adding a system is one function below, decorated with ``@system("name")``: it gets the
corpus, the checkpoint and a work folder, and returns a :class:`Built` whose ``search(text, k)``
gives ``[(doc_id, score), ...]`` best first. Imports stay inside the functions: each system's
libraries exist only in its own environment.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Search = Callable[[str, int], list[tuple[str, float]]]
SearchVectors = Callable[[Any, int], list[tuple[str, float]]]
Builder = Callable[[list[str], list[str], Path, Path], "Built"]
SYSTEMS: dict[str, Builder] = {}


@dataclass
class Built:
    """What a system reports after building, and how it searches."""

    search: Search
    encode_s: float | None  # None: encoding is not separable from index building
    index_s: float
    tokens: int | None = None
    disk: Path | None = None  # folder whose size is the index's disk footprint
    extra: dict[str, Any] = field(default_factory=dict)
    #: encodes documents (for the interleaved throughput passes); None where not separable
    encode: Callable[[list[str]], Any] | None = None
    #: query text -> the query's vectors, and a search from them (the search alone is timed)
    encode_query: Callable[[str], Any] | None = None
    search_vectors: SearchVectors | None = None


def system(name: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        SYSTEMS[name] = fn
        return fn

    return register


# --------------------------------------------------------------------------- colmax
def _colmax(ids: list[str], texts: list[str], checkpoint: Path, work: Path, index: str) -> Built:
    """colmax's ``Engine`` with the given index kind: encode, then ``add`` the vectors (the
    build time is the index's own: storing, training a codec, uploading)."""
    from colmax import Engine
    from colmax.encoders import load_encoder

    # COLMAX_BENCH_COMPILE=1 (peers.py --compile): torch.compile, as for bulk indexing
    compile_model = os.environ.get("COLMAX_BENCH_COMPILE") == "1"
    encoder = load_encoder(checkpoint, device="cpu", compile=compile_model)
    shared = load_vectors(work, len(texts), ["colmax"])
    if shared is not None:  # an earlier colmax system of this run encoded the corpus
        import torch

        vectors = [torch.from_numpy(v) for v in shared[0]]
        encode_s = None
    else:
        start = time.perf_counter()
        vectors = encoder.encode_documents(texts, batch_size=32)
        encode_s = time.perf_counter() - start
        save_vectors(work, [v.numpy() for v in vectors], "colmax")
    options = {"train_tokens": 1} if index == "plaid" else None  # plaid trains at any size
    engine = Engine(encoder, path=work / "index", index=index, index_options=options)
    start = time.perf_counter()
    engine.add(texts, ids=ids, embeddings=vectors)
    index_s = time.perf_counter() - start

    def search(query: str, k: int) -> list[tuple[str, float]]:
        return [(h.id, h.score) for h in engine.search(query, k=k)]  # type: ignore[union-attr]

    def encode(batch: list[str]) -> Any:
        return encoder.encode_documents(batch, batch_size=32)

    def encode_query(query: str) -> Any:
        return encoder.encode_queries([query])[0]

    def search_vectors(q: Any, k: int) -> list[tuple[str, float]]:
        return [(h.id, h.score) for h in engine.search(query_embeddings=q, k=k)]  # type: ignore[union-attr]

    search("warm up", 10)  # with compile, a batch of one compiles here, not in a timed query
    if compile_model and shared is not None:
        encode(texts[:32])  # vectors came from the cache: compile for documents now, untimed
    tokens = sum(int(v.shape[0]) for v in vectors)
    extra = {
        "vectors_from": "colmax" if shared is None else shared[1],
        "compiled": encoder.compiled,
    }
    return Built(
        search,
        encode_s,
        index_s,
        tokens,
        work / "index",
        extra,
        encode,
        encode_query,
        search_vectors,
    )


@system("colmax-flat")
def colmax_flat(ids: list[str], texts: list[str], checkpoint: Path, work: Path) -> Built:
    """colmax, exact MaxSim (``index="flat"``)."""
    return _colmax(ids, texts, checkpoint, work, "flat")


@system("colmax-plaid")
def colmax_plaid(ids: list[str], texts: list[str], checkpoint: Path, work: Path) -> Built:
    """colmax, compressed (``index="plaid"``, default settings: 2-bit codes)."""
    return _colmax(ids, texts, checkpoint, work, "plaid")


@system("qdrant-edge")
def qdrant_edge(ids: list[str], texts: list[str], checkpoint: Path, work: Path) -> Built:
    """Qdrant's engine in-process (qdrant-edge-py, multivector MAX_SIM, exact scan), driven
    through colmax's ``index="qdrant"`` backend: same encoder, same vectors."""
    return _colmax(ids, texts, checkpoint, work, "qdrant")


@system("maxsim-cpu")
def maxsim_cpu_scan(ids: list[str], texts: list[str], checkpoint: Path, work: Path) -> Built:
    """Mixedbread's maxsim-cpu (``maxsim_scores_variable``) over every document's vectors,
    encoded by colmax's encoder (the same vectors as colmax flat when a colmax system ran
    first). Run only where ``bench_maxsim.maxsim_cpu_is_correct`` passes for the dimension
    (peers.py checks it: maxsim-cpu 0.1.0 crashes at dim 384)."""
    import maxsim_cpu
    import numpy as np
    from bench_maxsim import maxsim_cpu_is_correct  # this folder is on sys.path

    from colmax.encoders import load_encoder

    encoder = load_encoder(checkpoint, device="cpu")
    if not maxsim_cpu_is_correct(encoder.dim):
        raise RuntimeError(f"maxsim-cpu is not correct at dim {encoder.dim} here: leave it out")
    shared = load_vectors(work, len(texts), ["colmax"])
    start = time.perf_counter()
    if shared is not None:
        vectors, encode_s = [np.ascontiguousarray(v, np.float32) for v in shared[0]], None
    else:
        vectors = [v.numpy() for v in encoder.encode_documents(texts, batch_size=32)]
        encode_s = time.perf_counter() - start

    def search_vectors(q: Any, k: int) -> list[tuple[str, float]]:
        scores = np.asarray(maxsim_cpu.maxsim_scores_variable(np.asarray(q, np.float32), vectors))
        top = np.argsort(-scores, kind="stable")[:k]
        return [(ids[i], float(scores[i])) for i in top]

    def encode_query(query: str) -> Any:
        return encoder.encode_queries([query])[0].numpy()

    def search(query: str, k: int) -> list[tuple[str, float]]:
        return search_vectors(encode_query(query), k)

    return Built(
        search,
        encode_s,
        0.0,
        sum(len(v) for v in vectors),
        None,
        {"vectors_from": "colmax" if shared else "maxsim-cpu"},
        None,
        encode_query,
        search_vectors,
    )


# --------------------------------------------------------------------------- PyLate
def save_vectors(work: Path, vectors: list[Any], source: str) -> None:
    """Leave the document vectors ``source`` encoded for the next systems of the run."""
    import numpy as np

    folder = work.parent
    np.save(
        folder / f"shared-{source}-vectors.npy", np.concatenate([np.asarray(v) for v in vectors])
    )
    lengths = np.array([len(v) for v in vectors], dtype=np.int64)
    np.save(folder / f"shared-{source}-lengths.npy", lengths)


def load_vectors(work: Path, n_docs: int, sources: list[str]) -> tuple[list[Any], str] | None:
    """Document vectors an earlier system of the run saved, from the first of ``sources``
    that has them, with the name of that source."""
    import numpy as np

    for source in sources:
        paths = [work.parent / f"shared-{source}-{n}.npy" for n in ("vectors", "lengths")]
        if not all(p.is_file() for p in paths):
            continue
        flat = np.load(paths[0], allow_pickle=False).astype(np.float32)
        lengths = np.load(paths[1], allow_pickle=False)
        if len(lengths) == n_docs and int(lengths.sum()) == len(flat):
            return np.split(flat, np.cumsum(lengths)[:-1]), source
    return None


def _pylate_encode(
    checkpoint: Path, texts: list[str], work: Path
) -> tuple[Any, list[Any], float | None, str]:
    """PyLate's model and the corpus vectors. The corpus is encoded by the first system of the
    run that can (colmax with ``COLMAX_BENCH_SHARE_VECTORS=1``, else the first PyLate system)
    and reused by the next ones: ``encode_s`` is then ``None`` and throughput comes from the
    interleaved passes. colmax's and PyLate's vectors agree to 3e-7 (tests/peers)."""
    from pylate import models

    model = models.ColBERT(str(checkpoint), device="cpu")
    share = os.environ.get("COLMAX_BENCH_SHARE_VECTORS") == "1"
    shared = load_vectors(work, len(texts), ["pylate", "colmax"] if share else ["pylate"])
    if shared is not None:
        return model, shared[0], None, shared[1]
    start = time.perf_counter()
    vectors = model.encode(texts, is_query=False, batch_size=32, show_progress_bar=False)
    encode_s = time.perf_counter() - start
    save_vectors(work, vectors, "pylate")
    return model, vectors, encode_s, "pylate"


@system("pylate-exact")
def pylate_exact(ids: list[str], texts: list[str], checkpoint: Path, work: Path) -> Built:
    """PyLate's exact path: ``pylate.scores.colbert_scores`` over every document.

    ``rank.rerank`` pads the candidates again on every call; here the corpus is padded once
    at build time (counted in ``index_s``) and scored in chunks, the fastest way to use
    PyLate's scoring function for exhaustive search.
    """
    import torch
    from pylate.scores import colbert_scores

    model, vectors, encode_s, source = _pylate_encode(checkpoint, texts, work)
    start = time.perf_counter()
    docs = torch.nn.utils.rnn.pad_sequence(
        [torch.as_tensor(v) for v in vectors], batch_first=True, padding_value=0
    )
    mask = torch.nn.utils.rnn.pad_sequence(
        [torch.ones(len(v)) for v in vectors], batch_first=True, padding_value=0
    )
    index_s = time.perf_counter() - start
    step = max(1, 2**27 // (32 * docs.shape[1] * max(docs.shape[2], 1)))

    def encode_query(query: str) -> Any:
        return torch.as_tensor(model.encode([query], is_query=True, show_progress_bar=False)[0])

    def search_vectors(q: Any, k: int) -> list[tuple[str, float]]:
        scores = torch.cat(
            [
                colbert_scores(q[None], docs[a : a + step], documents_mask=mask[a : a + step])[0]
                for a in range(0, len(docs), step)
            ]
        )
        top = torch.topk(scores, min(k, len(scores)))
        return [(ids[i], float(s)) for s, i in zip(top.values.tolist(), top.indices.tolist())]

    def search(query: str, k: int) -> list[tuple[str, float]]:
        return search_vectors(encode_query(query), k)

    tokens = sum(len(v) for v in vectors)

    def encode(batch: list[str]) -> Any:
        return model.encode(batch, is_query=False, batch_size=32, show_progress_bar=False)

    extra = {"padded_bytes": docs.nbytes, "vectors_from": source}
    return Built(
        search, encode_s, index_s, tokens, None, extra, encode, encode_query, search_vectors
    )


@system("pylate-voyager")
def pylate_voyager(ids: list[str], texts: list[str], checkpoint: Path, work: Path) -> Built:
    """PyLate's indexed path: a Voyager (HNSW) index of token vectors, ``retrieve.ColBERT``
    (token candidates, then ``rank.rerank`` with the stored vectors)."""
    from pylate import indexes, retrieve

    model, vectors, encode_s, source = _pylate_encode(checkpoint, texts, work)
    start = time.perf_counter()
    index = indexes.Voyager(
        index_folder=str(work), index_name="voyager", override=True, embedding_size=128
    )
    index.add_documents(documents_ids=ids, documents_embeddings=vectors)
    index_s = time.perf_counter() - start
    retriever = retrieve.ColBERT(index=index)

    def encode_query(query: str) -> Any:
        return model.encode([query], is_query=True, show_progress_bar=False)

    def search_vectors(q: Any, k: int) -> list[tuple[str, float]]:
        hits = retriever.retrieve(queries_embeddings=q, k=k)[0]
        return [(str(h["id"]), float(h["score"])) for h in hits]

    def search(query: str, k: int) -> list[tuple[str, float]]:
        return search_vectors(encode_query(query), k)

    tokens = sum(len(v) for v in vectors)
    extra = {"vectors_from": source}
    return Built(
        search,
        encode_s,
        index_s,
        tokens,
        work / "voyager",
        extra,
        None,
        encode_query,
        search_vectors,
    )


# --------------------------------------------------------------------------- RAGatouille
def _alias_langchain() -> None:
    """RAGatouille 0.0.9 imports a LangChain 0.x module that LangChain 1.x removed."""
    import langchain_core.documents.compressor as compressor

    for name in ("langchain", "langchain.retrievers", "langchain.retrievers.document_compressors"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["langchain.retrievers.document_compressors.base"] = compressor


@system("ragatouille")
def ragatouille(ids: list[str], texts: list[str], checkpoint: Path, work: Path) -> Built:
    """RAGatouille 0.0.9 (colbert-ai PLAID): ``index`` then ``search``, with its defaults
    except ``split_documents=False`` and ``max_document_length`` = the checkpoint's 180, so
    that every system indexes the same passages."""
    import contextlib
    import io

    _alias_langchain()
    from ragatouille import RAGPretrainedModel

    with contextlib.redirect_stdout(io.StringIO()):  # keep stdout for the protocol
        model = RAGPretrainedModel.from_pretrained(str(checkpoint), index_root=str(work), verbose=0)
        start = time.perf_counter()
        path = model.index(
            texts,
            document_ids=ids,
            index_name="bench",
            split_documents=False,
            max_document_length=180,
        )
        index_s = time.perf_counter() - start
        model.search("warm up the searcher", k=10)  # loads and compiles colbert-ai's kernels

    def search(query: str, k: int) -> list[tuple[str, float]]:
        with contextlib.redirect_stdout(io.StringIO()):
            hits = model.search(query, k=k)
        return [(str(h["document_id"]), float(h["score"])) for h in hits]

    return Built(search, None, index_s, None, Path(path))


# --------------------------------------------------------------------------- BM25
@system("bm25s")
def bm25(ids: list[str], texts: list[str], checkpoint: Path, work: Path) -> Built:
    """BM25 (bm25s, Lucene variant, English stopwords, no stemming): lexical context."""
    import bm25s

    start = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    index_s = time.perf_counter() - start
    retriever.save(str(work / "bm25"))

    def search(query: str, k: int) -> list[tuple[str, float]]:
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        docs, scores = retriever.retrieve(tokens, k=min(k, len(ids)), show_progress=False)
        return [(ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0]) if s > 0]

    return Built(search, None, index_s, None, work / "bm25")


# --------------------------------------------------------------------------- protocol
def _disk_bytes(folder: Path | None) -> int | None:
    if folder is None or not folder.exists():
        return None
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> None:
    name, input_path, checkpoint, work = sys.argv[1:5]
    data = json.loads(Path(input_path).read_text(encoding="utf-8"))
    work_dir = Path(work)
    work_dir.mkdir(parents=True, exist_ok=True)
    # Libraries that print must not break the protocol, including C code writing to fd 1
    # (colbert-ai's k-means did, on SciFact): the protocol gets a private copy of fd 1, and
    # fd 1 itself, like sys.stdout, now goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    built: Built | None = None
    print(json.dumps({"ready": True}), file=out, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request["cmd"] == "build":
            built = SYSTEMS[name](data["ids"], data["texts"], Path(checkpoint), work_dir)
            reply: dict[str, Any] = {
                "encode_s": built.encode_s,
                "index_s": built.index_s,
                "documents": len(data["ids"]),
                "tokens": built.tokens,
                "disk_bytes": _disk_bytes(built.disk),
                **built.extra,
            }
        elif request["cmd"] == "search":
            assert built is not None, "build first"
            latencies, run = [], {}
            for qid, query in zip(data["qids"], data["queries"]):
                start = time.perf_counter()
                hits = built.search(query, request["k"])
                latencies.append(time.perf_counter() - start)
                run[qid] = dict(hits)
            search_latencies: list[float] | None = None
            if built.encode_query is not None and built.search_vectors is not None:
                search_latencies = []
                for query in data["queries"]:
                    q = built.encode_query(query)
                    start = time.perf_counter()
                    built.search_vectors(q, request["k"])
                    search_latencies.append(time.perf_counter() - start)
            reply = {"latencies": latencies, "search_latencies": search_latencies, "run": run}
        elif request["cmd"] == "encode":
            assert built is not None, "build first"
            seconds = None
            if built.encode is not None:
                start = time.perf_counter()
                built.encode(data["texts"][: request["n"]])
                seconds = time.perf_counter() - start
            reply = {"seconds": seconds}
        elif request["cmd"] == "memory":
            reply = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        else:
            break
        print(json.dumps(reply), file=out, flush=True)


if __name__ == "__main__":
    main()
