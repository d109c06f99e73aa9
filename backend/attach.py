"""Records belong to their incident. The device attaches the incident it knows is open (it caches the site's
open incidents); when it knew none, the record hook `on_records_stored` attaches a record whose call happened
during exactly one incident of its site (declared, not yet resolved at that time), drills included. A record
with two or more candidates stays unattached and is listed for the leads (`GET /api/records/unattached`), who
attach or detach records afterwards (`POST /api/incidents/{id}/records`): on the timeline and in the audit log.

The call's time is the record's `called_at` (paper rows are typed in after recovery, so their capture time says
nothing), else when the device captured it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, post
from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from . import audit, clock
from .auth import CurrentUser, requires
from .callbacks import Callback, announce
from .clock import parse_time
from .incidents import Incident, get_incident_at_site
from .records import Record, record_out
from .timeline import add_event

Req = Request[CurrentUser, str, Any]


def call_time(record: Any) -> datetime:
    """When the call happened: the form's `called_at`, else the device's capture time."""
    return parse_time((record.data or {}).get("called_at")) or record.captured_at


def candidates(incidents: list[Incident], at: datetime) -> list[Incident]:
    """The incidents running at `at`: declared at or before it and not resolved by then."""
    return [i for i in incidents if i.declared_at <= at and (i.resolved_at is None or at < i.resolved_at)]


async def _site_incidents(session: AsyncSession, site_id: int, since: datetime) -> list[Incident]:
    return list(
        (
            await session.execute(
                select(Incident).where(
                    Incident.site_id == site_id,
                    or_(Incident.resolved_at.is_(None), Incident.resolved_at > since),
                )
            )
        ).scalars()
    )


async def _set_incident(
    session: AsyncSession, site_id: int, ids: list[uuid.UUID], incident_id: int | None
) -> None:
    """Records and their callbacks point at the same incident."""
    if not ids:
        return
    for model, key in ((Record, Record.id), (Callback, Callback.record_id)):
        await session.execute(
            update(model)
            .where(key.in_(ids), model.site_id == site_id)
            .values(incident_id=incident_id)
            .execution_options(synchronize_session="fetch")
        )


async def on_records_stored(session: AsyncSession, stored: list[tuple[Any, str]], now: datetime) -> None:
    """Record hook (same transaction, once per batch, before the callbacks hook so callbacks inherit the
    incident): attach each record that names no incident to the one incident running when the call happened."""
    loose = [record for record, _ in stored if record.incident_id is None]
    if not loose:
        return
    by_site: dict[int, list[Any]] = {}
    for record in loose:
        by_site.setdefault(record.site_id, []).append(record)
    for site_id, records in by_site.items():
        incidents = await _site_incidents(session, site_id, min(call_time(r) for r in records))
        if not incidents:
            continue
        attach: dict[int, list[uuid.UUID]] = {}
        for record in records:
            running = candidates(incidents, call_time(record))
            if len(running) == 1:
                record.incident_id = running[0].id  # the hooks after this one see it too
                attach.setdefault(running[0].id, []).append(record.id)
        for incident_id, ids in attach.items():
            await _set_incident(session, site_id, ids, incident_id)


# ---------------------------------------------------------------- the leads' view


@get(
    "/api/records/unattached",
    guards=[requires("lead")],
    summary="Records of no incident whose call happened while incidents were running, with the candidates (lead+)",
)
async def unattached(request: Req, db: AsyncSession) -> dict[str, Any]:
    user = request.user
    incidents = list((await db.execute(select(Incident).where(Incident.site_id == user.site_id))).scalars())
    if not incidents:
        return {"items": []}
    earliest = min(i.declared_at for i in incidents)
    rows = (
        (
            await db.execute(
                select(Record)
                .where(Record.site_id == user.site_id, Record.incident_id.is_(None))
                .order_by(Record.captured_at.desc())
                .limit(2000)
            )
        )
        .scalars()
        .all()
    )
    items = []
    for record in rows:
        at = call_time(record)
        if at < earliest:
            continue
        running = candidates(incidents, at)
        if running:
            items.append(
                {
                    "record": record_out(record),
                    "called_at": at,
                    "candidates": [
                        {"id": i.id, "title": i.title, "drill": i.drill, "status": i.status} for i in running
                    ],
                }
            )
    return {"items": items}


class AttachIn(msgspec.Struct, forbid_unknown_fields=True):
    attach: Annotated[list[uuid.UUID], msgspec.Meta(max_length=1000)] = []
    detach: Annotated[list[uuid.UUID], msgspec.Meta(max_length=1000)] = []


@post(
    "/api/incidents/{incident_id:int}/records",
    status_code=200,
    guards=[requires("lead")],
    summary="Attach records to this incident or detach them from it (lead+); lands on the timeline",
)
async def attach_records(request: Req, db: AsyncSession, incident_id: int, data: AttachIn) -> dict[str, Any]:
    user = request.user
    incident = await get_incident_at_site(db, user, incident_id)
    at = await clock.now(request.app, db)
    wanted = set(data.attach) | set(data.detach)
    found = {
        r.id: r
        for r in (
            await db.execute(select(Record).where(Record.id.in_(wanted), Record.site_id == user.site_id))
        ).scalars()
    }
    errors = {str(i): "no such record at your site" for i in wanted if i not in found}
    errors.update({str(i): "both attached and detached" for i in set(data.attach) & set(data.detach)})
    attach = [
        i for i in data.attach if i in found and str(i) not in errors and found[i].incident_id != incident.id
    ]
    detach = [
        i for i in data.detach if i in found and str(i) not in errors and found[i].incident_id == incident.id
    ]
    before = {str(i): found[i].incident_id for i in attach + detach}
    await _set_incident(db, user.site_id, attach, incident.id)
    await _set_incident(db, user.site_id, detach, None)
    for kind, ids in (("records_attached", attach), ("records_detached", detach)):
        if ids:
            await add_event(db, incident.id, kind, user.id, {"records": [str(i) for i in ids]}, at=at)
    if attach or detach:
        await audit.record(
            db,
            site_id=user.site_id,
            actor=user,
            action="incident.records",
            target=f"incident:{incident.id}",
            at=at,
            before=before,
            after={str(i): incident.id for i in attach} | {str(i): None for i in detach},
        )
        for callback in (
            await db.execute(select(Callback).where(Callback.record_id.in_(attach + detach)))
        ).scalars():
            await announce(db, callback, "callback.updated")
    return {"attached": [str(i) for i in attach], "detached": [str(i) for i in detach], "errors": errors}


router = Router(path="/", route_handlers=[unattached, attach_records], tags=["records"])
