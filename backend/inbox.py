"""The in-app inbox: every notification, whether or not any channel reached the phone, newest first, with
read marks. Rows are made by `notifications.notify()`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Request, Response, Router, get, post
from litestar.params import Parameter
from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import clock
from .auth import CurrentUser
from .db import Base, UTCDateTime, affected
from .errors import Problem

Req = Request[CurrentUser, str, Any]


class Notification(Base):
    """The in-app inbox: every notification, whether or not push reached the phone."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_id_id", "user_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), nullable=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    urgency: Mapped[str] = mapped_column(String(8), default="normal")
    drill: Mapped[bool] = mapped_column(Boolean, default=False)
    title: Mapped[dict] = mapped_column(JSON)
    body: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


def inbox_out(note: Notification) -> dict[str, Any]:
    return {
        "id": note.id,
        "kind": note.kind,
        "urgency": note.urgency,
        "drill": note.drill,
        "incident_id": note.incident_id,
        "title": note.title,
        "body": note.body,
        "created_at": note.created_at,
        "read_at": note.read_at,
    }


@get("/api/inbox", summary="My notifications, newest first, with the unread count")
async def inbox(
    request: Req,
    db: AsyncSession,
    unread: Annotated[bool, Parameter(query="unread")] = False,
    limit: Annotated[int, Parameter(query="limit", ge=1, le=200)] = 50,
) -> Response[dict[str, Any]]:
    mine = Notification.user_id == request.user.id
    query = select(Notification).where(mine)
    if unread:
        query = query.where(Notification.read_at.is_(None))
    notes = (await db.execute(query.order_by(Notification.id.desc()).limit(limit))).scalars()
    count = (
        await db.execute(
            select(func.count()).select_from(Notification).where(mine, Notification.read_at.is_(None))
        )
    ).scalar_one()
    return Response(
        {"items": [inbox_out(n) for n in notes], "unread": count}, headers={"Cache-Control": "no-store"}
    )


@post("/api/inbox/{notification_id:int}/read", status_code=200, summary="Mark one notification read")
async def mark_read(request: Req, db: AsyncSession, notification_id: int) -> dict[str, Any]:
    note = await db.get(Notification, notification_id)
    if note is None or note.user_id != request.user.id:
        raise Problem(404, "No such notification in your inbox.", code="inbox.not_found")
    if note.read_at is None:
        note.read_at = await clock.now(request.app, db)
    return inbox_out(note)


@post("/api/inbox/read-all", status_code=200, summary="Mark all my notifications read")
async def mark_all_read(request: Req, db: AsyncSession) -> dict[str, int]:
    at = await clock.now(request.app, db)
    result = await db.execute(
        update(Notification)
        .where(Notification.user_id == request.user.id, Notification.read_at.is_(None))
        .values(read_at=at)
    )
    return {"marked": affected(result)}


router = Router(path="/", tags=["notifications"], route_handlers=[inbox, mark_read, mark_all_read])
