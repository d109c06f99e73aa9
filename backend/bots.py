"""Group bots and webhooks, the transport: each provider's message format, signing and answers, for the outbox's
"channel" deliveries (backend.channels holds the channels).

- WeCom (企业微信) group robot: POST JSON {"msgtype": "text", "text": {"content", "mentioned_mobile_list"}} to
  …/cgi-bin/webhook/send?key=KEY; the key is the only secret. Answer {"errcode": 0}; 45009 = rate limited.
- DingTalk (钉钉) custom robot: {"msgtype": "text", "text": {"content"}, "at": {"atMobiles", "isAtAll"}} to
  …/robot/send?access_token=…; with 加签, `timestamp` (ms) and `sign` = base64(HMAC-SHA256(secret,
  f"{timestamp}\\n{secret}")) as query parameters. The mobiles must also appear as @mobile in the text.
  Answer {"errcode": 0}; 130101 = sending too fast.
- Feishu (飞书) custom bot: {"msg_type": "text", "content": {"text"}} with, when signed, "timestamp" (s) and
  "sign" = base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg="")) in the body. Answer {"code": 0};
  11232 / 9499 = rate limited. (Custom bots can only @ by open_id, which we do not know: names are in the text.)
- Webhook: Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature by the `standardwebhooks`
  library); any 2xx is success, 410 means "disable me", 429 honours Retry-After.

A robot takes about 20 messages a minute: deliveries queued for one channel are coalesced into one message per
round, a channel that sent PER_MINUTE messages in the last minute waits (the outbox defers, not drops), and a
robot's rate-limit answer defers the whole queue for it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks.webhooks import Webhook

from . import outbound
from .channels import Channel
from .outbox import Item, PushDelivery, Transport

PER_MINUTE = 18  # the providers allow 20 a minute per robot: keep a little room
RATE_LIMIT_WAIT = 60.0  # seconds to wait after a robot said "too fast"
TEXT_LIMIT = {"wecom": 2000, "dingtalk": 18000, "feishu": 18000, "webhook": 60000}  # bytes of text
READ_BODY = 4096
RATE_LIMITED = {"wecom": {45009}, "dingtalk": {130101}, "feishu": {11232, 9499}}
DEAD = {"wecom": {93000}, "dingtalk": {300001, 400101}, "feishu": {19001}}  # the robot's key/token is invalid


def _both(texts: dict[str, str]) -> str:
    zh, en = texts.get("zh-CN", ""), texts.get("en", "")
    return zh if zh == en or not en else f"{zh}\n{en}"


def link_of(settings: Any, message: dict[str, Any], incident_id: int | None) -> str:
    """A group message opens the incident in the app (a group link must not acknowledge as anyone)."""
    base = settings.public_base_url.rstrip("/")
    return f"{base}/#/incidents/{incident_id}" if incident_id is not None else f"{base}/#/inbox"


def render(kind: str, settings: Any, items: list[Item]) -> tuple[str, list[str]]:
    """One text for every queued message of this channel (oldest first) and the mobiles to @-mention."""
    limit = TEXT_LIMIT[kind] // max(len(items), 1)
    parts, mobiles = [], []
    for item in items:
        message = item.delivery.message or {}
        title, body = _both(message.get("title", {})), _both(message.get("body", {}))
        link = link_of(settings, message, item.delivery.incident_id)
        room = max(limit - len(title.encode()) - len(link.encode()) - 8, 40)
        body = body.encode()[:room].decode(errors="ignore")
        parts.append(f"{title}\n{body}\n{link}")
        mobiles += [m for m in message.get("mobiles", []) if m not in mobiles]
    head = f"（{len(items)} 条消息合并发送 / {len(items)} messages combined）\n\n" if len(items) > 1 else ""
    return head + "\n\n".join(parts), mobiles


def request_for(
    channel: Channel, text: str, mobiles: list[str], items: list[Item], now: float
) -> tuple[str, bytes, dict[str, str]]:
    """The URL, body and headers of one message to this channel, signed as its provider wants."""
    headers = {"Content-Type": "application/json; charset=utf-8"}
    url = channel.url
    if channel.kind == "wecom":
        body: dict[str, Any] = {
            "msgtype": "text",
            "text": {"content": text, "mentioned_mobile_list": mobiles},
        }
    elif channel.kind == "dingtalk":
        mention = " ".join(f"@{m}" for m in mobiles)
        content = f"{text}\n{mention}" if mention else text
        body = {
            "msgtype": "text",
            "text": {"content": content},
            "at": {"atMobiles": mobiles, "isAtAll": False},
        }
        if channel.secret:
            stamp = str(int(now * 1000))
            mac = hmac.new(channel.secret.encode(), f"{stamp}\n{channel.secret}".encode(), hashlib.sha256)
            sign = quote_plus(base64.b64encode(mac.digest()).decode())
            url += f"{'&' if '?' in url else '?'}timestamp={stamp}&sign={sign}"
    elif channel.kind == "feishu":
        body = {"msg_type": "text", "content": {"text": text}}
        if channel.secret:
            stamp = str(int(now))
            digest = hmac.new(f"{stamp}\n{channel.secret}".encode(), b"", hashlib.sha256).digest()
            body = {"timestamp": stamp, "sign": base64.b64encode(digest).decode(), **body}
    else:
        messages = [
            {
                "delivery": i.delivery.id,
                "incident_id": i.delivery.incident_id,
                **{
                    k: v
                    for k, v in (i.delivery.message or {}).items()
                    if k in ("kind", "title", "body", "drill")
                },
            }
            for i in items
        ]
        body = {
            "type": "outage_desk.notification",
            "timestamp": datetime.fromtimestamp(now, UTC).isoformat(),
            "data": {"text": text, "mobiles": mobiles, "messages": messages},
        }
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        msg_id = f"msg_{uuid.uuid4().hex}"
        stamp_at = datetime.fromtimestamp(int(now), UTC)
        headers.update(
            {
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(now)),
                "webhook-signature": Webhook(channel.secret or "").sign(msg_id, stamp_at, payload),
            }
        )
        return url, payload.encode(), headers
    return url, json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(), headers


def interpret(kind: str, status: int, body: bytes, retry_after: str | None) -> dict[str, Any]:
    """The outbox outcome of a provider's answer. Error texts are fixed or the provider's numeric code."""
    if kind == "webhook" or status != 200:
        if 200 <= status < 300:
            return {"status": status}
        if status == 429:
            seconds = float(retry_after) if retry_after and retry_after.isdigit() else RATE_LIMIT_WAIT
            return {"status": status, "defer": min(seconds, 3600), "error": "rate limited (429)"}
        if status in (404, 410):
            return {
                "status": status,
                "gone": True,
                "error": f"the endpoint answered {status}: channel disabled",
            }
        return {"status": status, "error": f"answered {status}", "retry_after": retry_after}
    try:
        answer = json.loads(body)
        code = int(answer.get("code", answer.get("errcode", answer.get("StatusCode", -1))))
    except (ValueError, TypeError, AttributeError):
        return {"status": status, "ok": False, "retry": True, "error": "unreadable answer"}
    if code == 0:
        return {"status": status}
    if code in RATE_LIMITED.get(kind, ()):
        return {"status": status, "defer": RATE_LIMIT_WAIT, "error": f"rate limited (code {code})"}
    if code in DEAD.get(kind, ()):
        return {"status": status, "ok": False, "gone": True, "error": f"robot no longer exists (code {code})"}
    return {
        "status": status,
        "ok": False,
        "retry": False,
        "error": f"robot refused the message (code {code})",
    }


async def load(session: AsyncSession, deliveries: list[PushDelivery], at: datetime) -> dict[int, Any]:
    """Each delivery's channel, and when that channel may send again (PER_MINUTE in the last minute)."""
    ids = {d.channel_id for d in deliveries if d.channel_id is not None}
    channels = {
        c.id: c for c in (await session.execute(select(Channel).where(Channel.id.in_(ids)))).scalars()
    }
    recent = (
        await session.execute(
            select(PushDelivery.channel_id, PushDelivery.sent_at)
            .where(PushDelivery.channel_id.in_(ids), PushDelivery.sent_at > at - timedelta(minutes=1))
            .distinct()
            .order_by(PushDelivery.sent_at)
        )
    ).all()
    free_at: dict[int, datetime] = {}
    for channel_id in ids:
        times = [t for c, t in recent if c == channel_id and t is not None]
        if len(times) >= PER_MINUTE:
            free_at[channel_id] = times[-PER_MINUTE] + timedelta(minutes=1)
    return {
        d.id: (channels.get(d.channel_id), free_at.get(d.channel_id, at), at)
        for d in deliveries
        if d.channel_id is not None
    }


async def send(state: Any, items: list[Item]) -> dict[str, Any]:
    if items[0].context is None:
        return {"status": None, "gone": True, "error": "channel removed"}
    channel, free_at, at = items[0].context
    if channel is None or channel.state != "active":
        return {"status": None, "gone": True, "error": "channel removed or disabled"}
    if free_at > at:
        wait = (free_at - at).total_seconds()
        return {
            "status": None,
            "defer": wait,
            "error": f"held back: {PER_MINUTE} messages in the last minute",
        }
    text, mobiles = render(channel.kind, state.settings, items)
    # The providers check these timestamps against real time (about an hour's window): the wall clock, not the
    # app's (a test's manual clock).
    url, body, headers = request_for(channel, text, mobiles, items, time.time())
    try:
        reply = await state.outbound.post(url, data=body, headers=headers, read_body=READ_BODY)
    except Exception as exc:
        return {
            "status": None,
            "error": outbound.describe(exc),
            "permanent": outbound.refusal(exc) is not None,
        }
    return interpret(channel.kind, reply.status, reply.body, reply.headers.get("Retry-After"))


async def gone(session: AsyncSession, item: Item) -> None:
    """The provider said this robot is gone: stop trying it (an admin saves it again once fixed)."""
    if item.delivery.channel_id is None:
        return
    await session.execute(update(Channel).where(Channel.id == item.delivery.channel_id).values(state="dead"))
    await session.execute(
        update(PushDelivery)
        .where(
            PushDelivery.channel_id == item.delivery.channel_id, PushDelivery.state.in_(("pending", "failed"))
        )
        .values(state="gone", next_attempt_at=None)
    )


def _group(delivery: PushDelivery) -> Any:
    return delivery.channel_id


TRANSPORT = Transport(send=send, load=load, group=_group, gone=gone)
