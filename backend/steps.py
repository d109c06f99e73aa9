"""Ticking an incident's playbook steps: agents tick agent steps, leads any; each tick (or untick) is on the
timeline. The ticks are shown with the incident (incidents.detail_out)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Router, post
from sqlalchemy.ext.asyncio import AsyncSession

from . import clock
from .auth import RANK
from .db import insert_for
from .errors import Problem
from .incidents import Req, StepTick, detail_out, get_incident_at_site
from .timeline import add_event


class TickIn(msgspec.Struct, forbid_unknown_fields=True):
    done: bool = True


@post(
    "/api/incidents/{incident_id:int}/steps/{step_id:str}",
    status_code=200,
    summary="Tick (or untick with done=false) a playbook step; agents tick agent steps, leads any",
)
async def tick_step(
    request: Req, db: AsyncSession, incident_id: int, step_id: str, data: TickIn | None = None
) -> dict[str, Any]:
    user = request.user
    incident = await get_incident_at_site(db, user, incident_id)
    step = next((s for s in incident.definition.get("steps", []) if s["id"] == step_id), None)
    if step is None:
        raise Problem(404, f"This incident's playbook has no step {step_id!r}.", code="incident.unknown_step")
    if incident.status == "resolved":
        raise Problem(
            409, "This incident is resolved; its steps can no longer change.", code="incident.resolved"
        )
    if RANK[user.role] < RANK["lead"] and step["who"] != "agent":
        raise Problem(403, "Only leads and managers can tick this step.", code="auth.forbidden")
    done = data.done if data else True
    at = await clock.now(request.app, db)
    existing = await db.get(StepTick, (incident.id, step_id))
    if done and existing is None:
        await db.execute(
            insert_for(db, StepTick)
            .values(incident_id=incident.id, step_id=step_id, ticked_by=user.id, ticked_at=at)
            .on_conflict_do_nothing()
        )
        await add_event(db, incident.id, "step_ticked", user.id, {"step": step_id, "done": True}, at=at)
    elif not done and existing is not None:
        await db.delete(existing)
        await add_event(db, incident.id, "step_ticked", user.id, {"step": step_id, "done": False}, at=at)
    return await detail_out(db, incident, user)


router = Router(path="/", tags=["incidents"], route_handlers=[tick_step])
