"""The sync protocol's messages (what a device sends, what it gets back) and the checks every record passes
before it is stored: well-formed, values the database can store, a paper row's id derived from its site,
sheet and row, valid against its own form version. A record that fails is rejected alone, never the batch."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from . import forms
from .clock import in_window
from .db import INT32
from .fleet import DeviceState
from .printing import normalize_sheet_id, paper_record_id
from .records import RecordOut

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")]
Int32 = Annotated[int, msgspec.Meta(ge=1, le=INT32)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]


class RecordIn(msgspec.Struct, forbid_unknown_fields=True):
    id: uuid.UUID
    form: Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    form_version: Int32
    captured_at: AwareTime
    rev: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    data: dict[str, Any]
    incident_id: Int32 | None = None
    source: Literal["device", "paper"] = "device"
    sheet_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    sheet_row: Annotated[int, msgspec.Meta(ge=1, le=100_000)] | None = None


class SyncIn(msgspec.Struct, forbid_unknown_fields=True):
    device_id: Id
    records: list[Any]  # parsed one by one: a malformed record is rejected alone, never the batch
    cursor: str | int | None = None
    device: DeviceState | None = None  # what the device still holds (the fleet view)


Outcome = Literal["created", "duplicate", "updated", "conflict", "rejected"]


class SyncResult(msgspec.Struct, omit_defaults=True):
    index: int
    id: str | None
    status: Outcome
    rev: int | None = None
    receipt: str | None = None
    received_at: datetime | None = None
    server: RecordOut | None = None  # conflict: what the server holds
    errors: dict[str, Any] | None = None  # rejected: per field
    message: str | None = None


class ChangeOut(msgspec.Struct):
    cursor: int
    kind: str
    ref: str | None
    payload: dict[str, Any]
    created_at: str | None


class SyncOut(msgspec.Struct):
    results: list[SyncResult]
    changes: list[ChangeOut]
    cursor: str
    more_changes: bool
    server_time: datetime


def reject(index: int, item: RecordIn, field: str, code: str, detail: str, message: str) -> SyncResult:
    """One record turned away, with the field and code the device shows; the rest of the batch goes on."""
    return SyncResult(
        index,
        str(item.id),
        "rejected",
        rev=item.rev,
        message=message,
        errors={field: {"code": code, "message": detail}},
    )


def content_hash(item: RecordIn) -> str:
    """What makes two copies of one rev "the same": the form, its version, the links and the data."""
    canonical = msgspec.json.encode(
        {
            "form": item.form,
            "form_version": item.form_version,
            "data": item.data,
            "incident_id": item.incident_id,
            "source": item.source,
            "sheet_id": item.sheet_id,
            "sheet_row": item.sheet_row,
        },
        order="sorted",
    )
    return hashlib.sha256(canonical).hexdigest()


RECEIPT_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U to misread over the phone


def new_receipt() -> str:
    bits = int.from_bytes(secrets.token_bytes(5))  # 40 random bits = 8 characters of 5 bits
    chars = "".join(RECEIPT_ALPHABET[(bits >> shift) & 31] for shift in range(35, -1, -5))
    return f"R-{chars[:4]}-{chars[4:]}"


def parse(index: int, raw: Any, site_slug: str) -> RecordIn | SyncResult:
    raw_id = raw.get("id") if isinstance(raw, dict) else None
    shown_id = str(raw_id)[:100] if raw_id is not None else None
    try:
        item = msgspec.convert(raw, RecordIn, str_keys=True)
    except msgspec.ValidationError as exc:
        where = re.search(r"at `\$\.(\w+)", str(exc))
        path = where.group(1) if where else "_"
        return SyncResult(
            index,
            shown_id,
            "rejected",
            message=f"This record is malformed: {exc}",
            errors={path: {"code": "malformed", "message": str(exc)}},
        )
    if not in_window(item.captured_at):
        return reject(
            index,
            item,
            "captured_at",
            "datetime",
            "must be between 2000 and 2100",
            "captured_at is not a plausible time (the device's clock?).",
        )
    if (item.source == "paper") != (item.sheet_id is not None and item.sheet_row is not None):
        return reject(
            index,
            item,
            "source",
            "paper",
            "source 'paper' goes with sheet_id and sheet_row",
            "A paper record needs sheet_id and sheet_row, a device record neither.",
        )
    if item.source == "paper":
        return _check_paper(index, item, site_slug)
    return item


def _check_paper(index: int, item: RecordIn, site_slug: str) -> RecordIn | SyncResult:
    """A paper row's id must be the one derived from the site, its sheet ID and row: only then is typing the
    same row twice, on any device of the site, the same record (a made-up id would let one paper row become two
    records), and another site can never take the id of one of ours."""
    sheet_id = normalize_sheet_id(item.sheet_id or "")
    if sheet_id is None:
        return reject(
            index,
            item,
            "sheet_id",
            "sheet_id",
            "not a valid sheet ID",
            "This is not a valid sheet ID (see the top right corner of the paper sheet).",
        )
    if item.id != paper_record_id(site_slug, sheet_id, item.sheet_row or 0):
        return reject(
            index,
            item,
            "id",
            "paper_id",
            "id does not match sheet_id and sheet_row",
            "A paper record's id must be derived from its sheet ID and row number.",
        )
    item.sheet_id = sheet_id  # stored in canonical form, so lists by sheet find every row
    return item


async def validate(
    session: AsyncSession, site_id: int, items: Sequence[RecordIn | SyncResult]
) -> list[RecordIn | SyncResult]:
    """Check each record against its own form version (old versions stay valid for old records)."""
    definitions: dict[tuple[str, int], dict[str, Any] | None] = {}
    out: list[RecordIn | SyncResult] = []
    for index, item in enumerate(items):
        if isinstance(item, SyncResult):
            out.append(item)
            continue
        key = (item.form, item.form_version)
        if key not in definitions:
            definitions[key] = await forms.definition(session, site_id, item.form, item.form_version)
        definition = definitions[key]
        if definition is None:
            out.append(
                reject(
                    index,
                    item,
                    "form",
                    "unknown_form",
                    f"no form {item.form!r} v{item.form_version}",
                    f"Unknown form {item.form!r} version {item.form_version} at this site.",
                )
            )
            continue
        if errors := forms.validate_data(definition, item.data):
            out.append(
                SyncResult(
                    index,
                    str(item.id),
                    "rejected",
                    rev=item.rev,
                    errors=errors,
                    message="Some fields are not valid.",
                )
            )
            continue
        out.append(item)
    return out
