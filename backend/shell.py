"""The PWA shell: index, static files, manifest, and the service worker with its build version."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, cast

from litestar import HttpMethod, Response, Router, get, route
from litestar.datastructures import CacheControlHeader
from litestar.file_system import BaseLocalFileSystem
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Receive, Scope, Send

from .config import ROOT
from .errors import Problem

# Overridable so a test can serve a copy of the shipped files and change one without touching the repo.
FRONTEND = Path(os.environ.get("OUTAGE_FRONTEND_DIR", ROOT / "frontend"))
SERVICE_WORKER = Path(os.environ.get("OUTAGE_SERVICE_WORKER_DIR", ROOT / "service_worker"))
NO_CACHE = {"Cache-Control": "no-cache"}

_build_cache: dict[tuple, dict] = {}
_index_cache: dict[str, bytes] = {}  # by build version


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def build_info() -> dict:
    """Version = hash of every shipped frontend and service worker file; assets = what the SW precaches.

    Recomputed whenever a file's size or mtime changes, so there are no manual cache bumps.
    """
    files = [(folder, p) for folder in (FRONTEND, SERVICE_WORKER) for p in _files(folder)]
    key = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for _, p in files)
    if key not in _build_cache:
        digest = hashlib.sha256()
        for folder, path in files:
            digest.update(f"{folder.name}/{path.relative_to(folder).as_posix()}".encode())
            digest.update(path.read_bytes())
        assets = ["/", "/manifest.webmanifest"] + [
            "/static/" + p.relative_to(FRONTEND).as_posix()
            for p in _files(FRONTEND)
            if p.name not in ("index.html", "manifest.webmanifest")
        ]
        assets += [
            "/sw/" + p.relative_to(SERVICE_WORKER).as_posix()
            for p in _files(SERVICE_WORKER)
            if p.name != "sw.js"
        ]
        _build_cache.clear()
        _build_cache[key] = {"version": digest.hexdigest()[:16], "assets": assets}
    return next(iter(_build_cache.values()))


def index_html() -> bytes:
    """index.html with a <link rel="modulepreload"> for every shell module, added at serve time.

    Without them the browser only learns of a module when the one importing it has arrived, so a cold
    start walks the import chain level by level; with them every module is fetched at once while the page
    parses. Built from the precache list, so there is no list to keep by hand.
    """
    build = build_info()
    if build["version"] not in _index_cache:
        links = "".join(f'  <link rel="modulepreload" href="{url}">\n' for url in boot_modules())
        html = (FRONTEND / "index.html").read_text(encoding="utf-8")
        _index_cache.clear()
        _index_cache[build["version"]] = html.replace("</head>", links + "</head>", 1).encode()
    return _index_cache[build["version"]]


# A static import (`import … from "./x.js";` or `import "./x.js";`); a dynamic import() is not one.
STATIC_IMPORT = re.compile(r'^import\s(?:[^;]*?\sfrom\s)?"([^"]+)";', re.MULTILINE)


def boot_modules(entry: str = "app.js") -> list[str]:
    """The modules the boot needs before it can draw anything: app.js and what it imports statically, all the
    way down (screens it loads with import() later are left out, so they do not compete with the boot)."""
    found: list[str] = []
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.append(name)
        source = (FRONTEND / name).read_text(encoding="utf-8")
        base = Path(name).parent
        for target in STATIC_IMPORT.findall(source):
            todo.append(os.path.normpath(base / target).replace(os.sep, "/"))
    return ["/static/" + name for name in sorted(found)]


@route("/", http_method=[HttpMethod.GET, HttpMethod.HEAD], include_in_schema=False)
async def index() -> Response[bytes]:
    return Response(index_html(), media_type="text/html", headers=NO_CACHE)


@get("/manifest.webmanifest", include_in_schema=False)
async def manifest() -> Response[bytes]:
    return Response(
        (FRONTEND / "manifest.webmanifest").read_bytes(),
        media_type="application/manifest+json",
        headers=NO_CACHE,
    )


@route("/sw.js", http_method=[HttpMethod.GET, HttpMethod.HEAD], include_in_schema=False)
async def service_worker() -> Response[str]:
    # The build line is prepended so the worker's cache names follow the shipped files.
    source = (SERVICE_WORKER / "sw.js").read_text(encoding="utf-8")
    body = f"self.__BUILD__ = {json.dumps(build_info())};\n{source}"
    return Response(body, media_type="text/javascript", headers={**NO_CACHE, "Service-Worker-Allowed": "/"})


@get("/sw/{name:path}", include_in_schema=False)
async def service_worker_part(name: str) -> Response[bytes]:
    try:  # a NUL byte or a name too long for the file system is simply not a file we have
        path = (SERVICE_WORKER / name.lstrip("/")).resolve()
        found = SERVICE_WORKER.resolve() in path.parents and path.is_file()
    except (OSError, ValueError):
        found = False
    if not found:
        raise Problem(404, "No such service worker file.", code="not_found")
    return Response(path.read_bytes(), media_type="text/javascript; charset=utf-8", headers=NO_CACHE)


@get("/api/build", summary="The shipped frontend version (what the service worker caches)", tags=["app"])
async def build() -> dict:
    return build_info()


class ShellFileSystem(BaseLocalFileSystem):
    """The local file system, where a path it refuses (a NUL byte, a name too long) is a missing file (404),
    not a server error."""

    async def info(self, path: Any, **kwargs: Any) -> Any:
        try:
            return await super().info(path, **kwargs)
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as exc:
            raise FileNotFoundError(str(path)) from exc


static = create_static_files_router(
    path="/static",
    directories=[FRONTEND],
    send_as_attachment=False,
    file_system=ShellFileSystem(),
    include_in_schema=False,
    cache_control=CacheControlHeader(no_cache=True),
)


def revalidate(app: ASGIApp) -> ASGIApp:
    """Conditional GETs for the shell (app.MIDDLEWARE): every shell answer carries the build version as a weak
    ETag, and a request that already holds this build's copy (If-None-Match) gets a bodiless 304. The version
    hashes every shipped file, so one tag is exact for each of them; the service worker's install revalidates
    what the page has just downloaded instead of fetching the shell a second time."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        method = scope.get("method")
        if scope["type"] != "http" or method not in ("GET", "HEAD"):
            await app(scope, receive, send)
            return
        build = build_info()
        path = scope["path"]
        if path != "/sw.js" and path not in _asset_set(build):
            await app(scope, receive, send)
            return
        etag = f'W/"{build["version"]}"'.encode()
        held = dict(scope["headers"]).get(b"if-none-match", b"")
        if held.strip() == b"*" or etag in (tag.strip() for tag in held.split(b",")):
            headers = [(b"etag", etag), (b"cache-control", b"no-cache")]
            await send(cast(Any, {"type": "http.response.start", "status": 304, "headers": headers}))
            await send(cast(Any, {"type": "http.response.body", "body": b""}))
            return

        async def tagged(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"etag"]
                message = {**message, "headers": [*kept, (b"etag", etag)]}
            await send(message)

        await app(scope, receive, tagged)

    return middleware


_assets: dict[str, frozenset[str]] = {}


def _asset_set(build: dict) -> frozenset[str]:
    if build["version"] not in _assets:
        _assets.clear()
        _assets[build["version"]] = frozenset(build["assets"])
    return _assets[build["version"]]


router = Router(
    path="/", route_handlers=[index, manifest, service_worker, service_worker_part, build, static]
)
