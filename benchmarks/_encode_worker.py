"""Encodes documents for ``bench_encode.py`` with one system, in its own process.

``python _encode_worker.py SYSTEM CHECKPOINT TEXTS_JSON``; SYSTEM is ``colmax`` (its
defaults: bfloat16 where native), ``colmax-float32``, ``colmax-onnxruntime`` (float32,
queries through ONNX Runtime: ``query_runtime="onnxruntime"``), ``colmax-compiled``,
``transformers-float32`` (a plain float32 ``AutoModel`` forward of the same weights: batches
of 32 in the given order, padded, truncated at colmax's document length; token vectors are
the last hidden states of the real tokens, no projection), ``onnxruntime-float32`` and
``onnxruntime-int8`` (the same plain forward exported to ONNX, run by ONNX Runtime's CPU
provider with its graph optimisations; int8: ``onnxruntime.quantization.quantize_dynamic``,
per-channel int8 weights, dynamic uint8 activations; needs ``onnxruntime`` and ``onnx``),
``sentence-transformers``
(sentence-transformers 6's ``MultiVectorEncoder``; all in colmax's environment) or ``pylate``
(the peers').
After loading (and one warm-up pass over the sample, which is when ``torch.compile`` compiles)
it answers one JSON line per request on stdin:

- ``{"n": 512}`` -> ``{"seconds": s, "tokens": t}``: encode the first n texts, batch size 32;
- ``{"query": i}`` -> ``{"seconds": s}``: encode query i alone (single-query latency);
- ``{"queries": n}`` -> ``{"seconds": s}``: encode the first n queries, batch size 32;
- ``{"save": "path.npz", "n": 64}`` -> ``{}``: write the first n document and query embeddings
  (concatenated float32 rows and their offsets) for the parity check.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _loader(system: str, checkpoint: str) -> tuple[Any, Any]:
    """(encode documents, encode queries), each ``list[str] -> list[2-D array-like]``."""
    if system == "transformers-float32":
        return _plain_forward(checkpoint)
    if system.startswith("onnxruntime"):
        return _plain_forward(checkpoint, onnx=system.removeprefix("onnxruntime-"))
    if system.startswith("colmax"):
        from colmax.encoders import load_encoder

        onnx = system == "colmax-onnxruntime"
        enc = load_encoder(
            checkpoint,
            device="cpu",
            compile=system == "colmax-compiled",
            dtype="float32" if system in ("colmax-float32", "colmax-onnxruntime") else None,
            query_runtime="onnxruntime" if onnx else "torch",
        )
        return (
            lambda texts: enc.encode_documents(texts, batch_size=32),
            lambda texts: enc.encode_queries(texts, batch_size=32),
        )
    if system == "sentence-transformers":
        from sentence_transformers import MultiVectorEncoder

        mve = MultiVectorEncoder(checkpoint, device="cpu")
        return (
            lambda texts: mve.encode_document(texts, batch_size=32, show_progress_bar=False),
            lambda texts: mve.encode_query(texts, batch_size=32, show_progress_bar=False),
        )
    from pylate import models

    model = models.ColBERT(checkpoint, device="cpu")

    def docs(texts: list[str]) -> Any:
        return model.encode(texts, is_query=False, batch_size=32, show_progress_bar=False)

    def queries(texts: list[str]) -> Any:
        return model.encode(texts, is_query=True, batch_size=32, show_progress_bar=False)

    return docs, queries


def _onnx_session(model: Any, example: Any, int8: bool) -> Any:
    """``model`` exported to ONNX (dynamic batch and length) in an ONNX Runtime CPU session."""
    import tempfile

    import onnxruntime as ort

    names = list(example)

    class Forward(torch.nn.Module):  # keyword arguments: transformers 5's forward signature
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            return self.model(**dict(zip(names, inputs, strict=True))).last_hidden_state

    folder = Path(tempfile.mkdtemp(prefix="colmax-onnx-"))
    path = folder / "model.onnx"
    axes = {n: {0: "batch", 1: "length"} for n in [*names, "hidden"]}
    torch.onnx.export(
        Forward().eval(),  # a fresh module is in training mode: the export would keep dropout
        tuple(example.values()),
        str(path),
        input_names=names,
        output_names=["hidden"],
        dynamic_axes=axes,
        opset_version=17,
        dynamo=False,
    )
    if int8:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantized = folder / "model-int8.onnx"
        quantize_dynamic(
            str(path),
            str(quantized),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        path = quantized
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def forward(**batch: Any) -> Any:
        feed = {n: batch[n].numpy() for n in names}
        return torch.from_numpy(session.run(None, feed)[0])

    return forward


def _plain_forward(checkpoint: str, onnx: str | None = None) -> tuple[Any, Any]:
    """A plain float32 transformers forward: the baseline colmax's precision choice must beat.

    ``onnx="float32"`` or ``"int8"`` runs the same forward through ONNX Runtime instead.
    """
    from transformers import AutoModel, AutoTokenizer

    from colmax.encoders import load_encoder

    lengths = load_encoder(checkpoint, device="cpu", dtype="float32").config()
    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModel.from_pretrained(checkpoint, dtype=torch.float32).eval()

    def forward(**batch: Any) -> Any:
        return model(**batch).last_hidden_state

    if onnx is not None:
        example = tok(["an example"], return_tensors="pt")
        forward = _onnx_session(model, dict(example), int8=onnx == "int8")

    def run(texts: list[str], max_length: int) -> list[Any]:
        out = []
        for a in range(0, len(texts), 32):
            batch = tok(
                texts[a : a + 32],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            hidden = forward(**batch)
            for h, m in zip(hidden, batch["attention_mask"].bool()):
                out.append(h[m])
        return out

    return (
        lambda texts: run(texts, lengths["document_length"]),
        lambda texts: run(texts, lengths["query_length"]),
    )


def _flat(vectors: Any) -> tuple[np.ndarray, np.ndarray]:
    arrays = [np.asarray(torch.as_tensor(v), dtype=np.float32) for v in vectors]
    offsets = np.cumsum([0] + [len(a) for a in arrays])
    return np.concatenate(arrays), offsets


def main() -> None:
    system, checkpoint, texts_path = sys.argv[1:4]
    with open(texts_path, encoding="utf-8") as f:
        payload = json.load(f)
    texts, queries = payload["texts"], payload["queries"]
    torch.set_grad_enabled(False)
    start = time.perf_counter()
    docs, encode_queries = _loader(system, checkpoint)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    docs(texts)  # warm-up: allocator, oneDNN primitives, and compilation for colmax-compiled
    encode_queries(queries[:1])  # a batch of one compiles again
    warm_s = time.perf_counter() - start
    print(json.dumps({"ready": True, "load_s": load_s, "warmup_s": warm_s}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if "save" in request:
            n = request["n"]
            d, d_off = _flat(docs(texts[:n]))
            q, q_off = _flat(encode_queries(queries[:n]))
            np.savez(request["save"], docs=d, doc_offsets=d_off, queries=q, query_offsets=q_off)
            print("{}", flush=True)
        elif "queries" in request:
            start = time.perf_counter()
            encode_queries(queries[: request["queries"]])
            print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
        elif "query" in request:
            start = time.perf_counter()
            encode_queries([queries[request["query"]]])
            print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)
        else:
            start = time.perf_counter()
            out = docs(texts[: request["n"]])
            seconds = time.perf_counter() - start
            tokens = int(sum(len(v) for v in out))
            print(json.dumps({"seconds": seconds, "tokens": tokens}), flush=True)


if __name__ == "__main__":
    main()
