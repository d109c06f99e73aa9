"""Email, the transport: one plain-text message per outbox "email" delivery over SMTP (aiosmtplib), to the
server named by OUTAGE_SMTP_URL (`smtp://host:port`, or `smtps://user:pass@host:port` for TLS from the start),
from OUTAGE_SMTP_FROM. Every message about an incident carries the recipient's personal acknowledge link."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib

from . import acklinks
from .bots import link_of
from .outbox import Item, Transport

log = logging.getLogger("outage_desk")
TIMEOUT = 15  # seconds for the whole SMTP conversation


def compose(settings: Any, item: Item) -> EmailMessage:
    message = item.delivery.message or {}
    title, body = message.get("title", {}), message.get("body", {})
    lines = [body.get("zh-CN", ""), ""]
    ack = message.get("ack")
    if ack:
        lines += ["一键确认接手 / Acknowledge with one tap:", acklinks.url_for(settings, ack), ""]
    lines += [
        "在应用中打开 / Open in the app:",
        link_of(settings, message, item.delivery.incident_id),
        "",
        "—",
        body.get("en", ""),
    ]
    email = EmailMessage()
    zh, en = title.get("zh-CN", ""), title.get("en", "")
    email["Subject"] = zh if zh == en else f"{zh} / {en}"
    email["From"] = settings.smtp_from
    email["To"] = item.delivery.address or ""
    email["Message-ID"] = make_msgid(domain="outage-desk")
    email.set_content("\n".join(lines))
    return email


async def send(state: Any, items: list[Item]) -> dict[str, Any]:
    (item,) = items
    settings = state.settings
    if not settings.smtp_url:
        return {
            "status": None,
            "error": "email is not set up on this server (OUTAGE_SMTP_URL)",
            "permanent": True,
        }
    server = urlsplit(settings.smtp_url)
    tls = server.scheme == "smtps"
    try:
        await aiosmtplib.send(
            compose(settings, item),
            hostname=server.hostname,
            port=server.port or (465 if tls else 25),
            username=unquote(server.username) if server.username else None,
            password=unquote(server.password) if server.password else None,
            use_tls=tls,
            start_tls=None if not tls else False,
            timeout=TIMEOUT,
        )
    except aiosmtplib.SMTPRecipientsRefused:
        return {"status": None, "error": "the mail server refused this address", "permanent": True}
    except aiosmtplib.SMTPResponseException as exc:
        return {"status": None, "error": f"mail server answered {exc.code}", "permanent": exc.code >= 500}
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        log.info("email delivery %s: %r", item.delivery.id, exc)
        return {"status": None, "error": "mail server unreachable"}
    return {"status": 250, "ok": True}


TRANSPORT = Transport(send=send)
