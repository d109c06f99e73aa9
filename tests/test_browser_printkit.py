"""The printed outage kit as a PDF (Chromium's own print): a contents page, a title and "n / N" on every
page, sheet IDs on every form sheet; screenshots of the kit in both languages."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid

import httpx
import pytest

from .conftest import require

pytestmark = pytest.mark.browser


def pdf_pages(path) -> list[str]:
    require(bool(shutil.which("pdftotext")) and bool(shutil.which("pdfinfo")), "poppler-utils (pdftotext)")
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    count = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    text = subprocess.run(
        ["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True
    ).stdout
    pages = text.split("\f")
    return pages[:count]


def test_kit_pdf_has_contents_titles_and_page_numbers(live_server, new_context, artifacts, tmp_path):
    site = f"kit{uuid.uuid4().hex[:6]}"
    names = live_server.add_users(site, roles=("lead",))
    body = httpx.post(
        f"{live_server.base}/api/auth/login",
        json={"username": names["lead"], "password": live_server.PASSWORD},
        timeout=10,
    ).json()
    shots = {}
    for lang in ("zh-CN", "en"):
        context = new_context(locale=lang)
        context.add_init_script(
            f"localStorage.setItem('od.lang', {json.dumps(lang)});"
            f"localStorage.setItem('od.token', {json.dumps(body['token'])});"
            f"localStorage.setItem('od.user', {json.dumps(json.dumps(body['user']))});"
        )
        page = context.new_page()
        page.goto(live_server.base + "/#/print/kit")
        page.wait_for_selector(".print-pages[data-ready='1']")
        shots[lang] = artifacts / f"print-kit-{lang}.png"
        page.screenshot(path=shots[lang])
        sheets = page.evaluate(
            """[...document.querySelectorAll('.print-sheet')].map((s) => ({
                 title: s.dataset.titleZh || '', en: s.dataset.titleEn || '', sheetId: s.dataset.sheetId || null }))"""
        )
        pdf = tmp_path / f"kit-{lang}.pdf"
        page.pdf(path=str(pdf), prefer_css_page_size=True, print_background=True)
        context.close()

    pages = pdf_pages(pdf)
    total = len(pages)
    # One contents page, then every playbook and form: at least one page each.
    assert len(sheets) >= 10 and total >= len(sheets), (total, len(sheets))
    contents = pages[0]
    assert "目录" in contents and "Contents" in contents
    for n, sheet in enumerate(sheets[1:], start=2):
        assert sheet["en"] in contents or sheet["title"] in contents, f"contents lack sheet {n} {sheet}"
    # Every page: "Page n / N" with the right n and N, and a title line.
    for n, text in enumerate(pages, start=1):
        assert f"Page {n} / {total}" in text, f"page {n} has no 'Page {n} / {total}':\n{text[-400:]}"
        assert re.search(r"^\s*\d+\.\s+\S", text, re.M), (
            f"page {n} has no sheet title at its top:\n{text[:300]}"
        )
    # Every form sheet: its sheet ID on its page(s), in the top margin and on the sheet itself.
    for sheet in sheets:
        if sheet["sheetId"]:
            on = [text for text in pages[1:] if sheet["sheetId"] in text]
            assert on and all(text.count(sheet["sheetId"]) >= 2 for text in on), sheet
