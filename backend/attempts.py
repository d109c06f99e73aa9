"""Callback attempts: made on the device (UUID ids, also offline) and upserted, so re-sending one is harmless;
each moves its callback's state (open -> trying -> done | failed) and is announced on the change feed."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Router, delete, get, post
from sqlalchemy import ForeignKey, String, Text, Uuid, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import clock
from .auth import site_names
from .callbacks import STATE_AFTER, Callback, Req, announce, callback_out, get_callback_at_site
from .clock import in_window
from .db import Base, UTCDateTime, has_nul, insert_for
from .errors import Problem


class CallbackAttempt(Base):
    """One try at a callback, made on the device (id from the device: re-sending it changes nothing)."""

    __tablename__ = "callback_attempts"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    callback_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("callbacks.record_id", ondelete="CASCADE"), index=True
    )
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    outcome: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)  # device clock
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)  # server clock


class AttemptIn(msgspec.Struct, forbid_unknown_fields=True):
    id: uuid.UUID
    callback_id: uuid.UUID
    outcome: Literal["reached", "no_answer", "wrong_number", "resolved"]
    attempted_at: Annotated[datetime, msgspec.Meta(tz=True)]
    note: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class AttemptsIn(msgspec.Struct, forbid_unknown_fields=True):
    attempts: Annotated[list[Any], msgspec.Meta(max_length=500)]


@post(
    "/api/callbacks/attempts",
    status_code=200,
    summary="Record callback attempts (device ids; re-sending one is harmless). One answer per attempt.",
)
async def record_attempts(request: Req, db: AsyncSession, data: AttemptsIn) -> dict[str, Any]:
    user = request.user
    now = await clock.now(request.app, db)
    results = []
    for index, raw in enumerate(data.attempts):
        try:
            item = msgspec.convert(raw, AttemptIn, str_keys=True)
        except msgspec.ValidationError as exc:
            results.append(
                {
                    "index": index,
                    "id": raw.get("id") if isinstance(raw, dict) else None,
                    "status": "rejected",
                    "message": str(exc),
                }
            )
            continue
        if not in_window(item.attempted_at) or has_nul(item.note):
            # stored values only: a broken device clock or a NUL is this attempt's problem, not the batch's
            results.append(
                {
                    "index": index,
                    "id": str(item.id),
                    "status": "rejected",
                    "message": "attempted_at must be between 2000 and 2100 and the note plain text.",
                }
            )
            continue
        # Locked until commit: the count and state are recomputed from every attempt, so two requests with
        # attempts on one callback take turns (a row lock, the same for every callback of the site otherwise).
        callback = await db.get(Callback, item.callback_id, with_for_update=True, populate_existing=True)
        if (
            callback is None
            or callback.site_id != user.site_id
            or (user.role == "agent" and callback.owner_id != user.id and callback.promised_by != user.id)
        ):
            results.append(
                {
                    "index": index,
                    "id": str(item.id),
                    "status": "rejected",
                    "message": "No such callback of yours.",
                }
            )
            continue
        inserted = (
            await db.execute(
                insert_for(db, CallbackAttempt.__table__)
                .values(
                    id=item.id,
                    callback_id=callback.record_id,
                    site_id=user.site_id,
                    user_id=user.id,
                    outcome=item.outcome,
                    note=item.note,
                    attempted_at=item.attempted_at,
                    received_at=now,
                )
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(CallbackAttempt.id)
            )
        ).scalar_one_or_none()
        if inserted is None:
            results.append({"index": index, "id": str(item.id), "status": "duplicate"})
            continue
        await _apply_attempt(db, callback, item, now)
        results.append(
            {"index": index, "id": str(item.id), "status": "created", "callback": callback_out(callback)}
        )
    return {"results": results}


async def _apply_attempt(db: AsyncSession, callback: Callback, item: AttemptIn, now: datetime) -> None:
    await recompute(db, callback, now)
    await announce(db, callback, "callback.attempted")


async def recompute(db: AsyncSession, callback: Callback, now: datetime) -> None:
    """The callback's state from all its attempts (they may arrive out of order from offline devices, and the
    last one may be undone): the count, the latest outcome, the first final outcome's time, and the state,
    which follows the final outcomes (a later "reached" still beats "wrong number")."""
    rows = (
        await db.execute(
            select(CallbackAttempt.outcome, CallbackAttempt.attempted_at)
            .where(CallbackAttempt.callback_id == callback.record_id)
            .order_by(CallbackAttempt.attempted_at, CallbackAttempt.received_at)
        )
    ).all()
    finals = [(o, at) for o, at in rows if o != "no_answer"]
    callback.attempts = len(rows)
    callback.last_outcome = rows[-1][0] if rows else None
    callback.completed_at = min((at for _, at in finals), default=None)
    callback.updated_at = now
    if callback.status == "cancelled":
        return
    if finals:
        callback.status = "done" if any(STATE_AFTER[o] == "done" for o, _ in finals) else "failed"
    else:
        callback.status = "trying" if rows else "open"


UNDO_SECONDS = 60


@delete(
    "/api/callbacks/attempts/{attempt_id:uuid}",
    status_code=200,
    summary="Undo my latest attempt on a callback, within a minute of the server receiving it",
)
async def undo_attempt(request: Req, db: AsyncSession, attempt_id: uuid.UUID) -> dict[str, Any]:
    user = request.user
    attempt = await db.get(CallbackAttempt, attempt_id)
    if attempt is None or attempt.site_id != user.site_id or attempt.user_id != user.id:
        raise Problem(404, "No such attempt of yours.", code="attempt.not_found")
    # The callback's row locked before "latest" is read, as record_attempts locks it (see there).
    await db.get(Callback, attempt.callback_id, with_for_update=True, populate_existing=True)
    now = await clock.now(request.app, db)
    if (now - attempt.received_at).total_seconds() > UNDO_SECONDS:
        raise Problem(
            409,
            "An attempt can be undone only within a minute.",
            undo_seconds=UNDO_SECONDS,
            code="attempt.undo_too_late",
        )
    latest = (
        await db.execute(
            select(CallbackAttempt.id)
            .where(CallbackAttempt.callback_id == attempt.callback_id)
            .order_by(CallbackAttempt.attempted_at.desc(), CallbackAttempt.received_at.desc())
            .limit(1)
        )
    ).scalar_one()
    if latest != attempt.id:
        raise Problem(409, "Only the latest attempt on a callback can be undone.", code="attempt.not_latest")
    callback = await get_callback_at_site(db, user, attempt.callback_id)
    await db.delete(attempt)
    await db.flush()
    await recompute(db, callback, now)
    await announce(db, callback, "callback.attempted")
    return {"undone": str(attempt_id), "callback": callback_out(callback, await site_names(db, user.site_id))}


@get("/api/callbacks/{callback_id:uuid}/attempts", summary="The attempts made on one callback")
async def list_attempts(request: Req, db: AsyncSession, callback_id: uuid.UUID) -> list[dict[str, Any]]:
    user = request.user
    callback = await get_callback_at_site(db, user, callback_id)
    if user.role == "agent" and user.id not in (callback.owner_id, callback.promised_by):
        raise Problem(404, "No such callback at your site.", code="callback.not_found")
    names = await site_names(db, user.site_id)
    rows = (
        (
            await db.execute(
                select(CallbackAttempt)
                .where(CallbackAttempt.callback_id == callback_id)
                .order_by(CallbackAttempt.attempted_at)
            )
        )
        .scalars()
        .all()
    )
    return [
        {
            "id": str(a.id),
            "outcome": a.outcome,
            "note": a.note,
            "attempted_at": a.attempted_at.isoformat(),
            "by": {"id": a.user_id, "name": names.get(a.user_id)},
        }
        for a in rows
    ]


router = Router(path="/", route_handlers=[record_attempts, list_attempts, undo_attempt], tags=["callbacks"])
