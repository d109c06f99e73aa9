"""The CRM mapping: how one form's record becomes the JSON body the site's CRM takes, a small template per form.

A template is JSON. Plain values are constants; a dict with one of these keys is a value taken from the record:
- `{"field": "caller_name"}`: a field of the record's data (dotted for nested: "address.city");
- `{"meta": "id"}`: what the server knows of the record (see META);
and these may go with it:
- `"map": {"urgent": "P1", "normal": "P3"}`: a value map (choices to the CRM's codes); a value not in it
  gives `"default"` if that is set, else the value as it is;
- `"date": "%Y-%m-%d %H:%M:%S"` (strftime, or "iso") and `"tz": "Asia/Shanghai"`: a date-time in that
  format and zone (the template's `time_zone`, else the site's, when `tz` is not given);
- `"default"`: the value when the field is empty or missing.
`{"const": …}` is taken as it is, for a constant that would look like one of the above. Other dicts and
lists are walked. A form's template: `{"body": <template>, "time_zone"?: "…"}`; forms without one are sent
with DEFAULT_TEMPLATE (the record's id, form, revision, times and raw data).

The CRM's reference is read from its answer by a JSON path of the simple kind: `$.id`, `$.data.ticket_no`,
`$.items[0].ref`, `$['case id']` (no filters or wildcards: a reference is one value at one place).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .clock import parse_time

META = (
    "id",
    "rev",
    "form",
    "form_version",
    "receipt",
    "captured_at",
    "received_at",
    "incident_id",
    "agent",
    "source",
    "sheet_id",
    "sheet_row",
    "crm_ref",
    "site",
)
REF_KEYS = ("field", "meta", "const")
MODIFIERS = {"map", "default", "date", "tz"}
MAX_DEPTH = 12
MAX_TEMPLATE_BYTES = 64 * 1024
DEFAULT_TEMPLATE: dict[str, Any] = {
    "body": {
        "external_id": {"meta": "id"},
        "revision": {"meta": "rev"},
        "form": {"meta": "form"},
        "captured_at": {"meta": "captured_at", "date": "iso"},
        "agent": {"meta": "agent"},
        "incident_id": {"meta": "incident_id"},
        "data": {"meta": "data"},
    }
}
PATH_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|\['([^']*)'\]")


class MappingError(ValueError):
    """A template or path that cannot be used; `errors` maps where (a dotted path) to what is wrong."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _check_node(node: Any, where: str, errors: dict[str, str], depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        errors[where] = f"nested deeper than {MAX_DEPTH}"
        return
    if isinstance(node, list):
        for i, item in enumerate(node):
            _check_node(item, f"{where}[{i}]", errors, depth + 1)
        return
    if not isinstance(node, dict):
        return
    refs = [k for k in REF_KEYS if k in node]
    if not refs:
        for key, value in node.items():
            _check_node(value, f"{where}.{key}", errors, depth + 1)
        return
    if len(refs) > 1:
        errors[where] = "use one of field, meta, const"
        return
    if refs == ["const"]:
        if set(node) != {"const"}:
            errors[where] = "const stands alone"
        return
    extra = set(node) - {refs[0]} - MODIFIERS
    if extra:
        errors[where] = f"unknown keys: {', '.join(sorted(extra))}"
    target = node[refs[0]]
    if refs == ["field"] and (not isinstance(target, str) or not target):
        errors[f"{where}.field"] = "must be a field name"
    if refs == ["meta"] and target not in (*META, "data"):
        errors[f"{where}.meta"] = f"must be one of {', '.join((*META, 'data'))}"
    if "map" in node and not isinstance(node["map"], dict):
        errors[f"{where}.map"] = "must be an object of value → CRM value"
    if "date" in node:
        fmt = node["date"]
        if not isinstance(fmt, str) or not fmt or (fmt != "iso" and "%" not in fmt):
            errors[f"{where}.date"] = 'must be "iso" or a strftime format such as "%Y-%m-%d %H:%M"'
    if "tz" in node and (not isinstance(node["tz"], str) or _zone(node["tz"]) is None):
        errors[f"{where}.tz"] = "unknown time zone"


def check_mapping(mapping: Any) -> dict[str, Any]:
    """The whole mapping ({form slug: template}) if it can be used, else MappingError."""
    if not isinstance(mapping, dict):
        raise MappingError({"mapping": "must be an object: {form: {body, time_zone?}}"})
    errors: dict[str, str] = {}
    for form, template in mapping.items():
        if not isinstance(template, dict) or "body" not in template:
            errors[form] = 'must be an object with "body" (and "time_zone")'
            continue
        extra = set(template) - {"body", "time_zone"}
        if extra:
            errors[form] = f"unknown keys: {', '.join(sorted(extra))}"
        zone = template.get("time_zone")
        if zone is not None and (not isinstance(zone, str) or _zone(zone) is None):
            errors[f"{form}.time_zone"] = "unknown time zone"
        _check_node(template["body"], f"{form}.body", errors)
    if errors:
        raise MappingError(errors)
    return mapping


def _date(value: Any, fmt: str, zone: ZoneInfo) -> Any:
    when = value if isinstance(value, datetime) else parse_time(value)
    if when is None:
        return value  # not a date-time: sent as it is (the CRM says what it thinks of it)
    when = (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(zone)
    try:
        return when.isoformat() if fmt == "iso" else when.strftime(fmt)
    except ValueError:  # a format the C library refuses (a NUL, a lone % on some systems)
        return when.isoformat()


def _lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _value(node: dict[str, Any], facts: dict[str, Any], zone: ZoneInfo) -> Any:
    if "field" in node:
        value = _lookup(facts["data"], node["field"])
    else:
        value = facts.get(node["meta"])
    if value is None or value == "":
        return node.get("default")
    if "map" in node:
        key = (
            value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
        )
        value = node["map"].get(key, node.get("default", value))
    if "date" in node:
        value = _date(value, node["date"], _zone(node["tz"]) if "tz" in node else zone)  # type: ignore[arg-type]
    if isinstance(value, datetime):
        value = value.isoformat()
    return value


def _render(node: Any, facts: dict[str, Any], zone: ZoneInfo) -> Any:
    if isinstance(node, list):
        return [_render(item, facts, zone) for item in node]
    if not isinstance(node, dict):
        return node
    if "const" in node:
        return node["const"]
    if "field" in node or "meta" in node:
        return _value(node, facts, zone)
    return {key: _render(value, facts, zone) for key, value in node.items()}


def render(template: dict[str, Any], facts: dict[str, Any], site_zone: str) -> Any:
    """The CRM body for one record. `facts`: META values plus "data" (the record's fields)."""
    zone = _zone(template.get("time_zone") or site_zone) or ZoneInfo("Asia/Shanghai")
    return _render(template["body"], facts, zone)


def template_for(mapping: dict[str, Any] | None, form: str) -> dict[str, Any]:
    return (mapping or {}).get(form) or DEFAULT_TEMPLATE


def sample_data(definition: dict[str, Any], at: datetime) -> dict[str, Any]:
    """A record's data made up from a form definition, for the preview when the site has no record yet."""
    data: dict[str, Any] = {}
    for field in definition.get("fields", []):
        kind, name = field.get("type"), field["name"]
        if kind == "choice" and field.get("choices"):
            data[name] = field["choices"][0]["value"]
        elif kind == "boolean":
            data[name] = True
        elif kind in ("datetime", "date"):
            data[name] = at.isoformat() if kind == "datetime" else at.date().isoformat()
        elif kind in ("number", "integer"):
            data[name] = 1
        elif kind == "tel":
            data[name] = "13800000000"
        else:
            data[name] = (field.get("label") or {}).get("zh-CN") or name
    return data


# ---------------------------------------------------------------- the reference in the CRM's answer


def parse_path(path: str) -> list[str | int]:
    """`$.a.b[0]['c d']` -> ["a", "b", 0, "c d"]; MappingError for anything else."""
    if not isinstance(path, str) or not path.startswith("$") or len(path) > 200:
        raise MappingError({"ref_path": "must be a JSON path such as $.id or $.data.ticket_no"})
    steps: list[str | int] = []
    pos = 1
    while pos < len(path):
        match = PATH_STEP.match(path, pos)
        if match is None:
            raise MappingError({"ref_path": f"cannot read {path[pos:]!r} (use .name, [0] or ['name'])"})
        name, index, quoted = match.groups()
        steps.append(int(index) if index is not None else name if name is not None else quoted)
        pos = match.end()
    if not steps:
        raise MappingError({"ref_path": "must point inside the answer, such as $.id"})
    return steps


def read_path(document: Any, path: str) -> str | None:
    """The reference at `path` in the CRM's answer, as text (at most 100 characters), or None."""
    value = document
    for step in parse_path(path):
        if isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        elif isinstance(step, str) and isinstance(value, dict) and step in value:
            value = value[step]
        else:
            return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value).strip()
    return text[:100] if text else None
