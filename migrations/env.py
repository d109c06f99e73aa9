"""Alembic environment: async engine, the models' metadata, batch mode on SQLite, one migrator at a time."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

import backend.app  # noqa: F401  (it imports every capability, so every table is on Base.metadata)
from backend.config import load_settings
from backend.db import Base, make_engine

target_metadata = Base.metadata
config = context.config


def database_url() -> str:
    return (
        config.attributes.get("database_url")
        or config.get_main_option("sqlalchemy.url")
        or load_settings().database_url
    )


def do_run_migrations(connection: Connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    if not is_sqlite:
        # Several app processes may start at once against one PostgreSQL: migrate one at a time.
        connection.execute(text("SELECT pg_advisory_xact_lock(7345001)"))
    context.configure(
        connection=connection, target_metadata=target_metadata, render_as_batch=is_sqlite, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = make_engine(database_url())
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
        await connection.commit()
    await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=database_url().startswith("sqlite"),
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    existing = config.attributes.get("connection")
    if existing is not None:
        do_run_migrations(existing)
    else:
        asyncio.run(run_async_migrations())
