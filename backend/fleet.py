"""The device fleet: every sync carries what the device still holds (unsent records, drafts, the oldest unsent
one's time); the server keeps the latest report per user and device, so leads see after a recovery whose queue
is still in a drawer. A device that has not synced since is shown with its last report and when that was."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get
from sqlalchemy import ForeignKey, Integer, String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from .auth import CurrentUser, User, requires
from .clock import in_window
from .db import INT32, Base, UTCDateTime, insert_for

Count = Annotated[int, msgspec.Meta(ge=0, le=INT32)]


class DeviceState(msgspec.Struct, forbid_unknown_fields=True):
    """Sent with every sync: counted on the device just before the request, this request's records included."""

    unsent: Count = 0  # records not yet stored on the server (queued, sending, failed, conflict, rejected)
    drafts: Count = 0  # records started and never saved for sending
    oldest_unsent_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class FleetDevice(Base):
    __tablename__ = "fleet_devices"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    unsent: Mapped[int] = mapped_column(Integer, default=0)
    drafts: Mapped[int] = mapped_column(Integer, default=0)
    oldest_unsent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


async def report(
    session: AsyncSession, user: CurrentUser, device_id: str, state: DeviceState, stored: int, now: datetime
) -> None:
    """Keep this device's latest state. `stored`: how many of the request's records the server now holds
    (created, duplicate, updated): those are no longer the device's to send."""
    unsent = max(0, state.unsent - stored)
    oldest = (
        state.oldest_unsent_at
        if unsent and state.oldest_unsent_at and in_window(state.oldest_unsent_at)
        else None
    )
    values = {"unsent": unsent, "drafts": state.drafts, "oldest_unsent_at": oldest, "last_seen_at": now}
    upsert = insert_for(session, FleetDevice.__table__).values(
        user_id=user.id, device_id=device_id, site_id=user.site_id, **values
    )
    await session.execute(upsert.on_conflict_do_update(index_elements=["user_id", "device_id"], set_=values))


async def unsent_at_site(session: AsyncSession, site_id: int) -> dict[str, int]:
    """What the fleet last said it still holds: records and how many devices hold them (for the resolve checklist)."""
    row = (
        await session.execute(
            select(func.coalesce(func.sum(FleetDevice.unsent), 0), func.count()).where(
                FleetDevice.site_id == site_id, FleetDevice.unsent > 0
            )
        )
    ).one()
    return {"records": int(row[0]), "devices": int(row[1])}


@get(
    "/api/fleet",
    guards=[requires("lead")],
    summary="Every device of my site: what it still holds and when it last synced",
)
async def fleet(request: Request[CurrentUser, str, Any], db: AsyncSession) -> dict[str, Any]:
    rows = (
        await db.execute(
            select(FleetDevice, User.username, User.display_name)
            .join(User, User.id == FleetDevice.user_id)
            .where(FleetDevice.site_id == request.user.site_id)
            .order_by(FleetDevice.unsent.desc(), FleetDevice.last_seen_at)
        )
    ).all()
    devices = [
        {
            "user_id": d.user_id,
            "username": username,
            "display_name": display_name,
            "device_id": d.device_id,
            "unsent": d.unsent,
            "drafts": d.drafts,
            "oldest_unsent_at": d.oldest_unsent_at,
            "last_seen_at": d.last_seen_at,
        }
        for d, username, display_name in rows
    ]
    return {"devices": devices, "unsent": sum(d["unsent"] for d in devices)}


router = Router(path="/", route_handlers=[fleet], tags=["fleet"])
