"""Settings: one small struct read from the environment."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("OUTAGE_VAR_DIR", ROOT / "var"))


class Settings(msgspec.Struct, frozen=True):
    database_url: str
    secret_key: str
    token_ttl_minutes: int
    vapid_key_path: Path
    public_base_url: str
    vapid_subject: str
    max_body_bytes: int
    sync_max_records: int
    sync_concurrency: int
    sync_wait_seconds: float
    sync_body_seconds: float
    sync_per_user: int
    run_workers: bool
    trusted_proxies: tuple[str, ...] = ()  # peers whose X-Forwarded-For / -Proto we believe (IPs, CIDRs)
    kdf_threads: int = 2  # password hashes computed at once, in threads off the event loop
    outbound_allow: str = ""  # OUTAGE_OUTBOUND_ALLOW: host[:port],… reachable though private or plain http
    workers: int = 1  # OUTAGE_WORKERS: app processes serving together (`serve --workers N` sets it)
    db_connections: int = 30  # OUTAGE_DB_CONNECTIONS: PostgreSQL connections for all processes together

    @property
    def pool(self) -> tuple[int, int]:
        """(pool_size, max_overflow) for this process: N processes share `db_connections`, so N × pool stays
        under PostgreSQL's max_connections however many workers serve."""
        mine = max(2, self.db_connections // max(1, self.workers))
        size = max(1, mine // 3)
        return size, mine - size

    @property
    def sync_slots(self) -> int:
        """Syncs this process runs at once: `sync_concurrency` is for all processes together."""
        return max(1, -(-self.sync_concurrency // max(1, self.workers)))


def write_once(path: Path, write: Callable[[Path], object]) -> None:
    """Make `path` once, atomically, even when several processes start at the same moment: each writes a
    temporary file of its own and hard-links it into place (O_EXCL semantics); the first link wins and the
    others use the winner's file. Nobody ever reads a half-written file."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        write(tmp)
        tmp.chmod(0o600)
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process won: its file is complete, use it
    finally:
        tmp.unlink(missing_ok=True)


def _secret_key(var_dir: Path) -> str:
    """Use OUTAGE_SECRET_KEY, else a key made once and kept under var/ (so tokens survive restarts)."""
    if key := os.environ.get("OUTAGE_SECRET_KEY"):
        return key
    path = var_dir / "secret.key"
    write_once(path, lambda tmp: tmp.write_text(secrets.token_urlsafe(48)))
    return path.read_text().strip()


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def load_settings(**overrides: object) -> Settings:
    env = os.environ
    var_dir = Path(env.get("OUTAGE_VAR_DIR", VAR_DIR))
    values: dict[str, object] = {
        "database_url": env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{var_dir / 'outage_desk.db'}",
        "token_ttl_minutes": int(env.get("OUTAGE_TOKEN_TTL_MINUTES", "720")),
        "vapid_key_path": Path(env.get("OUTAGE_VAPID_KEY_PATH", var_dir / "vapid_private.pem")),
        "public_base_url": env.get("OUTAGE_PUBLIC_BASE_URL", "http://127.0.0.1:8000"),
        "vapid_subject": env.get("OUTAGE_VAPID_SUBJECT", "mailto:ops@outage-desk.invalid"),
        "max_body_bytes": int(env.get("OUTAGE_MAX_BODY_BYTES", str(4 * 1024 * 1024))),
        "sync_max_records": int(env.get("OUTAGE_SYNC_MAX_RECORDS", "500")),
        "sync_concurrency": int(env.get("OUTAGE_SYNC_CONCURRENCY", "8")),
        "sync_wait_seconds": float(env.get("OUTAGE_SYNC_WAIT_SECONDS", "10")),
        "sync_body_seconds": float(env.get("OUTAGE_SYNC_BODY_SECONDS", "15")),
        "sync_per_user": int(env.get("OUTAGE_SYNC_PER_USER", "2")),
        "run_workers": env.get("OUTAGE_RUN_WORKERS", "1") != "0",
        "trusted_proxies": _list(env.get("OUTAGE_TRUSTED_PROXIES", "")),
        "kdf_threads": int(env.get("OUTAGE_KDF_THREADS", "2")),
        "outbound_allow": env.get("OUTAGE_OUTBOUND_ALLOW", ""),
        "workers": int(env.get("OUTAGE_WORKERS", "1")),
        "db_connections": int(env.get("OUTAGE_DB_CONNECTIONS", "30")),
    }
    values.update(overrides)
    proxies = values["trusted_proxies"]
    values["trusted_proxies"] = _list(proxies) if isinstance(proxies, str) else tuple(proxies)  # type: ignore
    if "secret_key" not in values:
        values["secret_key"] = _secret_key(var_dir)
    return Settings(**values)  # type: ignore[arg-type]
