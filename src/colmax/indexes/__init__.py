"""Index backends over token vectors: flat (exact) and plaid (compressed). See :mod:`.base`."""

from __future__ import annotations
