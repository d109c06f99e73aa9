"""Run Alembic from code: the server migrates on start, tests migrate empty databases (what every CLI command
does first is in backend.commands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import ROOT

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic (and Mako, which it loads) is imported when used, not at import: the serving process never needs it.


def alembic_config(database_url: str) -> Config:
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    from alembic import command

    if database_url.startswith("sqlite"):
        from pathlib import Path

        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


def revision(database_url: str, message: str) -> None:
    from datetime import date

    from alembic import command

    command.revision(
        alembic_config(database_url),
        message=message,
        autogenerate=True,
        rev_id=f"{date.today():%Y%m%d}_{message.lower().replace(' ', '_')[:30]}",
    )
