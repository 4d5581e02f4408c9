"""HTTP API for chatbot backends (FastAPI + uvicorn; ``pip install "colmax[server]"``).

``create_app(engine, settings)`` builds the app; ``colmax serve DIR`` runs it with uvicorn.
Routes: ``GET /health``, ``GET /info``, ``POST /search``, ``POST /rerank``, ``POST /documents``,
``DELETE /documents``, ``GET /documents/{id}``; the OpenAPI schema is at ``/openapi.json``.
See ``docs/server.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from colmax.server.settings import ServerSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from colmax.engine import Engine

__all__ = ["ServerSettings", "create_app"]

_MISSING = 'the HTTP server needs fastapi and uvicorn: pip install "colmax[server]"'


def create_app(engine: Engine, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app serving ``engine`` (see :func:`colmax.server.app.create_app`).

    Raises:
        ImportError: FastAPI is not installed (the message names the extra to install).
    """
    try:
        from colmax.server.app import create_app as build
    except ModuleNotFoundError as exc:
        if exc.name in ("fastapi", "starlette", "anyio", "pydantic"):
            raise ImportError(_MISSING) from exc
        raise
    return build(engine, settings)
