"""The CRM connector of a site: where re-entered records go (an https endpoint on a public address, under the
outbound rules), how to authenticate (a bearer token, one header, or HMAC signing), how each form's record maps
to the CRM's JSON (backend.crmmap) and where the CRM's answer holds its reference. Admins set it up in the app
or with `python -m backend crm set`, and preview the exact request for a sample record before switching it on.

Secrets (the token, the header's value, the HMAC key) are stored encrypted (Fernet, keyed from the app's secret
key), never returned by the API, never in the audit log, and left out of `export`: a backup or an export never
holds them in clear. Changing OUTAGE_SECRET_KEY makes them unreadable: set the connector again.

HMAC signing: `X-OD-Timestamp: <unix seconds>` and `<header name, default X-OD-Signature>: sha256=<hex of
HMAC-SHA256(key, "<timestamp>." + body)>`. Every request carries `Idempotency-Key: outage-desk:<record id>:<rev>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from litestar import Request, Router, get, put
from sqlalchemy import JSON, Boolean, ForeignKey, String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import audit, clock, crmmap, outbound
from .auth import CurrentUser, requires
from .db import Base, UTCDateTime, has_nul
from .errors import Problem
from .records import Record

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

Req = Request[CurrentUser, str, Any]
AUTH_KINDS = ("none", "bearer", "header", "hmac")
SIGNATURE_HEADER = "X-OD-Signature"
RESERVED_HEADERS = {
    "host",
    "content-length",
    "content-type",
    "idempotency-key",
    "transfer-encoding",
    "connection",
}
HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"  # an HTTP token (RFC 9110)


class CrmConnector(Base):
    __tablename__ = "crm_connectors"
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(String(1000))
    auth: Mapped[str] = mapped_column(String(8), default="none")
    header_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    secret: Mapped[str | None] = mapped_column(String(4000), nullable=True)  # Fernet token, never clear text
    mapping: Mapped[dict] = mapped_column(JSON, default=dict)
    ref_path: Mapped[str] = mapped_column(String(200), default="$.id")
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


# ---------------------------------------------------------------- secrets at rest


def _fernet(secret_key: str) -> Fernet:
    # cryptography imported here: a server without a CRM connector never loads it for this (see push.py).
    from cryptography.fernet import Fernet
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"outage-desk crm secrets").derive(
        secret_key.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def seal(secret_key: str, value: str) -> str:
    return _fernet(secret_key).encrypt(value.encode()).decode()


def unseal(secret_key: str, token: str | None) -> str | None:
    """The clear secret, or None when there is none; ValueError when it cannot be read (the key changed)."""
    if not token:
        return None
    from cryptography.fernet import InvalidToken

    try:
        return _fernet(secret_key).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError(
            "the stored CRM secret cannot be read (the secret key changed?): set it again"
        ) from exc


# ---------------------------------------------------------------- the request for one record


def idempotency_key(record_id: uuid.UUID | str, rev: int) -> str:
    return f"outage-desk:{record_id}:{rev}"


def facts(record: Record, agent: str | None, site: str) -> dict[str, Any]:
    """What a template may take from a record: META plus its data."""
    return {
        "id": str(record.id),
        "rev": record.rev,
        "form": record.form,
        "form_version": record.form_version,
        "receipt": record.receipt,
        "captured_at": record.captured_at,
        "received_at": record.received_at,
        "incident_id": record.incident_id,
        "agent": agent,
        "source": record.source,
        "sheet_id": record.sheet_id,
        "sheet_row": record.sheet_row,
        "crm_ref": record.crm_ref,
        "site": site,
        "data": record.data or {},
    }


def build_request(
    connector: CrmConnector, secret: str | None, record_facts: dict[str, Any], site_zone: str, unix_time: int
) -> tuple[dict[str, str], bytes, Any]:
    """Headers, body bytes and body for one record: exactly what is sent."""
    body = crmmap.render(
        crmmap.template_for(connector.mapping, record_facts["form"]), record_facts, site_zone
    )
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Accept": "application/json",
        "Idempotency-Key": idempotency_key(record_facts["id"], record_facts["rev"]),
    }
    if connector.auth == "bearer" and secret:
        headers["Authorization"] = f"Bearer {secret}"
    elif connector.auth == "header" and secret and connector.header_name:
        headers[connector.header_name] = secret
    elif connector.auth == "hmac" and secret:
        stamp = str(unix_time)
        digest = hmac.new(secret.encode(), stamp.encode() + b"." + data, hashlib.sha256).hexdigest()
        headers["X-OD-Timestamp"] = stamp
        headers[connector.header_name or SIGNATURE_HEADER] = f"sha256={digest}"
    return headers, data, body


def masked(connector: CrmConnector, headers: dict[str, str], secret: str | None) -> dict[str, str]:
    """Headers for showing: the secret itself replaced by dots and its last 2 characters (signatures stay)."""
    if not secret or connector.auth == "hmac":
        return dict(headers)
    hint = "••••" + (secret[-2:] if len(secret) >= 8 else "")
    return {k: v.replace(secret, hint) for k, v in headers.items()}


# ---------------------------------------------------------------- setting it up


class ConnectorIn(msgspec.Struct, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
    auth: Literal["none", "bearer", "header", "hmac"] = "none"
    header_name: Annotated[str, msgspec.Meta(pattern=HEADER_NAME)] | None = None
    secret: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)] | None = (
        None  # None: keep the stored one
    )
    mapping: dict[str, Any] = msgspec.field(default_factory=dict)
    ref_path: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] = "$.id"
    enabled: bool = False


def describe(connector: CrmConnector | None) -> dict[str, Any]:
    """The connector as the API shows it (and the audit log keeps): never the secret."""
    if connector is None:
        return {"configured": False, "enabled": False}
    return {
        "configured": True,
        "url": connector.url,
        "auth": connector.auth,
        "header_name": connector.header_name,
        "has_secret": bool(connector.secret),
        "mapping": connector.mapping,
        "ref_path": connector.ref_path,
        "enabled": connector.enabled,
        "updated_at": connector.updated_at,
    }


def check_connector(data: ConnectorIn, rules: outbound.Rules, stored: CrmConnector | None) -> dict[str, str]:
    """What is wrong with this set-up, field by field (empty: it can be saved)."""
    errors: dict[str, str] = {}
    try:
        rules.check_url(data.url)
    except outbound.Refused as exc:
        errors["url"] = f"is not an address this server may send to ({exc})"
    if data.header_name and data.header_name.lower() in RESERVED_HEADERS:
        errors["header_name"] = "is set by the server itself"
    if data.auth == "header" and not data.header_name:
        errors["header_name"] = "is needed for header authentication"
    keeps_secret = stored is not None and stored.secret and stored.auth == data.auth
    if data.auth != "none" and not data.secret and not keeps_secret:
        errors["secret"] = f"is needed for {data.auth} authentication"
    if has_nul(data.mapping):
        errors["mapping"] = "holds a NUL character"
    try:
        crmmap.check_mapping(data.mapping)
        if len(msgspec.json.encode(data.mapping)) > crmmap.MAX_TEMPLATE_BYTES:
            errors["mapping"] = "is too big"
    except crmmap.MappingError as exc:
        errors.update({f"mapping.{k}": v for k, v in exc.errors.items()})
    try:
        crmmap.parse_path(data.ref_path)
    except crmmap.MappingError as exc:
        errors.update(exc.errors)
    return errors


async def get_connector(session: AsyncSession, site_id: int) -> CrmConnector | None:
    return await session.get(CrmConnector, site_id)


async def save_connector(
    session: AsyncSession,
    site_id: int,
    data: ConnectorIn,
    *,
    secret_key: str,
    rules: outbound.Rules,
    actor: CurrentUser | str,
    at: datetime,
    errors: dict[str, str] | None = None,
) -> CrmConnector:
    """Validate and store the set-up (422 problem with every error), in the caller's transaction; audited."""
    stored = await get_connector(session, site_id)
    errors = {**check_connector(data, rules, stored), **(errors or {})}
    if errors:
        raise Problem(422, "This CRM connector cannot be saved.", errors=errors, code="crm.invalid")
    before = describe(stored) if stored else None
    if stored is None:
        stored = CrmConnector(site_id=site_id)
        session.add(stored)
    secret = stored.secret if data.secret is None and stored.auth == data.auth else None
    if data.secret is not None:
        secret = seal(secret_key, data.secret)
    stored.url, stored.auth, stored.header_name = data.url, data.auth, data.header_name
    stored.secret = secret if data.auth != "none" else None
    stored.mapping, stored.ref_path, stored.enabled = data.mapping, data.ref_path, data.enabled
    stored.updated_by = actor.id if isinstance(actor, CurrentUser) else None
    stored.updated_at = at
    await session.flush()
    await audit.record(
        session,
        site_id=site_id,
        actor=actor,
        action="crm.connector.set",
        target=f"site:{site_id}",
        at=at,
        before=before,
        after={**describe(stored), "secret_changed": data.secret is not None},
    )
    return stored


# ---------------------------------------------------------------- API


@get("/api/crm/connector", guards=[requires("admin")], summary="My site's CRM connector (never its secret)")
async def read_connector(request: Req, db: AsyncSession) -> dict[str, Any]:
    return describe(await get_connector(db, request.user.site_id))


@put("/api/crm/connector", guards=[requires("admin")], summary="Set up my site's CRM connector (admin)")
async def set_connector(request: Req, db: AsyncSession, data: ConnectorIn) -> dict[str, Any]:
    state = request.app.state
    errors = {}
    try:
        await state.outbound.check(data.url)  # resolves the name now: one pointing inward is refused at once
    except outbound.Refused as exc:
        errors["url"] = f"is not an address this server may send to ({exc})"
    at = await clock.now(request.app, db)
    saved = await save_connector(
        db,
        request.user.site_id,
        data,
        secret_key=state.settings.secret_key,
        rules=state.outbound.rules,
        actor=request.user,
        at=at,
        errors=errors,
    )
    return describe(saved)


router = Router(path="/", route_handlers=[read_connector, set_connector], tags=["crm"])
