"""The page a personal acknowledge link opens (backend.acklinks): `GET /ack/{token}` shows the incident and one
Acknowledge button and changes nothing (IM apps and mail scanners fetch links before anyone taps them);
`POST /ack/{token}` (that button, a plain form: no script, no login) acknowledges as the link's user, once, and
the acknowledgement lands on the timeline with the link's channel. Both languages on one page."""

from __future__ import annotations

from html import escape
from typing import Any

from litestar import Request, Response, Router, get, post
from sqlalchemy.ext.asyncio import AsyncSession

from . import acklinks, clock, ladder
from .auth import CurrentUser, Site, User
from .incidents import Incident, may_ack
from .lifecycle import acknowledge

TEXT = {
    "title": ("确认接手", "Acknowledge"),
    "button": ("确认接手", "Acknowledge"),
    "explain": (
        "点击下面的按钮确认您已接手，后续升级将停止。",
        "Tap the button to say you have it; later escalations stop.",
    ),
    "done": ("已确认，后续升级已停止。", "Acknowledged: later escalations are stopped."),
    "already": ("此事件已由其他人确认。", "Someone has acknowledged this incident already."),
    "used": ("此链接已使用过。", "This link has been used already."),
    "expired": ("此链接已过期，请在应用中确认。", "This link has expired: acknowledge in the app."),
    "unknown": ("链接无效。", "This link is not valid."),
    "resolved": ("此事件已结束。", "This incident is resolved."),
    "forbidden": ("您无法确认此事件。", "You cannot acknowledge this incident."),
    "open": ("在应用中打开", "Open in the app"),
    "drill": ("【演练】", "[DRILL]"),
}


def _page(status: int, key: str, incident: Incident | None, token: str | None, base: str) -> Response[str]:
    zh, en = TEXT[key]
    parts = [
        "<!doctype html>",
        '<html lang="zh-CN"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="robots" content="noindex">',
        f"<title>{TEXT['title'][0]}</title>",  # the page's language; its body says it in English too
        '<link rel="stylesheet" href="/static/css/ack.css"></head><body><main class="ack">',
    ]
    if incident is not None:
        drill = (
            f'<span class="drill">{TEXT["drill"][0]} <span lang="en">{TEXT["drill"][1]}</span></span> '
            if incident.drill
            else ""
        )
        parts.append(
            f"<h1>{drill}{escape(incident.title.get('zh-CN', ''))}</h1>"
            f'<p class="en" lang="en">{escape(incident.title.get("en", ""))}</p>'
        )
    parts.append(f'<p class="message" role="status">{escape(zh)}<br><span lang="en">{escape(en)}</span></p>')
    if token is not None:
        parts.append(
            f'<form method="post" action="/ack/{escape(token)}">'
            f'<button type="submit" id="ack">{TEXT["button"][0]} · <span lang="en">{TEXT["button"][1]}</span></button></form>'
        )
    if incident is not None:
        parts.append(
            f'<p><a href="{escape(base)}/#/incidents/{incident.id}">{TEXT["open"][0]} · <span lang="en">{TEXT["open"][1]}</span></a></p>'
        )
    parts.append("</main></body></html>")
    return Response(
        "\n".join(parts),
        status_code=status,
        media_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


async def _resolve(
    request: Request, db: AsyncSession, token: str
) -> tuple[Any, str, Incident | None, CurrentUser | None]:
    at = await clock.now(request.app, db)
    link, state = await acklinks.find(db, request.app.state.settings, token, at)
    if link is None:
        return None, state, None, None
    incident = await db.get(Incident, link.incident_id)
    user = await db.get(User, link.user_id)
    site = await db.get(Site, user.site_id) if user is not None else None
    if incident is None or user is None or site is None or not user.active:
        return link, "unknown", None, None
    current = CurrentUser(
        user.id, user.username, user.display_name, user.role, site.id, site.slug, site.name, site.time_zone
    )
    if state == "ok":
        if incident.status == "resolved":
            state = "resolved"
        elif incident.acknowledged_at is not None:
            state = "already"
        elif not may_ack(current, incident, await ladder.ladder(db, incident.id)):
            state = "forbidden"
    return link, state, incident, current


@get(
    "/ack/{token:str}",
    include_in_schema=False,
    summary="The acknowledge page of a personal link (never acknowledges)",
)
async def ack_page(request: Request, db: AsyncSession, token: str) -> Response[str]:
    base = request.app.state.settings.public_base_url.rstrip("/")
    _link, state, incident, _user = await _resolve(request, db, token)
    if state == "ok":
        return _page(200, "explain", incident, token, base)
    return _page(
        404 if state == "unknown" else 410 if state in ("used", "expired") else 409,
        state,
        incident,
        None,
        base,
    )


@post("/ack/{token:str}", include_in_schema=False, status_code=200)
async def ack_press(request: Request, db: AsyncSession, token: str) -> Response[str]:
    base = request.app.state.settings.public_base_url.rstrip("/")
    link, state, incident, user = await _resolve(request, db, token)
    if state != "ok" or incident is None or user is None:
        return _page(
            404 if state == "unknown" else 410 if state in ("used", "expired") else 409,
            state,
            incident,
            None,
            base,
        )
    at = await clock.now(request.app, db)
    if not await acklinks.use(db, link, at):
        return _page(410, "used", incident, None, base)
    won = await acknowledge(db, incident, user, at, channel=link.channel)
    return _page(200 if won else 409, "done" if won else "already", incident, None, base)


router = Router(path="/", tags=["acknowledge"], route_handlers=[ack_page, ack_press])
