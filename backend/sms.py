"""SMS, the transport: Aliyun SMS (阿里云短信服务) SendSms through its documented signed RPC API (signature
version 1.0, HMAC-SHA1 over the sorted, percent-encoded parameters), POSTed to OUTAGE_SMS_ENDPOINT
(https://dysmsapi.aliyuncs.com/ by default; tests point it at a loopback stand-in) through the outbound rules.

A mainland SMS must use an approved signature (OUTAGE_SMS_SIGN_NAME) and template (OUTAGE_SMS_TEMPLATE); the
template gets the variables ${title} (the alert, shortened) and ${link} (the personal acknowledge link).
Answers: {"Code": "OK"} sent; isv.BUSINESS_LIMIT_CONTROL (the per-number limit) waits and tries again; a bad
number or a bad key/signature/template is given up at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any
from urllib.parse import quote, urlencode

from . import acklinks, outbound
from .bots import link_of
from .outbox import Item, Transport

READ_BODY = 4096
TITLE_CHARS = 30  # Aliyun caps a template variable's length
LIMITED = {"isv.BUSINESS_LIMIT_CONTROL", "Throttling.User", "isv.DAY_LIMIT_CONTROL"}


def _encode(value: str) -> str:
    """Aliyun's percent-encoding: RFC 3986 (space as %20, ~ kept)."""
    return quote(value, safe="~")


def signature(params: dict[str, str], secret: str, method: str = "POST") -> str:
    canonical = "&".join(f"{_encode(k)}={_encode(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{_encode('/')}&{_encode(canonical)}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


def number_of(mobile: str) -> str:
    """Aliyun wants a mainland number as its 11 digits, others with their country code."""
    digits = "".join(c for c in mobile if c.isdigit())
    return digits[2:] if digits.startswith("86") and len(digits) == 13 else digits


def params_for(settings: Any, item: Item, now: float) -> dict[str, str]:
    message = item.delivery.message or {}
    ack = message.get("ack")
    link = acklinks.url_for(settings, ack) if ack else link_of(settings, message, item.delivery.incident_id)
    title = message.get("title", {}).get("zh-CN", "")
    params = {
        "AccessKeyId": settings.sms_access_key_id,
        "Action": "SendSms",
        "Format": "JSON",
        "PhoneNumbers": number_of(item.delivery.address or ""),
        "RegionId": "cn-hangzhou",
        "SignName": settings.sms_sign_name,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": uuid.uuid4().hex,
        "SignatureVersion": "1.0",
        "TemplateCode": settings.sms_template,
        "TemplateParam": json.dumps({"title": title[:TITLE_CHARS], "link": link}, ensure_ascii=False),
        "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "Version": "2017-05-25",
    }
    params["Signature"] = signature(params, settings.sms_access_key_secret)
    return params


async def send(state: Any, items: list[Item]) -> dict[str, Any]:
    (item,) = items
    settings = state.settings
    if not (settings.sms_access_key_id and settings.sms_access_key_secret and settings.sms_template):
        return {"status": None, "error": "SMS is not set up on this server", "permanent": True}
    # Aliyun checks the timestamp against real time: the wall clock, not the app's.
    body = urlencode(params_for(settings, item, time.time())).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    try:
        reply = await state.outbound.post(
            settings.sms_endpoint, data=body, headers=headers, read_body=READ_BODY
        )
    except Exception as exc:
        return {
            "status": None,
            "error": outbound.describe(exc),
            "permanent": outbound.refusal(exc) is not None,
        }
    try:
        code = str(json.loads(reply.body).get("Code", ""))
    except (ValueError, AttributeError):
        code = ""
    if reply.status == 200 and code == "OK":
        return {"status": 200}
    if code in LIMITED:
        return {"status": reply.status, "defer": 60.0, "error": f"SMS rate limited ({code})"}
    if reply.status >= 500 or not code:
        return {
            "status": reply.status,
            "ok": False,
            "retry": True,
            "error": f"SMS service answered {reply.status}",
        }
    return {"status": reply.status, "ok": False, "retry": False, "error": f"SMS refused ({code[:60]})"}


TRANSPORT = Transport(send=send)
