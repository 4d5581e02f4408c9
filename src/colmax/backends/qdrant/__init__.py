"""``index="qdrant"``: documents in a Qdrant multivector collection (see :mod:`.backend`).

- :mod:`.backend`: :class:`QdrantBackend`, the :class:`~colmax.backends.base.Backend`;
- :mod:`.driver`: what the backend needs from a Qdrant engine, spoken by :mod:`.edge`
  (qdrant-edge, in process) and :mod:`.client` (qdrant-client: server, cluster, local mode);
- :mod:`.settings`: the options of ``index="qdrant"`` and how they are recorded;
- :mod:`.filters`: the filter tree compiled to Qdrant conditions over typed payload fields;
- :mod:`.prefetch`: the mean / MUVERA single vectors of two-stage search.
"""

from __future__ import annotations

from colmax.backends.qdrant.backend import POINT_NAMESPACE, QdrantBackend, point_id

__all__ = ["POINT_NAMESPACE", "QdrantBackend", "point_id"]
