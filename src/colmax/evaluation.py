"""Retrieval quality and speed of colmax on labelled data (nDCG@10, Recall@100, MRR@10).

Metrics come from ``ir-measures`` (the TREC reference implementations), installed with the
``eval`` extra. Two entry points:

- :func:`evaluate` scores an engine that already holds the corpus;
- :func:`run_eval` does the whole job on a BEIR folder (load, encode, index, search, score,
  time) and returns an :class:`EvalReport`; ``colmax eval`` prints and saves it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from colmax.errors import InvalidInputError
from colmax.validation import check_positive_int

if TYPE_CHECKING:
    from colmax.beir import BeirDataset
    from colmax.encoders.base import Encoder
    from colmax.engine import Engine

__all__ = ["EvalReport", "EvalResult", "evaluate", "run_eval", "score_run"]

logger = logging.getLogger(__name__)

#: Retrieval depth of :func:`run_eval`: Recall@100 needs 100 results per query.
RECALL_DEPTH = 100


@dataclass
class EvalResult:
    """Metrics of one run of :func:`evaluate`.

    Attributes:
        metrics: measure name (``"nDCG@10"``, ``"R@100"``, ``"RR@10"``) -> mean over queries.
        n_queries: judged queries searched.
        seconds: wall time of the searches (query encoding included).
        run: query id -> {document id: score}, the TREC run that was scored.
    """

    metrics: dict[str, float]
    n_queries: int
    seconds: float
    run: dict[str, dict[str, float]] = field(repr=False, default_factory=dict)


def score_run(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], k: int = 10
) -> dict[str, float]:
    """nDCG@k, Recall@100 and MRR@k (``RR@k``) of a run, averaged over the judged queries.

    Queries judged but absent from ``run`` count as zero (ir-measures' convention is to skip
    them; a system that returns nothing for a query must not look better for it).

    Args:
        qrels: query id -> {document id: relevance grade}; grades <= 0 are not relevant.
        run: query id -> {document id: score}.
        k: cutoff of nDCG and MRR.

    Returns:
        ``{"nDCG@k": ..., "R@100": ..., "RR@k": ...}``.

    Examples:
        >>> qrels = {"q1": {"d1": 1}, "q2": {"d2": 2}}
        >>> run = {"q1": {"d1": 2.0, "d3": 1.0}, "q2": {"d3": 2.0, "d2": 1.0}}
        >>> {m: round(v, 3) for m, v in score_run(qrels, run).items()}
        {'nDCG@10': 0.815, 'R@100': 1.0, 'RR@10': 0.75}
    """
    try:
        import ir_measures
        from ir_measures import MRR, R, nDCG
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('evaluation needs ir-measures: pip install "colmax[eval]"') from exc
    measures = [nDCG @ k, R @ RECALL_DEPTH, MRR @ k]
    full_run = {q: run.get(q, {}) for q in qrels}
    sums = dict.fromkeys(map(str, measures), 0.0)
    for metric in ir_measures.iter_calc(measures, qrels, full_run):
        sums[str(metric.measure)] += float(metric.value)
    return {name: total / max(len(qrels), 1) for name, total in sums.items()}


def evaluate(
    engine: Engine, data: BeirDataset, *, k: int = RECALL_DEPTH, batch_size: int = 32
) -> EvalResult:
    """Search every judged query with an engine holding ``data.corpus`` and score the run.

    Args:
        engine: an engine with an encoder whose document ids are the corpus ids.
        data: the data set.
        k: results per query (Recall is measured at 100).
        batch_size: queries per ``search`` call.

    Returns:
        nDCG@10, Recall@100 and MRR@10 over the judged queries, and the run.
    """
    queries = data.judged_queries()
    qids = list(queries)
    start = time.perf_counter()
    run: dict[str, dict[str, float]] = {}
    for i in range(0, len(qids), batch_size):
        batch = qids[i : i + batch_size]
        results: Any = engine.search([queries[q] for q in batch], k=k)
        for qid, hits in zip(batch, results):
            run[qid] = {h.id: h.score for h in hits}
    seconds = time.perf_counter() - start
    qrels = {q: data.qrels[q] for q in qids}
    return EvalResult(score_run(qrels, run), len(qids), seconds, run)


@dataclass
class EvalReport:
    """Quality and speed of one model + index on one BEIR data set (see :func:`run_eval`).

    Attributes:
        data: the data set folder.
        model: the model name or folder.
        index: the index kind (``"flat"``, ``"plaid"``, ``"qdrant"``).
        k: cutoff of nDCG and MRR.
        documents: documents indexed (empty texts are skipped).
        tokens: document token vectors indexed.
        queries: judged queries searched.
        metrics: ``{"nDCG@10": ..., "R@100": ..., "RR@10": ...}`` (RR@10 is MRR@10).
        timing: ``encode_docs_per_s``, ``encode_seconds``, ``index_seconds``,
            ``encode_queries_per_s``, ``search_ms_p50``, ``search_ms_p95``, ``search_ms_mean``
            (one query at a time, encoding excluded), ``queries_per_s`` (end to end: encode +
            search, single-query calls).
        index_bytes: size of the index folder on disk (``None`` when not on local disk).
        run: query id -> {document id: score} (not written by :meth:`to_json` unless asked).
    """

    data: str
    model: str
    index: str
    k: int
    documents: int
    tokens: int
    queries: int
    metrics: dict[str, float]
    timing: dict[str, float]
    index_bytes: int | None
    run: dict[str, dict[str, float]] = field(repr=False, default_factory=dict)

    def to_json(self, *, include_run: bool = False) -> dict[str, Any]:
        """A JSON-serialisable dict (the run only with ``include_run=True``)."""
        out = asdict(self)
        if not include_run:
            out.pop("run")
        return out

    def table(self) -> str:
        """A plain-text table of the metrics and timings, as ``colmax eval`` prints it."""
        rows = [
            ("data", self.data),
            ("model", self.model),
            ("index", self.index),
            ("documents", f"{self.documents:,} ({self.tokens:,} token vectors)"),
            ("queries", f"{self.queries:,}"),
        ]
        rows += [(name, f"{value:.4f}") for name, value in self.metrics.items()]
        t = self.timing
        rows += [
            ("encode docs/s", f"{t['encode_docs_per_s']:.1f} ({t['encode_seconds']:.1f} s)"),
            ("index build s", f"{t['index_seconds']:.2f}"),
            ("encode queries/s", f"{t['encode_queries_per_s']:.1f}"),
            ("search ms p50/p95", f"{t['search_ms_p50']:.2f} / {t['search_ms_p95']:.2f}"),
            ("queries/s (end to end)", f"{t['queries_per_s']:.1f}"),
            ("index bytes", "n/a" if self.index_bytes is None else f"{self.index_bytes:,}"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def run_eval(
    data_dir: str | Path,
    model: str | Path | Encoder,
    *,
    index: str = "flat",
    k: int = 10,
    split: str = "test",
    device: str | None = None,
    batch_size: int | None = None,
    max_queries: int | None = None,
    index_dir: str | Path | None = None,
    show_progress: bool = False,
    **encoder_kwargs: Any,
) -> EvalReport:
    """Index a BEIR data set with a model and report nDCG@k, Recall@100, MRR@k and timings.

    Documents are encoded first (timed alone), then added with their vectors (index build);
    queries are encoded in one batch (timed alone), then searched one at a time for latency
    percentiles; the same results (top 100) are scored with ir-measures.

    Args:
        data_dir: folder with ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.
        model: model name or folder (any format colmax loads), or a loaded encoder.
        index: ``"flat"``, or another kind the engine supports (``"plaid"``, ``"qdrant"``).
        k: cutoff of nDCG and MRR (Recall is always at 100).
        split: qrels file to use.
        device: passed to the encoder loader.
        batch_size: encoder batch size.
        max_queries: score only the first judged queries (quick runs).
        index_dir: keep the index in this new folder (default: a temporary folder, removed).
        show_progress: progress bar while encoding documents.
        **encoder_kwargs: encoder settings (``query_length``, ``document_length``, ...).

    Returns:
        The report.

    Raises:
        InvalidInputError: not a BEIR folder, ``k`` or ``max_queries`` invalid, no judged query.
        ModelLoadError: the model cannot be loaded.

    Examples:
        >>> report = run_eval("data/scifact", "answerdotai/answerai-colbert-small-v1")  # doctest: +SKIP
        >>> print(report.table())  # doctest: +SKIP
    """
    from colmax.beir import load_beir

    check_positive_int(k, "k")
    if max_queries is not None:
        check_positive_int(max_queries, "max_queries")
    data = load_beir(data_dir, split=split)
    queries = data.judged_queries()
    if not queries:
        raise InvalidInputError(f"{data_dir}: no query in queries.jsonl has a judgement")
    qids = list(queries)[:max_queries]
    encoder = _encoder(model, device, encoder_kwargs)
    with tempfile.TemporaryDirectory(prefix="colmax-eval-") as tmp:
        folder = Path(index_dir) if index_dir is not None else Path(tmp) / "index"
        report = _measure(data, qids, encoder, index, folder, k, batch_size, show_progress)
    report.data, report.model = str(data_dir), encoder.name
    return report


def _encoder(model: Any, device: str | None, kwargs: dict[str, Any]) -> Encoder:
    if not isinstance(model, (str, Path)):
        return model  # type: ignore[no-any-return]
    from colmax.encoders import load_encoder

    return load_encoder(str(model), device=device, **kwargs)


def _measure(
    data: BeirDataset,
    qids: list[str],
    encoder: Encoder,
    index: str,
    folder: Path,
    k: int,
    batch_size: int | None,
    show_progress: bool,
) -> EvalReport:
    from colmax.engine import Engine

    ids = [i for i, text in data.corpus.items() if text.strip()]
    if len(ids) < len(data.corpus):
        logger.info("skipped %d empty documents", len(data.corpus) - len(ids))
    texts = [data.corpus[i] for i in ids]
    start = time.perf_counter()
    vectors = encoder.encode_documents(texts, batch_size=batch_size, show_progress=show_progress)
    encode_s = time.perf_counter() - start

    engine = Engine(encoder, index=index, path=folder)
    try:
        start = time.perf_counter()
        engine.add(texts, ids=ids, embeddings=vectors)
        index_s = time.perf_counter() - start
        run, latencies, query_encode_s = _search_all(engine, encoder, data, qids, k, batch_size)
    finally:
        engine.close()
    qrels = {q: data.qrels[q] for q in qids}
    lat = np.asarray(latencies) * 1000.0
    timing = {
        "encode_seconds": encode_s,
        "encode_docs_per_s": len(ids) / max(encode_s, 1e-9),
        "index_seconds": index_s,
        "encode_queries_per_s": len(qids) / max(query_encode_s, 1e-9),
        "search_ms_p50": float(np.percentile(lat, 50)),
        "search_ms_p95": float(np.percentile(lat, 95)),
        "search_ms_mean": float(lat.mean()),
        "queries_per_s": len(qids) / max(query_encode_s + float(lat.sum()) / 1000.0, 1e-9),
    }
    return EvalReport(
        data="",
        model="",
        index=index,
        k=k,
        documents=len(ids),
        tokens=int(sum(v.shape[0] for v in vectors)),
        queries=len(qids),
        metrics=score_run(qrels, run, k),
        timing=timing,
        index_bytes=_folder_bytes(folder),
        run=run,
    )


def _search_all(
    engine: Engine,
    encoder: Encoder,
    data: BeirDataset,
    qids: list[str],
    k: int,
    batch_size: int | None,
) -> tuple[dict[str, dict[str, float]], list[float], float]:
    texts = [data.queries[q] for q in qids]
    start = time.perf_counter()
    qvecs = encoder.encode_queries(texts, batch_size=batch_size)
    encode_s = time.perf_counter() - start
    depth = max(k, RECALL_DEPTH)
    run: dict[str, dict[str, float]] = {}
    latencies: list[float] = []
    for qid, qvec in zip(qids, qvecs):
        start = time.perf_counter()
        results: Any = engine.search(query_embeddings=[qvec], k=depth)
        hits: Sequence[Any] = results[0]
        latencies.append(time.perf_counter() - start)
        run[qid] = {h.id: h.score for h in hits}
    return run, latencies, encode_s


def _folder_bytes(folder: Path) -> int | None:
    if not folder.is_dir():
        return None  # e.g. a Qdrant server holds the data
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
