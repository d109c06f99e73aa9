"""Notifications: `notify()` makes an inbox row for every recipient (backend.inbox) and pending outbox deliveries
(backend.outbox), which the sender step sends: one per push subscription, and for urgent ones (the ladder's
rungs) an email and an SMS as each recipient's rules say (backend.contacts: at once or after N minutes without
an acknowledgement, N scaled by a drill's time scale), each personal one with its own acknowledge link
(backend.acklinks); an escalation also goes to the site's team channels for its roles (backend.channels), with
an @-mention of the recipients who want one.

For other modules:
    await notify(session, site_id, roles, title, body, incident_id=None, kind="info", urgency="normal",
                 at=now, drill=incident.drill, time_scale=1) -> {"users": n, "notifications": [ids], "deliveries": m}
title / body: a string or {"zh-CN": …, "en": …}. The caller commits.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from litestar import Request, Router, post
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from . import acklinks, channels, clock, contacts
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
    time_scale: int = 1,
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
    query = select(User.id, User.role).where(User.site_id == site_id, User.active.is_(True))
    query = (
        query.where(User.id.in_(user_ids))
        if user_ids is not None
        else query.where(User.role.in_(list(roles)))
    )
    if exclude_user_id is not None:
        query = query.where(User.id != exclude_user_id)
    roles_of: dict[int, str] = {u: r for u, r in (await session.execute(query.order_by(User.id))).all()}
    users = list(roles_of)
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
    urgent = urgency == "high"
    plans = await contacts.plans_for(session, users, roles_of) if urgent else {}
    message = {"kind": kind, "title": title, "body": body, "drill": drill}

    def after(user_id: int, method: str) -> datetime:
        minutes = plans[user_id].after.get(method, 0) if urgent else 0
        return at + timedelta(minutes=minutes) / max(time_scale, 1)

    async def personal(user_id: int, channel: str) -> dict[str, Any]:
        if incident_id is None or not urgent:
            return message
        return {**message, "ack": await acklinks.make(session, user_id, incident_id, channel, at)}

    rows = []
    for sub_id, user_id in subscriptions:
        if urgent and "push" not in plans[user_id].after:
            continue
        rows.append(
            PushDelivery(
                site_id=site_id,
                notification_id=by_user[user_id].id,
                subscription_id=sub_id,
                incident_id=incident_id,
                user_id=user_id,
                urgency=urgency,
                state="pending",
                attempts=0,
                next_attempt_at=after(user_id, "push"),
                receipt=secrets.token_urlsafe(16),
                message=await personal(user_id, "push") if urgent and incident_id is not None else None,
                created_at=at,
            )
        )
    mentions: list[str] = []
    for user_id, plan in plans.items():
        for method, address in (("email", plan.email), ("sms", plan.mobile)):
            if address and method in plan.after:
                rows.append(
                    contacts.personal_delivery(
                        site_id,
                        user_id,
                        method,
                        address,
                        await personal(user_id, method),
                        at,
                        send_at=after(user_id, method),
                        notification_id=by_user[user_id].id,
                        incident_id=incident_id,
                    )
                )
        if plan.mobile and "mention" in plan.after:
            mentions.append(contacts.normal_mobile(plan.mobile))
    session.add_all(rows)
    await session.flush()
    sent = len(rows)
    if kind == "escalation":
        sent += await channels.enqueue(
            session, site_id, roles, {**message, "mobiles": mentions}, incident_id=incident_id, at=at
        )
    return {"users": len(users), "notifications": [n.id for n in notes], "deliveries": sent}


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
