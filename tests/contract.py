"""Every answer the suite's own in-process calls get is checked against the OpenAPI document (status
documented, content type, body schema). The `client` fixture hooks `Contract.observe` into its responses; a
mismatch fails the run at the end of the session with the list of what differed."""

from __future__ import annotations

from typing import Any

import httpx
import schemathesis
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend.openapi import document

CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


class Contract:
    def __init__(self, app: Any):
        self.app = app
        self.schema: Any = None
        self.checked = 0
        self.mismatches: dict[str, str] = {}  # one example per (method, operation, status)

    async def observe(self, response: httpx.Response) -> None:
        if self.schema is None:
            self.schema = schemathesis.openapi.from_dict(document(self.app))
        request = response.request
        operation = self.schema.find_operation_by_path(request.method, request.url.path)
        if operation is None:  # the shell, static files, /schema: not API operations
            return
        await response.aread()
        self.checked += 1
        try:
            operation.validate_response(response)
        except BaseException as exc:  # schemathesis raises its failure group
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            key = f"{request.method} {operation.path} -> {response.status_code}"
            self.mismatches.setdefault(key, f"{key}: {str(exc)[:300]} body={response.text[:200]}")

    def report(self) -> str:
        return f"{len(self.mismatches)} kinds of answers not as documented:\n" + "\n".join(
            sorted(self.mismatches.values())
        )
