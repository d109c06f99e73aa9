"""Push receipts: the service worker proves a Web Push reached the device (`POST /api/push/receipts`, public,
checked against the delivery's receipt secret); the first proof lands on the incident timeline."""

from __future__ import annotations

import hmac
from typing import Annotated

import msgspec
from litestar import Request, Router, post
from sqlalchemy.ext.asyncio import AsyncSession

from . import clock
from .auth import User
from .errors import Problem
from .outbox import PushDelivery
from .timeline import add_event


class ReceiptIn(msgspec.Struct, forbid_unknown_fields=True):
    delivery: int
    receipt: Annotated[str, msgspec.Meta(max_length=64)]


@post("/api/push/receipts", status_code=204, summary="The service worker reports a push received (public)")
async def receipt(request: Request, db: AsyncSession, data: ReceiptIn) -> None:
    delivery = await db.get(PushDelivery, data.delivery)
    # bytes: compare_digest raises TypeError for non-ASCII text, and anyone may post here
    if delivery is None or not hmac.compare_digest(delivery.receipt.encode(), data.receipt.encode()):
        raise Problem(404, "Unknown delivery.", code="delivery.not_found")
    if delivery.delivered_at is None:
        at = await clock.now(request.app, db)
        delivery.delivered_at = at
        if delivery.incident_id is not None:
            user = await db.get(User, delivery.user_id)
            await add_event(
                db,
                delivery.incident_id,
                "notification_delivered",
                None,
                {
                    "delivery": delivery.id,
                    "user_id": delivery.user_id,
                    "user": user.display_name if user else None,
                },
                at=at,
            )


router = Router(path="/", tags=["notifications"], route_handlers=[receipt])
