"""Personal acknowledge links: every personal message (push, email, SMS) about an incident carries one. A link is
signed (HMAC with the server's secret key over who, which incident, which channel and when), personal (it
acknowledges as that user only), single-use and expiring (OUTAGE_ACK_LINK_HOURS). The link's row says whether
it was used; the signature means a row id alone is worth nothing. The page it opens lives in backend.ackpage.

For other modules:
    ack = await make(session, user_id, incident_id, "sms", at)  -> a small dict to keep in the message
    url_for(settings, ack) -> "https://…/ack/<token>"
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from .config import Settings
from .db import INT32, Base, UTCDateTime, affected


class AckLink(Base):
    __tablename__ = "ack_links"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # push | email | sms: lands on the timeline with the ack
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


def _signature(secret: str, link_id: int, user_id: int, incident_id: int, channel: str, created: int) -> str:
    text = f"ack|{link_id}|{user_id}|{incident_id}|{channel}|{created}".encode()
    digest = hmac.new(secret.encode(), text, hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(digest).decode()  # 24 characters, no padding


def token_of(settings: Settings, ack: dict[str, Any]) -> str:
    sig = _signature(
        settings.secret_key, ack["id"], ack["user"], ack["incident"], ack["channel"], ack["created"]
    )
    return f"{ack['id']}.{sig}"


def url_for(settings: Settings, ack: dict[str, Any]) -> str:
    return f"{settings.public_base_url.rstrip('/')}/ack/{token_of(settings, ack)}"


async def make(
    session: AsyncSession, user_id: int, incident_id: int, channel: str, at: datetime
) -> dict[str, Any]:
    link = AckLink(user_id=user_id, incident_id=incident_id, channel=channel, created_at=at)
    session.add(link)
    await session.flush()
    return {
        "id": link.id,
        "user": user_id,
        "incident": incident_id,
        "channel": channel,
        "created": int(at.timestamp()),
    }


async def find(
    session: AsyncSession, settings: Settings, token: str, at: datetime
) -> tuple[AckLink | None, str]:
    """The link this token names and whether it may still be used: (link, "ok" | "unknown" | "used" |
    "expired"). A token with a wrong signature is "unknown", exactly like one that names no link."""
    head, _, sig = token.partition(".")
    if not head.isdigit() or not 0 < int(head) <= INT32 or len(sig) != 24:
        return None, "unknown"
    link = await session.get(AckLink, int(head))
    if link is None:
        return None, "unknown"
    expected = _signature(
        settings.secret_key,
        link.id,
        link.user_id,
        link.incident_id,
        link.channel,
        int(link.created_at.timestamp()),
    )
    if not hmac.compare_digest(expected.encode(), sig.encode()):
        return None, "unknown"
    if link.used_at is not None:
        return link, "used"
    if at > link.created_at + timedelta(hours=settings.ack_link_hours):
        return link, "expired"
    return link, "ok"


async def use(session: AsyncSession, link: AckLink, at: datetime) -> bool:
    """Mark the link used; False if another request used it first (only one of two presses counts)."""
    result = await session.execute(
        update(AckLink)
        .where(AckLink.id == link.id, AckLink.used_at.is_(None))
        .values(used_at=at)
        .execution_options(synchronize_session=False)
    )
    return bool(affected(result))
