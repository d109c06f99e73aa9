"""Call records as the server holds them (made on devices, stored by backend.sync) and the API that reads them:
agents see their own, leads and up their site's."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Router, get
from litestar.params import Parameter
from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Uuid, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from .auth import CurrentUser
from .db import Base, UTCDateTime, get_for_site
from .errors import Problem

REENTRY = ("pending", "reentered", "closed")


class Record(Base):
    __tablename__ = "records"
    __table_args__ = (
        Index("ix_records_site_id_seq", "site_id", "seq"),
        Index("ix_records_site_id_form", "site_id", "form"),
    )
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # made on the device
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    device_id: Mapped[str] = mapped_column(String(100))
    form: Mapped[str] = mapped_column(String(64))
    form_version: Mapped[int] = mapped_column(Integer)
    incident_id: Mapped[int | None] = mapped_column(
        Integer, nullable=True, index=True
    )  # incidents come later
    agent_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    rev: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64))
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime)  # device clock
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)  # server clock, first arrival
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)  # server clock, latest rev
    receipt: Mapped[str] = mapped_column(String(20))
    seq: Mapped[int] = mapped_column(Integer)  # per-site, grows on every store: the cursor for listings
    source: Mapped[str] = mapped_column(String(16), default="device")  # 'device' | 'paper'
    sheet_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sheet_row: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reentry_status: Mapped[str] = mapped_column(String(16), default="pending")
    crm_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    reentered_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    reentered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The rev the CRM holds, when it was re-entered through the CRM connector (backend.crmpush); a later rev
    # is flagged for a second push (crm_changed), never re-sent by itself.
    crm_rev: Mapped[int | None] = mapped_column(Integer, nullable=True)


class RecordOut(msgspec.Struct):
    id: uuid.UUID
    form: str
    form_version: int
    rev: int
    data: dict[str, Any]
    incident_id: int | None
    captured_at: datetime
    received_at: datetime
    updated_at: datetime
    receipt: str
    seq: int
    agent_id: int
    device_id: str
    source: str
    sheet_id: str | None
    sheet_row: int | None
    reentry_status: str
    crm_ref: str | None
    crm_rev: int | None = None
    crm_changed: bool = False  # changed after the CRM got it: a second push is needed


def record_out(record: Record) -> RecordOut:
    return RecordOut(
        record.id,
        record.form,
        record.form_version,
        record.rev,
        record.data,
        record.incident_id,
        record.captured_at,
        record.received_at,
        record.updated_at,
        record.receipt,
        record.seq,
        record.agent_id,
        record.device_id,
        record.source,
        record.sheet_id,
        record.sheet_row,
        record.reentry_status,
        record.crm_ref,
        record.crm_rev,
        record.crm_rev is not None and record.rev > record.crm_rev,
    )


# ---------------------------------------------------------------- reading


class RecordPage(msgspec.Struct):
    items: list[RecordOut]
    total: int
    next_after: int | None  # pass as ?after= for the next page


@get("/api/records", summary="Records I may see (agents: their own; leads and up: the site's)")
async def list_records(
    request: Request[CurrentUser, str, Any],
    db: AsyncSession,
    incident_id: int | None = None,
    status: Annotated[Literal["pending", "reentered", "closed"] | None, Parameter(query="status")] = None,
    form: str | None = None,
    agent: int | None = None,
    source: Literal["device", "paper"] | None = None,
    sheet_id: str | None = None,
    since: Annotated[
        datetime | None, Parameter(query="since", description="updated at or after (ISO 8601)")
    ] = None,
    after: Annotated[int, Parameter(query="after", ge=0, description="seq cursor from next_after")] = 0,
    limit: Annotated[int, Parameter(query="limit", ge=1, le=1000)] = 100,
) -> RecordPage:
    user = request.user
    where = [Record.site_id == user.site_id]
    if user.role == "agent":
        where.append(Record.agent_id == user.id)
    elif agent is not None:
        where.append(Record.agent_id == agent)
    for column, value in (
        (Record.incident_id, incident_id),
        (Record.reentry_status, status),
        (Record.form, form),
        (Record.source, source),
        (Record.sheet_id, sheet_id),
    ):
        if value is not None:
            where.append(column == value)
    if since is not None:
        if since.tzinfo is None:
            raise Problem(
                400, "since needs a timezone, e.g. 2026-11-23T08:00:00+08:00", errors={"since": "naive"}
            )
        where.append(Record.updated_at >= since)
    total = (await db.execute(select(func.count()).select_from(Record).where(*where))).scalar_one()
    rows = (
        (
            await db.execute(
                select(Record).where(*where, Record.seq > after).order_by(Record.seq).limit(limit + 1)
            )
        )
        .scalars()
        .all()
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return RecordPage([record_out(r) for r in rows], total, rows[-1].seq if more else None)


@get("/api/records/{record_id:uuid}", summary="One record")
async def get_record(
    request: Request[CurrentUser, str, Any], db: AsyncSession, record_id: uuid.UUID
) -> RecordOut:
    user = request.user
    record = await get_for_site(db, Record, record_id, user.site_id, "record")
    if user.role == "agent" and record.agent_id != user.id:
        raise Problem(404, "No such record at your site.")  # as a missing one: agents see only their own
    return record_out(record)


router = Router(path="/", route_handlers=[list_records, get_record], tags=["records"])
