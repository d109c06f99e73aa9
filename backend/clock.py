"""The app's clock: one 'now' for everything that is due at a time (escalation rungs, callbacks, reminders,
records' server times).

Production reads the database's clock, so several app processes agree on when something is due. Tests put a
`ManualClock` on `app.state.clock` and advance it; every capability asks `now(state, session)`, never the
database or the wall clock directly, so the manual clock reaches all of them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from .db import db_now, utcnow


class DatabaseClock:
    async def now(self, session: AsyncSession | None) -> datetime:
        return await db_now(session) if session is not None else utcnow()


class ManualClock:
    """A clock that only moves when told (`advance(minutes=5)`)."""

    def __init__(self, start: datetime | None = None):
        self.at = start or utcnow()

    async def now(self, session: AsyncSession | None = None) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at


DATABASE_CLOCK = DatabaseClock()


async def now(state: Any, session: AsyncSession | None) -> datetime:
    """'Now' for the app whose state this is (an app or its state): its clock if a test set one."""
    state = getattr(state, "state", state)
    clock = getattr(state, "clock", None) or DATABASE_CLOCK
    return await clock.now(session)


# The dates a record, a callback attempt or a query may carry. Anything outside is a typo or a broken device
# clock, and year 1 or 9999 with an offset cannot even be converted to UTC (OverflowError).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def in_window(value: datetime) -> bool:
    """Is this aware date-time one the app stores (2000 to 2100)? Compared without converting, so the
    extremes of the type answer False instead of raising."""
    return EARLIEST <= value < LATEST


def parse_time(value: Any) -> datetime | None:
    """An aware ISO 8601 date-time from a record's data ("…Z" too), else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo and in_window(parsed) else None
