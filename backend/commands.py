"""What every CLI command shares: one committed session on the configured database, and `prepare()` (migrate,
then load the shipped playbooks and forms into every site). Apart from backend.migrate so that modules the app
imports (backup) can migrate without importing the app."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from .config import load_settings
from .db import make_engine, sessionmaker
from .migrate import upgrade


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
