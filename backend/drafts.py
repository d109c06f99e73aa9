"""The playbook and form editor's server side: one draft per document, kept apart from the published versions
(devices never see it); its diff against the published version; publish (a new version, as any edit makes);
roll back (an earlier version's content published again as the newest). Admins only, their own site only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Router, delete, get, post, put
from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy import delete as sql_delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import audit, clock, documents
from .auth import CurrentUser, User, requires
from .db import Base, UTCDateTime
from .definitions import as_stored, parse_definition
from .errors import Problem

Kind = Literal["playbook", "form"]


class DocumentDraft(Base):
    __tablename__ = "document_drafts"
    __table_args__ = (UniqueConstraint("site_id", "kind", "slug"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    slug: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict] = mapped_column(JSON)
    base_version: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the version it was edited from
    updated_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RollbackIn(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


def diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """Every change from `before` to `after` as {path, before, after}; lists of named things (steps by id,
    fields by name) are compared by that name, so moving one step shows as a move, not as every step changed."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[dict[str, Any]] = []
        for key in [*before, *(k for k in after if k not in before)]:
            out += diff(before.get(key), after.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(before, list) and isinstance(after, list):
        old, new = _keyed(before), _keyed(after)
        if old is not None and new is not None:
            out = []
            if list(old) != list(new) and set(old) == set(new):
                out.append({"path": path, "change": "order", "before": list(old), "after": list(new)})
            for key in [*old, *(k for k in new if k not in old)]:
                out += diff(old.get(key), new.get(key), f"{path}[{key}]")
            return out
        if len(before) == len(after):
            out = []
            for i, (a, b) in enumerate(zip(before, after, strict=True)):
                out += diff(a, b, f"{path}[{i}]")
            return out
    if before == after:
        return []
    change = "added" if before is None else "removed" if after is None else "changed"
    return [{"path": path, "change": change, "before": before, "after": after}]


def _keyed(items: list[Any]) -> dict[str, Any] | None:
    for key in ("id", "name", "role", "value"):
        if items and all(isinstance(i, dict) and key in i for i in items):
            names = [str(i[key]) for i in items]
            if len(set(names)) == len(names):
                return dict(zip(names, items, strict=True))
    return None if items else {}


async def _draft(db: AsyncSession, site_id: int, kind: str, slug: str) -> DocumentDraft | None:
    return (
        await db.execute(
            select(DocumentDraft).where(
                DocumentDraft.site_id == site_id, DocumentDraft.kind == kind, DocumentDraft.slug == slug
            )
        )
    ).scalar_one_or_none()


async def _published(db: AsyncSession, site_id: int, kind: str, slug: str) -> documents.Document | None:
    return await documents.get_document(db, site_id, kind, slug)


def _draft_out(draft: DocumentDraft | None, published: documents.Document | None) -> dict[str, Any] | None:
    if draft is None:
        return None
    return {
        "definition": draft.definition,
        "base_version": draft.base_version,
        "updated_at": draft.updated_at,
        "stale": published is not None and draft.base_version != published.version,
        "changes": diff(published.definition if published else {}, draft.definition),
    }


@get("/api/admin/documents", guards=[requires("admin")], summary="Every playbook and form, with drafts")
async def list_documents(request: Request[CurrentUser, str, Any], db: AsyncSession) -> list[dict[str, Any]]:
    site_id = request.user.site_id
    drafts = {
        (d.kind, d.slug): d
        for d in (await db.execute(select(DocumentDraft).where(DocumentDraft.site_id == site_id))).scalars()
    }
    out = []
    for kind in ("playbook", "form"):
        for doc in await documents.latest(db, site_id, kind):
            out.append(
                {
                    "kind": kind,
                    "slug": doc.slug,
                    "title": doc.definition["title"],
                    "version": doc.version,
                    "updated_at": doc.created_at,
                    "draft": (kind, doc.slug) in drafts,
                }
            )
        for (k, slug), d in drafts.items():
            if k == kind and not any(o["slug"] == slug and o["kind"] == kind for o in out):
                out.append(
                    {
                        "kind": kind,
                        "slug": slug,
                        "title": d.definition.get("title"),
                        "version": None,
                        "updated_at": d.updated_at,
                        "draft": True,
                    }
                )
    return out


@get(
    "/api/admin/documents/{kind:str}/{slug:str}",
    guards=[requires("admin")],
    summary="One document for the editor: published version, history, draft and its diff",
)
async def get_document(
    kind: Kind, slug: str, request: Request[CurrentUser, str, Any], db: AsyncSession
) -> dict[str, Any]:
    site_id = request.user.site_id
    published = await _published(db, site_id, kind, slug)
    draft = await _draft(db, site_id, kind, slug)
    if published is None and draft is None:
        raise Problem(404, f"No {kind} {slug!r} at your site.", code="document.not_found")
    names = dict((await db.execute(select(User.id, User.display_name).where(User.site_id == site_id))).all())
    versions = (
        await db.execute(
            select(documents.Document)
            .where(
                documents.Document.site_id == site_id,
                documents.Document.kind == kind,
                documents.Document.slug == slug,
            )
            .order_by(documents.Document.version.desc())
        )
    ).scalars()
    return {
        "kind": kind,
        "slug": slug,
        "published": published.definition if published else None,
        "version": published.version if published else None,
        "versions": [
            {
                "version": v.version,
                "source": v.source,
                "created_at": v.created_at,
                "created_by": names.get(v.created_by) if v.created_by else None,
                "definition": v.definition,
            }
            for v in versions
        ],
        "draft": _draft_out(draft, published),
    }


@put(
    "/api/admin/documents/{kind:str}/{slug:str}/draft",
    guards=[requires("admin")],
    summary="Save the draft (checked by every rule publishing checks; devices do not see it)",
)
async def save_draft(
    kind: Kind, slug: str, data: dict[str, Any], request: Request[CurrentUser, str, Any], db: AsyncSession
) -> dict[str, Any]:
    user = request.user
    definition = as_stored(parse_definition(kind, {**data, "slug": data.get("slug", slug)}))
    if definition["slug"] != slug:
        raise Problem(
            422,
            "The slug in the body must match the address.",
            errors={"slug": "does not match"},
            code="document.slug_mismatch",
        )
    await documents.check_publishable(db, user.site_id, kind, definition)
    published = await _published(db, user.site_id, kind, slug)
    now = await clock.now(request.app.state, db)
    draft = await _draft(db, user.site_id, kind, slug)
    if draft is None:
        draft = DocumentDraft(site_id=user.site_id, kind=kind, slug=slug)
        db.add(draft)
    draft.definition = definition
    draft.base_version = published.version if published else None
    draft.updated_by, draft.updated_at = user.id, now
    await db.flush()
    await audit.record(
        db,
        site_id=user.site_id,
        actor=user,
        action=f"{kind}.draft",
        target=f"{kind}:{slug}",
        after={"base_version": draft.base_version},
        at=now,
    )
    return _draft_out(draft, published) or {}


@delete(
    "/api/admin/documents/{kind:str}/{slug:str}/draft",
    guards=[requires("admin")],
    status_code=204,
    summary="Throw the draft away",
)
async def discard_draft(
    kind: Kind, slug: str, request: Request[CurrentUser, str, Any], db: AsyncSession
) -> None:
    user = request.user
    if await _draft(db, user.site_id, kind, slug) is None:
        raise Problem(404, f"No draft of {kind} {slug!r}.", code="draft.not_found")
    await db.execute(
        sql_delete(DocumentDraft).where(
            DocumentDraft.site_id == user.site_id, DocumentDraft.kind == kind, DocumentDraft.slug == slug
        )
    )
    await audit.record(
        db,
        site_id=user.site_id,
        actor=user,
        action=f"{kind}.discard",
        target=f"{kind}:{slug}",
        at=await clock.now(request.app.state, db),
    )


@post(
    "/api/admin/documents/{kind:str}/{slug:str}/publish",
    guards=[requires("admin")],
    status_code=200,
    summary="Publish the draft as the newest version (devices get it on their next refresh or sync)",
)
async def publish_draft(
    kind: Kind, slug: str, request: Request[CurrentUser, str, Any], db: AsyncSession
) -> dict[str, Any]:
    user = request.user
    draft = await _draft(db, user.site_id, kind, slug)
    if draft is None:
        raise Problem(404, f"No draft of {kind} {slug!r} to publish.", code="draft.not_found")
    document = await documents.publish(request, db, kind, draft.definition)
    await db.delete(draft)
    return {"slug": slug, "kind": kind, "version": document.version}


@post(
    "/api/admin/documents/{kind:str}/{slug:str}/rollback",
    guards=[requires("admin")],
    status_code=200,
    summary="Publish an earlier version's content again as the newest version",
)
async def rollback(
    kind: Kind, slug: str, data: RollbackIn, request: Request[CurrentUser, str, Any], db: AsyncSession
) -> dict[str, Any]:
    user = request.user
    earlier = await documents.get_document(db, user.site_id, kind, slug, data.version)
    if earlier is None:
        raise Problem(404, f"No version {data.version} of {kind} {slug!r}.", code="document.no_such_version")
    document = await documents.publish(
        request, db, kind, earlier.definition, action="rollback", note={"from_version": data.version}
    )
    return {"slug": slug, "kind": kind, "version": document.version}


router = Router(
    path="/",
    route_handlers=[list_documents, get_document, save_draft, discard_draft, publish_draft, rollback],
    tags=["admin"],
)
