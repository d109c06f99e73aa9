"""The retry rules every delivery outbox shares (backend.outbox for push, bots, email and SMS; backend.crmpush for
the CRM): backoff with jitter, Retry-After, the attempt limit, and sending a round in parallel where one
delivery's failure stays its own."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger("outage_desk")

MAX_ATTEMPTS = 8
BACKOFF_BASE = 10  # seconds; doubled per attempt, with jitter
BACKOFF_CAP = 15 * 60
RETRY_AFTER_CAP = 3600


def _retry_after(value: str | None, at: datetime) -> float:
    """Retry-After in seconds or as an HTTP date; 60 s when missing or unreadable."""
    if not value:
        return 60
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = (email.utils.parsedate_to_datetime(value) - at).total_seconds()
        except (TypeError, ValueError):
            seconds = 60
    return min(max(seconds, 0), RETRY_AFTER_CAP)


def _backoff(attempts: int) -> float:
    delay = min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_CAP)
    return delay * random.uniform(0.8, 1.2)  # jitter: many failed rows don't come back at the same instant


async def send_all(
    sends: list[Callable[[], Awaitable[dict[str, Any]]] | None], parallel: int, what: str
) -> list[dict[str, Any] | None]:
    """Run each send (None: nothing to send, None back), `parallel` at a time, outcomes in order. Whatever goes
    wrong in one is that delivery's outcome, never the other rows' in the round."""
    limit = asyncio.Semaphore(parallel)

    async def one(send: Callable[[], Awaitable[dict[str, Any]]] | None) -> dict[str, Any] | None:
        if send is None:
            return None
        async with limit:
            try:
                return await send()
            except Exception:
                log.exception("%s failed", what)
                return {"status": None, "error": "internal error while sending"}

    return list(await asyncio.gather(*(one(send) for send in sends)))


def retry_at(outcome: dict[str, Any], attempts: int, at: datetime) -> datetime | None:
    """When to try a failed delivery again: a 429 at its Retry-After, a 5xx or a network failure after the
    backoff, while attempts are left; None (give up) for anything else or when outcome says "permanent"."""
    status = outcome.get("status")
    default = status is None or status == 429 or status >= 500
    retryable = not outcome.get("permanent") and outcome.get("retry", default)  # "retry": the transport knows
    if not retryable or attempts >= MAX_ATTEMPTS:
        return None
    wait = _retry_after(outcome.get("retry_after"), at) if status == 429 else _backoff(attempts)
    return at + timedelta(seconds=wait)
