"""Run Alembic from code: the server migrates on start, tests migrate empty databases; `prepare()` is what
every CLI command does first (migrate, load the shipped playbooks and forms)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from alembic import command
from alembic.config import Config

from .config import ROOT, load_settings
from .db import make_engine, sessionmaker


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    if database_url.startswith("sqlite"):
        from pathlib import Path

        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


def revision(database_url: str, message: str) -> None:
    from datetime import date

    command.revision(
        alembic_config(database_url),
        message=message,
        autogenerate=True,
        rev_id=f"{date.today():%Y%m%d}_{message.lower().replace(' ', '_')[:30]}",
    )


def with_session(fn: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run fn(session) in one committed transaction on the configured database (for CLI commands)."""

    async def run() -> Any:
        engine = make_engine(load_settings().database_url)
        try:
            async with sessionmaker(engine)() as session:
                result = await fn(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(run())


async def load_defaults(session: Any) -> None:
    """Load the shipped data (playbooks, forms) into every site."""
    from .app import DEFAULT_LOADERS

    for load in DEFAULT_LOADERS:
        await load(session)


def prepare() -> None:
    """Migrate and load defaults: what `serve` does before it listens."""
    upgrade(load_settings().database_url)
    with_session(load_defaults)
