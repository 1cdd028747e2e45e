"""OpenAI-style error bodies: every failure is ``{"error": {"message", "type", "param", "code"}}``.

Validation problems answer 400 (FastAPI's 422 is mapped to 400, as OpenAI does), unknown models and
routes 404, oversized bodies 413, and a request the guard cannot classify 503 (fail closed).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import EcoUnlearnError, RunFailure

__all__ = ["APIError", "error_body", "install_error_handlers"]

log = logging.getLogger("eco_unlearn.serve")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
}


class APIError(Exception):
    """An error answered to the client with ``status`` and an OpenAI-style body."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}
        self.type = type or _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def _response(error: APIError, request: Request) -> JSONResponse:
    audit = getattr(request.state, "audit", None)
    if audit is not None:
        audit.fail(error)
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "json"}


def _param(loc: tuple[Any, ...]) -> str | None:
    """The field a validation error is about (``messages.0.content``), without pydantic's union tags."""
    parts = []
    for part in loc[1:] if loc[:1] == ("body",) else loc:
        if isinstance(part, int):
            parts.append(str(part))
        elif isinstance(part, str) and re.fullmatch(r"[a-z_][a-z0-9_]*", part) and part not in _TYPE_TAGS:
            parts.append(part)
        else:
            break
    return ".".join(parts) or None


def validation_error(exc: RequestValidationError) -> APIError:
    """The first validation problem of a request body as a 400, naming the field."""
    errors = exc.errors()
    if not errors:
        return APIError(400, "invalid request body")
    first = errors[0]
    if first.get("type") == "json_invalid":
        detail = first.get("ctx", {}).get("error", "")
        return APIError(400, f"the request body is not valid JSON ({detail})".replace(" ()", ""), code="invalid_json")
    loc = tuple(first.get("loc", ()))
    param = _param(loc)
    if param is None and first.get("type") == "missing":
        return APIError(400, "the request needs a JSON body", code="missing_body")
    if param is None and first.get("type") in ("model_attributes_type", "dict_type", "model_type"):
        return APIError(400, "the request body must be a JSON object (sent with Content-Type: application/json)",
                        code="invalid_json")
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if param:
        message = f"{param}: {message}"
    more = len(errors) - 1
    if more:
        message += f" (and {more} more problem{'s' if more > 1 else ''})"
    code = "missing_required_parameter" if first.get("type") == "missing" else "invalid_value"
    return APIError(400, message, param=param, code=code)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error, expected or not, with an OpenAI-style body; never a traceback."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return _response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _response(validation_error(exc), request)

    @app.exception_handler(EcoUnlearnError)
    async def _library_error(request: Request, exc: EcoUnlearnError) -> JSONResponse:
        if isinstance(exc, RunFailure):
            return _response(APIError(500, str(exc), type="server_error"), request)
        return _response(APIError(400, str(exc)), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            error = APIError(404, f"unknown route: {request.method} {request.url.path}", code="unknown_url")
        elif exc.status_code == 405:
            error = APIError(405, f"method {request.method} is not allowed on {request.url.path}",
                             code="method_not_allowed")
        else:
            error = APIError(exc.status_code, str(exc.detail))
        return _response(error, request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        error = APIError(500, f"internal error ({type(exc).__name__}); see the server log", type="server_error")
        return _response(error, request)
