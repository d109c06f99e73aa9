"""The sync protocol (see /work/shared/design.md, "The sync protocol").

Devices make every record with a UUID and a `rev`; `POST /api/sync` stores each record exactly once
(primary key + INSERT … ON CONFLICT, never check-then-insert) and answers per record:
created | duplicate | updated | conflict (server copy returned) | rejected (field errors).
Everything is committed before the answer is sent, so nothing the device was told is stored can be lost.

Record hooks (wired in app.py, passed to `store_batch`): `async def hook(session, stored, now)`, called once per
sync batch with `stored` = [(record, outcome), …] for every record created or updated (outcome "created" |
"updated"), inside the same transaction. A record is a `Record` or a read-only namespace with the same
attributes. One call per batch, so a hook can read and write in bulk.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from litestar import Request, Router, post
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from . import clock, fleet
from .auth import CurrentUser
from .changes import changes_since, number_at_commit
from .db import insert_for, table_of, writer_turn
from .errors import Problem
from .protocol import (
    RecordIn,
    SyncIn,
    SyncOut,
    SyncResult,
    content_hash,
    new_receipt,
    parse,
    reject,
    validate,
)
from .records import Record, record_out

RecordHook = Callable[[AsyncSession, list[tuple[Any, str]], datetime], Awaitable[None]]


# ---------------------------------------------------------------- storing


def _new_row(user: CurrentUser, device_id: str, item: RecordIn, digest: str, now: datetime) -> dict[str, Any]:
    return {
        "id": item.id,
        "site_id": user.site_id,
        "device_id": device_id,
        "form": item.form,
        "form_version": item.form_version,
        "incident_id": item.incident_id,
        "agent_id": user.id,
        "rev": item.rev,
        "data": item.data,
        "content_hash": digest,
        "captured_at": item.captured_at,
        "received_at": now,
        "updated_at": now,
        "receipt": new_receipt(),
        "seq": 0,  # numbered at commit
        "source": item.source,
        "sheet_id": item.sheet_id,
        "sheet_row": item.sheet_row,
        "reentry_status": "pending",
    }


async def store_batch(
    session: AsyncSession,
    user: CurrentUser,
    device_id: str,
    raw_records: list[Any],
    *,
    hooks: Sequence[RecordHook],
    now: datetime,
) -> list[SyncResult]:
    """Store a batch idempotently and return one result per record, in order; run `hooks` once on what was
    created or updated, in the same transaction. Does not commit."""
    items = await validate(
        session, user.site_id, [parse(i, raw, user.site_slug) for i, raw in enumerate(raw_records)]
    )
    results: dict[int, SyncResult] = {i: r for i, r in enumerate(items) if isinstance(r, SyncResult)}
    good = [(i, r) for i, r in enumerate(items) if isinstance(r, RecordIn)]
    if not good:
        return [results[i] for i in range(len(items))]
    hashes = {i: content_hash(r) for i, r in good}
    await writer_turn(session)

    # 1. One INSERT … ON CONFLICT DO NOTHING for every first occurrence of an id: racing copies of the same
    #    record meet on the primary key, and exactly one of them inserts.
    first: dict[uuid.UUID, int] = {}
    for i, r in good:
        first.setdefault(r.id, i)
    # Rows in id order: two batches holding the same records in another order lock them in the same order,
    # so PostgreSQL never has to break a deadlock between them.
    rows = [
        _new_row(user, device_id, items[i], hashes[i], now)  # type: ignore[arg-type]
        for _, i in sorted(first.items())
    ]
    table = table_of(Record)
    # executemany form: SQLAlchemy batches it into multi-row INSERTs ("insertmanyvalues") from one cached
    # compiled statement, instead of compiling a new 100-row VALUES clause per request.
    inserted = set(
        (
            await session.execute(
                insert_for(session, table)
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(table.c.id),
                rows,
            )
        ).scalars()
    )
    stored: dict[uuid.UUID, str] = {}  # id -> "created" | "updated" (latest outcome wins)
    for rid in inserted:
        stored[rid] = "created"
        results[first[rid]] = None  # type: ignore[assignment]  # filled in once seq/receipt are final

    # 2. Everything else meets a row that exists: same rev and content = duplicate, newer rev = updated
    #    (a conditional UPDATE, so two racing newer revs cannot both win), otherwise a conflict.
    rest = sorted(
        ((i, r) for i, r in good if not (r.id in inserted and first[r.id] == i)),
        key=lambda pair: (pair[1].id, pair[0]),
    )  # id order again; one id's copies keep batch order
    known = (
        {
            rec.id: rec
            for rec in (
                await session.execute(
                    select(Record)
                    .where(Record.id.in_({r.id for _, r in rest}))
                    .execution_options(populate_existing=True)
                )
            ).scalars()
        }
        if rest
        else {}
    )
    for i, r in rest:
        results[i] = await _against_existing(
            session, user, device_id, i, r, hashes[i], now, stored, known.pop(r.id, None)
        )

    # 3. Cursor order: what this batch stored is numbered when it commits (changes.number_at_commit, under the
    #    site's lock held only for that), then the hooks run on it.
    if stored:
        number_at_commit(session, user.site_id, list(stored))
        # A row this batch only inserted is exactly what was sent: build it instead of reading it back.
        # Rows that were updated (by a later rev in this batch too) are read back.
        changed_later = {r.id for i, r in rest if results[i].status in ("created", "updated")}
        # (A plain namespace with the Record's attributes: hooks only read them, and building ORM objects
        # through their instrumented __init__ costs more than the insert.)
        records: dict[uuid.UUID, Any] = {
            row["id"]: SimpleNamespace(**row)
            for row in rows
            if row["id"] in inserted and row["id"] not in changed_later
        }
        if reread := [rid for rid in stored if rid not in records]:
            records.update(
                {
                    rec.id: rec
                    for rec in (
                        await session.execute(
                            select(Record)
                            .where(Record.id.in_(reread))
                            .execution_options(populate_existing=True)
                        )
                    ).scalars()
                }
            )
        batch = [(records[rid], outcome) for rid, outcome in sorted(stored.items())]
        for hook in hooks:
            await hook(session, batch, now)
        for i, r in good:
            result = results[i]
            if result is None or (result.status in ("created", "updated") and r.id in records):
                rec = records[r.id]
                status = "created" if result is None else result.status
                results[i] = SyncResult(
                    i, str(rec.id), status, rev=r.rev, receipt=rec.receipt, received_at=rec.received_at
                )
    return [results[i] for i in range(len(items))]


async def _against_existing(
    session: AsyncSession,
    user: CurrentUser,
    device_id: str,
    index: int,
    item: RecordIn,
    digest: str,
    now: datetime,
    stored: dict[uuid.UUID, str],
    existing: Record | None,
) -> SyncResult:
    for attempt in range(3):  # a concurrent newer rev can slip in between the read and the conditional update
        if attempt or existing is None:
            existing = (
                await session.execute(
                    select(Record).where(Record.id == item.id).execution_options(populate_existing=True)
                )
            ).scalar_one_or_none()
        if existing is None:  # the row was inserted by a transaction that then rolled back: insert again
            done = await session.execute(
                insert_for(session, Record.__table__)
                .values(_new_row(user, device_id, item, digest, now))
                .on_conflict_do_nothing(index_elements=["id"])
                .returning(Record.id)
            )
            if done.scalar_one_or_none() is not None:
                stored[item.id] = "created"
                return SyncResult(index, str(item.id), "created", rev=item.rev)
            continue
        if existing.site_id != user.site_id or (user.role == "agent" and existing.agent_id != user.id):
            # Another site's record (a UUID clash), or another agent's: sync applies the rules of
            # GET /api/records/{id}, so nothing about it is shown or changed, not even that it differs.
            return reject(
                index, item, "id", "taken", "make a new id for this record", "This record id is taken."
            )
        if item.rev == existing.rev and digest == existing.content_hash:
            return SyncResult(
                index,
                str(item.id),
                "duplicate",
                rev=existing.rev,
                receipt=existing.receipt,
                received_at=existing.received_at,
            )
        if item.rev <= existing.rev:
            return SyncResult(
                index,
                str(item.id),
                "conflict",
                rev=existing.rev,
                server=record_out(existing),
                message="The server holds another version of this record.",
            )
        done = await session.execute(
            update(Record)
            .where(Record.id == item.id, Record.rev < item.rev)
            .values(
                rev=item.rev,
                data=item.data,
                content_hash=digest,
                form=item.form,
                form_version=item.form_version,
                incident_id=item.incident_id,
                captured_at=item.captured_at,
                updated_at=now,
                device_id=device_id,
                receipt=new_receipt(),
                source=item.source,
                sheet_id=item.sheet_id,
                sheet_row=item.sheet_row,
            )
            .returning(Record.id)
            .execution_options(synchronize_session=False)
        )
        if done.scalar_one_or_none() is not None:
            stored.setdefault(item.id, "updated")
            return SyncResult(index, str(item.id), "updated", rev=item.rev)
    raise Problem(
        503,
        "This record changed too often while storing; please retry.",
        headers={"Retry-After": "2"},
        code="sync.retry",
    )


@post(
    "/api/sync",
    summary="Upload queued records; get per-record outcomes and changes since the cursor",
    status_code=200,
)
async def sync(request: Request[CurrentUser, str, Any], db: AsyncSession, data: SyncIn) -> SyncOut:
    settings = request.app.state.settings
    if len(data.records) > settings.sync_max_records:
        raise Problem(
            413,
            f"Too many records in one batch: {len(data.records)}; send at most "
            f"{settings.sync_max_records} per request.",
            max_records=settings.sync_max_records,
            code="sync.too_many_records",
        )
    now = await clock.now(request.app, db)
    # The feed first: feed ids commit in order, so this read is a committed prefix and the cursor never skips;
    # what this batch adds comes in the next answer (a device syncs until it has nothing to send and no more
    # changes).
    changes, cursor, more = await changes_since(db, request.user, data.cursor)
    results = await store_batch(
        db, request.user, data.device_id, data.records, hooks=request.app.state.record_hooks, now=now
    )
    if data.device is not None:
        stored = sum(r.status in ("created", "duplicate", "updated") for r in results)
        await fleet.report(db, request.user, data.device_id, data.device, stored, now)
    # Committed by the request's transaction before the answer is sent: an acknowledged record is a committed one.
    return SyncOut(results, changes, cursor, more, now)


router = Router(path="/", route_handlers=[sync], tags=["sync"])
