"""Database engine, session and the column types every module shares."""

from __future__ import annotations

import asyncio
import uuid
import weakref
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import msgspec
from sqlalchemy import CursorResult, DateTime, MetaData, Result, Table, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from .errors import Problem

T = TypeVar("T")
INT32 = 2_147_483_647  # the largest id an integer column holds: anything bigger is bad input, never a lookup
JSON_INT = (
    2**53 - 1
)  # the largest integer a JSON value keeps exactly everywhere (JavaScript numbers included)


def has_nul(value: Any) -> bool:
    """Does any text in this JSON-like value hold a NUL? PostgreSQL cannot store one in text or JSON."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(has_nul(k) or has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_nul(v) for v in value)
    return False


# Stable constraint names so Alembic autogenerate and batch mode on SQLite agree.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on SQLite (no tz support) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # SQLite func.now() defaults come back as text
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> uuid.UUID:
    return uuid.uuid4()


def json_dumps(value: Any) -> str:
    return msgspec.json.encode(value).decode()


def make_engine(url: str, pool: tuple[int, int] = (10, 20), **kwargs: Any) -> AsyncEngine:
    """An engine for `url`; on PostgreSQL `pool` = (pool_size, max_overflow) (Settings.pool sizes it per process)."""
    # msgspec for JSON columns: several times faster than the json module on the sync path.
    kwargs.setdefault("json_serializer", json_dumps)
    kwargs.setdefault("json_deserializer", msgspec.json.decode)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # 512 KiB of page cache per connection instead of 2 MiB: the pool holds up to 15 (one thread
            # each) through a burst, and the OS page cache holds the file anyway (bench: peak 160 → 147 MB).
            cur.execute("PRAGMA cache_size=-512")
            cur.close()

        @event.listens_for(engine.sync_engine, "handle_error")
        def _read_only_is_a_dead_connection(context: Any) -> None:
            # A connection opened while the file was read-only stays read-only for its whole life, even after
            # the disk is writable again: treat it as broken, so the pool opens a fresh one on the next try.
            if "readonly" in str(context.original_exception).replace(" ", "").lower():
                context.is_disconnect = True

        return engine
    kwargs.setdefault("pool_size", pool[0])
    kwargs.setdefault("max_overflow", pool[1])
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def affected(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (session.execute is typed as returning a plain Result)."""
    return cast(CursorResult[Any], result).rowcount or 0


def table_of(model: type[Base]) -> Table:
    """A model's Core table, for bulk statements (`__table__` is typed as any FromClause)."""
    return cast(Table, model.__table__)


def is_postgresql(session: AsyncSession) -> bool:
    """The one dialect check: PostgreSQL has row locks (SKIP LOCKED) and advisory locks; SQLite has one writer."""
    return session.bind is not None and session.bind.dialect.name == "postgresql"


def insert_for(session: AsyncSession, table: Any) -> Any:
    """A dialect-specific INSERT that supports ON CONFLICT (upserts without check-then-insert)."""
    return (postgresql.insert if is_postgresql(session) else sqlite.insert)(table)


_writer_locks: dict[tuple[int, int], asyncio.Lock] = {}  # (engine, event loop) -> the SQLite writer's turn
_turns: weakref.WeakSet[Any] = weakref.WeakSet()  # transactions that hold their turn


async def writer_turn(session: AsyncSession) -> None:
    """SQLite has one writer, and a connection waiting for the write lock polls it with sleeps of up to 100 ms:
    under a burst of syncs most of the time went to those sleeps. Writers of one process queue here instead and
    hand over the instant a transaction ends (commit or rollback). PostgreSQL: nothing (row and advisory locks)."""
    if is_postgresql(session) or session.bind is None:
        return
    transaction = session.sync_session.get_transaction()
    if transaction is not None and transaction in _turns:
        return
    key = (id(session.bind), id(asyncio.get_running_loop()))
    lock = _writer_locks.setdefault(key, asyncio.Lock())
    await lock.acquire()
    transaction = session.sync_session.get_transaction() or session.sync_session.begin()
    _turns.add(transaction)

    def release(_session: Any, ended: Any) -> None:
        if ended is transaction and transaction in _turns:  # (the listener dies with the request's session)
            _turns.discard(transaction)
            lock.release()

    event.listen(session.sync_session, "after_transaction_end", release)


async def db_now(session: AsyncSession) -> datetime:
    """The database's clock, so several app processes agree on 'now' (read it through backend.clock)."""
    if not is_postgresql(session):
        return utcnow()  # SQLite is in-process: its clock is ours
    value = (await session.execute(select(func.now()))).scalar_one()
    return value.astimezone(UTC)


async def get_for_site(session: AsyncSession, model: type[T], key: Any, site_id: int, what: str) -> T:
    """The row with this primary key if it belongs to the caller's site, else a 404 problem. Another site's
    row answers exactly like a missing one, so ids never tell what other sites hold."""
    if isinstance(key, int) and not 0 < key <= INT32:
        row = None  # beyond any stored id (and beyond what the driver can bind)
    else:
        row = await session.get(model, key)
    if row is None or getattr(row, "site_id", None) != site_id:
        raise Problem(404, f"No such {what} at your site.", code=f"{what}.not_found")
    return row
