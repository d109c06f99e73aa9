"""create_app(): the Litestar application with every capability's routes and background workers."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from litestar import Litestar, get
from litestar.config.compression import CompressionConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.logging import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from . import auth, shell
from .config import Settings, load_settings
from .db import make_engine, sessionmaker
from .errors import exception_handlers

log = logging.getLogger("outage_desk")

# One module per capability. Each may define `router` (routes), `workers` (async callables taking
# the app, run for the app's lifetime) and `load_defaults(session)` (shipped data, run by migrate/serve). Listed here once, imported by app and migrations.
CAPABILITIES = ["auth", "documents", "forms", "playbooks", "records", "incidents", "escalation", "push", "recovery", "reports",
                "printing"]


def capability_modules() -> list[Any]:
    modules = []
    for name in CAPABILITIES:
        try:
            modules.append(importlib.import_module(f"backend.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"backend.{name}":
                raise
    return modules


async def provide_db(state: State) -> AsyncIterator[AsyncSession]:
    async with state.sessionmaker() as session:
        yield session


@get("/api/health", tags=["app"], summary="200 once the database answers")
async def health(state: State) -> dict[str, Any]:
    async with state.sessionmaker() as session:
        await session.execute(text("SELECT 1"))
    return {"status": "ok", "database": state.engine.dialect.name, "version": shell.build_info()["version"]}


def create_app(settings: Settings | None = None, **overrides: Any) -> Litestar:
    settings = settings or load_settings(**overrides)
    modules = capability_modules()
    workers: list[Callable[[Litestar], Awaitable[None]]] = [w for m in modules for w in getattr(m, "workers", [])]

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        app.state.engine = engine
        app.state.sessionmaker = sessionmaker(engine)
        for module in modules:
            if hasattr(module, "on_startup"):
                await module.on_startup(app)
        tasks = [asyncio.create_task(w(app), name=w.__qualname__) for w in workers] if settings.run_workers else []
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for module in modules:
                if hasattr(module, "on_shutdown"):
                    await module.on_shutdown(app)
            await engine.dispose()

    return Litestar(
        route_handlers=[health, shell.router] + [m.router for m in modules if hasattr(m, "router")],
        lifespan=[lifespan],
        state=State({"settings": settings}),
        dependencies={"db": Provide(provide_db)},
        # Capability middleware (e.g. sync admission) runs outside authentication: it may answer before it.
        middleware=[*(mw for m in modules for mw in getattr(m, "middleware", [])), auth.auth_middleware],
        exception_handlers=exception_handlers,
        request_max_body_size=settings.max_body_bytes,
        # gzip (brotli would need an extra package): the app shell a phone installs and API JSON go out
        # compressed. Level 6 packs the shell within 0.1 % of level 9 at less CPU per response; tiny bodies
        # (health, 304s) are not worth it.
        compression_config=CompressionConfig(backend="gzip", minimum_size=1024, gzip_compress_level=6),
        openapi_config=OpenAPIConfig(
            title="Outage Desk API", version="1", path="/schema", render_plugins=[JsonRenderPlugin()],
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
            security=[{"bearer": []}],
        ),
        logging_config=LoggingConfig(loggers={"outage_desk": {"level": "INFO", "handlers": ["queue_listener"]}},
                                     log_exceptions="debug"),
    )
