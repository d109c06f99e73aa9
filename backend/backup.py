"""Backup and restore: `python -m backend backup FILE`, `python -m backend restore FILE`, and the scheduled local
backup of a SQLite install (a worker step).

- On SQLite, `backup` uses SQLite's online backup API: a consistent copy of the whole database while the
  server keeps taking syncs (WAL readers do not block writers). The copy is itself a SQLite database.
- On PostgreSQL (or with `--portable`), `backup` writes every table as gzip-compressed JSON lines, read in one
  REPEATABLE READ transaction (one snapshot). `pg_dump -Fc` is the other way for PostgreSQL (README).
- `restore FILE` takes either kind into an empty database of either kind (so it also moves a site from SQLite
  to PostgreSQL): the target is migrated to the newest schema, refused if it already holds data, filled table
  by table in foreign-key order in one transaction, and its id sequences are moved past the restored rows.
  A SQLite backup made by an older version is migrated (in a temporary copy) before it is read.
Everything is copied, credentials included (password hashes, push keys): keep backups as safe as the database.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import logging
import os
import shutil
import sqlite3
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table, func, insert, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

from . import clock
from .config import load_settings
from .db import Base, UTCDateTime, make_engine
from .migrate import upgrade
from .workers import Step

log = logging.getLogger("outage_desk")
FORMAT = "outage-desk-backup"
SQLITE_MAGIC = b"SQLite format 3\x00"
CHUNK = 1000
NAME = "outage_desk-%Y%m%d-%H%M%S.db"  # scheduled backups, sorted by name = by time


class RestoreError(Exception):
    """A restore that must not happen (the target holds data, the file is not a backup): exit code 2."""


def sqlite_path(database_url: str) -> Path | None:
    url = make_url(database_url)
    return Path(url.database) if url.drivername.startswith("sqlite") and url.database else None


def tables() -> list[Table]:
    """Every table the app owns, parents before children."""
    return list(Base.metadata.sorted_tables)


# ---------------------------------------------------------------- backup


def sqlite_backup(source: Path, target: Path) -> None:
    """SQLite's online backup API into `target` (written next to it first, then renamed: never half a file)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    fd = os.open(part, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)  # another process backing up: it wins
    os.close(fd)
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
        dst = sqlite3.connect(part)
        try:
            with dst:
                src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            dst.close()
            src.close()
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


async def _revision(conn: AsyncConnection) -> str | None:
    return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar_one_or_none()


async def portable_backup(database_url: str, target: Path) -> int:
    """Every table as JSON lines (gzip), read in one snapshot. Returns the number of rows written."""
    engine = make_engine(database_url)
    part = target.with_name(target.name + ".part")
    rows = 0
    try:
        async with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            header = {
                "format": FORMAT,
                "version": 1,
                "revision": await _revision(conn),
                "tables": {t.name: [c.name for c in t.columns] for t in tables()},
            }
            with gzip.open(part, "wt", encoding="utf-8") as out:
                out.write(json.dumps(header, ensure_ascii=False) + "\n")
                for table in tables():
                    result = await conn.stream(select(*table.columns))
                    async for row in result:
                        out.write(json.dumps([table.name, [_encode(v) for v in row]], ensure_ascii=False))
                        out.write("\n")
                        rows += 1
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
        await engine.dispose()
    return rows


def backup(database_url: str, target: Path, portable: bool = False) -> str:
    """Back the database up into `target`; returns what was written, for the operator."""
    source = sqlite_path(database_url)
    if source is not None and not source.exists():
        raise RestoreError(f"no database at {source}")
    if source is not None and not portable:
        sqlite_backup(source, target)
        return f"SQLite backup of {source} written to {target}"
    rows = asyncio.run(portable_backup(database_url, target))
    return f"portable backup ({rows} rows) written to {target}"


# ---------------------------------------------------------------- restore


def _decode(table: Table, names: list[str], values: list[Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, value in zip(names, values, strict=True):
        column = table.c.get(name)
        if column is None:
            continue
        if value is not None and isinstance(column.type, UTCDateTime):
            value = datetime.fromisoformat(value)
        elif value is not None and column.type.__class__.__name__ == "Uuid":
            value = uuid.UUID(value)
        row[name] = value
    return row


def _json_rows(path: Path) -> tuple[str | None, Iterator[tuple[Table, dict[str, Any]]]]:
    by_name = {t.name: t for t in tables()}
    stream = gzip.open(path, "rt", encoding="utf-8")
    try:
        header = json.loads(stream.readline())
    except (OSError, ValueError) as exc:
        stream.close()
        raise RestoreError(f"{path} is not an Outage Desk backup ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        stream.close()
        raise RestoreError(f"{path} is not an Outage Desk backup")

    def rows() -> Iterator[tuple[Table, dict[str, Any]]]:
        with stream:
            for line in stream:
                name, values = json.loads(line)
                if name in by_name:
                    yield by_name[name], _decode(by_name[name], header["tables"][name], values)

    return header.get("revision"), rows()


async def _sqlite_rows(path: Path) -> AsyncIterator[tuple[Table, dict[str, Any]]]:
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.connect() as conn:
            for table in tables():
                result = await conn.stream(select(*table.columns))
                async for row in result:
                    yield table, dict(row._mapping)
    finally:
        await engine.dispose()


async def _fill(database_url: str, source: Any) -> int:
    engine = make_engine(database_url)
    count = 0
    try:
        async with engine.begin() as conn:
            for table in tables():
                if (await conn.execute(select(func.count()).select_from(table))).scalar_one():
                    raise RestoreError(f"the target database is not empty (table {table.name} has rows)")
            batch: list[dict[str, Any]] = []
            current: Table | None = None
            async for table, row in source:
                if table is not current or len(batch) >= CHUNK:
                    if batch and current is not None:
                        await conn.execute(insert(current), batch)
                    batch, current = [], table
                batch.append(row)
                count += 1
            if batch and current is not None:
                await conn.execute(insert(current), batch)
            if engine.dialect.name == "postgresql":
                for table in tables():
                    pk = list(table.primary_key.columns)
                    if (
                        len(pk) == 1
                        and pk[0].type.python_type is int
                        and pk[0].autoincrement in (True, "auto")
                    ):
                        await conn.execute(
                            text(
                                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{pk[0].name}'), "
                                f"COALESCE(MAX({pk[0].name}), 1), MAX({pk[0].name}) IS NOT NULL) "
                                f"FROM {table.name}"
                            )
                        )
    finally:
        await engine.dispose()
    return count


async def _aiter(rows: Iterator[Any]) -> AsyncIterator[Any]:
    for row in rows:
        yield row


def restore(database_url: str, path: Path) -> str:
    """Restore a backup (either kind) into an empty database (either kind)."""
    if not path.is_file():
        raise RestoreError(f"no file {path}")
    with open(path, "rb") as probe:
        is_sqlite = probe.read(16) == SQLITE_MAGIC
    if not is_sqlite:
        revision, source = _json_rows(path)  # refuses a file that is not a backup before touching the target
        head = _head()
        if revision != head:
            raise RestoreError(
                f"{path} was made at schema {revision}, this version is at {head}: restore it with the version "
                "that made it, then upgrade (or take a SQLite backup, which is migrated on restore)"
            )
    upgrade(database_url)
    if is_sqlite:
        with tempfile.TemporaryDirectory() as work:
            copy = Path(work) / "backup.db"
            shutil.copyfile(path, copy)
            upgrade(f"sqlite+aiosqlite:///{copy}")  # a backup from an older version: the newest schema first
            rows = asyncio.run(_fill(database_url, _sqlite_rows(copy)))
    else:
        rows = asyncio.run(_fill(database_url, _aiter(source)))
    return f"restored {rows} rows from {path}"


def _head() -> str | None:
    from alembic.script import ScriptDirectory

    from .migrate import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


# ---------------------------------------------------------------- scheduled backups (SQLite installs)


def _taken_at(path: Path) -> datetime | None:
    try:
        return datetime.strptime(path.name, NAME).replace(tzinfo=UTC)
    except ValueError:
        return None


def scheduled(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("outage_desk-*.db") if _taken_at(p))


async def backup_due(state: Any) -> int:
    """Worker round: on a SQLite install with OUTAGE_BACKUP_EVERY_HOURS > 0, back up when the newest scheduled
    backup is that old, and keep the newest OUTAGE_BACKUP_KEEP of them."""
    state = getattr(state, "state", state)
    settings = state.settings
    source = sqlite_path(settings.database_url)
    if source is None or settings.backup_every_hours <= 0 or not source.exists():
        return 0
    folder = Path(settings.backup_dir)
    now = await clock.now(state, None)
    existing = scheduled(folder) if folder.exists() else []
    last = _taken_at(existing[-1]) if existing else None
    if last is not None and now - last < timedelta(hours=settings.backup_every_hours):
        return 0
    target = folder / now.strftime(NAME)
    try:
        await asyncio.to_thread(sqlite_backup, source, target)
    except FileExistsError:
        return 0  # another process is taking this one
    log.info("scheduled backup written to %s", target)
    for old in scheduled(folder)[: -max(settings.backup_keep, 1)]:
        old.unlink(missing_ok=True)
    return 1


STEP = Step("backup", backup_due, every=60.0)


# ---------------------------------------------------------------- CLI


def cmd_backup(args: argparse.Namespace) -> int:
    args.load_models()
    try:
        print(backup(load_settings().database_url, Path(args.file), portable=args.portable))
    except RestoreError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    args.load_models()
    try:
        print(restore(load_settings().database_url, Path(args.file)))
    except RestoreError as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


def add_commands(sub: Any, load_models: Callable[[], None]) -> None:
    """`backup FILE [--portable]` and `restore FILE`, called from backend.cli.main(). `load_models` puts every
    capability's tables on Base.metadata (importing backend.app, which this module may not import: it is
    one of the app's worker steps)."""
    backup_cmd = sub.add_parser("backup", help="back the database up into FILE (safe while serving)")
    backup_cmd.add_argument("file")
    backup_cmd.add_argument(
        "--portable", action="store_true", help="JSON lines (gzip) even on SQLite, e.g. to move to PostgreSQL"
    )
    backup_cmd.set_defaults(fn=cmd_backup, load_models=load_models)
    restore_cmd = sub.add_parser(
        "restore", help="restore FILE (either kind of backup) into an empty database"
    )
    restore_cmd.add_argument("file")
    restore_cmd.set_defaults(fn=cmd_restore, load_models=load_models)
