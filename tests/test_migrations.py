"""Migrations: upgrade head on an empty database, and the models agree with the migrations."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import backend.app  # noqa: F401  (every capability's tables on Base.metadata)
from backend.db import Base, make_engine

from .servers import off_loop


def _diff(url: str) -> tuple[list, set[str]]:
    async def run():
        engine = make_engine(url)
        async with engine.connect() as conn:

            def compare(sync_conn):
                ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return compare_metadata(ctx, Base.metadata), set(inspect(sync_conn).get_table_names())

            result = await conn.run_sync(compare)
        await engine.dispose()
        return result

    return off_loop(asyncio.run, run())


def test_upgrade_head_on_empty_database_and_models_match(database_url):
    # database_url is an empty database upgraded to head by the fixture (SQLite and PostgreSQL).
    diff, tables = _diff(database_url)
    assert {"sites", "users", "auth_tokens", "alembic_version"} <= tables
    assert set(Base.metadata.tables) <= tables
    assert diff == [], f"models and migrations disagree: {diff}"


def test_upgrade_is_repeatable(database_url):
    from backend.migrate import upgrade

    off_loop(upgrade, database_url)  # already at head: a second start changes nothing
    assert _diff(database_url)[0] == []
