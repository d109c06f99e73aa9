"""create_app(): the Litestar application, wired from every capability's routes, workers and hooks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, get
from litestar.config.compression import CompressionConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.logging import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from . import (
    ackpage,
    admin,
    admission,
    alerts,
    attach,
    attempts,
    audit,
    auth,
    backup,
    bots,
    callbacks,
    channels,
    contacts,
    crm,
    crmapi,
    crmpush,
    documents,
    drafts,
    escalation,
    firstrun,
    fleet,
    forms,
    headers,
    inbox,
    incidents,
    lifecycle,
    mail,
    notifications,
    openapi,
    outbox,
    playbooks,
    printing,
    promises,
    push,
    receipts,
    records,
    reentry,
    reports,
    retention,
    sessions,
    shell,
    sms,
    steps,
    sync,
    workers,
    worklist,
)
from .auth import SiteSeeder
from .config import Settings, load_settings
from .db import make_engine, sessionmaker
from .errors import exception_handlers
from .lifecycle import ResolveHook
from .sync import RecordHook

log = logging.getLogger("outage_desk")

# The wiring, in plain lists. Each capability module owns its routes, tables and logic; this is the one place
# that says which of them the app runs. A new capability adds itself here, nowhere else.
ROUTERS = [
    shell.router,
    auth.router,
    sessions.router,
    documents.router,
    forms.router,
    playbooks.router,
    sync.router,
    records.router,
    attach.router,
    incidents.router,
    lifecycle.router,
    steps.router,
    alerts.router,
    notifications.router,
    inbox.router,
    receipts.router,
    push.router,
    channels.router,
    contacts.router,
    ackpage.router,
    callbacks.router,
    worklist.router,
    attempts.router,
    reentry.router,
    crm.router,
    crmapi.router,
    reports.router,
    printing.router,
    fleet.router,
    audit.router,
    retention.router,
    admin.router,
    drafts.router,
    firstrun.router,
]
# "Do what is due" steps, each run for the app's lifetime by backend.workers.
WORKER_STEPS = [
    escalation.STEP,
    outbox.STEP,
    callbacks.STEP,
    reports.STEP,
    crmpush.STEP,
    retention.STEP,
    backup.STEP,
]
# How each kind of outbox delivery is sent (backend.outbox.Transport); a new kind (a CRM push) adds itself here.
TRANSPORTS: dict[str, outbox.Transport] = {
    "push": outbox.PUSH,
    "channel": bots.TRANSPORT,
    "email": mail.TRANSPORT,
    "sms": sms.TRANSPORT,
}
# Run once per sync batch on what was stored, in the sync's transaction (backend.sync.store_batch).
# attach first: the callbacks hook copies the record's incident onto its callback.
RECORD_HOOKS: list[RecordHook] = [
    attach.on_records_stored,
    promises.on_records_stored,
    printing.on_records_stored,
]
# Run when an incident is resolved, in the same transaction (backend.lifecycle.resolve): a drill's level and the
# surge incident it opened close with the drill.
RESOLVE_HOOKS: list[ResolveHook] = [alerts.on_incident_resolved]
# A new site starts with the shipped playbooks and forms.
SITE_SEEDERS: list[SiteSeeder] = [documents.seed_site]
# Shipped data for every existing site, loaded by `migrate` and before `serve` listens.
DEFAULT_LOADERS = [documents.load_defaults]
# Outermost first. Conditional GETs of the shell answer 304 before anything else runs. Admission runs inside authentication: it counts syncs per account, and a request with an
# unknown token gets its 401 without waiting for a turn.
MIDDLEWARE: list[Any] = [shell.revalidate, auth.auth_middleware, admission.sync_admission]
# Run on every answer sent, routed or not (404s, the admission 503): the security headers.
BEFORE_SEND = [headers.add_security_headers]


async def provide_db(state: State) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns (before the answer is sent, so an
    acknowledged write is a committed one), rolled back when it raises."""
    async with state.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


@get("/api/health", tags=["app"], summary="200 once the database answers")
async def health(state: State) -> dict[str, Any]:
    async with state.sessionmaker() as session:
        await session.execute(text("SELECT 1"))
    return {"status": "ok", "database": state.engine.dialect.name, "version": shell.build_info()["version"]}


def create_app(settings: Settings | None = None, **overrides: Any) -> Litestar:
    settings = settings or load_settings(**overrides)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url, settings.pool)
        app.state.engine = engine
        app.state.sessionmaker = sessionmaker(engine)
        await push.on_startup(app)
        tasks = workers.start(app.state, WORKER_STEPS) if settings.run_workers else []
        try:
            yield
        finally:
            await workers.stop(tasks)
            await push.on_shutdown(app)
            await engine.dispose()

    return Litestar(
        route_handlers=[health, *ROUTERS],
        lifespan=[lifespan],
        state=State(
            {
                "settings": settings,
                "record_hooks": RECORD_HOOKS,
                "site_seeders": SITE_SEEDERS,
                "transports": TRANSPORTS,
                "resolve_hooks": RESOLVE_HOOKS,
            }
        ),
        dependencies={"db": Provide(provide_db)},
        middleware=MIDDLEWARE,
        before_send=BEFORE_SEND,
        exception_handlers=exception_handlers,
        request_max_body_size=settings.max_body_bytes,
        # gzip (brotli would need an extra package): the app shell a phone installs and API JSON go out
        # compressed. Level 6 packs the shell within 0.1 % of level 9 at less CPU per response; tiny bodies
        # (health, 304s) are not worth it.
        compression_config=CompressionConfig(backend="gzip", minimum_size=1024, gzip_compress_level=6),
        openapi_config=OpenAPIConfig(
            title="Outage Desk API",
            version="1",
            path="/schema",
            render_plugins=[openapi.ProblemJsonRenderPlugin()],  # the document as the server behaves
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
            security=[{"bearer": []}],
        ),
        logging_config=LoggingConfig(
            loggers={"outage_desk": {"level": "INFO", "handlers": ["queue_listener"]}}, log_exceptions="debug"
        ),
    )
