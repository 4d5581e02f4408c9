"""The compressed (PLAID-style) index: an immutable snapshot over exact and coded segments.

Like :class:`~colmax.indexes.flat.FlatIndex`, every write makes a new :class:`PlaidIndex` that
shares unchanged segments (and their prepared inverted lists) with the old one.

Life cycle:

- **Small corpus: exact.** Until the live corpus reaches ``settings.train_tokens`` tokens there is
  no codec; segments are exact float16 segments searched by an inner ``FlatIndex`` (exact search
  is as fast as probing there, and k-means needs data).
- **Training.** :meth:`PlaidIndex.train_codec` fits centroids and residual buckets on a sample of
  the live vectors; :meth:`PlaidIndex.recode` codes every live document into one coded segment.
  The backend commits the codec and that segment together.
- **Coded.** New documents are coded against the existing centroids (:meth:`build_segment`);
  deletes only flip liveness; merges concatenate codes without re-coding. :meth:`drift` says
  when the corpus has moved far enough from the training sample that a rebuild (train again,
  recode) would pay off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colmax.errors import IndexFormatError, InvalidInputError
from colmax.indexes.base import SearchResult, SegmentedIndex, drop_keys
from colmax.indexes.flat import FlatIndex
from colmax.indexes.plaid.build import CodedWriter, build_progress, code_source, sample_source
from colmax.indexes.plaid.codec import ResidualCodec, new_codec_name
from colmax.indexes.plaid.search import CodedView, SearchParams, search_coded
from colmax.indexes.plaid.segment import CodedSegment, is_coded_name, new_coded_name
from colmax.indexes.plaid.settings import SEARCH_KEYS, PlaidSettings
from colmax.indexes.plaid.stream import TokenSource
from colmax.store.segments import Segment, merge

__all__ = ["AnySegment", "PlaidIndex"]

logger = logging.getLogger(__name__)

AnySegment = Segment | CodedSegment
#: Residual energy of new tokens this much above the training sample's suggests a rebuild.
DRIFT_RATIO = 1.25
#: ...and so does a corpus this many times larger than at training (sqrt scaling wants 2x
#: the centroids).
GROWTH_RATIO = 4.0
_SAMPLE_CHUNK = 1 << 16


@dataclass(frozen=True)
class _Sampler:
    """Draws a uniform sample of live token vectors from mixed segments, chunk by chunk."""

    segments: list[AnySegment]
    alive: list[np.ndarray]

    def live_rows(self) -> list[np.ndarray]:
        return [
            np.flatnonzero(np.repeat(a, np.diff(s.offsets)))
            for s, a in zip(self.segments, self.alive)
        ]

    def draw(self, n: int, seed: int) -> torch.Tensor:
        rows = self.live_rows()
        total = sum(r.size for r in rows)
        rng = np.random.default_rng(seed)
        picks = np.sort(rng.choice(total, size=min(n, total), replace=False))
        out, base = [], 0
        for seg, seg_rows in zip(self.segments, rows):
            mine = picks[(picks >= base) & (picks < base + seg_rows.size)] - base
            base += seg_rows.size
            for a in range(0, mine.size, _SAMPLE_CHUNK):
                picked = seg_rows[mine[a : a + _SAMPLE_CHUNK]]
                out.append(_rows_f32(seg, picked).to(torch.float16))  # see sample_source
        return torch.cat(out) if out else torch.zeros((0, 0), dtype=torch.float16)


def _doc_rows(offsets: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """Token rows of documents ``docs`` (ascending), concatenated."""
    starts, lengths = offsets[docs], offsets[docs + 1] - offsets[docs]
    total = int(lengths.sum())
    ends = np.cumsum(lengths)
    return np.arange(total) + np.repeat(starts - (ends - lengths), lengths)


class _LiveSource:
    """The live documents of some segments as a token source (exact rows, or decoded rows of
    coded segments), followed by an optional ``extra`` source."""

    def __init__(
        self, segments: Sequence[AnySegment], alive: Sequence[np.ndarray], dim: int
    ) -> None:
        self.dim = dim
        self.parts = [(s, np.flatnonzero(a)) for s, a in zip(segments, alive) if a.any()]
        counts = [np.diff(s.offsets)[docs] for s, docs in self.parts]
        self.lengths = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
        self.starts = np.cumsum([0, *(len(docs) for _, docs in self.parts)])
        keys = [s.keys[docs] for s, docs in self.parts]
        self.keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())

    def read(self, start: int, stop: int) -> np.ndarray:
        out = []
        for (seg, docs), base in zip(self.parts, self.starts):
            a, b = max(start - base, 0), min(stop - base, len(docs))
            if a < b:
                out.append(_rows_f32(seg, _doc_rows(np.asarray(seg.offsets), docs[a:b])).numpy())
        return np.concatenate(out)


class _ConcatSource:
    """Two token sources one after the other."""

    def __init__(self, first: TokenSource, second: TokenSource) -> None:
        self.first, self.second = first, second
        self.n_first = len(first.lengths)
        self.lengths = np.concatenate([first.lengths, second.lengths])
        self.dim = first.dim

    def read(self, start: int, stop: int) -> np.ndarray:
        out = []
        if start < self.n_first:
            out.append(self.first.read(start, min(stop, self.n_first)))
        if stop > self.n_first:
            out.append(self.second.read(max(start - self.n_first, 0), stop - self.n_first))
        return np.concatenate(out)


def _rows_f32(segment: AnySegment, rows: np.ndarray) -> torch.Tensor:
    """Token vectors at ``rows`` (exact, or decoded from a coded segment), float32."""
    if isinstance(segment, CodedSegment):
        codes = torch.from_numpy(np.take(segment.codes, rows).astype(np.int64))
        packed = torch.from_numpy(np.take(segment.residuals, rows, axis=0))
        return segment.codec.decode(codes, packed)
    return torch.from_numpy(np.asarray(segment.tokens[rows], dtype=np.float32))


class PlaidIndex(SegmentedIndex):
    """Compressed late-interaction index: centroids, 2/4-bit residuals, PLAID search.

    Args:
        dim: vector dimension.
        settings: build and search settings.
        codec: the trained codec, or ``None`` while the index is still exact.
    """

    kind = "plaid"
    is_exhaustive = False

    def __init__(
        self,
        dim: int,
        settings: PlaidSettings | None = None,
        codec: ResidualCodec | None = None,
        exact: FlatIndex | None = None,
        coded: Sequence[CodedView] = (),
    ) -> None:
        self.dim = dim
        self.settings = settings or PlaidSettings()
        self.codec = codec
        self._exact = exact if exact is not None else FlatIndex(dim)
        self._coded = tuple(coded)

    def _with(self, exact: FlatIndex, coded: Sequence[CodedView]) -> PlaidIndex:
        return PlaidIndex(self.dim, self.settings, self.codec, exact, coded)

    # ------------------------------------------------------------------ snapshots
    def refreshed(self, segments: Sequence[AnySegment], live: np.ndarray) -> PlaidIndex:
        """A snapshot over ``segments`` (exact and coded) with the sorted ``live`` keys;
        reuses the prepared views this snapshot already has."""
        exact = [s for s in segments if isinstance(s, Segment)]
        known = {v.segment.name: v for v in self._coded}
        views = []
        for seg in segments:
            if isinstance(seg, CodedSegment):
                self._check_codec(seg)
                alive = np.isin(seg.keys, live)
                view = known.get(seg.name)
                views.append(
                    view.with_alive(alive) if view is not None else CodedView.of(seg, alive)
                )
        return self._with(self._exact.refreshed(exact, live), views)

    def with_codec(
        self, codec: ResidualCodec, segments: Sequence[AnySegment], live: np.ndarray
    ) -> PlaidIndex:
        """A snapshot that uses ``codec``, over ``segments`` (coded with it, or exact)."""
        fresh = PlaidIndex(self.dim, self.settings, codec)
        return fresh.refreshed(segments, live)

    def with_settings(self, settings: PlaidSettings) -> PlaidIndex:
        """The same snapshot with other settings (search widths apply at once; build
        settings at the next training)."""
        return PlaidIndex(self.dim, settings, self.codec, self._exact, self._coded)

    def with_segment(self, segment: AnySegment, removed: np.ndarray) -> PlaidIndex:
        """A new snapshot with ``segment`` added and the keys in ``removed`` dropped."""
        base = self.without(removed) if len(removed) else self
        if isinstance(segment, CodedSegment):
            self._check_codec(segment)
            view = CodedView.of(segment, np.ones(segment.n_docs, dtype=bool))
            return base._with(base._exact, (*base._coded, view))
        return base._with(base._exact.with_segment(segment, np.zeros(0, np.int64)), base._coded)

    def without(self, keys: np.ndarray) -> PlaidIndex:
        """A new snapshot where ``keys`` are no longer live."""
        return self._with(self._exact.without(keys), drop_keys(self._coded, keys))

    def _check_codec(self, segment: CodedSegment) -> None:
        if self.codec is None or segment.codec.fingerprint != self.codec.fingerprint:
            raise ValueError(f"segment {segment.name} was coded with another codec")  # internal

    # ------------------------------------------------------------------ facts
    @property
    def segments(self) -> list[AnySegment]:
        """Exact segments first, then coded ones (positions match :meth:`alive_masks`)."""
        return [*self._exact.segments, *(v.segment for v in self._coded)]

    def alive_masks(self) -> list[np.ndarray]:
        return [*self._exact.alive_masks(), *(v.alive for v in self._coded)]

    def merge_candidates(self, max_segments: int) -> list[int]:
        """Positions of segments worth rewriting: mostly dead ones, the smaller half when there
        are more than ``max_segments``, and, once a codec exists, every exact segment (so it
        gets coded)."""
        chosen = set(super().merge_candidates(max_segments))
        segs = self.segments
        if self.codec is not None:
            chosen |= {i for i, s in enumerate(segs) if isinstance(s, Segment)}
        return sorted(chosen)

    # ------------------------------------------------------------------ building
    def build_segment(self, seq: int, keys: np.ndarray, vectors: list[np.ndarray]) -> AnySegment:
        """A new segment for added documents: coded once a codec exists, exact before."""
        if self.codec is not None:
            return CodedSegment.build(seq, keys, vectors, self.codec)
        return Segment.build(seq, keys, vectors, self.dim)

    def merge_segments(
        self, seq: int, segments: Sequence[AnySegment], alive: Sequence[np.ndarray]
    ) -> AnySegment:
        """One segment with the live documents of ``segments``: coded (exact parts coded on
        the way) once a codec exists, exact before."""
        if self.codec is None:
            return merge(seq, list(segments), list(alive))  # type: ignore[arg-type]
        coded = [
            s if isinstance(s, CodedSegment) else CodedSegment.from_segment(seq, s, a, self.codec)
            for s, a in zip(segments, alive)
        ]
        masks = [
            a if isinstance(s, CodedSegment) else np.ones(c.n_docs, bool)
            for s, a, c in zip(segments, alive, coded)
        ]
        return CodedSegment.merge(seq, coded, masks)

    def needs_training(self) -> bool:
        """True while there is no codec and the live corpus has reached ``train_tokens``."""
        return self.codec is None and self.token_counts()[0] >= self.settings.train_tokens

    def train_codec(
        self,
        seq: int,
        progress: Callable[[int], None] | None = None,
        extra: TokenSource | None = None,
    ) -> ResidualCodec:
        """Train a codec on a sample of the live token vectors (exact, or decoded where the
        segments are already coded: a rebuild) and of ``extra`` (documents being added),
        drawn in proportion to their sizes.

        Args:
            seq: sequence number for the codec's file name.
            progress: called with 1 per k-means iteration (``settings.kmeans_iters`` total).
            extra: a source of documents that are not in the index yet.
        """
        s = self.settings
        n_live = self.token_counts()[0]
        n_extra = int(np.asarray(extra.lengths).sum()) if extra is not None else 0
        k = s.centroids_for(n_live + n_extra)
        want = k * s.sample_per_centroid
        from_extra = round(want * n_extra / max(1, n_live + n_extra))
        parts = []
        if n_live and want > from_extra:
            sampler = _Sampler(self.segments, self.alive_masks())
            parts.append(sampler.draw(want - from_extra, s.seed))
        if extra is not None and from_extra:
            parts.append(sample_source(extra, from_extra, s.seed))
        sample = torch.cat(parts)
        logger.info(
            "training plaid codec: %d centroids on %d of %d tokens",
            k,
            len(sample),
            n_live + n_extra,
        )
        codec = ResidualCodec.train(
            sample,
            k,
            s.nbits,
            iters=s.kmeans_iters,
            seed=s.seed,
            progress=progress,
            corpus_tokens=n_live + n_extra,
        )
        return codec.named(new_codec_name(seq))

    def recode(
        self,
        seq: int,
        codec: ResidualCodec,
        folder: Path | None = None,
        progress: Callable[[int], None] | None = None,
        extra: tuple[np.ndarray, TokenSource] | None = None,
    ) -> CodedSegment | None:
        """Every live document, then the ``extra`` documents (keys and their source), coded
        with ``codec`` into one segment (``None`` if there are none).

        The segment streams into ``folder``'s files (in memory without a folder): memory
        holds one chunk of float32 vectors at a time, not the output.

        Args:
            seq: sequence number for the segment's name.
            codec: the codec to code with.
            folder: the index folder, or ``None``.
            progress: called with the number of tokens coded after each chunk.
            extra: ``(keys, source)`` of documents being added.
        """
        live = _LiveSource(self.segments, self.alive_masks(), self.dim)
        keys: np.ndarray = live.keys
        source: Any = live
        if extra is not None:
            keys = np.concatenate([keys, np.asarray(extra[0], dtype=np.int64)])
            source = _ConcatSource(live, extra[1]) if len(live.lengths) else extra[1]
        if not len(keys):
            return None
        return self.code_documents(seq, keys, source, codec, folder, progress)

    def code_documents(
        self,
        seq: int,
        keys: np.ndarray,
        source: TokenSource,
        codec: ResidualCodec | None = None,
        folder: Path | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> CodedSegment:
        """New documents (``keys`` and their vectors in ``source``) coded with ``codec``
        (default: this index's) into a segment streamed into ``folder`` (see :meth:`recode`)."""
        codec = codec or self.codec
        if codec is None:
            raise ValueError("no codec to code with")  # internal: callers train first
        writer = CodedWriter(folder, new_coded_name(seq), codec, keys, np.asarray(source.lengths))
        try:
            code_source(source, codec, writer, progress)
        except BaseException:
            writer.abort()
            raise
        return writer.finish()

    def drift(self) -> dict[str, Any]:
        """How far the corpus has moved from the codec's training sample, and whether a
        re-train (``optimize()``) is advised.

        Two measurements, both taken while coding (no extra pass over the data):

        - ``residual_ratio``: mean squared distance of the coded tokens to their centroids
          over that of the training sample. Tokens that do not look like the sample sit
          farther from every centroid (their residuals carry more energy, and 2-bit codes
          lose more of it); above :data:`DRIFT_RATIO` a re-train is advised.
        - ``growth``: live tokens over the corpus size at training. The number of centroids
          follows ``sqrt(tokens)``; past :data:`GROWTH_RATIO` the inverted lists are twice as
          long as a fresh build's would be.

        Returns:
            ``{"trained": bool}`` plus, once trained: ``codec`` (name), ``centroids``,
            ``nbits``, ``trained_tokens`` (corpus size at training), ``residual_ratio``,
            ``growth``, ``rebuild_recommended`` and ``advice`` (one sentence).
        """
        if self.codec is None:
            return {"trained": False, "exact_until_tokens": self.settings.train_tokens}
        stats = self.codec.stats
        coded_tokens = sum(v.segment.n_tokens for v in self._coded)
        res_sq = sum(v.segment.residual_sq for v in self._coded)
        ratio = (
            (res_sq / coded_tokens) / stats.residual_sq
            if coded_tokens and stats.residual_sq
            else 1.0
        )
        live = self.token_counts()[0]
        grown = live / max(1, stats.corpus_tokens)
        reasons = []
        if ratio > DRIFT_RATIO:
            reasons.append(
                f"tokens sit {ratio - 1:.0%} farther (squared) from their centroids than the "
                f"training sample did (limit {DRIFT_RATIO - 1:.0%})"
            )
        if grown > GROWTH_RATIO:
            reasons.append(
                f"the corpus is {grown:.1f}x its size at training (limit {GROWTH_RATIO:g}x)"
            )
        advice = (
            f"re-train advised: {'; '.join(reasons)}. Run engine.rebuild()"
            if reasons
            else "no re-train needed"
        )
        return {
            "trained": True,
            "codec": self.codec.name,
            "centroids": self.codec.n_centroids,
            "nbits": self.codec.nbits,
            "trained_tokens": stats.corpus_tokens,
            "residual_ratio": round(ratio, 4),
            "growth": round(grown, 3),
            "rebuild_recommended": bool(reasons),
            "advice": advice,
        }

    # ------------------------------------------------------------------ backend hooks
    def report(self) -> dict[str, Any]:
        """:meth:`drift`: what ``info()["plaid"]`` and the manifest's ``index.drift`` show."""
        return self.drift()

    def with_search_options(self, options: Mapping[str, Any]) -> PlaidIndex:
        """This snapshot with other search widths (``nprobe``, ``ndocs``, ``nfinal``).

        Raises:
            InvalidInputError: another key, or an invalid value.
        """
        bad = sorted(set(options) - set(SEARCH_KEYS))
        if bad:
            raise InvalidInputError(
                f"only {list(SEARCH_KEYS)} of a plaid index can change after it is created "
                f"(got {sorted(options)})"
            )
        return self.with_settings(PlaidSettings.from_json({**self.settings.to_json(), **options}))

    def trained(
        self, seq: int, folder: Path | None = None, show_progress: bool | None = None
    ) -> tuple[ResidualCodec, CodedSegment | None, np.ndarray]:
        """A codec trained on the live vectors, every live document re-coded with it (streamed
        into ``folder``'s files), and the live keys (what a rebuild commits)."""
        with build_progress(self.token_counts()[0], "plaid re-code", show_progress) as progress:
            codec = self.train_codec(seq, progress.kmeans)
            coded = self.recode(seq, codec, folder, progress.coded)
        return codec, coded, self.live_keys()

    def streamed(
        self,
        seq: int,
        keys: np.ndarray,
        source: TokenSource,
        folder: Path | None = None,
        show_progress: bool | None = None,
    ) -> tuple[ResidualCodec | None, CodedSegment]:
        """New documents (``keys``, vectors read from ``source`` a chunk at a time) coded into
        one segment streamed into ``folder``: with this index's codec (then ``(None,
        segment)``), or, without one yet, with a codec trained on a sample of the live and
        the new vectors, every live document re-coded into the same segment (then ``(codec,
        segment)``: the snapshot is replaced)."""
        tokens = int(np.asarray(source.lengths).sum())
        with build_progress(tokens, "plaid build", show_progress) as progress:
            if self.codec is not None:
                return None, self.code_documents(seq, keys, source, None, folder, progress.coded)
            progress.add_total(self.token_counts()[0])
            codec = self.train_codec(seq, progress.kmeans, extra=source)
            coded = self.recode(seq, codec, folder, progress.coded, extra=(keys, source))
        if coded is None:  # internal: keys is never empty here
            raise ValueError("nothing to code")
        return codec, coded

    def segment_reader(self, codec: ResidualCodec | None) -> Callable[..., Any]:
        """Opens exact segments, and coded ones with ``codec``."""

        def read(folder: Path, name: str, dim: int, n_docs: int, n_tokens: int) -> Any:
            if not is_coded_name(name):
                return Segment.read(folder, name, dim, n_docs, n_tokens)
            if codec is None:
                raise IndexFormatError(
                    f"{folder}: segment {name} is coded but the database names no codec; "
                    "the index folder is damaged."
                )
            return CodedSegment.read(folder, name, n_docs, n_tokens, codec)

        return read

    def codec_reader(self) -> Callable[..., Any]:
        """:meth:`ResidualCodec.read`."""
        return ResidualCodec.read

    # ------------------------------------------------------------------ reads
    def get_vectors(self, keys: np.ndarray) -> list[np.ndarray]:
        """Stored vectors: exact where still exact, decoded approximations where coded."""
        keys = np.asarray(keys, dtype=np.int64)
        out: list[np.ndarray | None] = [None] * len(keys)
        for view in self._coded:
            for i, p in enumerate(view.positions(keys)):
                if p >= 0:
                    out[i] = view.segment.vectors(int(p))
        rest = [i for i, v in enumerate(out) if v is None]
        if rest:
            for i, v in zip(rest, self._exact.get_vectors(keys[rest])):  # KeyError if unknown
                out[i] = v
        return [v for v in out if v is not None]

    def search_params(self, k: int) -> SearchParams:
        s = self.settings
        return SearchParams.for_k(k, s.nprobe, s.ndocs, s.nfinal, n_docs=len(self))

    def search(
        self, queries: list[torch.Tensor], k: int, allowed: np.ndarray | None = None
    ) -> list[SearchResult]:
        exact = self._exact.search(queries, k, allowed) if self._exact.segments else None
        if not self._coded or self.codec is None:
            return exact if exact is not None else [_empty() for _ in queries]
        oks = [_ok_mask(v, allowed) for v in self._coded]
        params = self.search_params(k)
        results = []
        for qi, q in enumerate(queries):
            views, positions, scores = search_coded(
                list(self._coded), self.codec, q, k, params, oks
            )
            keys = [self._coded[v].segment.keys[p] for v, p in zip(views, positions)]
            if exact is not None:
                keys.append(exact[qi].keys)
                scores.append(exact[qi].scores)
            results.append(_top(keys, scores, k))
        return results


def _ok_mask(view: CodedView, allowed: np.ndarray | None) -> torch.Tensor | None:
    if allowed is None:
        return None if view.alive.all() else torch.from_numpy(view.alive.copy())
    return torch.from_numpy(view.alive & np.isin(view.segment.keys, allowed))


def _empty() -> SearchResult:
    return SearchResult(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))


def _top(keys: list[np.ndarray], scores: list[np.ndarray], k: int) -> SearchResult:
    if not keys:
        return _empty()
    all_keys = np.concatenate(keys)
    all_scores = np.concatenate(scores).astype(np.float32)
    keep = np.isfinite(all_scores)
    all_keys, all_scores = all_keys[keep], all_scores[keep]
    order = np.lexsort((all_keys, -all_scores))[:k]  # score desc, then key asc (as flat)
    return SearchResult(all_keys[order], all_scores[order])
