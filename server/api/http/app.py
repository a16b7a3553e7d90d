"""The HTTP application: its routers and the one table from domain errors to HTTP statuses (what the routers
share, the context, bearer auth and the body limit, is context.py).

Every route is a thin translation onto the runtime (or OipModel): no business logic lives here. Errors are
JSON `{"error": "..."}` with the status the table gives; anything not in the table is logged with its stack
and answered 500 with a generic message, so no traceback reaches a client.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from forgetd.server.api.http import oip
from forgetd.server.api.http import dashboard, ledger, metrics, unlearn  # unlearning, audit, observability
from forgetd.server.api.http.context import HttpContext, PayloadTooLarge, Unauthenticated
from forgetd.server.api.oip_model import ModelNotFound
from forgetd.server.errors import (
    AlreadyForgotten,
    EmptyRequest,
    ForgetdError,
    InvalidRequest,
    InvalidStrategy,
    NotServing,
    RequestIdConflict,
    RequestNotFound,
    UnknownSample,
    UnsupportedStrategy,
)

log = logging.getLogger("forgetd.server")

# Most specific first. Not listed = 500. The gRPC table (server/api/status.py) maps the same errors.
STATUS_TABLE: tuple[tuple[type[BaseException], int], ...] = (
    (ModelNotFound, 404),
    (UnknownSample, 404),
    (RequestNotFound, 404),
    (RequestIdConflict, 409),
    (AlreadyForgotten, 409),
    (UnsupportedStrategy, 409),  # a method this store's model family cannot apply (CERTIFIED on an MLP)
    (InvalidRequest, 400),
    (EmptyRequest, 400),
    (InvalidStrategy, 400),
    (NotServing, 503),
)
INTERNAL_MESSAGE = "internal error; the server's log has the details"


def http_status_for(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and client-facing message for an exception raised while answering a request."""
    if isinstance(exc, Unauthenticated):
        return 401, str(exc)
    if isinstance(exc, PayloadTooLarge):
        return 413, str(exc)
    for cls, status in STATUS_TABLE:
        if isinstance(exc, cls):
            return status, str(exc)
    return 500, INTERNAL_MESSAGE


def _error_response(exc: BaseException, request: Request) -> JSONResponse:
    status, message = http_status_for(exc)
    if status == 500:
        log.error("HTTP %s %s failed", request.method, request.url.path, exc_info=exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def create_app(context: HttpContext) -> FastAPI:
    """The FastAPI application of one daemon; its OpenAPI description is served at /openapi.json."""
    app = FastAPI(title="forgetd", summary="A model server that can prove it forgot",
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None)
    app.state.context = context

    async def _known(request: Request, exc: Exception) -> JSONResponse:
        return _error_response(exc, request)

    # Domain errors are answered here; anything else reaches Starlette's 500 handler below, which also logs it.
    for known in (ForgetdError, Unauthenticated, PayloadTooLarge):
        app.add_exception_handler(known, _known)
    app.add_exception_handler(Exception, _known)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return JSONResponse({"error": f"{where or 'body'}: {first.get('msg')}"}, status_code=400)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:  # unknown path, wrong method
        return JSONResponse({"error": f"{request.method} {request.url.path}: {exc.detail}"},
                            status_code=exc.status_code, headers=exc.headers)

    for router in _routers():
        app.include_router(router)
    return app


def _routers() -> list[APIRouter]:
    """Each resource's APIRouter, in the order their routes are matched."""
    return [
        oip.router,
        unlearn.router,
        ledger.router,
        metrics.router,
        dashboard.router,
    ]
