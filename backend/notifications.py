"""Notifications: `notify()` makes an inbox row for every recipient (backend.inbox) and a pending delivery for
each of their push subscriptions (backend.outbox), which the sender step sends.

For other modules:
    await notify(session, site_id, roles, title, body, incident_id=None, kind="info", urgency="normal",
                 at=now, drill=incident.drill) -> {"users": n, "notifications": [ids], "deliveries": m}
title / body: a string or {"zh-CN": …, "en": …}. The caller commits.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from litestar import Request, Router, post
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from . import clock
from .auth import CurrentUser, User
from .inbox import Notification
from .outbox import PushDelivery
from .push import PushSubscription

DRILL_PREFIX = {"zh-CN": "【演练】", "en": "[DRILL] "}
Req = Request[CurrentUser, str, Any]


def _texts(value: str | dict[str, str]) -> dict[str, str]:
    if isinstance(value, str):
        return {"zh-CN": value, "en": value}
    return {
        "zh-CN": value.get("zh-CN") or value.get("en", ""),
        "en": value.get("en") or value.get("zh-CN", ""),
    }


async def notify(
    session: AsyncSession,
    site_id: int,
    roles: list[str] | tuple[str, ...],
    title: str | dict[str, str],
    body: str | dict[str, str],
    incident_id: int | None = None,
    kind: str = "info",
    urgency: str = "normal",
    *,
    user_ids: list[int] | None = None,
    exclude_user_id: int | None = None,
    at: datetime,
    drill: bool | None = None,
) -> dict[str, Any]:
    """Inbox rows for every active user with one of `roles` at the site (or exactly `user_ids`), and a
    pending push delivery for each of their subscriptions. The caller commits.
    A notification about an incident must say whether that incident is a drill (`drill=`): drill ones are
    prefixed 【演练】/[DRILL] here, so no caller can send a drill that reads like the real thing."""
    if incident_id is not None and drill is None:
        raise ValueError("notify() about an incident needs drill=True/False")
    drill = bool(drill)
    title, body = _texts(title), _texts(body)
    if drill:
        title = {lang: DRILL_PREFIX[lang] + text for lang, text in title.items()}
    query = select(User.id).where(User.site_id == site_id, User.active.is_(True))
    query = (
        query.where(User.id.in_(user_ids))
        if user_ids is not None
        else query.where(User.role.in_(list(roles)))
    )
    if exclude_user_id is not None:
        query = query.where(User.id != exclude_user_id)
    users = list((await session.execute(query.order_by(User.id))).scalars())
    notes = [
        Notification(
            site_id=site_id,
            user_id=u,
            incident_id=incident_id,
            kind=kind,
            urgency=urgency,
            drill=drill,
            title=title,
            body=body,
            created_at=at,
        )
        for u in users
    ]
    session.add_all(notes)
    await session.flush()
    by_user = {n.user_id: n for n in notes}
    subscriptions = (
        (
            await session.execute(
                select(PushSubscription.id, PushSubscription.user_id).where(
                    PushSubscription.site_id == site_id, PushSubscription.user_id.in_(users)
                )
            )
        ).all()
        if users
        else []
    )
    session.add_all(
        [
            PushDelivery(
                site_id=site_id,
                notification_id=by_user[user_id].id,
                subscription_id=sub_id,
                incident_id=incident_id,
                user_id=user_id,
                urgency=urgency,
                state="pending",
                attempts=0,
                next_attempt_at=at,
                receipt=secrets.token_urlsafe(16),
                created_at=at,
            )
            for sub_id, user_id in subscriptions
        ]
    )
    await session.flush()
    return {"users": len(users), "notifications": [n.id for n in notes], "deliveries": len(subscriptions)}


@post("/api/push/test", status_code=200, summary="Send myself a test notification (inbox + push)")
async def send_test(request: Req, db: AsyncSession) -> dict[str, Any]:
    at = await clock.now(request.app, db)
    result = await notify(
        db,
        request.user.site_id,
        [],
        {"zh-CN": "测试通知", "en": "Test notification"},
        {
            "zh-CN": "这是一条测试通知。如果手机上也弹出了它，推送工作正常。",
            "en": "This is a test. If it also popped up on your phone, push works.",
        },
        kind="test",
        user_ids=[request.user.id],
        at=at,
    )
    return result


router = Router(path="/", tags=["notifications"], route_handlers=[send_test])
