"""The site's alert level from the answer rate (接通率), the reserve tiers it calls in, and the surge incident it
opens. Yellow 85-90 %, orange 80-85 %, red below 80 % or a system failure (see the domain brief)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, post
from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import clock
from .auth import CurrentUser, requires
from .db import Base, UTCDateTime, insert_for
from .errors import Problem
from .incidents import ACTIVE, Incident, declare
from .lifecycle import resolve
from .notifications import notify
from .timeline import add_event

Req = Request[CurrentUser, str, Any]


class AlertState(Base):
    """A site's current alert level (from the answer rate) and the surge incident it belongs to."""

    __tablename__ = "alert_states"
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    level: Mapped[str] = mapped_column(String(16), default="normal")
    answer_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    queue_length: Mapped[int | None] = mapped_column(Integer, nullable=True)
    system_failure: Mapped[bool] = mapped_column(Boolean, default=False)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), nullable=True
    )
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)


class DrillAlertState(Base):
    """A drill's own alert level: figures reported during a drill feed only this, never the site's real level."""

    __tablename__ = "drill_alert_states"
    drill_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    level: Mapped[str] = mapped_column(String(16), default="normal")
    answer_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    queue_length: Mapped[int | None] = mapped_column(Integer, nullable=True)
    system_failure: Mapped[bool] = mapped_column(Boolean, default=False)
    incident_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="SET NULL"), nullable=True
    )  # the drill-marked surge incident this drill's level opened (or the drill itself)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)


class MetricSample(Base):
    """Every answer-rate report, for the incident report's 'how long was the hotline degraded'."""

    __tablename__ = "metric_samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    answer_rate: Mapped[float] = mapped_column(Float)
    queue_length: Mapped[int] = mapped_column(Integer)
    offered: Mapped[int | None] = mapped_column(Integer, nullable=True)
    answered: Mapped[int | None] = mapped_column(Integer, nullable=True)
    system_failure: Mapped[bool] = mapped_column(Boolean, default=False)
    level: Mapped[str] = mapped_column(String(16))
    posted_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    drill_id: Mapped[int | None] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), nullable=True, index=True
    )  # reported during this drill: feeds only the drill


class MetricsIn(msgspec.Struct, forbid_unknown_fields=True):
    answer_rate: Annotated[float, msgspec.Meta(ge=0, le=100)]  # percent of offered calls answered
    queue_length: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
    system_failure: bool = False
    offered: Annotated[int, msgspec.Meta(ge=0)] | None = None
    answered: Annotated[int, msgspec.Meta(ge=0)] | None = None
    # None: a drill's figures while a drill is running (and nothing real is), the site's otherwise.
    drill: bool | None = None


# ---------------------------------------------------------------- alert levels

LEVELS = ("normal", "yellow", "orange", "red")
TIER = {"yellow": 1, "orange": 2, "red": 3}
LEVEL_NAMES = {
    "normal": {"zh-CN": "正常", "en": "normal"},
    "yellow": {"zh-CN": "黄色", "en": "yellow"},
    "orange": {"zh-CN": "橙色", "en": "orange"},
    "red": {"zh-CN": "红色", "en": "red"},
}
TIER_TEXT = {
    1: {
        "zh-CN": "一级后备上线：所有在岗人员接呼入",
        "en": "tier-1 reserves online: everyone on site takes inbound",
    },
    2: {
        "zh-CN": "二级后备上线：召回备班人员，切换备用线路",
        "en": "tier-2 reserves: call in standby staff, switch to backup lines",
    },
    3: {
        "zh-CN": "三级后备和灾备场地启用，应急指挥组全员到岗",
        "en": "tier-3 reserves and the disaster-recovery site; the command group on duty",
    },
}


def level_for(answer_rate: float, system_failure: bool = False) -> str:
    """Red below 80 % (or a system failure), orange 80-85 %, yellow 85-90 %, normal from 90 %."""
    if system_failure or answer_rate < 80:
        return "red"
    if answer_rate < 85:
        return "orange"
    if answer_rate < 90:
        return "yellow"
    return "normal"


def level_out(state: AlertState | DrillAlertState | None) -> dict[str, Any]:
    if state is None:
        return {
            "level": "normal",
            "answer_rate": None,
            "queue_length": None,
            "system_failure": False,
            "incident_id": None,
            "updated_at": None,
            "tier": 0,
        }
    return {
        "level": state.level,
        "answer_rate": state.answer_rate,
        "queue_length": state.queue_length,
        "system_failure": state.system_failure,
        "incident_id": state.incident_id,
        "updated_at": state.updated_at,
        "tier": TIER.get(state.level, 0),
    }


async def _drill_for(db: AsyncSession, site_id: int, asked: bool | None) -> Incident | None:
    """The drill these figures belong to, or None for the site's real level."""
    if asked is False:
        return None
    active = list(
        (
            await db.execute(
                select(Incident)
                .where(Incident.site_id == site_id, Incident.status.in_(ACTIVE))
                .order_by(Incident.id.desc())
            )
        ).scalars()
    )
    drills = [i for i in active if i.drill and i.source != "metrics"]  # not the surge one a drill opened
    if asked is None and drills and any(not i.drill for i in active):
        raise Problem(
            422,
            "A drill and a real incident are both running: say whether these figures are the drill's.",
            errors={"drill": "required"},
            code="metrics.drill_or_real",
        )
    if asked and not drills:
        raise Problem(
            422, "No drill is running at your site.", errors={"drill": "no drill"}, code="metrics.no_drill"
        )
    return drills[0] if drills else None


async def _locked_state(db: AsyncSession, site_id: int, drill: Incident | None) -> Any:
    """The site's (or the drill's) level row, locked while we decide, so two reports at once cannot both
    open a surge incident."""
    model: Any = DrillAlertState if drill else AlertState
    key = {"drill_id": drill.id} if drill else {}
    await db.execute(
        insert_for(db, model)
        .values(site_id=site_id, level="normal", system_failure=False, **key)
        .on_conflict_do_nothing()
    )
    where = model.drill_id == drill.id if drill else model.site_id == site_id
    return (await db.execute(select(model).where(where).with_for_update())).scalar_one()


async def _surge(db: AsyncSession, site_id: int, drill: Incident | None, state: Any) -> Incident | None:
    """The surge incident this level belongs to, if one is running: the state's, else (real) the site's open
    real surge incident, else (drill) the drill itself when it is a surge drill."""
    incident = await db.get(Incident, state.incident_id) if state.incident_id else None
    if incident is not None and incident.status in ("open", "acknowledged"):
        return incident
    if drill is not None:
        return drill if drill.playbook == "call-surge" else None
    return (
        await db.execute(
            select(Incident)
            .where(
                Incident.site_id == site_id,
                Incident.playbook == "call-surge",
                Incident.drill.is_(False),
                Incident.status.in_(("open", "acknowledged")),
            )
            .order_by(Incident.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


@post(
    "/api/metrics",
    status_code=200,
    guards=[requires("lead")],
    summary="Report the answer rate and queue: raises or lowers the alert level (a running drill's own, "
    "drill: true|false to say), opens a surge incident and closes it back at normal (lead+)",
)
async def post_metrics(request: Req, db: AsyncSession, data: MetricsIn) -> dict[str, Any]:
    user = request.user
    at = await clock.now(request.app, db)
    level = level_for(data.answer_rate, data.system_failure)
    drill = await _drill_for(db, user.site_id, data.drill)
    db.add(
        MetricSample(
            site_id=user.site_id,
            at=at,
            answer_rate=data.answer_rate,
            queue_length=data.queue_length,
            offered=data.offered,
            answered=data.answered,
            system_failure=data.system_failure,
            level=level,
            posted_by=user.id,
            drill_id=drill.id if drill else None,
        )
    )
    state = await _locked_state(db, user.site_id, drill)
    previous = state.level
    state.answer_rate, state.queue_length, state.system_failure = (
        data.answer_rate,
        data.queue_length,
        data.system_failure,
    )
    state.updated_at, state.updated_by, state.level = at, user.id, level
    tiers: list[int] = []
    incident = await _surge(db, user.site_id, drill, state)
    rising = LEVELS.index(level) > LEVELS.index(previous)
    if rising:
        if incident is None:
            # Opened by the figures, not by the lead who typed them (they are on the timeline's level change);
            # a drill's is drill-marked, as fast as the drill, and closes with it.
            incident = await declare(
                db,
                user.site_id,
                "call-surge",
                None,
                at,
                source="metrics",
                time_scale=drill.time_scale if drill else None,
                note=f"接通率 {data.answer_rate:g}%，排队 {data.queue_length} "
                f"(answer rate {data.answer_rate:g} %, queue {data.queue_length})"
                + (f"；演练 #{drill.id} (drill #{drill.id})" if drill else ""),
            )
        tiers = list(range(TIER.get(previous, 0) + 1, TIER[level] + 1))
    state.incident_id = incident.id if incident else None
    closed = None
    if level != previous and incident is not None:
        await add_event(
            db,
            incident.id,
            "level_changed",
            user.id,
            {
                "from": previous,
                "to": level,
                "answer_rate": data.answer_rate,
                "queue_length": data.queue_length,
                "system_failure": data.system_failure,
                "reported_by": user.display_name,
            },
            at=at,
        )
        for tier in tiers:
            await add_event(db, incident.id, "reserve_called", user.id, {"tier": tier, "level": level}, at=at)
        await _tell_level(db, user.site_id, incident, level, previous, tiers, data, at)
        if level == "normal" and incident.source == "metrics" and incident is not drill:
            # The figures opened it and the figures are back to normal: closed, its pending rungs cancelled.
            await resolve(
                db,
                incident,
                None,
                at,
                hooks=request.app.state.resolve_hooks,
                note="预警恢复正常，自动结束 (alert level back to normal: closed automatically)",
                extra={"automatic": True},
            )
            closed, state.incident_id = incident.id, None
    return {
        **level_out(state),
        "previous": previous,
        "changed": level != previous,
        "tiers_called": tiers,
        "drill_id": drill.id if drill else None,
        "closed_incident_id": closed,
    }


async def _tell_level(
    db: AsyncSession,
    site_id: int,
    incident: Incident,
    level: str,
    previous: str,
    tiers: list[int],
    data: MetricsIn,
    at: datetime,
) -> None:
    name = LEVEL_NAMES[level]
    rising = LEVELS.index(level) > LEVELS.index(previous)
    if rising:
        title = {
            "zh-CN": f"预警升级：{name['zh-CN']}（接通率 {data.answer_rate:g}%）",
            "en": f"Alert raised to {name['en']} (answer rate {data.answer_rate:g} %)",
        }
        body = {
            lang: sep.join(TIER_TEXT[t][lang] for t in tiers) for lang, sep in (("zh-CN", "；"), ("en", "; "))
        }
    else:
        title = {
            "zh-CN": f"预警下调：{name['zh-CN']}（接通率 {data.answer_rate:g}%）",
            "en": f"Alert lowered to {name['en']} (answer rate {data.answer_rate:g} %)",
        }
        body = {"zh-CN": f"排队 {data.queue_length}。", "en": f"Queue {data.queue_length}."}
    await notify(
        db,
        site_id,
        ["lead", "manager"],
        title,
        body,
        incident_id=incident.id,
        kind="alert_level",
        urgency="high" if rising else "normal",
        at=at,
        drill=incident.drill,
    )


async def on_incident_resolved(db: AsyncSession, incident: Incident, at: datetime, hooks: list[Any]) -> None:
    """Resolve hook: a drill's level and whatever it opened close with the drill."""
    if not incident.drill:
        return
    for state in (
        await db.execute(select(DrillAlertState).where(DrillAlertState.drill_id == incident.id))
    ).scalars():
        opened = await db.get(Incident, state.incident_id) if state.incident_id else None
        if opened is not None and opened.id != incident.id and opened.status != "resolved":
            await resolve(
                db,
                opened,
                None,
                at,
                hooks=hooks,
                note=f"演练 #{incident.id} 已结束 (drill #{incident.id} ended)",
                extra={"automatic": True, "drill_ended": incident.id},
            )
        await db.delete(state)


@get("/api/metrics/level", summary="My site's current alert level (and a running drill's, apart)")
async def get_level(request: Req, db: AsyncSession) -> dict[str, Any]:
    state = await db.get(AlertState, request.user.site_id)
    out = level_out(state)
    if state is not None and state.incident_id is not None:
        incident = await db.get(Incident, state.incident_id)
        if incident is None or incident.status == "resolved":
            out["incident_id"] = None  # the surge incident is over: the level no longer belongs to it
    drill = (
        await db.execute(
            select(DrillAlertState)
            .join(Incident, Incident.id == DrillAlertState.drill_id)
            .where(DrillAlertState.site_id == request.user.site_id, Incident.status.in_(ACTIVE))
            .order_by(DrillAlertState.drill_id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()
    out["drill"] = {**level_out(drill), "drill_id": drill.drill_id} if drill else None
    return out


router = Router(path="/", tags=["alerts"], route_handlers=[post_metrics, get_level])
