"""Paper-replacement forms: one versioned definition that the page renders, the server validates
against and the print view lays out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from . import documents
from .clock import in_window
from .db import JSON_INT
from .definitions import compile_pattern

router = documents.make_router("form", "/api/forms", "forms")
MAX_TEXT = 20_000  # characters in any one text value, whatever the form says: bounds the work per field


_definitions: dict[tuple[int, str, int], dict[str, Any]] = {}


async def definition(session: AsyncSession, site_id: int, form: str, version: int) -> dict[str, Any] | None:
    """A form version's definition. Versions never change once written, so a found one is kept in memory
    (an unknown one is not: it may be created later). The sync path asks for it for every batch."""
    key = (site_id, form, version)
    if key not in _definitions:
        document = await documents.get_document(session, site_id, "form", form, version)
        if document is None:
            return None
        if len(_definitions) > 1000:
            _definitions.clear()
        _definitions[key] = document.definition
    return _definitions[key]


MESSAGES = {
    "required": "This field is required.",
    "unknown": "This form has no such field.",
    "type": "Wrong type of value.",
    "max_length": "Too long: at most {max_length} characters.",
    "pattern": "Not a valid value here (e.g. a phone number with digits, +, -, spaces).",
    "choice": "Not one of the choices: {choices}.",
    "min": "Must be at least {min}.",
    "max": "Must be at most {max}.",
    "datetime": "Must be a date and time with a timezone between 2000 and 2100, e.g. 2026-11-23T14:05:00+08:00.",
    "text": "Must be text without control characters.",
}


def _error(code: str, **info: Any) -> dict[str, Any]:
    return {"code": code, "message": MESSAGES[code].format(**info), **info}


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _check(field: dict[str, Any], value: Any) -> dict[str, Any] | None:
    kind = field["type"]
    if kind in ("text", "textarea", "tel"):
        if not isinstance(value, str):
            return _error("type", expected="string")
        if "\x00" in value:
            return {**_error("type", expected="string"), "message": MESSAGES["text"]}
        limit = min(field.get("max_length") or MAX_TEXT, MAX_TEXT)
        if len(value) > limit:
            return _error("max_length", max_length=limit)
        if field.get("pattern") and not compile_pattern(field["pattern"]).fullmatch(value):
            return _error("pattern")
    elif kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return _error("type", expected="integer")
        low = field["min"] if field.get("min") is not None else -JSON_INT
        high = field["max"] if field.get("max") is not None else JSON_INT
        if value < low:
            return _error("min", min=low)
        if value > high:
            return _error("max", max=high)
    elif kind == "boolean":
        if not isinstance(value, bool):
            return _error("type", expected="boolean")
    elif kind == "choice":
        values = [c["value"] for c in field.get("choices") or []]
        if value not in values:
            return _error("choice", choices=", ".join(values))
    elif kind == "datetime":
        if not isinstance(value, str):
            return _error("datetime")
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return _error("datetime")
        if parsed.tzinfo is None or not in_window(parsed):
            return _error("datetime")
    return None


def validate_data(definition: dict[str, Any], data: Any) -> dict[str, dict[str, Any]]:
    """Field-by-field errors of one record against one form version ({} when the record is good)."""
    if not isinstance(data, dict):
        return {
            "_": {"code": "type", "message": "The record's data must be an object.", "expected": "object"}
        }
    fields = {f["name"]: f for f in definition["fields"]}
    errors: dict[str, dict[str, Any]] = {name: _error("unknown") for name in data if name not in fields}
    for name, field in fields.items():
        value = data.get(name)
        required = field.get("required", False) or any(
            data.get(other) == expected for other, expected in (field.get("required_if") or {}).items()
        )
        if _empty(value):
            if required:
                errors[name] = _error("required")
            continue
        if problem := _check(field, value):
            errors[name] = problem
    return errors
