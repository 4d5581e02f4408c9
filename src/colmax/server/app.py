"""The FastAPI app: paths, request models, error handlers and middleware around
:class:`~colmax.server.handlers.Handlers`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware.trustedhost import TrustedHostMiddleware

from colmax import __version__
from colmax.engine import Engine
from colmax.errors import (
    ColmaxError,
    UnknownIdError,
)
from colmax.server.faults import PathScrubber, server_fault
from colmax.server.handlers import Handlers
from colmax.server.middleware import AuthMiddleware, BodyLimitMiddleware
from colmax.server.schemas import (
    AddResponse,
    DeleteResponse,
    DocumentOut,
    HealthResponse,
    InfoResponse,
    RerankResponse,
    SearchResponse,
    build_schemas,
)
from colmax.server.settings import ServerSettings

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong API key (when the server has one)"},
    400: {"description": "without an API key: the Host header is not a loopback name"},
    413: {"description": "request body over the server's limit"},
    422: {"description": "invalid request: the body says which field and why"},
    500: {"description": "the index folder is damaged or unreadable (details in the log)"},
    503: {"description": "the index is busy (another process writes) or failed to write"},
}
_WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    403: {"description": "writes are disabled (no API key and no --allow-unauthenticated-writes)"},
    507: {"description": "the index's disk is full: nothing was written"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "an id is not in the index (nothing was changed)"}
}


def create_app(engine: Engine, settings: ServerSettings | None = None) -> FastAPI:
    """The HTTP API over ``engine``.

    Args:
        engine: the engine to serve (open it on an index folder so writes are durable).
        settings: authentication, limits and chunking (default: ``ServerSettings()``).

    Returns:
        A FastAPI app (serve it with uvicorn, or call it in-process with a test client).
        ``app.state.engine`` and ``app.state.settings`` hold the arguments.
    """
    settings = settings or ServerSettings()
    schemas = build_schemas(settings)
    handlers = Handlers(engine, settings)
    app = FastAPI(
        title="colmax",
        version=__version__,
        description="Late-interaction (ColBERT / MaxSim) search and reranking over one index.",
    )
    app.state.engine = engine
    app.state.settings = settings
    app.get("/health", response_model=HealthResponse, responses=_ERRORS)(handlers.health)
    app.get("/info", response_model=InfoResponse, responses=_ERRORS)(handlers.info)
    app.post("/search", response_model=SearchResponse, responses=_ERRORS)(
        _with_body(handlers.search, schemas.SearchRequest)
    )
    app.post("/rerank", response_model=RerankResponse, responses={**_ERRORS, **_NOT_FOUND})(
        _with_body(handlers.rerank, schemas.RerankRequest)
    )
    app.post("/documents", response_model=AddResponse, responses=_WRITE_ERRORS)(
        _with_body(handlers.add, schemas.AddRequest)
    )
    app.delete(
        "/documents", response_model=DeleteResponse, responses={**_WRITE_ERRORS, **_NOT_FOUND}
    )(_with_body(handlers.delete, schemas.DeleteRequest))
    # ``:path``: ids may hold "/" (add_files makes "docs/a.pdf#page=1"); Starlette matches the
    # decoded path, so "docs%2Fa.pdf" would not match a plain ``{doc_id}``. The schema keeps
    # ``/documents/{doc_id}``; clients percent-encode the id (also "#", "?", "%").
    app.get(
        "/documents/{doc_id:path}",
        response_model=DocumentOut,
        responses={**_ERRORS, **_NOT_FOUND},
        description="One stored document (or chunk, `<id>#<n>`) by id. Percent-encode the id "
        "in the path (`/` as `%2F`, `#` as `%23`, `?` as `%3F`): ids made from file paths "
        "hold slashes.",
    )(handlers.get_document)
    app.get(
        "/page-image",
        response_class=Response,
        responses={**_ERRORS, **_NOT_FOUND, 200: {"content": {"image/png": {}, "image/jpeg": {}}}},
    )(handlers.page_image)
    app.get(
        "/page-heatmap",
        response_class=Response,
        responses={**_ERRORS, **_NOT_FOUND, 200: {"content": {"image/png": {}}}},
    )(handlers.page_heatmap)
    _add_error_handlers(app, PathScrubber(engine))
    _document_security(app, settings)
    # The last middleware added runs first: authentication, then the body limit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)  # type: ignore[arg-type]
    app.add_middleware(
        AuthMiddleware,  # type: ignore[arg-type]
        api_key=settings.api_key,
        allow_unauthenticated_writes=settings.allow_unauthenticated_writes,
    )
    # Outermost: a request for another host name is refused before anything else runs.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.trusted_hosts()))  # type: ignore[arg-type]
    return app


def _with_body(
    handler: Callable[[Any, Request], Awaitable[Any]], model: type
) -> Callable[[Any, Request], Awaitable[Any]]:
    """An endpoint taking a JSON body of ``model``, calling ``handler`` with it.

    The request models are built per app (their limits are settings), so the type is set on
    the endpoint here: a postponed, string annotation could not be resolved by FastAPI.
    """

    async def endpoint(body: Any, request: Request) -> Any:
        return await handler(body, request)

    endpoint.__annotations__ = {"body": model, "request": Request, "return": Any}
    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


def _add_error_handlers(app: FastAPI, scrub: PathScrubber) -> None:
    @app.exception_handler(ColmaxError)
    async def colmax_error(request: Request, exc: ColmaxError) -> JSONResponse:
        fault = server_fault(exc)
        if fault is not None:
            logger.error("%s %s: %s", request.method, request.url.path, exc, exc_info=exc)
            return JSONResponse({"detail": fault[1] or scrub(str(exc))}, status_code=fault[0])
        status = 404 if isinstance(exc, UnknownIdError) else 422
        return JSONResponse({"detail": scrub(str(exc))}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The default handler echoes each bad input back; a 100 kB text would come back too.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)


def _document_security(app: FastAPI, settings: ServerSettings) -> None:
    """Declare the bearer scheme in the OpenAPI schema when a key is configured."""
    if settings.api_key is None:
        return
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}
            }
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
