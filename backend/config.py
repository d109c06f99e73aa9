"""Settings: one small struct read from the environment."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    backup_dir: str = ""  # OUTAGE_BACKUP_DIR: scheduled SQLite backups (default var/backups)
    backup_every_hours: float = 24.0  # OUTAGE_BACKUP_EVERY_HOURS: 0 turns scheduled backups off
    backup_keep: int = 7  # OUTAGE_BACKUP_KEEP: scheduled backups kept, newest first
    tls_certfile: str = ""  # OUTAGE_TLS_CERT: serve https directly with this certificate chain (PEM)…
    tls_keyfile: str = ""  # OUTAGE_TLS_KEY: …and this private key (PEM)
    outbound_proxy: str = (
        ""  # OUTAGE_OUTBOUND_PROXY: http://host:port every outbound HTTP request goes through
    )
    smtp_url: str = ""  # OUTAGE_SMTP_URL: smtp://host:port or smtps://user:pass@host:port; empty: no email
    smtp_from: str = "outage-desk@localhost"  # OUTAGE_SMTP_FROM
    sms_endpoint: str = "https://dysmsapi.aliyuncs.com/"  # OUTAGE_SMS_ENDPOINT (Aliyun SMS, SendSms)
    sms_access_key_id: str = ""  # OUTAGE_SMS_ACCESS_KEY_ID; empty: no SMS
    sms_access_key_secret: str = ""  # OUTAGE_SMS_ACCESS_KEY_SECRET
    sms_sign_name: str = ""  # OUTAGE_SMS_SIGN_NAME: the approved 签名
    sms_template: str = ""  # OUTAGE_SMS_TEMPLATE: the approved template code, with ${title} and ${link}
    ack_link_hours: float = 24.0  # OUTAGE_ACK_LINK_HOURS: how long a personal acknowledge link works
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
        "backup_dir": env.get("OUTAGE_BACKUP_DIR") or str(var_dir / "backups"),
        "backup_every_hours": float(env.get("OUTAGE_BACKUP_EVERY_HOURS", "24")),
        "backup_keep": int(env.get("OUTAGE_BACKUP_KEEP", "7")),
        "tls_certfile": env.get("OUTAGE_TLS_CERT", ""),
        "tls_keyfile": env.get("OUTAGE_TLS_KEY", ""),
        "outbound_proxy": env.get("OUTAGE_OUTBOUND_PROXY", ""),
        "smtp_url": env.get("OUTAGE_SMTP_URL", ""),
        "smtp_from": env.get("OUTAGE_SMTP_FROM", "outage-desk@localhost"),
        "sms_endpoint": env.get("OUTAGE_SMS_ENDPOINT", "https://dysmsapi.aliyuncs.com/"),
        "sms_access_key_id": env.get("OUTAGE_SMS_ACCESS_KEY_ID", ""),
        "sms_access_key_secret": env.get("OUTAGE_SMS_ACCESS_KEY_SECRET", ""),
        "sms_sign_name": env.get("OUTAGE_SMS_SIGN_NAME", ""),
        "sms_template": env.get("OUTAGE_SMS_TEMPLATE", ""),
        "ack_link_hours": float(env.get("OUTAGE_ACK_LINK_HOURS", "24")),
        "workers": int(env.get("OUTAGE_WORKERS", "1")),
        "db_connections": int(env.get("OUTAGE_DB_CONNECTIONS", "30")),
    }
    values.update(overrides)
    proxies = values["trusted_proxies"]
    values["trusted_proxies"] = _list(proxies) if isinstance(proxies, str) else tuple(proxies)  # type: ignore
    if "secret_key" not in values:
        values["secret_key"] = _secret_key(var_dir)
    return Settings(**values)  # type: ignore[arg-type]


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's certificate and key options when OUTAGE_TLS_CERT and OUTAGE_TLS_KEY are set (both or neither)."""
    if bool(settings.tls_certfile) != bool(settings.tls_keyfile):
        raise SystemExit("set both OUTAGE_TLS_CERT and OUTAGE_TLS_KEY, or neither")
    if not settings.tls_certfile:
        return {}
    for path in (settings.tls_certfile, settings.tls_keyfile):
        if not Path(path).is_file():
            raise SystemExit(f"no TLS file at {path}")
    return {"ssl_certfile": settings.tls_certfile, "ssl_keyfile": settings.tls_keyfile}
