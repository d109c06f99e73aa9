"""What a cold start fetches first: index.html preloads exactly the modules the boot imports statically
(app.js and its imports, all the way down), not the screens app.js imports later, and every one of them is
a shipped file the service worker precaches."""

from __future__ import annotations

import re

from backend import shell


async def test_index_preloads_the_boot_path_and_not_the_later_screens(client) -> None:
    html = (await client.get("/")).text
    preloaded = re.findall(r'<link rel="modulepreload" href="([^"]+)">', html)
    assert preloaded == shell.boot_modules()
    for needed in (
        "/static/app.js",
        "/static/db.js",
        "/static/menu.js",
        "/static/screens/form.js",
        "/static/screens/login.js",
        "/static/screens/home.js",
        "/static/i18n/zh-CN.js",
    ):
        assert needed in preloaded
    for later in ("/static/screens/admin.js", "/static/screens/incidents.js", "/static/screens/editor.js"):
        assert later not in preloaded
    precached = set(shell.build_info()["assets"])
    assert set(preloaded) <= precached


def test_the_boot_path_follows_static_imports_only(tmp_path, monkeypatch) -> None:
    (tmp_path / "screens").mkdir()
    (tmp_path / "app.js").write_text(
        'import { a } from "./a.js";\nimport "./screens/s.js";\n'
        'const later = () => import("./screens/later.js");\n// import "./commented.js" is not at line start\n'
    )
    (tmp_path / "a.js").write_text('import * as b from "./b.js";\nexport const a = 1;\n')
    (tmp_path / "b.js").write_text("export const b = 2;\n")
    (tmp_path / "screens" / "s.js").write_text('import { a } from "../a.js";\n')
    (tmp_path / "screens" / "later.js").write_text("")
    monkeypatch.setattr(shell, "FRONTEND", tmp_path)
    assert shell.boot_modules() == ["/static/a.js", "/static/app.js", "/static/b.js", "/static/screens/s.js"]
