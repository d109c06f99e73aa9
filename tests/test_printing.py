"""Paper fallback: sheet IDs and QR codes from the API, the paper-row id on device and server, and the
printed playbooks and forms as real PDFs from Chromium (text in both languages, page 1 as PNG)."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from pypdf import PdfReader

from backend import printing
from backend.printing import check_char, make_sheet_id, normalize_sheet_id, paper_record_id

CONTENT = Path(__file__).resolve().parent.parent / "backend" / "content"


# ---------------------------------------------------------------- sheet IDs (pure)


def test_sheet_ids_are_checked_and_forgiving_to_type():
    sheet_id = make_sheet_id("261123")
    assert re.fullmatch(r"261123-[0-9][0-9A-Z]{5}-[0-9A-Z]", sheet_id)
    assert normalize_sheet_id(sheet_id) == sheet_id
    # lower case, spaces instead of hyphens, O for 0 and I/L for 1 are what tired people type
    typed = sheet_id.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert normalize_sheet_id(typed) == sheet_id
    # every single wrong character is caught by the check character
    raw = sheet_id.replace("-", "")
    for pos in range(len(raw)):
        for char in printing.ALPHABET:
            if char != raw[pos] and not (pos < 6 and not char.isdigit()):
                wrong = raw[:pos] + char + raw[pos + 1 :]
                assert normalize_sheet_id(wrong) is None, wrong
    assert normalize_sheet_id("261123-ABCDEF") is None
    assert normalize_sheet_id("") is None
    # by hand: from the right, doubled every other: 3·2 + 2 + 1·2 + 1 + 6·2 + 2 = 25 → (32 − 25) = 7
    assert check_char("261123000000") == "7"


def test_server_and_device_sheet_ids_never_share_a_space():
    server = {make_sheet_id("261123") for _ in range(200)}
    device = {make_sheet_id("261123", origin="device") for _ in range(200)}
    assert all(printing.sheet_origin(s) == "server" for s in server)
    assert all(printing.sheet_origin(s) == "device" for s in device)
    assert not server & device


def test_paper_record_id_is_uuid5_of_sheet_and_row():
    sheet_id = "261123-0K7Q2M-" + check_char("2611230K7Q2M")
    assert paper_record_id("bj-01", sheet_id, 3) == uuid.uuid5(
        printing.PAPER_NAMESPACE, f"bj-01:{sheet_id}:3"
    )
    assert paper_record_id("bj-01", sheet_id, 3) != paper_record_id("bj-01", sheet_id, 4)
    assert paper_record_id("bj-01", sheet_id, 3) != paper_record_id(
        "sh-02", sheet_id, 3
    )  # one site's rows only


# ---------------------------------------------------------------- API


async def test_allocate_sheet_ids_with_qr_codes(client, site, other_site):
    response = await client.post(
        "/api/print/sheets",
        json={"form": "call-record", "count": 3, "day": "261123"},
        headers=site.headers("agent"),
    )
    assert response.status_code == 201, response.text
    sheets = response.json()
    assert len({s["sheet_id"] for s in sheets}) == 3
    for sheet in sheets:
        assert normalize_sheet_id(sheet["sheet_id"]) == sheet["sheet_id"]
        assert sheet["sheet_id"].startswith("261123-")
        assert sheet["form"] == "call-record" and sheet["form_version"] >= 1 and sheet["origin"] == "server"
        assert sheet["qr_svg"].startswith("data:image/svg+xml")
        # the QR code really encodes the sheet ID: segno's own output for that text
        assert sheet["qr_svg"] == printing.qr_svg(sheet["sheet_id"])

    known = (
        await client.get(f"/api/print/sheets/{sheets[0]['sheet_id'].lower()}", headers=site.headers("agent"))
    ).json()
    assert known == {
        "sheet_id": sheets[0]["sheet_id"],
        "known": True,
        "origin": "server",
        "form": "call-record",
        "form_version": sheets[0]["form_version"],
        "created_at": known["created_at"],
    }
    # another site does not see the sheet
    elsewhere = (
        await client.get(f"/api/print/sheets/{sheets[0]['sheet_id']}", headers=other_site.headers())
    ).json()
    assert elsewhere["known"] is False

    device_made = make_sheet_id("261123", origin="device")
    unknown = (await client.get(f"/api/print/sheets/{device_made}", headers=site.headers())).json()
    assert unknown == {"sheet_id": device_made, "known": False, "origin": "device"}


async def test_sheet_api_rejects_bad_input_clearly(client, site):
    bad = await client.get("/api/print/sheets/261123-ABCDEF-0", headers=site.headers())
    if normalize_sheet_id("261123-ABCDEF-0"):
        bad = await client.get("/api/print/sheets/261123-ABCDEF-1", headers=site.headers())
    assert bad.status_code == 422 and "sheet ID" in bad.json()["detail"]
    missing = await client.post("/api/print/sheets", json={"form": "no-such-form"}, headers=site.headers())
    assert missing.status_code == 404 and missing.json()["errors"] == {"form": "unknown"}
    too_many = await client.post(
        "/api/print/sheets", json={"form": "call-record", "count": 500}, headers=site.headers()
    )
    assert too_many.status_code == 400
    unknown_field = await client.post(
        "/api/print/sheets", json={"form": "call-record", "x": 1}, headers=site.headers()
    )
    assert unknown_field.status_code == 400
    not_a_day = await client.post(
        "/api/print/sheets", json={"form": "call-record", "day": "261399"}, headers=site.headers()
    )
    assert not_a_day.status_code == 422 and not_a_day.json()["errors"] == {"day": "not a date"}
    anonymous = await client.post("/api/print/sheets", json={"form": "call-record"})
    assert anonymous.status_code == 401


# ---------------------------------------------------------------- browser: print to PDF


def _logged_in_page(live_server, new_context, username="live-lead", locale="zh-CN"):
    response = httpx.post(
        f"{live_server.base}/api/auth/login",
        json={"username": username, "password": live_server.PASSWORD},
        timeout=10,
    )
    response.raise_for_status()
    body = response.json()
    context = new_context(locale=locale)
    context.add_init_script(
        f"localStorage.setItem('od.token', {json.dumps(body['token'])});"
        f"localStorage.setItem('od.user', {json.dumps(json.dumps(body['user']))});"
    )
    return context, context.new_page()


def _pdf(page, path: Path) -> str:
    page.emulate_media(media="print")
    page.pdf(path=str(path), format="A4", print_background=True, prefer_css_page_size=True)
    page.emulate_media(media="screen")
    # pdftotext (poppler) maps the CJK font's radical glyphs back to ordinary characters (pypdf does not);
    # CJK text comes out with line breaks anywhere, so whitespace is dropped before comparing.
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return re.sub(r"\s+", "", text)


def _png(pdf: Path, out: Path) -> None:
    subprocess.run(
        [
            "pdftoppm",
            "-png",
            "-r",
            "60",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(pdf),
            str(out.with_suffix("")),
        ],
        check=True,
        timeout=60,
    )
    assert out.exists() and out.stat().st_size > 5000


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.browser
def test_print_a_playbook_to_pdf_in_both_languages(live_server, new_context, artifacts):
    playbook = json.loads((CONTENT / "playbooks" / "system-failure.json").read_text())
    _, page = _logged_in_page(live_server, new_context)
    page.goto(f"{live_server.base}/#/playbooks/system-failure")
    page.click("a.print-this")  # the print button on the playbook screen
    page.wait_for_url("**/#/print/playbook/system-failure")
    page.wait_for_selector(".print-pages[data-ready]")
    page.screenshot(path=artifacts / "print-playbook-screen.png")
    text = _pdf(page, artifacts / "print-playbook.pdf")
    assert "手工记录表Manualcallrecord" in text  # forms used, by title
    for step in playbook["steps"]:
        assert _squash(step["text"]["zh-CN"])[:20] in text, step["id"]
        assert _squash(step["text"]["en"])[:25] in text, step["id"]
    for contact in playbook["contacts"]:
        assert _squash(contact["phone"]) in text
    for rung in playbook["escalation"]:
        assert _squash(rung["message"]["en"])[:25] in text
    assert "升级时间表" in text and "Escalationladder" in text
    _png(artifacts / "print-playbook.pdf", artifacts / "print-playbook-page1.png")
    pages = PdfReader(str(artifacts / "print-playbook.pdf")).pages
    width, height = float(pages[0].mediabox.width), float(pages[0].mediabox.height)
    assert height > width  # portrait A4 (595 × 842 pt)


@pytest.mark.browser
def test_print_a_blank_call_record_sheet_to_pdf(live_server, new_context, artifacts):
    form = json.loads((CONTENT / "forms" / "call-record.json").read_text())
    _, page = _logged_in_page(live_server, new_context, username="live-agent")
    page.goto(f"{live_server.base}/#/forms/call-record")
    page.click("a.print-this")  # the print button on the form screen
    page.wait_for_url("**/#/print/form/call-record")
    page.wait_for_selector(".print-pages[data-ready]")
    sheet = page.locator(".form-sheet")
    sheet_id = sheet.get_attribute("data-sheet-id")
    rows = int(sheet.get_attribute("data-rows"))
    assert normalize_sheet_id(sheet_id) == sheet_id and printing.sheet_origin(sheet_id) == "server"
    assert page.locator(".form-sheet img.qr").count() == 1
    page.screenshot(path=artifacts / "print-call-record-screen.png")
    # the columns are the form's fields in screen order, sized by print_width
    assert page.locator(".form-sheet thead th[data-field]").evaluate_all(
        "ths => ths.map(t => t.dataset.field)"
    ) == [f["name"] for f in form["fields"]]
    text = _pdf(page, artifacts / "print-call-record.pdf")
    for field in form["fields"]:
        assert _squash(field["label"]["zh-CN"]) in text and _squash(field["label"]["en"]) in text, field[
            "name"
        ]
    assert _squash(form["title"]["zh-CN"]) in text and _squash(form["title"]["en"]) in text
    assert sheet_id in text
    reader = PdfReader(str(artifacts / "print-call-record.pdf"))
    assert len(reader.pages) == 1, "the blank sheet must fit one page"
    assert float(reader.pages[0].mediabox.width) > float(reader.pages[0].mediabox.height)  # landscape
    assert rows >= 8
    row_numbers = re.findall(
        r"\d+",
        subprocess.run(
            ["pdftotext", "-layout", str(artifacts / "print-call-record.pdf"), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout,
    )
    assert all(str(n) in row_numbers for n in range(1, rows + 1))
    _png(artifacts / "print-call-record.pdf", artifacts / "print-call-record-page1.png")


@pytest.mark.browser
def test_outage_kit_prints_every_playbook_and_form(live_server, new_context, artifacts):
    playbooks = [json.loads(p.read_text()) for p in sorted((CONTENT / "playbooks").glob("*.json"))]
    forms = [json.loads(p.read_text()) for p in sorted((CONTENT / "forms").glob("*.json"))]
    _, page = _logged_in_page(live_server, new_context)
    page.goto(f"{live_server.base}/#/print")
    page.click("a[href='#/print/kit']")
    page.wait_for_selector(".print-pages[data-ready]", timeout=30000)
    assert page.locator(".playbook-sheet:not(.contents-sheet)").count() == len(playbooks)
    assert page.locator(".form-sheet").count() == len(forms)
    ids = page.locator(".form-sheet").evaluate_all("s => s.map(x => x.dataset.sheetId)")
    assert len(set(ids)) == len(forms)
    text = _pdf(page, artifacts / "print-kit.pdf")
    for doc in playbooks + forms:
        assert _squash(doc["title"]["zh-CN"]) in text and _squash(doc["title"]["en"]) in text, doc["slug"]
    assert len(PdfReader(str(artifacts / "print-kit.pdf")).pages) >= len(playbooks) + len(forms)


@pytest.mark.browser
def test_printing_offline_makes_a_device_sheet_id(live_server, new_context, artifacts):
    context, page = _logged_in_page(live_server, new_context, username="live-agent")
    page.goto(f"{live_server.base}/#/print/form/call-record")
    page.wait_for_selector(".print-pages[data-ready]")
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30000)
    # the playbooks and forms are saved for offline use in the background (content.js): wait for that
    page.wait_for_function("localStorage.getItem('od.content') !== null", timeout=30000)
    context.set_offline(True)
    page.reload()
    page.wait_for_selector(".print-pages[data-ready]", timeout=30000)
    sheet_id = page.locator(".form-sheet").get_attribute("data-sheet-id")
    assert normalize_sheet_id(sheet_id) == sheet_id and printing.sheet_origin(sheet_id) == "device"
    assert page.locator(".form-sheet img.qr").count() == 0
    assert "离线生成" in page.locator(".ps-id-note").inner_text()
    text = _pdf(page, artifacts / "print-call-record-offline.pdf")
    assert sheet_id in text and "Madeoffline" in text


@pytest.mark.browser
def test_paper_row_id_matches_python_uuid5(live_server, new_context):
    _, page = _logged_in_page(live_server, new_context)
    page.goto(f"{live_server.base}/#/")
    page.wait_for_selector("h1")
    sheet_id = make_sheet_id("261123")
    got = page.evaluate(
        """async (sheetId) => {
        const m = await import('/static/sheets.js');
        const ids = [];
        for (const row of [1, 2, 17, 100]) ids.push(await m.paperRecordId('bj-01', sheetId, row));
        const device = m.deviceSheetId(new Date(2026, 10, 23));
        return {ids, normalized: m.normalizeSheetId(sheetId.toLowerCase().replaceAll('-', ' ')), device,
                deviceOk: m.normalizeSheetId(device), bad: m.normalizeSheetId(sheetId.slice(0, -1) + (sheetId.endsWith('0') ? '1' : '0'))};
    }""",
        sheet_id,
    )
    assert got["ids"] == [str(paper_record_id("bj-01", sheet_id, row)) for row in (1, 2, 17, 100)]
    assert got["normalized"] == sheet_id
    assert got["deviceOk"] == got["device"] and normalize_sheet_id(got["device"]) == got["device"]
    assert printing.sheet_origin(got["device"]) == "device" and got["device"].startswith("261123-")
    assert got["bad"] is None
