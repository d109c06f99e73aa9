"""CRM re-entry: after recovery each manual record is either typed into the CRM (marked re-entered, with the
CRM's reference) or closed. Leads mark one or many at once, see what is left, and export the records as CSV
(UTF-8 with BOM, bilingual headers, for Excel) or JSON by incident / status / form / date range.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.params import Parameter
from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from . import clock, documents
from .auth import CurrentUser, requires, site_names
from .callbacks import CALLBACK_FORM, IncidentRef
from .changes import add_personal_change
from .clock import parse_time
from .errors import Problem
from .records import Record

Req = Request[CurrentUser, str, Any]


# ---------------------------------------------------------------- CRM re-entry


class ReentryItem(msgspec.Struct, forbid_unknown_fields=True):
    id: uuid.UUID
    crm_ref: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None


class ReentryIn(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["reentered", "closed", "pending"]
    records: Annotated[list[ReentryItem], msgspec.Meta(min_length=1, max_length=1000)]
    crm_ref: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] | None = None  # one ref for all


@post(
    "/api/recovery/reentry",
    status_code=200,
    guards=[requires("lead")],
    summary="Mark records re-entered into the CRM (with its reference), closed, or back to pending (lead+)",
)
async def mark_reentry(request: Req, db: AsyncSession, data: ReentryIn) -> dict[str, Any]:
    user = request.user
    now = await clock.now(request.app, db)
    ids = [item.id for item in data.records]
    found = {
        r.id: r
        for r in (
            await db.execute(select(Record).where(Record.id.in_(ids), Record.site_id == user.site_id))
        ).scalars()
    }
    errors: dict[str, str] = {}
    updated = []
    for item in data.records:
        record = found.get(item.id)
        crm_ref = item.crm_ref or data.crm_ref
        if record is None:
            errors[str(item.id)] = "no such record at your site"
            continue
        if data.status == "reentered" and not crm_ref:
            errors[str(item.id)] = "a re-entered record needs the CRM reference"
            continue
        record.reentry_status = data.status
        record.crm_ref = None if data.status == "pending" else crm_ref
        record.reentered_by = None if data.status == "pending" else user.id
        record.reentered_at = None if data.status == "pending" else now
        record.crm_rev = None  # a mark by hand: whatever the CRM connector sent is not what counts now
        await add_personal_change(
            db,
            user.site_id,
            "record.status",
            str(record.id),
            {"id": str(record.id), "reentry_status": record.reentry_status, "crm_ref": record.crm_ref},
            {record.agent_id},
        )
        updated.append(str(record.id))
    body = {"updated": updated, "errors": errors, "counts": await reentry_counts(db, user.site_id)}
    if errors and not updated:
        raise Problem(
            422, "None of these records could be marked.", errors=errors, code="reentry.none_marked"
        )
    return body


async def reentry_counts(
    session: AsyncSession, site_id: int, incident_id: int | None = None, form: str | None = None
) -> dict[str, Any]:
    where = [Record.site_id == site_id]
    if incident_id is not None:
        where.append(Record.incident_id == incident_id)
    if form is not None:
        where.append(Record.form == form)
    rows = (
        await session.execute(
            select(Record.form, Record.reentry_status, func.count())
            .where(*where)
            .group_by(Record.form, Record.reentry_status)
        )
    ).all()
    counts = {"pending": 0, "reentered": 0, "closed": 0}
    by_form: dict[str, dict[str, int]] = {}
    for form, status, n in rows:
        counts[status] = counts.get(status, 0) + n
        by_form.setdefault(form, {"pending": 0, "reentered": 0, "closed": 0})[status] = n
    # Re-entered through the CRM connector count like marks by hand; these say how many went that way, and
    # how many changed after the CRM got them (flagged for a second push).
    via_crm, changed = (
        await session.execute(
            select(
                func.count(Record.crm_rev),
                func.coalesce(func.sum(case((Record.rev > Record.crm_rev, 1), else_=0)), 0),
            ).where(*where, Record.reentry_status == "reentered")
        )
    ).one()
    return {
        **counts,
        "total": sum(counts.values()),
        "by_form": by_form,
        "via_crm": via_crm,
        "crm_changed": changed,
    }


@get(
    "/api/recovery/counts",
    guards=[requires("lead")],
    summary="What is still to re-enter (?incident_id=, ?form=: the same filters as the list)",
)
async def counts(
    request: Req, db: AsyncSession, incident_id: IncidentRef = None, form: str | None = None
) -> dict[str, Any]:
    return await reentry_counts(db, request.user.site_id, incident_id, form)


async def _export_rows(
    db: AsyncSession,
    user: CurrentUser,
    form: str | None,
    incident_id: int | None,
    status: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[Record]:
    where = [Record.site_id == user.site_id]
    for column, value in (
        (Record.form, form),
        (Record.incident_id, incident_id),
        (Record.reentry_status, status),
    ):
        if value is not None:
            where.append(column == value)
    for name, bound in (("since", since), ("until", until)):
        if bound is not None and bound.tzinfo is None:
            raise Problem(
                400,
                f"{name} needs a timezone, e.g. 2026-11-23T08:00:00+08:00",
                errors={name: "naive"},
                code="validation.naive_time",
            )
    if since is not None:
        where.append(Record.captured_at >= since)
    if until is not None:
        where.append(Record.captured_at < until)
    return list(
        (await db.execute(select(Record).where(*where).order_by(Record.captured_at, Record.id))).scalars()
    )


ExportStatus = Literal["pending", "reentered", "closed"] | None
Since = Annotated[datetime | None, Parameter(description="captured at or after (ISO 8601)")]
Until = Annotated[datetime | None, Parameter(description="captured before (ISO 8601)")]
META = [
    ("id", "记录编号", "Record ID"),
    ("receipt", "回执", "Receipt"),
    ("source", "来源", "Source"),
    ("sheet_id", "纸表编号", "Sheet ID"),
    ("sheet_row", "纸表行号", "Sheet row"),
    ("agent", "坐席", "Agent"),
    ("captured_at", "记录时间", "Captured at"),
    ("received_at", "服务器收到", "Received at"),
    ("incident_id", "事件", "Incident"),
    ("reentry_status", "录入状态", "Re-entry status"),
    ("crm_ref", "系统单号", "CRM reference"),
    ("reentered_by", "录入人", "Re-entered by"),
    ("reentered_at", "录入时间", "Re-entered at"),
]
STATUS_TEXT = {"pending": "待录入 pending", "reentered": "已录入 re-entered", "closed": "已关闭 closed"}


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # what Excel and WPS would run as a formula (CSV injection)
NUMBER_LIKE = re.compile(r"^[\d\s().+\-/]+$")  # Excel/WPS would read it as a number or a date
SHEET_TIME = "%Y-%m-%d %H:%M:%S"  # what Excel and WPS read as a real date-time


def csv_safe(text: Any) -> str:
    """A cell as text that a spreadsheet shows and never evaluates: one leading apostrophe (which Excel and
    WPS take as "this is text") before anything that would start a formula."""
    text = "" if text is None else str(text)
    return "'" + text if text.startswith(FORMULA_START) else text


def as_text(text: str) -> str:
    """A value that must stay text (a phone number, an id): an apostrophe before anything Excel would turn
    into a number ("13712345678" -> 1.37E+10, "010-8888" -> a date) or a formula ("+86 137…")."""
    return "'" + text if text and (text.startswith(FORMULA_START) or NUMBER_LIKE.match(text)) else text


def sheet_time(value: datetime | str | None, zone: ZoneInfo) -> str:
    """A time as the site's wall clock, 2026-11-20 10:00:00: a real date-time in Excel and WPS, one zone for
    the whole file."""
    moment = parse_time(value) if isinstance(value, str) else value
    return moment.astimezone(zone).strftime(SHEET_TIME) if moment else ""


def applies(field: dict[str, Any], data: dict[str, Any]) -> bool:
    """A field that only applies under a condition (e.g. "call back by" when a callback was promised)."""
    return all(data.get(other) == want for other, want in (field.get("required_if") or {}).items())


def _cell(field: dict[str, Any], data: dict[str, Any], zone: ZoneInfo) -> str:
    """What a person re-typing into the CRM wants to see: labels, not codes; empty where it does not apply."""
    value = data.get(field["name"])
    if value is None or value == "" or not applies(field, data):
        return ""
    kind = field.get("type")
    if kind == "boolean":
        return "是 Yes" if value else "否 No"
    if kind == "choice":
        for choice in field.get("choices") or []:
            if choice["value"] == value:
                return f"{choice['label']['zh-CN']} {choice['label']['en']}"
    if kind in ("datetime", "date") and isinstance(value, str) and parse_time(value):
        return sheet_time(value, zone) if kind == "datetime" else value
    if kind == "tel":
        return as_text(str(value))
    return csv_safe(value)


@get(
    "/api/recovery/export.csv",
    guards=[requires("lead")],
    summary="One form's records as CSV (UTF-8 with BOM; bilingual headers) by incident / status / date range",
)
async def export_csv(
    request: Req,
    db: AsyncSession,
    form: str = CALLBACK_FORM,
    incident_id: IncidentRef = None,
    status: ExportStatus = None,
    since: Since = None,
    until: Until = None,
) -> Response[bytes]:
    user = request.user
    document = await documents.get_document(db, user.site_id, "form", form)
    if document is None:
        raise Problem(404, f"No form {form!r} at your site.", errors={"form": "unknown"}, code="form.unknown")
    fields = document.definition["fields"]
    records = await _export_rows(db, user, form, incident_id, status, since, until)
    # Columns follow the newest version; fields only older versions had come after them.
    known = {f["name"] for f in fields}
    for record in records:
        if record.form_version != document.version:
            old = await documents.get_document(db, user.site_id, "form", form, record.form_version)
            for f in old.definition["fields"] if old else []:
                if f["name"] not in known:
                    known.add(f["name"])
                    fields = [*fields, f]
    names = await site_names(db, user.site_id)
    zone = ZoneInfo(user.site_time_zone)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [csv_safe(f"{f['label']['zh-CN']} {f['label']['en']}") for f in fields]
        + [f"{zh} {en}" for _, zh, en in META]
    )
    for r in records:
        meta = {
            "id": str(r.id),
            "receipt": r.receipt,
            "source": r.source,
            "sheet_id": as_text(r.sheet_id or ""),
            "sheet_row": r.sheet_row or "",
            "agent": csv_safe(names.get(r.agent_id, r.agent_id)),
            "captured_at": sheet_time(r.captured_at, zone),
            "received_at": sheet_time(r.received_at, zone),
            "incident_id": r.incident_id or "",
            "reentry_status": STATUS_TEXT.get(r.reentry_status, r.reentry_status),
            "crm_ref": as_text(r.crm_ref or ""),
            "reentered_by": csv_safe(names.get(r.reentered_by, "")) if r.reentered_by else "",
            "reentered_at": sheet_time(r.reentered_at, zone),
        }
        writer.writerow([_cell(f, r.data or {}, zone) for f in fields] + [meta[k] for k, _, _ in META])
    # Dated in the site's time zone, so a day's exports do not overwrite each other in Downloads.
    stamp = (await clock.now(request.app, db)).astimezone(zone).strftime("%Y%m%d-%H%M")
    filename = f"{form}-records-{stamp}.csv"
    return Response(
        b"\xef\xbb\xbf" + out.getvalue().encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@get(
    "/api/recovery/export.json",
    guards=[requires("lead")],
    summary="Records as JSON (raw values plus re-entry state) by form / incident / status / date range",
)
async def export_json(
    request: Req,
    db: AsyncSession,
    form: str | None = None,
    incident_id: IncidentRef = None,
    status: ExportStatus = None,
    since: Since = None,
    until: Until = None,
) -> Response[bytes]:
    user = request.user
    records = await _export_rows(db, user, form, incident_id, status, since, until)
    names = await site_names(db, user.site_id)
    body = {
        "site": user.site_slug,
        "exported_at": (await clock.now(request.app, db)).isoformat(),
        "filters": {
            "form": form,
            "incident_id": incident_id,
            "status": status,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        },
        "records": [
            {
                "id": str(r.id),
                "form": r.form,
                "form_version": r.form_version,
                "rev": r.rev,
                "data": r.data,
                "incident_id": r.incident_id,
                "agent": {"id": r.agent_id, "name": names.get(r.agent_id)},
                "source": r.source,
                "sheet_id": r.sheet_id,
                "sheet_row": r.sheet_row,
                "captured_at": r.captured_at.isoformat(),
                "received_at": r.received_at.isoformat(),
                "receipt": r.receipt,
                "reentry_status": r.reentry_status,
                "crm_ref": r.crm_ref,
                "reentered_by": r.reentered_by,
                "reentered_at": r.reentered_at.isoformat() if r.reentered_at else None,
            }
            for r in records
        ],
    }
    stamp = (
        (await clock.now(request.app, db)).astimezone(ZoneInfo(user.site_time_zone)).strftime("%Y%m%d-%H%M")
    )
    return Response(
        msgspec.json.encode(body),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="records-{stamp}.json"'},
    )


router = Router(path="/", route_handlers=[mark_reentry, counts, export_csv, export_json], tags=["reentry"])
