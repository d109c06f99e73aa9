"""Paper fallback: sheet IDs for printed forms, their QR codes, and the id of a transcribed paper row.

The print views themselves are rendered in the PWA from the cached definitions (so printing works
offline); the server only hands out sheet IDs it can vouch for, each with an SVG QR code (segno).

Sheet ID: ``YYMMDD-RRRRRR-C``: the print date, six random Crockford base32 characters and a Luhn mod 32
check character, so a mistyped character or a swapped pair is caught when a sheet is transcribed.
Server-made IDs start their random part with a digit, device-made ones (printed offline) with a letter,
so the two kinds can never collide; server IDs are unique by constraint, device IDs by 2^29 randomness per
day. frontend/sheets.js implements the same rules.
"""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Router, get, post
from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from . import documents
from .auth import CurrentUser
from .db import Base, UTCDateTime, insert_for, utcnow
from .errors import Problem

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
DIGITS = ALPHABET[:10]
LETTERS = ALPHABET[10:]
# Paper rows get deterministic ids: uuid5(PAPER_NAMESPACE, f"{sheet_id}:{row}"). The same namespace is in
# frontend/sheets.js: device and server must agree.
PAPER_NAMESPACE = uuid.UUID("6f1d2b6e-4c3a-5e59-9a57-0d3b1c9e7a41")
MAX_SHEETS = 50


class PrintedSheet(Base):
    """A sheet ID that was printed (origin 'server') or first seen on a transcribed row (origin 'device')."""

    __tablename__ = "printed_sheets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sheet_id: Mapped[str] = mapped_column(String(16), unique=True)  # canonical form, globally unique
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    form: Mapped[str] = mapped_column(String(64))
    form_version: Mapped[int] = mapped_column(Integer)
    origin: Mapped[str] = mapped_column(String(8), default="server")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# ---------------------------------------------------------------- sheet IDs


def check_char(payload: str) -> str:
    """Luhn mod 32 over the Crockford alphabet (catches any single wrong character and most swaps)."""
    factor, total = 2, 0
    for char in reversed(payload):
        addend = factor * ALPHABET.index(char)
        factor = 1 if factor == 2 else 2
        total += addend // 32 + addend % 32
    return ALPHABET[(32 - total % 32) % 32]


def normalize_sheet_id(text: str) -> str | None:
    """What a person typed → canonical ``YYMMDD-RRRRRR-C``, or None when it is not a valid sheet ID."""
    raw = re.sub(r"[\s\-_.]", "", text or "").upper().translate(str.maketrans("OIL", "011"))
    if not re.fullmatch(r"\d{6}[0-9A-Z]{7}", raw) or any(c not in ALPHABET for c in raw):
        return None
    if check_char(raw[:12]) != raw[12]:
        return None
    return f"{raw[:6]}-{raw[6:12]}-{raw[12]}"


def make_sheet_id(day: str, *, origin: str = "server") -> str:
    """A new sheet ID for print date ``day`` (YYMMDD)."""
    first = secrets.choice(DIGITS if origin == "server" else LETTERS)
    payload = day + first + "".join(secrets.choice(ALPHABET) for _ in range(5))
    return f"{day}-{payload[6:]}-{check_char(payload)}"


def sheet_origin(sheet_id: str) -> str:
    return "server" if sheet_id[7] in DIGITS else "device"


def paper_record_id(site_slug: str, sheet_id: str, row: int) -> uuid.UUID:
    """The record id of row ``row`` of a paper sheet of a site: typing the same row twice gives the same record.
    The site is part of it, so another site typing (or guessing) our sheet's ID never takes our row's id."""
    return uuid.uuid5(PAPER_NAMESPACE, f"{site_slug}:{sheet_id}:{row}")


def qr_svg(sheet_id: str) -> str:
    """The sheet ID as a QR code, an SVG data: URI (the page shows it as an <img>, never as markup)."""
    import segno  # on first use: most processes never print a sheet

    return segno.make(sheet_id, error="m").svg_data_uri(border=2, scale=1)


async def on_records_stored(session: AsyncSession, stored: list[tuple[Any, str]], now: datetime) -> None:
    """Records hook: a transcribed paper row makes its sheet known (sheets printed offline become known
    this way), so a later transcription of the same sheet finds its form."""
    sheets: dict[str, dict[str, Any]] = {}
    for record, _ in stored:
        sheet_id = normalize_sheet_id(record.sheet_id or "") if record.source == "paper" else None
        if sheet_id is not None:
            sheets.setdefault(
                sheet_id,
                {
                    "sheet_id": sheet_id,
                    "site_id": record.site_id,
                    "form": record.form,
                    "form_version": record.form_version,
                    "origin": sheet_origin(sheet_id),
                    "created_by": record.agent_id,
                    "created_at": now,
                },
            )
    if sheets:
        await session.execute(
            insert_for(session, PrintedSheet.__table__).on_conflict_do_nothing(index_elements=["sheet_id"]),
            list(sheets.values()),
        )


# ---------------------------------------------------------------- API


class SheetsIn(msgspec.Struct, forbid_unknown_fields=True):
    form: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_SHEETS)] = 1
    day: Annotated[str, msgspec.Meta(pattern=r"^\d{6}$")] | None = None  # the device's local date, YYMMDD


class SheetOut(msgspec.Struct):
    sheet_id: str
    form: str
    form_version: int
    origin: str
    created_at: str
    qr_svg: str


def sheet_out(sheet: PrintedSheet) -> SheetOut:
    return SheetOut(
        sheet.sheet_id,
        sheet.form,
        sheet.form_version,
        sheet.origin,
        sheet.created_at.isoformat(),
        qr_svg(sheet.sheet_id),
    )


@post("/api/print/sheets", status_code=201, summary="Allocate sheet IDs (with QR codes) for printing a form")
async def allocate_sheets(
    request: Request[CurrentUser, str, Any], db: AsyncSession, data: SheetsIn
) -> list[SheetOut]:
    user = request.user
    document = await documents.get_document(db, user.site_id, "form", data.form)
    if document is None:
        raise Problem(
            404, f"No form {data.form!r} at your site.", errors={"form": "unknown"}, code="form.unknown"
        )
    if data.day is not None:
        try:
            datetime.strptime(data.day, "%y%m%d")
        except ValueError:
            raise Problem(
                422, "day is not a date (YYMMDD).", errors={"day": "not a date"}, code="validation.not_a_date"
            ) from None
    day = data.day or datetime.now(UTC).strftime("%y%m%d")
    sheets = []
    for _ in range(data.count):
        for _attempt in range(8):  # a clash needs the same day and 5 random characters: retry a new one
            sheet = PrintedSheet(
                sheet_id=make_sheet_id(day),
                site_id=user.site_id,
                form=document.slug,
                form_version=document.version,
                origin="server",
                created_by=user.id,
            )
            try:
                async with db.begin_nested():
                    db.add(sheet)
                break
            except IntegrityError:
                continue
        else:
            raise Problem(
                503, "Could not allocate a free sheet ID; try again.", code="print.no_free_sheet_id"
            )
        sheets.append(sheet)
    return [sheet_out(s) for s in sheets]


@get("/api/print/sheets/{sheet_id:str}", summary="Check a typed sheet ID before transcribing the sheet")
async def check_sheet(
    request: Request[CurrentUser, str, Any], db: AsyncSession, sheet_id: str
) -> dict[str, Any]:
    canonical = normalize_sheet_id(sheet_id)
    if canonical is None:
        raise Problem(
            422,
            "This is not a valid sheet ID: check every character against the paper.",
            errors={"sheet_id": "check character does not match"},
            code="print.bad_sheet_id",
        )
    sheet = (
        await db.execute(
            select(PrintedSheet).where(
                PrintedSheet.sheet_id == canonical, PrintedSheet.site_id == request.user.site_id
            )
        )
    ).scalar_one_or_none()
    if sheet is None:
        # Printed offline (device-made) sheets are valid but only become known when a row arrives.
        return {"sheet_id": canonical, "known": False, "origin": sheet_origin(canonical)}
    return {
        "sheet_id": canonical,
        "known": True,
        "origin": sheet.origin,
        "form": sheet.form,
        "form_version": sheet.form_version,
        "created_at": sheet.created_at.isoformat(),
    }


router = Router(path="/", route_handlers=[allocate_sheets, check_sheet], tags=["printing"])
