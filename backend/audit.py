"""The audit log: every administrative action (who, what, on what, when, before and after), readable by the
site's admins. Capabilities call `record()` inside the same transaction as the change, so a rolled-back change
leaves no entry and a committed one always has its entry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get
from litestar.params import Parameter
from sqlalchemy import JSON, ForeignKey, Index, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from .auth import CurrentUser, requires
from .db import Base, UTCDateTime


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_site_id_id", "site_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Null site: an install-wide action (the first admin, a CLI change to no particular site).
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), nullable=True)
    # Who: null for the system (retention worker, CLI); the name is kept even if the user is later removed.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))  # a stable code, e.g. "user.create", "retention.erase"
    target: Mapped[str] = mapped_column(String(200))  # e.g. "user:17", "site:3", "playbook:outage"
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


async def record(
    session: AsyncSession,
    *,
    site_id: int | None,
    actor: CurrentUser | str | None,
    action: str,
    target: str,
    at: datetime,
    before: Any = None,
    after: Any = None,
) -> AuditEntry:
    """Add one entry to the log, in the caller's transaction. `actor`: the user, or a name such as "cli" or
    "system" for actions nobody logged in made. Never put passwords, tokens or secrets in before/after."""
    if isinstance(actor, CurrentUser):
        actor_id, actor_name = actor.id, actor.username
    else:
        actor_id, actor_name = None, actor or "system"
    entry = AuditEntry(
        site_id=site_id,
        actor_id=actor_id,
        actor=actor_name,
        action=action,
        target=target,
        before=msgspec.to_builtins(before),
        after=msgspec.to_builtins(after),
        at=at,
    )
    session.add(entry)
    await session.flush()
    return entry


def entry_out(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "actor": entry.actor,
        "actor_id": entry.actor_id,
        "action": entry.action,
        "target": entry.target,
        "before": entry.before,
        "after": entry.after,
        "at": entry.at,
    }


@get("/api/audit", guards=[requires("admin")], summary="The audit log of my site, newest first")
async def audit_log(
    request: Request[CurrentUser, str, Any],
    db: AsyncSession,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    before_id: Annotated[int | None, Parameter(ge=1, le=2**31 - 1)] = None,
    action: Annotated[str | None, Parameter(max_length=64)] = None,
) -> dict[str, Any]:
    query = select(AuditEntry).where(AuditEntry.site_id == request.user.site_id)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    if action:
        query = query.where(AuditEntry.action == action)
    rows = (await db.execute(query.order_by(AuditEntry.id.desc()).limit(limit + 1))).scalars().all()
    return {
        "entries": [entry_out(e) for e in rows[:limit]],
        "next_before_id": rows[limit - 1].id if len(rows) > limit else None,
    }


router = Router(path="/", route_handlers=[audit_log], tags=["admin"])
