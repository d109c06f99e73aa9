"""Versioned site documents: the playbooks and forms. Shipped files seed every site; an admin edit
adds a new version; old versions stay readable (a record names the form version it was made with)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from litestar import Request, Response, Router, get, post, put
from litestar.params import Parameter
from sqlalchemy import JSON, ForeignKey, Integer, Select, String, UniqueConstraint, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import audit, clock, compat
from .auth import CurrentUser, Site, requires
from .db import Base, UTCDateTime, utcnow
from .definitions import CONTENT_KINDS, PlaybookDefinition, as_stored, parse_definition
from .errors import Problem

CONTENT = Path(__file__).resolve().parent / "content"
LANGS = ("zh-CN", "en")
Kind = Literal["form", "playbook"]
Lang = Literal["zh-CN", "en"]


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("site_id", "kind", "slug", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    slug: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict] = mapped_column(JSON)
    # 'shipped' rows come from backend/content (shipped_version = the file's version); 'admin' from the API.
    source: Mapped[str] = mapped_column(String(16), default="shipped")
    shipped_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)


# ---------------------------------------------------------------- storage


def shipped(kind: str) -> list[dict[str, Any]]:
    folder = CONTENT / (kind + "s")
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]


async def latest(session: AsyncSession, site_id: int, kind: str, slug: str | None = None) -> list[Document]:
    """The newest version of each document (or of one slug) at a site."""
    versions = (
        select(Document.slug, func.max(Document.version).label("version"))
        .where(Document.site_id == site_id, Document.kind == kind)
        .group_by(Document.slug)
    )
    if slug is not None:
        versions = versions.where(Document.slug == slug)
    newest = versions.subquery()
    rows = await session.execute(
        select(Document)
        .join(newest, (Document.slug == newest.c.slug) & (Document.version == newest.c.version))
        .where(Document.site_id == site_id, Document.kind == kind)
        .order_by(Document.slug)
    )
    return list(rows.scalars())


async def get_document(
    session: AsyncSession, site_id: int, kind: str, slug: str, version: int | None = None
) -> Document | None:
    if version is None:
        found = await latest(session, site_id, kind, slug)
        return found[0] if found else None
    return (
        await session.execute(
            select(Document).where(
                Document.site_id == site_id,
                Document.kind == kind,
                Document.slug == slug,
                Document.version == version,
            )
        )
    ).scalar_one_or_none()


async def add_version(
    session: AsyncSession,
    site_id: int,
    kind: str,
    definition: dict[str, Any],
    *,
    source: str,
    shipped_version: int | None = None,
    user_id: int | None = None,
) -> Document:
    current = (
        await session.execute(
            select(func.max(Document.version)).where(
                Document.site_id == site_id, Document.kind == kind, Document.slug == definition["slug"]
            )
        )
    ).scalar()
    document = Document(
        site_id=site_id,
        kind=kind,
        slug=definition["slug"],
        version=(current or 0) + 1,
        definition=definition,
        source=source,
        shipped_version=shipped_version,
        created_by=user_id,
    )
    session.add(document)
    await session.flush()
    return document


async def seed_site(session: AsyncSession, site: Site) -> None:
    """Give a site every shipped document it lacks at the shipped version (idempotent)."""
    have = {
        (k, s, v)
        for k, s, v in (
            await session.execute(
                select(Document.kind, Document.slug, Document.shipped_version).where(
                    Document.site_id == site.id, Document.source == "shipped"
                )
            )
        ).all()
    }
    for kind in CONTENT_KINDS:
        for raw in shipped(kind):
            if (kind, raw["slug"], raw["version"]) not in have:
                definition = as_stored(parse_definition(kind, raw))
                await add_version(
                    session, site.id, kind, definition, source="shipped", shipped_version=raw["version"]
                )


async def load_defaults(session: AsyncSession) -> None:
    for site in (await session.execute(select(Site))).scalars():
        await seed_site(session, site)


def cursor_query(site_id: int) -> Select[int]:
    """One row, `top`: grows whenever any document of the site gets a new version; devices compare it to refresh."""
    return select(func.coalesce(func.max(Document.id), 0).label("top")).where(Document.site_id == site_id)


async def cursor(session: AsyncSession, site_id: int) -> int:
    return (await session.execute(cursor_query(site_id))).scalar_one()


# ---------------------------------------------------------------- output


def localize(value: Any, lang: str | None) -> Any:
    """Replace every {"zh-CN": …, "en": …} by the one language asked for (both when lang is None)."""
    if lang is None:
        return value
    if isinstance(value, dict):
        if set(value) == set(LANGS):
            return value[lang]
        return {k: localize(v, lang) for k, v in value.items()}
    if isinstance(value, list):
        return [localize(v, lang) for v in value]
    return value


async def directory(session: AsyncSession, site_id: int) -> list[dict[str, Any]]:
    """The site's contact directory entries (role, label, phone); [] until an admin saves one."""
    found = await latest(session, site_id, "directory")
    return list(found[0].definition.get("entries", [])) if found else []


def with_directory(definition: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """A playbook as devices get it: each contact's number from the site directory when it lists that role,
    and each escalation rung with the directory's numbers for the roles it notifies."""
    if not entries:
        return definition
    by_role = {e["role"]: e for e in entries}
    contacts = [
        {**c, "phone": by_role[c["role"]]["phone"]} if c["role"] in by_role else c
        for c in definition.get("contacts", [])
    ]
    ladder = [
        {**rung, "contacts": [by_role[r] for r in rung["notify"] if r in by_role]}
        for rung in definition.get("escalation", [])
    ]
    return {**definition, "contacts": contacts, "escalation": ladder}


def document_out(
    document: Document, lang: str | None, entries: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    definition = document.definition
    if document.kind == "playbook" and entries:
        definition = with_directory(definition, entries)
    body = localize(definition, lang)
    return {
        **body,
        "slug": document.slug,
        "version": document.version,
        "lang": lang or "all",
        "updated_at": document.created_at.isoformat(),
    }


# ---------------------------------------------------------------- routes, the same for forms and playbooks


def make_router(kind: str, path: str, tag: str) -> Router:
    plural = path.rsplit("/", 1)[-1]

    @get(path, summary=f"All {plural} of my site, newest versions", name=f"list_{plural}")
    async def list_documents(
        request: Request[CurrentUser, str, Any],
        db: AsyncSession,
        lang: Annotated[Lang | None, Parameter(query="lang")] = None,
    ) -> Response[Any]:
        site_cursor = await cursor(db, request.user.site_id)
        etag = f'"{kind}-{site_cursor}-{lang or "all"}"'
        if request.headers.get("if-none-match") == etag:
            return Response(None, status_code=304, headers={"ETag": etag})
        documents = await latest(db, request.user.site_id, kind)
        entries = await directory(db, request.user.site_id) if kind == "playbook" else None
        return Response(
            [document_out(d, lang, entries) for d in documents],
            headers={"ETag": etag, "X-Content-Cursor": str(site_cursor), "Cache-Control": "no-cache"},
        )

    @get(path + "/{slug:str}", summary=f"One of the {plural} (newest, or ?version=N)", name=f"get_{kind}")
    async def get_one(
        request: Request[CurrentUser, str, Any],
        db: AsyncSession,
        slug: str,
        lang: Annotated[Lang | None, Parameter(query="lang")] = None,
        version: Annotated[int | None, Parameter(query="version", ge=1)] = None,
    ) -> dict[str, Any]:
        document = await get_document(db, request.user.site_id, kind, slug, version)
        if document is None:
            raise Problem(
                404,
                f"No {kind} {slug!r}" + (f" version {version}" if version else "") + " at your site.",
                code="document.not_found",
            )
        entries = await directory(db, request.user.site_id) if kind == "playbook" else None
        return document_out(document, lang, entries)

    @post(path, guards=[requires("admin")], summary=f"Add a new {kind} (admin)", name=f"create_{kind}")
    async def create(
        request: Request[CurrentUser, str, Any], db: AsyncSession, data: dict[str, Any]
    ) -> dict[str, Any]:
        definition = parse_definition(kind, data)
        if await get_document(db, request.user.site_id, kind, definition.slug) is not None:
            raise Problem(
                409,
                f"A {kind} {definition.slug!r} exists already; PUT {path}/{definition.slug} "
                "to make a new version.",
                code="document.exists",
            )
        document = await publish(request, db, kind, as_stored(definition))
        return document_out(document, None)

    @put(
        path + "/{slug:str}",
        guards=[requires("admin")],
        summary=f"Edit a {kind}: makes a new version (admin)",
        name=f"update_{kind}",
    )
    async def update(
        request: Request[CurrentUser, str, Any], db: AsyncSession, slug: str, data: dict[str, Any]
    ) -> dict[str, Any]:
        definition = parse_definition(kind, {**data, "slug": data.get("slug", slug)})
        if definition.slug != slug:
            raise Problem(
                422,
                "The slug in the body must match the address.",
                errors={"slug": "does not match"},
                code="document.slug_mismatch",
            )
        if await get_document(db, request.user.site_id, kind, slug) is None:
            raise Problem(404, f"No {kind} {slug!r} at your site.", code="document.not_found")
        document = await publish(request, db, kind, as_stored(definition))
        return document_out(document, None)

    return Router(path="/", route_handlers=[list_documents, get_one, create, update], tags=[tag])


async def check_publishable(db: AsyncSession, site_id: int, kind: str, definition: dict[str, Any]) -> None:
    """What parse_definition cannot see alone: a playbook's forms exist at the site, and a form's new
    version keeps what the site's records made with it hold (backend.compat)."""
    parsed = parse_definition(kind, definition)
    if isinstance(parsed, PlaybookDefinition):
        missing = [s for s in parsed.forms if await get_document(db, site_id, "form", s) is None]
        if missing:
            raise Problem(
                422,
                "This playbook names forms that do not exist.",
                errors={"forms": missing},
                code="document.unknown_forms",
            )
    if kind == "form":
        current = await get_document(db, site_id, "form", definition["slug"])
        old = current.definition if current else None
        if errors := await compat.breaking_changes(db, site_id, old, definition):
            raise Problem(
                422,
                "This change would break call records already made with this form.",
                errors=errors,
                code="document.breaking_change",
            )


async def publish(
    request: Request[CurrentUser, str, Any],
    db: AsyncSession,
    kind: str,
    definition: dict[str, Any],
    *,
    action: str = "publish",
    note: dict[str, Any] | None = None,
) -> Document:
    """Check a definition and make it the newest version (devices pick it up through the content cursor);
    the audit log gets who, which version before and after."""
    user = request.user
    await check_publishable(db, user.site_id, kind, definition)
    before = await get_document(db, user.site_id, kind, definition["slug"])
    document = await add_version(db, user.site_id, kind, definition, source="admin", user_id=user.id)
    await audit.record(
        db,
        site_id=user.site_id,
        actor=user,
        action=f"{kind}.{action}",
        target=f"{kind}:{document.slug}",
        before={"version": before.version} if before else None,
        after={"version": document.version, **(note or {})},
        at=await clock.now(request.app.state, db),
    )
    return document


@get(
    "/api/content/cursor",
    tags=["content"],
    summary="The content cursor: changes when any playbook or form does",
)
async def content_cursor(request: Request[CurrentUser, str, Any], db: AsyncSession) -> dict[str, Any]:
    site_id = request.user.site_id
    rows = (
        await db.execute(
            select(Document.kind, Document.slug, func.max(Document.version))
            .where(Document.site_id == site_id, Document.kind.in_(CONTENT_KINDS))
            .group_by(Document.kind, Document.slug)
        )
    ).all()
    return {
        "cursor": await cursor(db, site_id),
        "documents": [{"kind": k, "slug": s, "version": v} for k, s, v in sorted(rows)],
    }


router = Router(path="/", route_handlers=[content_cursor])
