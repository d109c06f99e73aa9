"""The callback work list, as a tired agent works it: each callback with the caller, the matter, urgency, the
details, the promise time and how late it is, and its attempt history (who, when, outcome; the latest one may be
undone within a minute by whoever made it). Urgent ones first, then by due time. Agents see their own, leads and
up everyone's. (Callbacks are made from records by backend.callbacks; attempts are backend.attempts.)"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from litestar import Router, get
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from . import clock, documents
from .attempts import UNDO_SECONDS, CallbackAttempt
from .auth import site_names
from .callbacks import CALLBACK_FORM, OPEN_STATES, Callback, IncidentRef, Req, callback_out
from .records import Record

SHOWN = ("category", "urgency", "details")
UNDO = timedelta(seconds=UNDO_SECONDS)


def _labels(definition: dict[str, Any] | None) -> dict[str, dict[str, dict[str, str]]]:
    """field -> choice value -> {"zh-CN", "en"} label, for the choice fields a card shows."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for field in (definition or {}).get("fields", []):
        if field.get("name") in SHOWN and field.get("type") == "choice":
            out[field["name"]] = {c["value"]: c["label"] for c in field.get("choices") or []}
    return out


@get(
    "/api/callbacks",
    summary="Callbacks, urgent first: agents their own; leads and up everyone's (?mine=true, ?status=, "
    "?incident_id=); each with the call's matter, urgency, lateness and attempt history",
)
async def list_callbacks(
    request: Req,
    db: AsyncSession,
    status: Literal["active", "open", "trying", "done", "failed", "cancelled", "all"] = "active",
    mine: bool = False,
    incident_id: IncidentRef = None,
) -> dict[str, Any]:
    user = request.user
    where = [Callback.site_id == user.site_id]
    if user.role == "agent" or mine:
        where.append(Callback.owner_id == user.id)
    if status == "active":
        where.append(Callback.status.in_(OPEN_STATES))
    elif status != "all":
        where.append(Callback.status == status)
    if incident_id is not None:
        where.append(Callback.incident_id == incident_id)
    rows = list(
        (
            await db.execute(
                select(Callback, Record.data)
                .join(Record, Record.id == Callback.record_id)
                .where(*where)
                .order_by(Callback.due_at, Callback.record_id)
                .limit(2000)
            )
        ).all()
    )
    history: dict[Any, list[CallbackAttempt]] = {}
    if rows:
        for attempt in (
            await db.execute(
                select(CallbackAttempt)
                .where(CallbackAttempt.callback_id.in_([c.record_id for c, _ in rows]))
                .order_by(CallbackAttempt.attempted_at, CallbackAttempt.received_at)
            )
        ).scalars():
            history.setdefault(attempt.callback_id, []).append(attempt)
    document = await documents.get_document(db, user.site_id, "form", CALLBACK_FORM)
    labels = _labels(document.definition if document else None)
    names = await site_names(db, user.site_id)
    now = await clock.now(request.app, db)
    items = []
    for callback, data in rows:
        data = data or {}
        tried = history.get(callback.record_id, [])
        active = callback.status in OPEN_STATES
        late = int((now - callback.due_at).total_seconds() // 60) if active and callback.due_at < now else 0
        items.append(
            (
                callback.due_at,
                {
                    **callback_out(callback, names),
                    **{name: data.get(name) for name in SHOWN},
                    "category_label": labels.get("category", {}).get(str(data.get("category"))),
                    "urgency_label": labels.get("urgency", {}).get(str(data.get("urgency"))),
                    "urgent": data.get("urgency") == "urgent",
                    "overdue": late > 0,
                    "late_minutes": late,
                    "history": [
                        {
                            "id": str(a.id),
                            "outcome": a.outcome,
                            "note": a.note,
                            "attempted_at": a.attempted_at.isoformat(),
                            "by": {"id": a.user_id, "name": names.get(a.user_id)},
                            "undo_until": (a.received_at + UNDO).isoformat()
                            if a is tried[-1] and a.user_id == user.id and now - a.received_at <= UNDO
                            else None,
                        }
                        for a in tried
                    ],
                },
            )
        )
    items.sort(key=lambda pair: (not pair[1]["urgent"], pair[0]))
    out = [card for _, card in items]
    return {"items": out, "now": now.isoformat(), "overdue": sum(1 for c in out if c["overdue"])}


router = Router(path="/", route_handlers=[list_callbacks], tags=["callbacks"])
