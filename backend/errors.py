"""Every error as RFC 9457 problem details; nothing escapes as a bare 500."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    StatementError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger("outage_desk")
PROBLEM = "application/problem+json"


# The stable code of a problem raised without one (Litestar's own 404/405, a bare HTTPException): by status.
# Clients translate `code` (frontend/i18n: "problem.<code>"); `detail` is English for logs and API users.
STATUS_CODES = {
    400: "request.invalid",
    401: "auth.required",
    403: "auth.forbidden",
    404: "not_found",
    405: "request.method",
    408: "request.timeout",
    409: "conflict",
    413: "request.too_large",
    415: "request.media_type",
    422: "validation.invalid",
    429: "request.too_many",
    500: "server.error",
    503: "server.unavailable",
}


def code_for_status(status: int) -> str:
    return STATUS_CODES.get(status, f"http.{status}")


def problem(
    status: int,
    detail: str,
    *,
    type_: str = "about:blank",
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": type_,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code or code_for_status(status),
    }
    body.update(extra)
    return Response(body, status_code=status, media_type=PROBLEM, headers=headers)


class Problem(HTTPException):
    """Raise from handlers: Problem(422, "…", code="validation.required", errors={...}).

    `code` is stable ("area.what"): the client shows its own words for it in the user's language, and the
    English `detail` at most as a second line."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(detail=detail, status_code=status_code, headers=headers, extra=extra or None)
        self.code = code or code_for_status(status_code)


def _http_exception(request: Request, exc: HTTPException) -> Response[dict[str, Any]]:
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationException) and exc.extra:
        extra["errors"] = exc.extra  # msgspec/Litestar field errors, kept for the client
    elif isinstance(exc.extra, dict):
        extra.update(exc.extra)
    detail = exc.detail
    code = exc.code if isinstance(exc, Problem) else code_for_status(exc.status_code)
    if exc.status_code == 413 and not isinstance(exc, Problem):  # keep a handler's own 413 message
        detail = "Request body is too large; send fewer records per batch."
    if isinstance(exc, ValidationException):
        code = "validation.invalid"
        if exc.status_code == 400 and not detail:
            detail = "The request body is not valid."
    return problem(
        exc.status_code, detail or HTTPStatus(exc.status_code).phrase, code=code, headers=exc.headers, **extra
    )


def _database_error(request: Request, exc: DBAPIError) -> Response[dict[str, Any]]:
    # Disk full, read-only file, lost PostgreSQL connection: the device keeps its queue and retries.
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc.orig)
    return problem(
        503,
        "The database is unavailable right now; nothing was lost on your device, it will retry.",
        headers={"Retry-After": "10"},
        type_="urn:outage-desk:database-unavailable",
        code="server.database_unavailable",
    )


def _busy(request: Request, exc: PoolTimeout) -> Response[dict[str, Any]]:
    # Every database connection stayed busy past the pool timeout (hundreds of phones syncing at once after
    # an outage): an overload, not a fault. The device keeps its queue and comes back after Retry-After.
    log.warning("no database connection free on %s %s: %s", request.method, request.url.path, exc)
    return problem(
        503,
        "The server is busy with many devices at once; nothing was lost on your device, it will retry.",
        headers={"Retry-After": "5"},
        type_="urn:outage-desk:busy",
        code="server.busy",
    )


def _integrity(request: Request, exc: IntegrityError) -> Response[dict[str, Any]]:
    log.info("integrity error on %s %s: %s", request.method, request.url.path, exc.orig)
    return problem(
        409,
        "This conflicts with data already stored (a duplicate or a missing reference).",
        code="data.conflict",
    )


def _bad_value(exc: BaseException) -> bool:
    """Did the driver refuse a value (too big for the column, text it cannot store: SQLSTATE class 22)?"""
    seen: BaseException | None = exc
    while seen is not None:
        if (
            isinstance(seen, OverflowError)
            or str(getattr(seen, "sqlstate", "") or "").startswith("22")
            or type(seen).__name__ == "DataError"
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _dbapi(request: Request, exc: DBAPIError) -> Response[dict[str, Any]]:
    if exc.connection_invalidated:
        return _database_error(request, exc)
    if _bad_value(exc):
        return _out_of_range(request, exc)
    return _unexpected(request, exc)


def _out_of_range(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    # A number too big for the database's integer columns (an id of 10**25 in the path or body): SQLite
    # raises OverflowError while binding it, PostgreSQL a DataError. Bad input, not a server fault.
    log.info("value out of range on %s %s: %s", request.method, request.url.path, exc)
    return problem(
        400,
        "A value in the request is out of range (a number or date too large or too small, or text the "
        "database cannot store).",
        type_="urn:outage-desk:out-of-range",
        code="validation.out_of_range",
    )


def _statement(request: Request, exc: StatementError) -> Response[dict[str, Any]]:
    # A value refused before it reached the database: a datetime beyond year 1..9999 once moved to UTC (an
    # extreme `since`/`until`), a number too big to bind. Bad input; anything else stays a server fault.
    if _bad_value(exc):
        return _out_of_range(request, exc)
    return _unexpected(request, exc)


def _too_deep(request: Request, exc: RecursionError) -> Response[dict[str, Any]]:
    # JSON nested hundreds of levels deep: msgspec gives up with RecursionError rather than a DecodeError.
    log.info("input nested too deeply on %s %s", request.method, request.url.path)
    return problem(
        400,
        "The request body is nested too deeply to be read.",
        type_="urn:outage-desk:too-deep",
        code="validation.too_deep",
    )


def _undecodable(request: Request, exc: msgspec.MsgspecError) -> Response[dict[str, Any]]:
    # A body or value a handler decoded itself (msgspec.json.decode / msgspec.convert) and could not.
    return problem(400, f"The request is not valid: {exc}", code="validation.invalid")


def _unexpected(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(500, "Something went wrong on the server; the request can be retried.")


exception_handlers: dict[Any, Any] = {
    HTTPException: _http_exception,
    OperationalError: _database_error,
    InterfaceError: _database_error,
    IntegrityError: _integrity,
    DataError: _out_of_range,
    PoolTimeout: _busy,
    OverflowError: _out_of_range,
    DBAPIError: _dbapi,
    StatementError: _statement,
    RecursionError: _too_deep,
    msgspec.DecodeError: _undecodable,
    msgspec.ValidationError: _undecodable,
    Exception: _unexpected,
}
