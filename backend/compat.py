"""What a new form version may not do to the records already made with the form: drop a field that records
hold values for, change a field's type under them, or take away a choice they use. Records keep naming the
version they were made with, but lists, exports, re-entry and a device editing its record read them by the
form's current fields; such a change would leave them unreadable there, so it is refused with the reasons."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .records import Record


def _filled(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


async def used_values(session: AsyncSession, site_id: int, form: str) -> dict[str, set[Any]]:
    """Every field name the site's records of this form hold a value for, with the values (hashable ones)."""
    used: dict[str, set[Any]] = {}
    rows = await session.execute(select(Record.data).where(Record.site_id == site_id, Record.form == form))
    for data in rows.scalars():
        for name, value in (data or {}).items():
            if _filled(value):
                used.setdefault(name, set()).add(value if isinstance(value, str | int | bool) else None)
    return used


async def breaking_changes(
    session: AsyncSession, site_id: int, old: dict[str, Any] | None, new: dict[str, Any]
) -> dict[str, str]:
    """Why `new` (a form definition) would break the site's records made with `old`'s form ({}: it would not)."""
    if old is None:
        return {}
    used = await used_values(session, site_id, new["slug"])
    if not used:
        return {}
    fields = {f["name"]: f for f in new["fields"]}
    errors: dict[str, str] = {}
    for was in old["fields"]:
        name = was["name"]
        if name not in used:
            continue
        now = fields.get(name)
        if now is None:
            errors[f"fields.{name}"] = f"records hold values for {name!r}: the field cannot be removed"
        elif now["type"] != was["type"]:
            errors[f"fields.{name}"] = (
                f"records hold {was['type']} values for {name!r}: its type cannot change to {now['type']}"
            )
        elif was["type"] == "choice":
            kept = {c["value"] for c in now.get("choices") or []}
            lost = sorted(str(v) for v in used[name] - kept if v is not None)
            if lost:
                errors[f"fields.{name}"] = (
                    f"records use the choices {', '.join(lost)}: they cannot be removed"
                )
    return errors
