"""Call records and the sync protocol (see /work/shared/design.md, "The sync protocol").

Devices make every record with a UUID and a `rev`; `POST /api/sync` stores each record exactly once
(primary key + INSERT … ON CONFLICT, never check-then-insert) and answers per record:
created | duplicate | updated | conflict (server copy returned) | rejected (field errors).
Everything is committed before the answer is sent, so nothing the device was told is stored can be lost.

Hooks and the change feed, for other capability modules:

- `async def on_records_stored(session, stored)` in any capability module is called once per sync batch with
  `stored` = [(record, outcome), …] for every record created or updated (outcome "created" | "updated"),
  inside the same transaction. A record is a `Record` or a read-only namespace with the same attributes. One call per batch, so a hook can read and write in bulk.
- `await add_change(session, site_id, kind, ref, payload, user_id=None)` puts an entry on the site's change
  feed ("callback.assigned", "record.status", …); `user_id=None` means everyone at the site. Devices get
  the entries with an id above their cursor in the next sync answer as
  `{"cursor": id, "kind", "ref", "payload", "created_at"}`, plus a "content.updated" entry whenever the
  site's playbooks/forms changed (documents.cursor) since the device last looked.
  Call it inside your own transaction; it takes a per-site lock so change ids commit in order and a
  device's cursor never skips an entry that commits late.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import uuid
import weakref
from collections.abc import Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Router, get, post
from litestar.params import Parameter
from litestar.types import ASGIApp, Receive, Scope, Send
from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Uuid, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import documents, forms
from .auth import CurrentUser
from .db import Base, UTCDateTime, db_now, insert_for, utcnow
from .errors import Problem

REENTRY = ("pending", "reentered", "closed")
CHANGES_PER_ANSWER = 500


class Record(Base):
    __tablename__ = "records"
    __table_args__ = (Index("ix_records_site_id_seq", "site_id", "seq"),
                      Index("ix_records_site_id_form", "site_id", "form"))
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)  # made on the device
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    device_id: Mapped[str] = mapped_column(String(100))
    form: Mapped[str] = mapped_column(String(64))
    form_version: Mapped[int] = mapped_column(Integer)
    incident_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)  # incidents come later
    agent_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    rev: Mapped[int] = mapped_column(Integer)
    data: Mapped[dict] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64))
    captured_at: Mapped[datetime] = mapped_column(UTCDateTime)  # device clock
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)  # server clock, first arrival
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)  # server clock, latest rev
    receipt: Mapped[str] = mapped_column(String(20))
    seq: Mapped[int] = mapped_column(Integer)  # per-site, grows on every store: the cursor for listings
    source: Mapped[str] = mapped_column(String(16), default="device")  # 'device' | 'paper'
    sheet_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sheet_row: Mapped[int | None] = mapped_column(Integer, nullable=True)
    reentry_status: Mapped[str] = mapped_column(String(16), default="pending")
    crm_ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    reentered_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    reentered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Change(Base):
    """The site's change feed: id is the cursor devices keep."""

    __tablename__ = "changes"
    __table_args__ = (Index("ix_changes_site_id_id", "site_id", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)  # None: everyone
    kind: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str | None] = mapped_column(String(100), nullable=True)
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# ---------------------------------------------------------------- change feed and ordering

_locked: weakref.WeakKeyDictionary[Any, set[int]] = weakref.WeakKeyDictionary()  # transaction -> sites locked


def _postgresql(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "postgresql"


async def lock_site(session: AsyncSession, site_id: int) -> None:
    """Serialise cursor allocation per site until commit, so ids commit in order (PostgreSQL; SQLite has
    one writer at a time anyway). Taken once per transaction: a sync storing 100 records asks once."""
    if not _postgresql(session):
        return
    transaction = session.sync_session.get_transaction()
    if transaction is not None and site_id in _locked.get(transaction, ()):
        return
    await session.execute(text("SELECT pg_advisory_xact_lock(4004, :site)"), {"site": site_id})
    _locked.setdefault(session.sync_session.get_transaction(), set()).add(site_id)


async def add_change(session: AsyncSession, site_id: int, kind: str, ref: str | None, payload: dict[str, Any],
                     user_id: int | None = None) -> Change:
    """Not flushed here (the ORM batches the INSERTs at the next flush or commit); flush if you need .id."""
    await lock_site(session, site_id)
    change = Change(site_id=site_id, user_id=user_id, kind=kind, ref=None if ref is None else str(ref),
                    payload=payload, created_at=func.now() if _postgresql(session) else utcnow())
    session.add(change)
    return change


def parse_cursor(raw: str | int | None) -> tuple[int | None, int | None]:
    """Cursor "CHANGE_ID.CONTENT_CURSOR" (opaque to devices); None/"" on a device's first sync."""
    if raw is None or raw == "":
        return None, None
    try:
        change, _, content = str(raw).partition(".")
        return int(change), (int(content) if content else None)
    except ValueError:
        raise Problem(400, "The sync cursor is not one this server gave out; send null to start over.",
                      errors={"cursor": "invalid"}) from None


async def changes_since(session: AsyncSession, user: CurrentUser, raw_cursor: str | int | None
                        ) -> tuple[list[dict[str, Any]], str, bool]:
    after, seen_content = parse_cursor(raw_cursor)
    site_id = user.site_id
    if after is None:  # a new device starts at the end of the feed; its screens load current state
        after = (await session.execute(select(func.coalesce(func.max(Change.id), 0))
                                       .where(Change.site_id == site_id))).scalar_one()
    rows = (await session.execute(
        select(Change).where(Change.site_id == site_id, Change.id > after,
                             (Change.user_id.is_(None)) | (Change.user_id == user.id))
        .order_by(Change.id).limit(CHANGES_PER_ANSWER + 1))).scalars().all()
    more = len(rows) > CHANGES_PER_ANSWER
    rows = rows[:CHANGES_PER_ANSWER]
    out = [{"cursor": c.id, "kind": c.kind, "ref": c.ref, "payload": c.payload,
            "created_at": c.created_at.isoformat()} for c in rows]
    if rows:
        after = rows[-1].id
    content = await documents.cursor(session, site_id)
    if seen_content != content:
        out.append({"cursor": after, "kind": "content.updated", "ref": None,
                    "payload": {"content_cursor": content}, "created_at": None})
    return out, f"{after}.{content}", more


# ---------------------------------------------------------------- wire format

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]


class RecordIn(msgspec.Struct, forbid_unknown_fields=True):
    id: uuid.UUID
    form: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    form_version: Annotated[int, msgspec.Meta(ge=1)]
    captured_at: AwareTime
    rev: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    data: dict[str, Any]
    incident_id: Annotated[int, msgspec.Meta(ge=1)] | None = None
    source: Literal["device", "paper"] = "device"
    sheet_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    sheet_row: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None


class SyncIn(msgspec.Struct, forbid_unknown_fields=True):
    device_id: Id
    records: list[Any]  # parsed one by one: a malformed record is rejected alone, never the batch
    cursor: str | int | None = None


class RecordOut(msgspec.Struct):
    id: uuid.UUID
    form: str
    form_version: int
    rev: int
    data: dict[str, Any]
    incident_id: int | None
    captured_at: datetime
    received_at: datetime
    updated_at: datetime
    receipt: str
    seq: int
    agent_id: int
    device_id: str
    source: str
    sheet_id: str | None
    sheet_row: int | None
    reentry_status: str
    crm_ref: str | None


Outcome = Literal["created", "duplicate", "updated", "conflict", "rejected"]


class SyncResult(msgspec.Struct, omit_defaults=True):
    index: int
    id: str | None
    status: Outcome
    rev: int | None = None
    receipt: str | None = None
    received_at: datetime | None = None
    server: RecordOut | None = None  # conflict: what the server holds
    errors: dict[str, Any] | None = None  # rejected: per field
    message: str | None = None


class ChangeOut(msgspec.Struct):
    cursor: int
    kind: str
    ref: str | None
    payload: dict[str, Any]
    created_at: str | None


class SyncOut(msgspec.Struct):
    results: list[SyncResult]
    changes: list[ChangeOut]
    cursor: str
    more_changes: bool
    server_time: datetime


def record_out(record: Record) -> RecordOut:
    return RecordOut(record.id, record.form, record.form_version, record.rev, record.data, record.incident_id,
                     record.captured_at, record.received_at, record.updated_at, record.receipt, record.seq,
                     record.agent_id, record.device_id, record.source, record.sheet_id, record.sheet_row,
                     record.reentry_status, record.crm_ref)


def content_hash(item: RecordIn) -> str:
    """What makes two copies of one rev "the same": the form, its version, the links and the data."""
    canonical = msgspec.json.encode({"form": item.form, "form_version": item.form_version, "data": item.data,
                                     "incident_id": item.incident_id, "source": item.source,
                                     "sheet_id": item.sheet_id, "sheet_row": item.sheet_row}, order="sorted")
    return hashlib.sha256(canonical).hexdigest()


RECEIPT_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U to misread over the phone


def new_receipt() -> str:
    bits = int.from_bytes(secrets.token_bytes(5))  # 40 random bits = 8 characters of 5 bits
    chars = "".join(RECEIPT_ALPHABET[(bits >> shift) & 31] for shift in range(35, -1, -5))
    return f"R-{chars[:4]}-{chars[4:]}"


# ---------------------------------------------------------------- the sync itself

def _parse(index: int, raw: Any) -> RecordIn | SyncResult:
    raw_id = raw.get("id") if isinstance(raw, dict) else None
    shown_id = str(raw_id)[:100] if raw_id is not None else None
    try:
        item = msgspec.convert(raw, RecordIn, str_keys=True)
    except msgspec.ValidationError as exc:
        where = re.search(r"at `\$\.(\w+)", str(exc))
        path = where.group(1) if where else "_"
        return SyncResult(index, shown_id, "rejected", message=f"This record is malformed: {exc}",
                          errors={path: {"code": "malformed", "message": str(exc)}})
    if (item.source == "paper") != (item.sheet_id is not None and item.sheet_row is not None):
        return SyncResult(index, str(item.id), "rejected", rev=item.rev,
                          message="A paper record needs sheet_id and sheet_row, a device record neither.",
                          errors={"source": {"code": "paper", "message": "source 'paper' goes with sheet_id and "
                                                                        "sheet_row"}})
    if item.source == "paper":
        return _check_paper(index, item)
    return item


def _check_paper(index: int, item: RecordIn) -> RecordIn | SyncResult:
    """A paper row's id must be the one derived from its sheet ID and row: only then is typing the same row
    twice, on any device, the same record (a made-up id would let one paper row become two records)."""
    from .printing import normalize_sheet_id, paper_record_id

    sheet_id = normalize_sheet_id(item.sheet_id or "")
    if sheet_id is None:
        return SyncResult(index, str(item.id), "rejected", rev=item.rev,
                          message="This is not a valid sheet ID (see the top right corner of the paper sheet).",
                          errors={"sheet_id": {"code": "sheet_id", "message": "not a valid sheet ID"}})
    if item.id != paper_record_id(sheet_id, item.sheet_row or 0):
        return SyncResult(index, str(item.id), "rejected", rev=item.rev,
                          message="A paper record's id must be derived from its sheet ID and row number.",
                          errors={"id": {"code": "paper_id", "message": "id does not match sheet_id and sheet_row"}})
    item.sheet_id = sheet_id  # stored in canonical form, so lists by sheet find every row
    return item


_form_cache: dict[tuple[int, str, int], dict[str, Any]] = {}


async def form_definition(session: AsyncSession, site_id: int, form: str, version: int) -> dict[str, Any] | None:
    """A form version's definition. Versions are never changed once written, so a found one is kept in
    memory (an unknown one is not: it may be created later)."""
    key = (site_id, form, version)
    if key not in _form_cache:
        document = await documents.get_document(session, site_id, "form", form, version)
        if document is None:
            return None
        if len(_form_cache) > 1000:
            _form_cache.clear()
        _form_cache[key] = document.definition
    return _form_cache[key]


async def _validate(session: AsyncSession, site_id: int, items: Sequence[RecordIn | SyncResult]
                    ) -> list[RecordIn | SyncResult]:
    """Check each record against its own form version (old versions stay valid for old records)."""
    definitions: dict[tuple[str, int], dict[str, Any] | None] = {}
    out: list[RecordIn | SyncResult] = []
    for index, item in enumerate(items):
        if isinstance(item, SyncResult):
            out.append(item)
            continue
        key = (item.form, item.form_version)
        if key not in definitions:
            definitions[key] = await form_definition(session, site_id, item.form, item.form_version)
        definition = definitions[key]
        if definition is None:
            out.append(SyncResult(index, str(item.id), "rejected", rev=item.rev,
                                  message=f"Unknown form {item.form!r} version {item.form_version} at this site.",
                                  errors={"form": {"code": "unknown_form",
                                                   "message": f"no form {item.form!r} v{item.form_version}"}}))
            continue
        if errors := forms.validate_data(definition, item.data):
            out.append(SyncResult(index, str(item.id), "rejected", rev=item.rev, errors=errors,
                                  message="Some fields are not valid."))
            continue
        out.append(item)
    return out


def _new_row(user: CurrentUser, device_id: str, item: RecordIn, digest: str, now: datetime) -> dict[str, Any]:
    return {"id": item.id, "site_id": user.site_id, "device_id": device_id, "form": item.form,
            "form_version": item.form_version, "incident_id": item.incident_id, "agent_id": user.id,
            "rev": item.rev, "data": item.data, "content_hash": digest, "captured_at": item.captured_at,
            "received_at": now, "updated_at": now, "receipt": new_receipt(), "seq": 0,  # seq: numbered at the end
            "source": item.source, "sheet_id": item.sheet_id, "sheet_row": item.sheet_row,
            "reentry_status": "pending"}


async def store_batch(session: AsyncSession, user: CurrentUser, device_id: str, raw_records: list[Any]
                      ) -> list[SyncResult]:
    """Store a batch idempotently and return one result per record, in order. Does not commit."""
    items = await _validate(session, user.site_id, [_parse(i, raw) for i, raw in enumerate(raw_records)])
    results: dict[int, SyncResult] = {i: r for i, r in enumerate(items) if isinstance(r, SyncResult)}
    good = [(i, r) for i, r in enumerate(items) if isinstance(r, RecordIn)]
    if not good:
        return [results[i] for i in range(len(items))]
    now = await db_now(session)
    hashes = {i: content_hash(r) for i, r in good}

    # 1. One INSERT … ON CONFLICT DO NOTHING for every first occurrence of an id: racing copies of the same
    #    record meet on the primary key, and exactly one of them inserts.
    first: dict[uuid.UUID, int] = {}
    for i, r in good:
        first.setdefault(r.id, i)
    # Rows in id order: two batches holding the same records in another order lock them in the same order,
    # so PostgreSQL never has to break a deadlock between them.
    rows = [_new_row(user, device_id, items[i], hashes[i], now)  # type: ignore[arg-type]
            for _, i in sorted(first.items())]
    table = Record.__table__
    # executemany form: SQLAlchemy batches it into multi-row INSERTs ("insertmanyvalues") from one cached
    # compiled statement, instead of compiling a new 100-row VALUES clause per request.
    inserted = set((await session.execute(
        insert_for(session, table).on_conflict_do_nothing(index_elements=["id"]).returning(table.c.id), rows
    )).scalars())
    stored: dict[uuid.UUID, str] = {}  # id -> "created" | "updated" (latest outcome wins)
    for rid in inserted:
        stored[rid] = "created"
        results[first[rid]] = None  # type: ignore[assignment]  # filled in once seq/receipt are final

    # 2. Everything else meets a row that exists: same rev and content = duplicate, newer rev = updated
    #    (a conditional UPDATE, so two racing newer revs cannot both win), otherwise a conflict.
    rest = sorted(((i, r) for i, r in good if not (r.id in inserted and first[r.id] == i)),
                  key=lambda pair: (pair[1].id, pair[0]))  # id order again; one id's copies keep batch order
    known = {rec.id: rec for rec in (await session.execute(
        select(Record).where(Record.id.in_({r.id for _, r in rest})).execution_options(populate_existing=True)
    )).scalars()} if rest else {}
    for i, r in rest:
        results[i] = await _against_existing(session, user, device_id, i, r, hashes[i], now, stored,
                                             known.pop(r.id, None))

    # 3. Cursor order: number what this batch stored under the per-site lock, then run the hooks.
    if stored:
        await lock_site(session, user.site_id)
        top = (await session.execute(select(func.coalesce(func.max(Record.seq), 0))
                                     .where(Record.site_id == user.site_id))).scalar_one()
        seqs = {rid: top + n for n, rid in enumerate(sorted(stored), 1)}
        await session.execute(update(table).where(table.c.id == bindparam("rid")).values(seq=bindparam("nseq"))
                              .execution_options(synchronize_session=False),
                              [{"rid": rid, "nseq": seq} for rid, seq in seqs.items()])
        # A row this batch only inserted is exactly what was sent: build it instead of reading it back.
        # Rows that were updated (by a later rev in this batch too) are read back.
        changed_later = {r.id for i, r in rest if results[i].status in ("created", "updated")}
        # (A plain namespace with the Record's attributes: hooks only read them, and building ORM objects
        # through their instrumented __init__ costs more than the insert.)
        records: dict[uuid.UUID, Any] = {row["id"]: SimpleNamespace(**{**row, "seq": seqs[row["id"]]})
                                         for row in rows if row["id"] in inserted and row["id"] not in changed_later}
        if reread := [rid for rid in stored if rid not in records]:
            records.update({rec.id: rec for rec in (await session.execute(
                select(Record).where(Record.id.in_(reread)).execution_options(populate_existing=True)
            )).scalars()})
        from .app import capability_modules  # here, not at import time: app imports this module

        batch = [(records[rid], outcome) for rid, outcome in sorted(stored.items())]
        for module in capability_modules():
            if hasattr(module, "on_records_stored"):
                await module.on_records_stored(session, batch)
        for i, r in good:
            result = results[i]
            if result is None or (result.status in ("created", "updated") and r.id in records):
                rec = records[r.id]
                status = "created" if result is None else result.status
                results[i] = SyncResult(i, str(rec.id), status, rev=r.rev, receipt=rec.receipt,
                                        received_at=rec.received_at)
    return [results[i] for i in range(len(items))]


async def _against_existing(session: AsyncSession, user: CurrentUser, device_id: str, index: int, item: RecordIn,
                            digest: str, now: datetime, stored: dict[uuid.UUID, str], existing: Record | None
                            ) -> SyncResult:
    for attempt in range(3):  # a concurrent newer rev can slip in between the read and the conditional update
        if attempt or existing is None:
            existing = (await session.execute(select(Record).where(Record.id == item.id)
                                              .execution_options(populate_existing=True))).scalar_one_or_none()
        if existing is None:  # the row was inserted by a transaction that then rolled back: insert again
            done = await session.execute(insert_for(session, Record.__table__)
                                         .values(_new_row(user, device_id, item, digest, now))
                                         .on_conflict_do_nothing(index_elements=["id"]).returning(Record.id))
            if done.scalar_one_or_none() is not None:
                stored[item.id] = "created"
                return SyncResult(index, str(item.id), "created", rev=item.rev)
            continue
        if existing.site_id != user.site_id:  # a UUID clash with another site: never show their data
            return SyncResult(index, str(item.id), "rejected", rev=item.rev, message="This record id is taken.",
                              errors={"id": {"code": "taken", "message": "make a new id for this record"}})
        if item.rev == existing.rev and digest == existing.content_hash:
            return SyncResult(index, str(item.id), "duplicate", rev=existing.rev, receipt=existing.receipt,
                              received_at=existing.received_at)
        if item.rev <= existing.rev:
            return SyncResult(index, str(item.id), "conflict", rev=existing.rev, server=record_out(existing),
                              message="The server holds another version of this record.")
        done = await session.execute(
            update(Record).where(Record.id == item.id, Record.rev < item.rev).values(
                rev=item.rev, data=item.data, content_hash=digest, form=item.form, form_version=item.form_version,
                incident_id=item.incident_id, captured_at=item.captured_at, updated_at=now, device_id=device_id,
                receipt=new_receipt(), source=item.source, sheet_id=item.sheet_id, sheet_row=item.sheet_row)
            .returning(Record.id).execution_options(synchronize_session=False))
        if done.scalar_one_or_none() is not None:
            stored.setdefault(item.id, "updated")
            return SyncResult(index, str(item.id), "updated", rev=item.rev)
    raise Problem(503, "This record changed too often while storing; please retry.", headers={"Retry-After": "2"})


@post("/api/sync", summary="Upload queued records; get per-record outcomes and changes since the cursor",
      status_code=200)
async def sync(request: Request[CurrentUser, str, Any], db: AsyncSession, data: SyncIn) -> SyncOut:
    settings = request.app.state.settings
    if len(data.records) > settings.sync_max_records:
        raise Problem(413, f"Too many records in one batch: {len(data.records)}; send at most "
                           f"{settings.sync_max_records} per request.", max_records=settings.sync_max_records)
    results = await store_batch(db, request.user, data.device_id, data.records)
    changes, cursor, more = await changes_since(db, request.user, data.cursor)
    now = await db_now(db)
    await db.commit()  # before answering: an acknowledged record is a committed record
    return SyncOut(results, [ChangeOut(**c) for c in changes], cursor, more, now)


# ---------------------------------------------------------------- reading records

class RecordPage(msgspec.Struct):
    items: list[RecordOut]
    total: int
    next_after: int | None  # pass as ?after= for the next page


@get("/api/records", summary="Records I may see (agents: their own; leads and up: the site's)")
async def list_records(
    request: Request[CurrentUser, str, Any], db: AsyncSession,
    incident_id: int | None = None,
    status: Annotated[Literal["pending", "reentered", "closed"] | None, Parameter(query="status")] = None,
    form: str | None = None,
    agent: int | None = None,
    source: Literal["device", "paper"] | None = None,
    sheet_id: str | None = None,
    since: Annotated[datetime | None, Parameter(query="since", description="updated at or after (ISO 8601)")]
    = None,
    after: Annotated[int, Parameter(query="after", ge=0, description="seq cursor from next_after")] = 0,
    limit: Annotated[int, Parameter(query="limit", ge=1, le=1000)] = 100,
) -> RecordPage:
    user = request.user
    where = [Record.site_id == user.site_id]
    if user.role == "agent":
        where.append(Record.agent_id == user.id)
    elif agent is not None:
        where.append(Record.agent_id == agent)
    for column, value in ((Record.incident_id, incident_id), (Record.reentry_status, status), (Record.form, form),
                          (Record.source, source), (Record.sheet_id, sheet_id)):
        if value is not None:
            where.append(column == value)
    if since is not None:
        if since.tzinfo is None:
            raise Problem(400, "since needs a timezone, e.g. 2026-11-23T08:00:00+08:00", errors={"since": "naive"})
        where.append(Record.updated_at >= since)
    total = (await db.execute(select(func.count()).select_from(Record).where(*where))).scalar_one()
    rows = (await db.execute(select(Record).where(*where, Record.seq > after).order_by(Record.seq)
                             .limit(limit + 1))).scalars().all()
    more = len(rows) > limit
    rows = rows[:limit]
    return RecordPage([record_out(r) for r in rows], total, rows[-1].seq if more else None)


@get("/api/records/{record_id:uuid}", summary="One record")
async def get_record(request: Request[CurrentUser, str, Any], db: AsyncSession, record_id: uuid.UUID) -> RecordOut:
    user = request.user
    record = (await db.execute(select(Record).where(Record.id == record_id, Record.site_id == user.site_id)
                               )).scalar_one_or_none()
    if record is None or (user.role == "agent" and record.agent_id != user.id):
        raise Problem(404, "No such record at your site.")
    return record_out(record)


router = Router(path="/", route_handlers=[sync, list_records, get_record], tags=["records"])


# ---------------------------------------------------------------- admission: the recovery burst

def sync_admission(app: ASGIApp) -> ASGIApp:
    """At most `sync_concurrency` syncs run at once; the rest wait their turn BEFORE their body is read, so
    hundreds of devices reconnecting together hold neither memory nor database connections. One that waits
    longer than `sync_wait_seconds` gets a 503 problem with Retry-After, and the device retries later with
    jittered backoff (its queue is untouched)."""
    gate: dict[str, Any] = {}

    async def admit(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/api/sync" or scope["method"] != "POST":
            await app(scope, receive, send)
            return
        settings = scope["app"].state.settings
        if "slots" not in gate:
            gate["slots"] = asyncio.Semaphore(settings.sync_concurrency)
        slots: asyncio.Semaphore = gate["slots"]
        try:
            await asyncio.wait_for(slots.acquire(), settings.sync_wait_seconds)
        except TimeoutError:
            body = msgspec.json.encode({
                "type": "urn:outage-desk:server-busy", "title": "Service Unavailable", "status": 503,
                "detail": "Many devices are syncing right now; nothing was lost on your device, it will retry."})
            await send({"type": "http.response.start", "status": 503, "headers": [
                (b"content-type", b"application/problem+json"), (b"retry-after", b"5"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await app(scope, receive, send)
        finally:
            slots.release()

    return admit


middleware = [sync_admission]
