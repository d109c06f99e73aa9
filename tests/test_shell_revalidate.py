"""The app shell answers conditional GETs: every shell file carries the build version as its ETag, a copy of
this build gets a bodiless 304 (what lets the service worker's install revalidate what the page just downloaded
instead of downloading the shell twice), another build's copy or a file that is not in the shell gets the file."""

from __future__ import annotations

import pytest

SHELL = ["/", "/sw.js", "/manifest.webmanifest", "/static/app.js", "/static/i18n/zh-CN.js"]


@pytest.mark.parametrize("path", SHELL)
async def test_shell_files_revalidate_with_304(client, path: str) -> None:
    first = await client.get(path)
    assert first.status_code == 200 and first.content
    etag = first.headers["etag"]
    build = (await client.get("/api/health")).json()["version"]
    assert etag == f'W/"{build}"'
    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert "x-content-type-options" in again.headers  # the security headers on a 304 too
    listed = await client.get(path, headers={"If-None-Match": f'W/"older", {etag}'})
    assert listed.status_code == 304
    stale = await client.get(path, headers={"If-None-Match": 'W/"0000000000000000"'})
    assert stale.status_code == 200 and stale.content == first.content


async def test_not_the_shell_is_never_304(client) -> None:
    etag = (await client.get("/")).headers["etag"]
    missing = await client.get("/static/no-such-file.js", headers={"If-None-Match": etag})
    assert missing.status_code == 404
    api = await client.get("/api/health", headers={"If-None-Match": etag})
    assert api.status_code == 200
