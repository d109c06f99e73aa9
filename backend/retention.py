"""Retention of callers' personal data (PIPL): a per-site rule, run by the workers, and erasure on request.

A site's admin sets `erase_after_days`: the personal fields of a record that was re-entered into the CRM or
closed more than that many days ago are erased. A record still pending re-entry is kept whole (its data is
still needed). An admin can also erase every record of one caller (by phone number) at once, on request.

What is erased: in the record's data, every free-text field of its form (text, tel, textarea, email: names,
numbers, details); on its callback the caller's name and phone; the notes of its callback attempts; the copies
in the change feed and in inbox messages. What stays: the row itself with its form, category, urgency, times
and re-entry status, so counts and reports do not change. Each erasure is one audit entry (`retention.erase`)
that names the records and never the erased values.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, post, put
from sqlalchemy import ForeignKey, Integer, String, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import audit, clock
from .attempts import CallbackAttempt
from .auth import CurrentUser, requires
from .callbacks import Callback
from .changes import Change
from .db import Base, UTCDateTime, insert_for
from .errors import Problem
from .forms import definition
from .inbox import Notification
from .records import Record
from .workers import Step

PERSONAL_TYPES = {"text", "tel", "textarea", "email"}
# Used when a record's form version cannot be read (it always can; this is the safe side if not).
PERSONAL_NAMES = {"caller_name", "phone", "details", "name", "email", "address", "note", "notes"}
ERASED_TEXT = {
    "zh-CN": "（个人信息已按保留规则删除）",
    "en": "(personal data erased under the retention rule)",
}
BATCH = 200
MAX_DAYS = 3650


class SiteRetention(Base):
    __tablename__ = "site_retention"
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)
    erase_after_days: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: keep
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)


class ErasedRecord(Base):
    """A record whose personal data is gone, when and why ('retention' or 'request')."""

    __tablename__ = "erased_records"
    record_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("records.id", ondelete="CASCADE"), primary_key=True
    )
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(16))
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime)


def digits(phone: Any) -> str:
    return re.sub(r"\D", "", str(phone or ""))


async def _personal_fields(session: AsyncSession, record: Record) -> set[str]:
    found = await definition(session, record.site_id, record.form, record.form_version)
    if not found:
        return PERSONAL_NAMES & set(record.data)
    return {f["name"] for f in found.get("fields", []) if f.get("type") in PERSONAL_TYPES}


def _scrub(value: Any, secrets: set[str]) -> Any:
    if isinstance(value, dict):
        return {
            k: ("" if k in ("caller_name", "phone", "note") else _scrub(v, secrets)) for k, v in value.items()
        }
    if isinstance(value, str) and any(s in value for s in secrets):
        return ""
    return value


async def erase_records(
    session: AsyncSession,
    site_id: int,
    ids: list[uuid.UUID],
    *,
    reason: str,
    now: datetime,
    actor: CurrentUser | str,
    details: dict[str, Any] | None = None,
) -> list[str]:
    """Erase the personal data of these records of this site (those not erased yet); one audit entry.
    Returns the ids erased. Claimed through `erased_records` first, so two workers never erase the same row."""
    if not ids:
        return []
    claimed = set(
        (
            await session.execute(
                insert_for(session, ErasedRecord.__table__)
                .values(
                    [{"record_id": i, "site_id": site_id, "reason": reason, "erased_at": now} for i in ids]
                )
                .on_conflict_do_nothing(index_elements=["record_id"])
                .returning(ErasedRecord.record_id)
            )
        ).scalars()
    )
    if not claimed:
        return []
    records = (
        await session.execute(select(Record).where(Record.id.in_(claimed), Record.site_id == site_id))
    ).scalars()
    secrets: set[str] = set()  # the erased values, to find their copies in inbox messages (never stored)
    for record in records:
        fields = await _personal_fields(session, record)
        data = dict(record.data)
        for name in fields & set(data):
            if isinstance(data[name], str) and len(data[name]) >= 3:
                secrets.add(data[name])
            data[name] = ""
        record.data = data
    callbacks = list(
        (await session.execute(select(Callback).where(Callback.record_id.in_(claimed)))).scalars()
    )
    for callback in callbacks:
        secrets.update(v for v in (callback.caller_name, callback.phone) if len(v) >= 3)
        callback.caller_name, callback.phone = "", ""
    await session.execute(
        update(CallbackAttempt).where(CallbackAttempt.callback_id.in_(claimed)).values(note=None)
    )
    refs = [str(i) for i in claimed]
    for change in (
        await session.execute(select(Change).where(Change.site_id == site_id, Change.ref.in_(refs)))
    ).scalars():
        change.payload = _scrub(change.payload, secrets)
    if secrets:
        for note in (
            await session.execute(select(Notification).where(Notification.site_id == site_id))
        ).scalars():
            text = msgspec.json.encode([note.title, note.body]).decode()
            if any(s in text for s in secrets):
                note.title, note.body = ERASED_TEXT, ERASED_TEXT
    erased = sorted(refs)
    await audit.record(
        session,
        site_id=site_id,
        actor=actor,
        action="retention.erase",
        target=f"site:{site_id}",
        at=now,
        after={"reason": reason, "records": len(erased), "record_ids": erased, **(details or {})},
    )
    return erased


async def erase_due(state: Any) -> int:
    """Worker round: for every site with a rule, erase a batch of records re-entered or closed long enough ago."""
    done = 0
    async with state.sessionmaker() as session:
        now = await clock.now(state, session)
        rules = (
            await session.execute(select(SiteRetention).where(SiteRetention.erase_after_days.is_not(None)))
        ).scalars()
        for rule in list(rules):
            days = rule.erase_after_days or 0
            cutoff = now - timedelta(days=days)
            ids = list(
                (
                    await session.execute(
                        select(Record.id)
                        .where(
                            Record.site_id == rule.site_id,
                            Record.reentry_status.in_(("reentered", "closed")),
                            Record.reentered_at < cutoff,
                            Record.id.not_in(select(ErasedRecord.record_id)),
                        )
                        .order_by(Record.reentered_at)
                        .limit(BATCH)
                    )
                ).scalars()
            )
            details = {"erase_after_days": days, "cutoff": cutoff.isoformat()}
            erased = await erase_records(
                session, rule.site_id, ids, reason="retention", now=now, actor="system", details=details
            )
            done += len(erased)
        await session.commit()
    return done


STEP = Step("retention", erase_due, every=60.0)


# ---------------------------------------------------------------- admin API

Days = Annotated[int, msgspec.Meta(ge=1, le=MAX_DAYS)]


class RetentionIn(msgspec.Struct, forbid_unknown_fields=True):
    erase_after_days: Days | None  # null: keep personal data until erased on request


class EraseIn(msgspec.Struct, forbid_unknown_fields=True):
    phone: Annotated[str, msgspec.Meta(min_length=3, max_length=40)]


async def _rule(db: AsyncSession, site_id: int) -> SiteRetention | None:
    return await db.get(SiteRetention, site_id)


async def _summary(db: AsyncSession, site_id: int) -> dict[str, Any]:
    rule = await _rule(db, site_id)
    erased = (
        await db.execute(
            select(func.count()).select_from(ErasedRecord).where(ErasedRecord.site_id == site_id)
        )
    ).scalar_one()
    return {
        "erase_after_days": rule.erase_after_days if rule else None,
        "updated_at": rule.updated_at if rule else None,
        "erased_records": int(erased),
    }


@get("/api/retention", guards=[requires("admin")], summary="My site's retention rule for personal data")
async def show(request: Request[CurrentUser, str, Any], db: AsyncSession) -> dict[str, Any]:
    return await _summary(db, request.user.site_id)


@put("/api/retention", guards=[requires("admin")], summary="Set my site's retention rule (days, or null)")
async def set_rule(
    request: Request[CurrentUser, str, Any], db: AsyncSession, data: RetentionIn
) -> dict[str, Any]:
    user = request.user
    now = await clock.now(request.app, db)
    rule = await _rule(db, user.site_id)
    before = rule.erase_after_days if rule else None
    if rule is None:
        rule = SiteRetention(site_id=user.site_id, updated_at=now)
        db.add(rule)
    rule.erase_after_days, rule.updated_at, rule.updated_by = data.erase_after_days, now, user.id
    await audit.record(
        db,
        site_id=user.site_id,
        actor=user,
        action="retention.set",
        target=f"site:{user.site_id}",
        at=now,
        before={"erase_after_days": before},
        after={"erase_after_days": data.erase_after_days},
    )
    await db.flush()
    return await _summary(db, user.site_id)


@post(
    "/api/retention/erase",
    guards=[requires("admin")],
    status_code=200,
    summary="Erase every record of one caller (by phone number) at my site, on the caller's request",
)
async def erase_caller(
    request: Request[CurrentUser, str, Any], db: AsyncSession, data: EraseIn
) -> dict[str, Any]:
    user = request.user
    wanted = digits(data.phone)
    if len(wanted) < 3:
        raise Problem(
            422, "Give the caller's phone number.", errors={"phone": "no digits"}, code="retention.no_phone"
        )
    now = await clock.now(request.app, db)
    ids: list[uuid.UUID] = []
    query = select(Record.id, Record.data).where(
        Record.site_id == user.site_id, Record.id.not_in(select(ErasedRecord.record_id))
    )
    for record_id, data_ in await db.execute(query):
        if isinstance(data_, dict) and digits(data_.get("phone")) == wanted:
            ids.append(record_id)
    callbacks = select(Callback.record_id, Callback.phone).where(Callback.site_id == user.site_id)
    ids += [rid for rid, phone in await db.execute(callbacks) if digits(phone) == wanted and rid not in ids]
    erased = await erase_records(db, user.site_id, ids, reason="request", now=now, actor=user)
    return {"erased": len(erased), "record_ids": erased}


router = Router(path="/", route_handlers=[show, set_rule, erase_caller], tags=["retention"])
