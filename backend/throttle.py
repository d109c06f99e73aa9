"""Login throttling and the password KDF, off the event loop.

Every login attempt first *reserves* a failure row with one conditional INSERT … SELECT: it is stored only
while the username has fewer than FAILS_PER_USER and the address fewer than FAILS_PER_ADDRESS failures in
the window (PostgreSQL: serialised per username and address by transaction advisory locks; SQLite: one
writer at a time). Only an attempt that got its reservation has its password checked, so N concurrent wrong
logins verify at most the limit. A correct password deletes the reservation (and the username's earlier
failures); a wrong one leaves it counted.

The address limit stops one address from guessing at many accounts, but it does not lock other people out:
an account that logged in successfully from that address in the last KNOWN_FOR days (a call center's
shared NAT address, say) is still let through, and still limited by its own per-account count.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import anyio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from litestar.datastructures import State
from sqlalchemy import Index, Integer, String, delete, exists, func, literal, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, UTCDateTime, insert_for, is_postgresql, table_of, utcnow

FAILS_PER_USER = 5
FAILS_PER_ADDRESS = 20
FAIL_WINDOW = timedelta(minutes=15)
KNOWN_FOR = timedelta(days=30)
LOCK_CLASS = 4010  # pg_advisory_xact_lock(class, key) space for login reservations

hasher = PasswordHasher()  # Argon2id, library defaults (slow on purpose)
_dummy: list[str] = []


class LoginFailure(Base):
    __tablename__ = "login_failures"
    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "at"),
        Index("ix_login_failures_address_at", "address", "at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LoginAddress(Base):
    """Where each user last logged in successfully from: such a pair is not blocked by its address's limit."""

    __tablename__ = "login_addresses"
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime)


async def reserve(session: AsyncSession, username: str, address: str) -> int | None:
    """Store a failure row for this attempt if neither limit is reached; its id, or None when throttled.
    Commits (the reservation must count for concurrent attempts at once)."""
    now = utcnow()
    since = now - FAIL_WINDOW
    if is_postgresql(session):
        for key in sorted({f"u:{username}", f"a:{address}"}):
            await session.execute(
                text("SELECT pg_advisory_xact_lock(:c, hashtext(:k))"), {"c": LOCK_CLASS, "k": key}
            )
    by_user = (
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.username == username, LoginFailure.at > since)
        .scalar_subquery()
    )
    by_address = (
        select(func.count())
        .select_from(LoginFailure)
        .where(LoginFailure.address == address, LoginFailure.at > since)
        .scalar_subquery()
    )
    known = exists().where(
        LoginAddress.username == username,
        LoginAddress.address == address,
        LoginAddress.last_at > now - KNOWN_FOR,
    )
    allowed = select(literal(username), literal(address), literal(now, UTCDateTime)).where(
        by_user < FAILS_PER_USER, or_(by_address < FAILS_PER_ADDRESS, known)
    )
    statement = (
        table_of(LoginFailure)
        .insert()
        .from_select(["username", "address", "at"], allowed)
        .returning(LoginFailure.id)
    )
    reserved = (await session.execute(statement)).scalar_one_or_none()
    # Failures older than the window no longer count: this address's go (the index on address, at).
    await session.execute(
        delete(LoginFailure).where(LoginFailure.address == address, LoginFailure.at <= since)
    )
    await session.commit()
    return reserved


async def succeeded(session: AsyncSession, username: str, address: str) -> None:
    """A correct password: the reservation and the username's failures go, the address becomes known."""
    now = utcnow()
    await session.execute(delete(LoginFailure).where(LoginFailure.username == username))
    upsert = insert_for(session, LoginAddress).values(username=username, address=address, last_at=now)
    await session.execute(
        upsert.on_conflict_do_update(index_elements=["username", "address"], set_={"last_at": now})
    )
    await session.execute(
        delete(LoginAddress).where(LoginAddress.username == username, LoginAddress.last_at < now - KNOWN_FOR)
    )


def _limiter(state: State) -> anyio.CapacityLimiter:
    limiter = state.get("kdf_limiter")
    if limiter is None:
        limiter = state["kdf_limiter"] = anyio.CapacityLimiter(max(1, state.settings.kdf_threads))
    return limiter


def _verify(password_hash: str | None, password: str) -> bool:
    if password_hash is None:  # unknown user: the same cost, so timing does not tell who exists
        if not _dummy:
            _dummy.append(hasher.hash("not-a-password-anyone-has"))
        password_hash = _dummy[0]
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(state: State, password_hash: str | None, password: str) -> bool:
    """Argon2 in a worker thread, at most `kdf_threads` at once: the event loop keeps serving meanwhile."""
    ok = await anyio.to_thread.run_sync(_verify, password_hash, password, limiter=_limiter(state))
    return ok and password_hash is not None


async def hash_password(state: State, password: str) -> str:
    return await anyio.to_thread.run_sync(hasher.hash, password, limiter=_limiter(state))
