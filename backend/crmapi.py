"""The preview of the exact request for a sample record (admins, before switching the connector on), and the
CRM push as leads use it: push records (picked, or all pending re-entry of an incident) or see what a push
would send (dry run: nothing is stored or sent), and follow the deliveries with their outcomes. The same
`push_records` serves `python -m backend crm push`."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Router, get, post
from litestar.params import Parameter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from . import clock, crm, crmmap, crmpush, documents, outbound
from .auth import CurrentUser, Site, User, requires, site_names
from .crmpush import CrmDelivery
from .db import get_for_site
from .errors import Problem
from .records import Record
from .timeline import add_event

Req = Request[CurrentUser, str, Any]
DRY_RUN_SHOWN = 200  # requests a dry run spells out in full; the rest are counted


async def sample_facts(
    session: AsyncSession, site_id: int, site_slug: str, form: str, record_id: uuid.UUID | None, at: datetime
) -> tuple[dict[str, Any], bool]:
    """The facts of the given record, else the site's newest record of the form, else one made up from the
    form's definition; and whether it was made up."""
    if record_id is not None:
        record: Record | None = await get_for_site(session, Record, record_id, site_id, "record")
    else:
        record = (
            await session.execute(
                select(Record)
                .where(Record.site_id == site_id, Record.form == form)
                .order_by(Record.seq.desc())
                .limit(1)
            )
        ).scalar_one_or_none()
    if record is not None:
        agent = await session.get(User, record.agent_id)
        return crm.facts(record, agent.display_name if agent else None, site_slug), False
    document = await documents.get_document(session, site_id, "form", form)
    if document is None:
        raise Problem(404, f"No form {form!r} at your site.", errors={"form": "unknown"})
    made_up = Record(
        id=uuid.UUID(int=0),
        rev=1,
        form=form,
        form_version=document.version,
        receipt="R-SAMPLE",
        captured_at=at,
        received_at=at,
        incident_id=None,
        source="device",
        sheet_id=None,
        sheet_row=None,
        crm_ref=None,
        data=crmmap.sample_data(document.definition, at),
    )
    return crm.facts(made_up, "坐席 Agent", site_slug), True


class PreviewIn(msgspec.Struct, forbid_unknown_fields=True):
    form: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "call-record"
    record_id: uuid.UUID | None = None
    connector: crm.ConnectorIn | None = None  # a draft not saved yet; None: the stored one


async def preview_request(
    session: AsyncSession,
    site_id: int,
    data: PreviewIn,
    *,
    secret_key: str,
    rules: outbound.Rules,
    at: datetime,
) -> dict[str, Any]:
    """The exact request the connector (stored, or the draft) would send for a sample record; secrets masked."""
    stored = await crm.get_connector(session, site_id)
    if data.connector is not None:
        if errors := crm.check_connector(data.connector, rules, stored):
            raise Problem(422, "This CRM connector cannot be used.", errors=errors)
        draft = data.connector
        connector = crm.CrmConnector(
            site_id=site_id,
            url=draft.url,
            auth=draft.auth,
            header_name=draft.header_name,
            mapping=draft.mapping,
            ref_path=draft.ref_path,
        )
        secret = draft.secret
        if secret is None and stored is not None and stored.auth == draft.auth:
            secret = _readable(secret_key, stored.secret)
    elif stored is not None:
        connector, secret = stored, _readable(secret_key, stored.secret)
    else:
        raise Problem(404, "This site has no CRM connector yet.")
    site = await session.get(Site, site_id)
    assert site is not None
    record_facts, made_up = await sample_facts(session, site_id, site.slug, data.form, data.record_id, at)
    headers, _raw, body = crm.build_request(
        connector, secret, record_facts, site.time_zone, int(at.timestamp())
    )
    return {
        "method": "POST",
        "url": connector.url,
        "headers": crm.masked(connector, headers, secret),
        "body": body,
        "record": {
            "id": record_facts["id"],
            "rev": record_facts["rev"],
            "form": data.form,
            "sample": made_up,
        },
        "ref_path": connector.ref_path,
    }


def _readable(secret_key: str, token: str | None) -> str | None:
    try:
        return crm.unseal(secret_key, token)
    except ValueError as exc:
        raise Problem(409, str(exc), errors={"secret": "unreadable"}) from exc


@post(
    "/api/crm/preview", status_code=200, guards=[requires("admin")], summary="The exact request for a sample"
)
async def preview(request: Req, db: AsyncSession, data: PreviewIn) -> dict[str, Any]:
    state = request.app.state
    return await preview_request(
        db,
        request.user.site_id,
        data,
        secret_key=state.settings.secret_key,
        rules=state.outbound.rules,
        at=await clock.now(request.app, db),
    )


async def changed_records(session: AsyncSession, site_id: int, incident_id: int | None) -> list[Record]:
    """Records the CRM holds at an older rev: flagged for a second push (never re-sent by themselves)."""
    where = [Record.site_id == site_id, Record.crm_rev.is_not(None), Record.rev > Record.crm_rev]
    if incident_id is not None:
        where.append(Record.incident_id == incident_id)
    return list((await session.execute(select(Record).where(*where).order_by(Record.seq))).scalars())


async def push_records(
    session: AsyncSession,
    site_id: int,
    *,
    user_id: int | None,
    record_ids: list[uuid.UUID] | None,
    incident_id: int | None,
    dry_run: bool,
    secret_key: str,
    at: datetime,
) -> dict[str, Any]:
    connector = await crm.get_connector(session, site_id)
    if connector is None:
        raise Problem(409, "This site has no CRM connector: an admin sets one up first.")
    if not dry_run and not connector.enabled:
        raise Problem(409, "The CRM connector is switched off: an admin switches it on after the preview.")
    send, skipped, again = await crmpush.plan(session, site_id, record_ids, incident_id)
    changed = [str(r.id) for r in await changed_records(session, site_id, incident_id)]
    body: dict[str, Any] = {"dry_run": dry_run, "count": len(send), "skipped": skipped, "changed": changed}
    if dry_run:
        site = await session.get(Site, site_id)
        assert site is not None
        try:
            secret = crm.unseal(secret_key, connector.secret)
        except ValueError as exc:
            raise Problem(409, str(exc), errors={"secret": "unreadable"}) from exc
        names = await site_names(session, site_id)
        shown = []
        for record in send[:DRY_RUN_SHOWN]:
            facts = crm.facts(record, names.get(record.agent_id), site.slug)
            headers, _data, request_body = crm.build_request(
                connector, secret, facts, site.time_zone, int(at.timestamp())
            )
            shown.append(
                {
                    "record_id": str(record.id),
                    "rev": record.rev,
                    "summary": summary(record),
                    "method": "POST",
                    "url": connector.url,
                    "headers": crm.masked(connector, headers, secret),
                    "body": request_body,
                }
            )
        body["would_send"] = shown
        return body
    await crmpush.enqueue(session, send, again, user_id, at)
    if incident_id is not None and send:
        await add_event(
            session, incident_id, "crm_pushed", user_id, {"queued": len(send), "skipped": len(skipped)}, at=at
        )
    body["queued"] = [str(r.id) for r in send]
    return body


class PushIn(msgspec.Struct, forbid_unknown_fields=True):
    records: Annotated[list[uuid.UUID], msgspec.Meta(min_length=1, max_length=1000)] | None = None
    incident_id: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None
    dry_run: bool = False


@post(
    "/api/crm/push",
    status_code=200,
    guards=[requires("lead")],
    summary="Send records to the CRM (picked, or all pending of an incident); dry_run shows what would go",
)
async def push(request: Req, db: AsyncSession, data: PushIn) -> dict[str, Any]:
    return await push_records(
        db,
        request.user.site_id,
        user_id=request.user.id,
        record_ids=data.records,
        incident_id=data.incident_id,
        dry_run=data.dry_run,
        secret_key=request.app.state.settings.secret_key,
        at=await clock.now(request.app, db),
    )


def summary(record: Record | None) -> str:
    data = (record.data if record is not None else None) or {}
    return " · ".join(str(v) for v in (data.get("caller_name"), data.get("phone")) if v)


def delivery_out(d: CrmDelivery, record: Record | None) -> dict[str, Any]:
    return {
        "id": d.id,
        "record_id": str(d.record_id),
        "rev": d.rev,
        "incident_id": d.incident_id,
        "idempotency_key": d.idempotency_key,
        "state": d.state,
        "gave_up": crmpush.gave_up(d),
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "next_attempt_at": d.next_attempt_at,
        "crm_ref": d.crm_ref,
        "sent_at": d.sent_at,
        "created_at": d.created_at,
        "summary": summary(record),
        "reason": crmpush.crm_reason(d.last_error, d.last_status),
        "record_rev": record.rev if record is not None else None,
    }


@get(
    "/api/crm/deliveries",
    guards=[requires("lead")],
    summary="CRM deliveries and their outcomes (newest first)",
)
async def deliveries(
    request: Req,
    db: AsyncSession,
    incident_id: Annotated[int | None, Parameter(ge=1, le=2**31 - 1)] = None,
    state_: Annotated[
        Literal["pending", "sending", "sent", "failed", "superseded"] | None, Parameter(query="state")
    ] = None,
    limit: Annotated[int, Parameter(ge=1, le=1000)] = 200,
) -> dict[str, Any]:
    site_id = request.user.site_id
    query = (
        select(CrmDelivery, Record)
        .outerjoin(Record, Record.id == CrmDelivery.record_id)
        .where(CrmDelivery.site_id == site_id)
    )
    if incident_id is not None:
        query = query.where(CrmDelivery.incident_id == incident_id)
    if state_ is not None:
        query = query.where(CrmDelivery.state == state_)
    rows = (await db.execute(query.order_by(CrmDelivery.id.desc()).limit(limit))).all()
    changed = await changed_records(db, site_id, incident_id)
    connector = await crm.get_connector(db, site_id)
    return {
        "connector": {"configured": connector is not None, "enabled": bool(connector and connector.enabled)},
        "items": [delivery_out(d, r) for d, r in rows],
        "changed": [
            {"record_id": str(r.id), "rev": r.rev, "crm_rev": r.crm_rev, "crm_ref": r.crm_ref}
            for r in changed
        ],
    }


router = Router(path="/", route_handlers=[preview, push, deliveries], tags=["crm"])
