"""Background work, the GoAlert way: each capability exposes steps that do what is due now and say how much
they did; one runner runs every step for the app's lifetime; one claim helper makes sure that with several app
processes on one database each due row is taken by exactly one of them.

Each step gets a loop of its own (the same code for all): a push service that takes seconds to answer must not
hold up an escalation rung that is due now.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .db import is_postgresql

log = logging.getLogger("outage_desk")

POLL_SECONDS = 1.0  # default idle wait; a test or bench sets app.state.worker_interval to go faster


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[Any], Awaitable[int]]  # one round with the app's state; returns how many items it handled
    every: float = POLL_SECONDS  # idle wait when the round found nothing
    # Seconds until the next item this step knows is due (None: nothing known), so it wakes on time, not up to
    # a whole poll interval late.
    wake_in: Callable[[Any], Awaitable[float | None]] | None = None


def idle_seconds(state: Any, step: Step) -> float:
    override = getattr(getattr(state, "state", state), "worker_interval", None)  # an app or its state
    return min(override, step.every) if override else step.every


async def run_forever(state: Any, step: Step) -> None:
    """Run one step until cancelled: again at once while it finds work, else after its idle wait."""
    while True:
        try:
            done = await step.run(state)
        except asyncio.CancelledError:
            raise
        except Exception:  # a database hiccup must not end the worker: try again next round
            log.exception("worker step %s failed", step.name)
            done = 0
        if done:
            continue
        wait = idle_seconds(state, step)
        if step.wake_in is not None:
            try:
                soon = await step.wake_in(state)
            except Exception:
                log.exception("worker step %s could not read its next due time", step.name)
                soon = None
            if soon is not None:
                wait = min(wait, max(soon, 0.02))
        await asyncio.sleep(wait)


def start(state: Any, steps: Sequence[Step]) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(run_forever(state, step), name=f"worker:{step.name}") for step in steps]


async def stop(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def claim(
    session: AsyncSession,
    key: Any,
    due: Sequence[Any],
    order_by: Sequence[Any],
    limit: int,
    values: dict[str, Any],
) -> list[Any]:
    """Mark up to `limit` rows matching `due` with `values` and return their keys, exactly once across processes.

    On PostgreSQL the inner SELECT locks the rows it picks with SKIP LOCKED, so a second process skips them and
    takes others; on SQLite the single UPDATE holds the one write lock. Either way `due` is checked again in the
    UPDATE itself, so a row another process changed in between is not taken twice."""
    pick = select(key).where(*due).order_by(*order_by).limit(limit)
    if is_postgresql(session):
        pick = pick.with_for_update(skip_locked=True)
    result = await session.execute(
        update(key.class_).where(key.in_(pick.scalar_subquery()), *due).values(**values).returning(key)
    )
    return list(result.scalars())


async def claim_leased(
    session: AsyncSession,
    model: Any,
    at: datetime,
    lease: timedelta,
    limit: int,
    max_attempts: int,
    *also: Any,
) -> tuple[list[Any], datetime]:
    """`claim` for an outbox-shaped table (id, state, attempts, next_attempt_at, deadline_at): rows pending or
    failed and due with attempts left, or 'sending' past their lease (their sender died), become 'sending'
    until at + lease, oldest due first. Returns their ids and that deadline, which marks this claim: only its
    holder may record the outcome. `also`: further conditions (e.g. the channel is switched on)."""
    deadline = at + lease
    due = or_(
        and_(
            model.state.in_(("pending", "failed")),
            model.next_attempt_at <= at,
            model.attempts < max_attempts,
        ),
        and_(model.state == "sending", model.deadline_at <= at),
    )
    claimed = await claim(
        session,
        model.id,
        [due, *also],
        [model.next_attempt_at, model.id],
        limit,
        {"state": "sending", "deadline_at": deadline, "attempts": model.attempts + 1},
    )
    return claimed, deadline
