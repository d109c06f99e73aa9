"""Post-incident review: the figures of one incident, and the cause and actions written by a lead.

The review is due within 24 hours of resolution (a drill's 24 hours run `time_scale` times faster);
if it has not been written by then, the site's leads and managers get one reminder (the `workers` entry).

How the figures are measured (all from stored times, so a report is the same whenever it is read):
- fault start: the earliest `started_at` on the incident's incident-log records, else the declaration.
- first report: the declaration (it notifies the leads and managers); compared with the 5-minute rule.
- each escalation rung: due, fired, and acknowledged (the incident's acknowledgement, if after the firing).
- outage: fault start to recovery (or resolution); still running when neither happened yet.
- callbacks (cancelled ones aside): promised; made on time (first final outcome at or before the due
  time); late; open (of which overdue).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, put
from sqlalchemy import ForeignKey, Text, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import clock, workers
from .auth import CurrentUser, requires, site_names
from .callbacks import OPEN_STATES, Callback, promised_due
from .clock import parse_time
from .db import Base, UTCDateTime, get_for_site, insert_for
from .errors import Problem
from .incidents import Incident
from .ladder import ladder
from .notifications import notify
from .records import Record
from .reentry import reentry_counts
from .timeline import timeline

Req = Request[CurrentUser, str, Any]

FIRST_REPORT_LIMIT = timedelta(minutes=5)
REVIEW_DUE = timedelta(hours=24)
POLL_SECONDS = 60.0


class IncidentReport(Base):
    __tablename__ = "incident_reports"
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    cause: Mapped[str | None] = mapped_column(Text, nullable=True)
    actions: Mapped[str | None] = mapped_column(Text, nullable=True)
    written_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    written_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # first saved
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reminder_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start and end else None


def review_due(incident: Incident) -> datetime | None:
    if incident.resolved_at is None:
        return None
    return incident.resolved_at + REVIEW_DUE / max(1, incident.time_scale)


async def build_report(session: AsyncSession, incident: Incident, now: datetime) -> dict[str, Any]:
    records = list(
        (
            await session.execute(
                select(Record).where(Record.site_id == incident.site_id, Record.incident_id == incident.id)
            )
        ).scalars()
    )
    starts = [
        t
        for r in records
        if r.form == "incident-log"
        for t in [parse_time((r.data or {}).get("started_at"))]
        if t
    ]
    fault_started = min([incident.declared_at, *starts])
    first_report = _seconds(fault_started, incident.declared_at)

    rungs = []
    for step in await ladder(session, incident.id):
        acked = (
            incident.acknowledged_at
            if step.fired_at and incident.acknowledged_at and incident.acknowledged_at >= step.fired_at
            else None
        )
        rungs.append(
            {
                "rung": step.rung,
                "after_minutes": step.after_minutes,
                "notify": step.notify,
                "message": step.message,
                "status": step.status,
                "due_at": _iso(step.due_at),
                "fired_at": _iso(step.fired_at),
                "acked_at": _iso(acked),
                "seconds_fire_to_ack": _seconds(step.fired_at, acked),
                "ended_at": _iso(step.ended_at),
            }
        )

    outage_end = incident.recovered_at or incident.resolved_at
    callbacks = list(
        (
            await session.execute(
                select(Callback).where(
                    Callback.site_id == incident.site_id,
                    Callback.incident_id == incident.id,
                    Callback.status != "cancelled",
                )
            )
        ).scalars()
    )
    made = [(c, c.completed_at) for c in callbacks if c.completed_at is not None]
    still_open = [c for c in callbacks if c.status in OPEN_STATES]
    by_form: dict[str, int] = {}
    by_source: dict[str, int] = {"device": 0, "paper": 0}
    for r in records:
        by_form[r.form] = by_form.get(r.form, 0) + 1
        by_source[r.source] = by_source.get(r.source, 0) + 1

    report = await session.get(IncidentReport, incident.id)
    due = review_due(incident)
    written_at = report.written_at if report else None
    names = await site_names(session, incident.site_id)
    events = await timeline(session, incident.id, limit=5000)
    return {
        "incident": {
            "id": incident.id,
            "title": incident.title,
            "playbook": incident.playbook,
            "playbook_version": incident.playbook_version,
            "status": incident.status,
            "drill": incident.drill,
            "time_scale": incident.time_scale,
            "declared_at": _iso(incident.declared_at),
            "acknowledged_at": _iso(incident.acknowledged_at),
            "recovered_at": _iso(incident.recovered_at),
            "resolved_at": _iso(incident.resolved_at),
            "declared_by": names.get(incident.declared_by or 0),
        },
        "first_report": {
            "fault_started_at": _iso(fault_started),
            "fault_start_source": "incident-log"
            if starts and min(starts) < incident.declared_at
            else "declared",
            "reported_at": _iso(incident.declared_at),
            "seconds": first_report,
            "limit_seconds": FIRST_REPORT_LIMIT.total_seconds(),
            "within_limit": first_report is not None and first_report <= FIRST_REPORT_LIMIT.total_seconds(),
        },
        "acknowledgement": {
            "at": _iso(incident.acknowledged_at),
            "seconds_from_declared": _seconds(incident.declared_at, incident.acknowledged_at),
        },
        "escalations": rungs,
        "outage": {
            "started_at": _iso(fault_started),
            "ended_at": _iso(outage_end),
            "seconds": _seconds(fault_started, outage_end),
            "ongoing": outage_end is None,
            "seconds_so_far": _seconds(fault_started, outage_end or now),
            "seconds_declared_to_recovery": _seconds(incident.declared_at, outage_end),
        },
        "records": {
            "total": len(records),
            "by_form": by_form,
            "by_source": by_source,
            "promised": sum(1 for r in records if promised_due(r) is not None),
        },
        "callbacks": {
            "promised": len(callbacks),
            "on_time": sum(1 for c, done in made if done <= c.due_at),
            "late": sum(1 for c, done in made if done > c.due_at),
            "open": len(still_open),
            "overdue": sum(1 for c in still_open if c.due_at < now),
            "failed": sum(1 for c in callbacks if c.status == "failed"),
        },
        "reentry": await reentry_counts(session, incident.site_id, incident.id),
        "review": {
            "due_at": _iso(due),
            "cause": report.cause if report else None,
            "actions": report.actions if report else None,
            "written_by": names.get(report.written_by) if report and report.written_by else None,
            "written_at": _iso(written_at),
            "updated_at": _iso(report.updated_at if report else None),
            "overdue": due is not None and written_at is None and now > due,
            "reminder_sent_at": _iso(report.reminder_sent_at if report else None),
        },
        "timeline": events,
        "generated_at": _iso(now),
    }


async def _incident(db: AsyncSession, user: CurrentUser, incident_id: int) -> Incident:
    return await get_for_site(db, Incident, incident_id, user.site_id, "incident")


@get(
    "/api/incidents/{incident_id:int}/report",
    guards=[requires("lead")],
    summary="The post-incident review: figures, timeline, and the written cause and actions (lead+)",
)
async def get_report(request: Req, db: AsyncSession, incident_id: int) -> dict[str, Any]:
    incident = await _incident(db, request.user, incident_id)
    return await build_report(db, incident, await clock.now(request.app, db))


LongText = Annotated[str, msgspec.Meta(max_length=20000)]


class ReportIn(msgspec.Struct, forbid_unknown_fields=True):
    cause: LongText
    actions: LongText


@put(
    "/api/incidents/{incident_id:int}/report",
    guards=[requires("lead")],
    summary="Write (or rewrite) the review's cause and actions (lead+)",
)
async def put_report(request: Req, db: AsyncSession, incident_id: int, data: ReportIn) -> dict[str, Any]:
    user = request.user
    incident = await _incident(db, user, incident_id)
    if not data.cause.strip() or not data.actions.strip():
        raise Problem(
            422,
            "Write both the cause and the actions.",
            errors={
                k: "required" for k, v in (("cause", data.cause), ("actions", data.actions)) if not v.strip()
            },
            code="validation.required",
        )
    now = await clock.now(request.app, db)
    report = await db.get(IncidentReport, incident.id)
    if report is None:
        report = IncidentReport(incident_id=incident.id, site_id=incident.site_id)
        db.add(report)
    report.cause, report.actions, report.updated_at = data.cause.strip(), data.actions.strip(), now
    report.written_by = user.id
    report.written_at = report.written_at or now
    return await build_report(db, incident, now)


# ---------------------------------------------------------------- the 24-hour reminder


async def remind_due(app: Any) -> int:
    """One pass: each resolved incident whose review is past due and unwritten reminds leads and managers
    once. The reminder row's primary key is the claim, so two processes never both send it."""
    state = getattr(app, "state", app)
    async with state.sessionmaker() as session:
        at = await clock.now(state, session)
        candidates = (
            (
                await session.execute(
                    select(Incident)
                    .outerjoin(IncidentReport, IncidentReport.incident_id == Incident.id)
                    .where(Incident.status == "resolved", IncidentReport.incident_id.is_(None))
                    .order_by(Incident.resolved_at)
                    .limit(500)
                )
            )
            .scalars()
            .all()
        )
        sent = 0
        for incident in candidates:
            due = review_due(incident)
            if due is None or due > at:
                continue
            claimed = (
                await session.execute(
                    insert_for(session, IncidentReport.__table__)
                    .values(incident_id=incident.id, site_id=incident.site_id, reminder_sent_at=at)
                    .on_conflict_do_nothing(index_elements=["incident_id"])
                    .returning(IncidentReport.incident_id)
                )
            ).scalar_one_or_none()
            if claimed is None:
                continue
            title = {
                "zh-CN": f"复盘报告未写：{incident.title['zh-CN']}",
                "en": f"Review not written: {incident.title['en']}",
            }
            body = {
                "zh-CN": "事件结束已满24小时，请填写原因和改进措施。",
                "en": "24 hours since the incident was resolved: write down the cause and the actions.",
            }
            await notify(
                session,
                incident.site_id,
                ["lead", "manager"],
                title,
                body,
                incident_id=incident.id,
                kind="review_due",
                at=at,
                drill=incident.drill,
            )
            sent += 1
        await session.commit()
        return sent


async def reminder_round(state: Any) -> int:
    await remind_due(state)
    return 0  # polled on its interval


STEP = workers.Step("review reminders", reminder_round, every=POLL_SECONDS)
router = Router(path="/", route_handlers=[get_report, put_report], tags=["reports"])
