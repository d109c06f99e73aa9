"""The site's change feed: what devices learn in every sync answer (callbacks assigned, record statuses,
incidents, new playbook/form versions), after the cursor they send.

- `await add_change(session, site_id, kind, ref, payload, user_id=None)` puts an entry on the feed
  ("callback.assigned", "record.status", …); `user_id=None` means everyone at the site. Call it inside your own
  transaction: the entry is written when it commits, under a per-site lock held only for that, so change ids
  commit in order and a device's cursor never skips an entry that commits late (see "publishing at commit").
- `number_at_commit(session, site_id, record_ids)`: the same for records' per-site `seq` (their listing's cursor).
- `await changes_since(session, user, cursor)` -> (entries, new cursor, more?): entries with an id above the
  cursor as `ChangeOut(cursor=id, kind, ref, payload, created_at)`, plus a "content.updated" entry whenever
  the site's playbooks/forms changed (documents.cursor_query) since the device last looked.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    String,
    and_,
    event,
    func,
    literal_column,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, Session, mapped_column

from . import documents
from .auth import RANK, ROLES, CurrentUser
from .db import Base, UTCDateTime, json_dumps, table_of, utcnow
from .errors import Problem
from .protocol import ChangeOut
from .records import Record

CHANGES_PER_ANSWER = 500


class Change(Base):
    """The site's change feed: id is the cursor devices keep."""

    __tablename__ = "changes"
    __table_args__ = (
        Index("ix_changes_site_id_id", "site_id", "id"),
        # One range scan per audience (changes_since): the user's own entries, and each role's broadcast ones.
        # No NULLs in the keys (PostgreSQL reads an `IS NULL` key whole and sorts it, instead of from the cursor).
        Index(
            "ix_changes_audience",
            "site_id",
            text("coalesce(user_id, 0)"),
            text("coalesce(min_role, '')"),
            "id",
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)  # None: everyone
    # With user_id None: only this role and those above see it (callbacks carry callers' names and phones).
    min_role: Mapped[str | None] = mapped_column(String(16), nullable=True)
    kind: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# ---------------------------------------------------------------- publishing at commit
#
# Cursor order needs feed ids (and record seqs) to commit in the order they were given out, so a device that has
# read up to cursor N never later misses an entry below N. They are therefore given out at commit, under a
# per-site lock held only for that numbering and the COMMIT itself: everything else a transaction does (the
# records INSERT, the hooks, the reads) runs side by side with the site's other syncs, on any number of processes.
# The lock holder waits for nothing else (its rows are locked already), so it cannot take part in a deadlock.


def _pending(session: AsyncSession | Session) -> dict[str, Any]:
    """What this transaction publishes at commit: feed rows, and per site the rows whose cursor column to number."""
    return session.info.setdefault(_PENDING, {"changes": [], "numbered": {}})


_PENDING = "outage_desk.feed_pending"


def number_at_commit(session: AsyncSession, site_id: int, record_ids: list[Any]) -> None:
    """Give these records (of this site) the next per-site values of their `seq` column at commit, in id order:
    the cursor of the records listing."""
    _pending(session)["numbered"].setdefault(site_id, set()).update(record_ids)


@event.listens_for(Session, "before_commit")
def _publish(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending or not (pending["changes"] or pending["numbered"]):
        return
    # Every ORM change first, before the lock: a flush may wait for another transaction's row lock, and the lock
    # holder must never wait for anything.
    session.flush()
    feed: dict[int, list[dict[str, Any]]] = {}
    for row in pending["changes"]:
        feed.setdefault(row["site_id"], []).append(row)
    numbered: dict[int, set[Any]] = pending["numbered"]
    postgresql = session.get_bind().dialect.name == "postgresql"
    # In site order: two transactions that publish for the same sites never wait for each other in a circle.
    for site_id in sorted(feed.keys() | numbered.keys()):
        rows, ids = feed.get(site_id), sorted(numbered.get(site_id, ()))
        if postgresql:
            # Lock, feed rows, numbering in one round trip (migration 20261202_0020): the lock is held from
            # here to the COMMIT only, not across the app's turns between statements.
            session.execute(
                text("SELECT outage_publish(:site, CAST(:feed AS json), CAST(:ids AS uuid[]))"),
                {"site": site_id, "feed": json_dumps(rows) if rows else None, "ids": ids or None},
            )
            continue
        # SQLite: one writer at a time, so no lock; the same two statements.
        if rows:
            session.execute(table_of(Change).insert().values(created_at=utcnow()), rows)
        if ids:
            records = table_of(Record)
            mine, others = records.alias(), records.alias()
            ranked = (
                select(mine.c.id, func.row_number().over(order_by=mine.c.id).label("n"))
                .where(mine.c.id.in_(ids))
                .subquery()
            )
            top = select(func.coalesce(func.max(others.c.seq), 0)).where(others.c.site_id == site_id)
            session.execute(
                update(records)
                .where(records.c.id == ranked.c.id)
                .values(seq=ranked.c.n + top.scalar_subquery())
                .execution_options(synchronize_session=False)
            )


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _feed_row(
    site_id: int,
    kind: str,
    ref: str | None,
    payload: dict[str, Any],
    user_id: int | None,
    min_role: str | None,
) -> dict[str, Any]:
    return {
        "site_id": site_id,
        "user_id": user_id,
        "min_role": min_role,
        "kind": kind,
        "ref": None if ref is None else str(ref),
        "payload": payload,
    }


async def add_change(
    session: AsyncSession,
    site_id: int,
    kind: str,
    ref: str | None,
    payload: dict[str, Any],
    user_id: int | None = None,
    *,
    min_role: str | None = None,
) -> None:
    """For one user (`user_id`), for a role and up (`min_role`), or for everyone at the site (neither).
    Written, with its cursor, when the transaction commits (nothing if it rolls back)."""
    _pending(session)["changes"].append(_feed_row(site_id, kind, ref, payload, user_id, min_role))


async def add_personal_change(
    session: AsyncSession, site_id: int, kind: str, ref: str, payload: dict[str, Any], user_ids: set[int]
) -> None:
    """A change about personal data (a caller's name and phone): for these users and for leads and up only."""
    await add_personal_changes(session, site_id, [(kind, ref, payload, user_ids)])


async def add_personal_changes(
    session: AsyncSession, site_id: int, changes: list[tuple[str, str, dict[str, Any], set[int]]]
) -> None:
    """Many `add_personal_change`s at once (the sync's hot path: a recovery burst makes a callback, so two feed
    entries, for nearly every record); written at commit as one executemany INSERT, ids in list order."""
    _pending(session)["changes"].extend(
        _feed_row(site_id, kind, ref, payload, user_id, role)
        for kind, ref, payload, user_ids in changes
        for user_id, role in [*((u, None) for u in sorted(user_ids)), (None, "lead")]
    )


def parse_cursor(raw: str | int | None) -> tuple[int | None, int | None]:
    """Cursor "CHANGE_ID.CONTENT_CURSOR" (opaque to devices); None/"" on a device's first sync."""
    if raw is None or raw == "":
        return None, None
    try:
        change, _, content = str(raw).partition(".")
        return int(change), (int(content) if content else None)
    except ValueError:
        raise Problem(
            400,
            "The sync cursor is not one this server gave out; send null to start over.",
            errors={"cursor": "invalid"},
            code="sync.bad_cursor",
        ) from None


async def changes_since(
    session: AsyncSession, user: CurrentUser, raw_cursor: str | int | None
) -> tuple[list[ChangeOut], str, bool]:
    after, seen_content = parse_cursor(raw_cursor)
    site_id = user.site_id
    if after is None:  # a new device starts at the end of the feed; its screens load current state
        after = (
            await session.execute(
                select(func.coalesce(func.max(Change.id), 0)).where(Change.site_id == site_id)
            )
        ).scalar_one()
    # The entries this user may see, audience by audience (their own; everyone's; each role up to theirs), each
    # one range scan of ix_changes_audience from the cursor: never a walk over the entries for others.
    # (Every key of the index is pinned, as the index's own expressions, so the scan is in id order from the cursor.)
    # (The fallbacks as literals, not parameters, or the planner could not match them to the index.)
    audiences = [
        and_(
            func.coalesce(Change.user_id, literal_column("0")) == who,
            func.coalesce(Change.min_role, literal_column("''")) == role,
        )
        for who, roles in ((user.id, ROLES), (0, ROLES[: RANK[user.role] + 1]))
        for role in ("", *roles)
    ]
    limit = CHANGES_PER_ANSWER + 1
    wanted = union_all(
        *(
            select(
                select(Change.id)
                .where(Change.site_id == site_id, audience, Change.id > after)
                .order_by(Change.id)
                .limit(limit)
                .subquery()
                .c.id
            )
            for audience in audiences
        )
    ).subquery()
    table = table_of(Change)
    page = (
        select(table.c.id, table.c.kind, table.c.ref, table.c.payload, table.c.created_at)
        .where(table.c.id.in_(select(wanted.c.id)))
        .order_by(table.c.id)
        .limit(limit)
        .subquery()
    )
    # The site's content cursor rides along (one round trip per sync, not two): its one row, joined to the page.
    content_top = documents.cursor_query(site_id).subquery()
    rows = (
        await session.execute(
            select(content_top.c.top, page)
            .select_from(content_top.outerjoin(page, true()))
            .order_by(page.c.id)
        )
    ).all()
    content = rows[0].top
    rows = [row for row in rows if row.id is not None]
    more = len(rows) > CHANGES_PER_ANSWER
    rows = rows[:CHANGES_PER_ANSWER]
    out = [ChangeOut(c.id, c.kind, c.ref, c.payload, c.created_at.isoformat()) for c in rows]
    if rows:
        after = rows[-1].id
    if seen_content != content:
        out.append(ChangeOut(after, "content.updated", None, {"content_cursor": content}, None))
    return out, f"{after}.{content}", more
