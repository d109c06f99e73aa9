"""What a tired agent must not get wrong, in headless Chromium at phone size: a save that did not happen is
told where the thumb is and no toast takes the next tap; focus is visible and never under the sticky bars;
"selected" and "invalid" look different; the outbox tells how many wait and what happens next. Screenshots
of the form, outbox and review in both languages."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def team(live_server):
    site = f"scr{uuid.uuid4().hex[:6]}"
    names = live_server.add_users(site, roles=("agent", "lead"))
    tokens = {role: live_server.login(name) for role, name in names.items()}
    incident = httpx.post(
        f"{live_server.base}/api/incidents",
        json={"playbook": "power-outage"},
        headers={"Authorization": f"Bearer {tokens['lead']}"},
        timeout=10,
    ).json()
    return {"names": names, "incident": incident}


def page_as(live_server, new_context, team, role, lang="zh-CN"):
    body = httpx.post(
        f"{live_server.base}/api/auth/login",
        json={"username": team["names"][role], "password": live_server.PASSWORD},
        timeout=10,
    ).json()
    context = new_context(locale=lang)
    context.add_init_script(
        f"localStorage.setItem('od.lang', {json.dumps(lang)});"
        f"localStorage.setItem('od.token', {json.dumps(body['token'])});"
        f"localStorage.setItem('od.user', {json.dumps(json.dumps(body['user']))});"
    )
    return context, context.new_page()


def shown(page, hash_):
    page.goto(page.url.split("#")[0] + hash_ if page.url.startswith("http") else hash_)
    page.wait_for_function("h => document.getElementById('view').dataset.shown === h", arg=hash_)


def rect(page, selector):
    return page.evaluate(
        "s => { const r = document.querySelector(s).getBoundingClientRect(); "
        "return { top: r.top, bottom: r.bottom, left: r.left, right: r.right }; }",
        selector,
    )


def overlaps(a, b) -> bool:
    return (
        a["left"] < b["right"]
        and b["left"] < a["right"]
        and a["top"] < b["bottom"]
        and b["top"] < a["bottom"]
    )


def luminance(rgb: str) -> float:
    values = [int(v) / 255 for v in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    lin = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in values]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_a_save_that_did_not_happen_is_told_and_no_toast_takes_a_tap(
    live_server, team, new_context, artifacts
):
    for lang in ("zh-CN", "en"):
        context, page = page_as(live_server, new_context, team, "agent", lang)
        page.goto(live_server.base + "/#/forms/call-record")
        page.wait_for_selector("form.rec-form")
        page.fill("input[name=caller_name]", "王先生")
        page.check("input[name=category][value=complaint]")
        page.click("button.rec-save")
        # Not saved: the action bar says so and stays; the first field to fix has the keyboard.
        notice = page.locator(".rec-notsaved")
        expect(notice).to_be_visible()
        expect(notice).to_contain_text("保存" if lang == "zh-CN" else "Not saved")
        focused = page.evaluate("document.activeElement.name")
        assert focused in {"phone", "urgency", "details"}, focused
        page.wait_for_timeout(4500)  # longer than any toast lives
        expect(notice).to_be_visible()
        # "Selected" and "invalid" do not look alike.
        chosen = page.evaluate(
            "(() => { const s = getComputedStyle(document.querySelector('.choice:has(input:checked)'));"
            " return [s.backgroundColor, s.borderTopColor]; })()"
        )
        invalid = page.evaluate(
            "(() => { const s = getComputedStyle(document.querySelector('.field.invalid input, .field.invalid textarea'));"
            " return [s.backgroundColor, s.borderTopColor]; })()"
        )
        assert chosen[0] != invalid[0] and chosen[1] != invalid[1], (chosen, invalid)
        page.screenshot(path=artifacts / f"form-not-saved-{lang}.png", full_page=True)

        # A good save shows a toast; while it shows, it covers no action and the next tap reaches the button.
        page.fill("input[name=phone]", "021-5555 0101")
        page.check("input[name=urgency][value=urgent]")
        page.fill("textarea[name=details]", "停电")
        record_id = page.locator("form.rec-form").get_attribute("data-record")
        page.click("button.rec-save")
        expect(page.locator("form.rec-form")).not_to_have_attribute("data-record", record_id)
        toast = page.locator(".toast")
        expect(toast).to_be_visible()
        box = rect(page, ".toast")
        for action in page.evaluate(
            "[...document.querySelectorAll('main button, main a.button, #tabs a')].filter((el) => el.offsetParent)"
            '.map((el, i) => (el.dataset.probe = i, `[data-probe="${i}"]`))'
        ):
            assert not overlaps(box, rect(page, action)), f"the toast covers {action}"
        centre = ((box["left"] + box["right"]) / 2, (box["top"] + box["bottom"]) / 2)
        under = page.evaluate(
            "([x, y]) => document.elementFromPoint(x, y)?.closest('.toast') === null", centre
        )
        assert under, "the toast takes taps"
        page.click("button.rec-save")  # the empty next form: not saved, and told so at once
        expect(page.locator(".rec-notsaved")).to_be_visible()
        context.close()


def test_focus_is_visible_and_never_under_a_sticky_bar(live_server, team, new_context):
    context, page = page_as(live_server, new_context, team, "agent")
    page.goto(live_server.base + "/#/forms/call-record")
    page.wait_for_selector("form.rec-form")
    page.check("input[name=callback_promised][value=true]")
    page.fill("input[name=caller_name]", "李女士")  # a draft: the discard button shows
    page.wait_for_selector("form.rec-form button.secondary:not([hidden])")
    page.evaluate("document.querySelector('input[name=called_at]').focus(); window.scrollTo(0, 0)")
    seen = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        page.wait_for_timeout(60)
        info = page.evaluate(
            """(() => {
              const el = document.activeElement;
              if (!el || el === document.body) return null;
              const r = el.getBoundingClientRect();
              const bar = (s) => { const b = document.querySelector(s); return b ? b.getBoundingClientRect() : null; };
              const top = bar('.topbar'), tabs = bar('#tabs'), save = bar('.rec-actions');
              const style = getComputedStyle(el);
              return { name: el.name || el.className || el.tagName, top: r.top, bottom: r.bottom,
                inSave: !!el.closest('.rec-actions'), inTabs: !!el.closest('#tabs, .topbar'),
                topbar: top.bottom, tabs: tabs.top, save: save ? [save.top, save.bottom] : null,
                outline: style.outlineStyle, width: parseFloat(style.outlineWidth), color: style.outlineColor,
                focus: el.matches(':focus'), hasFocus: document.hasFocus() };
            })()"""
        )
        if info is None or info["inTabs"]:
            continue
        seen.add(info["name"])
        assert info["top"] >= info["topbar"] - 1, f"{info['name']} is under the header: {info}"
        assert info["bottom"] <= info["tabs"] + 1, f"{info['name']} is under the tab bar: {info}"
        if not info["inSave"] and info["save"] is not None:  # the sticky save bar covers no part of it
            save_top, save_bottom = info["save"]
            covered = info["top"] < save_bottom - 1 and save_top + 1 < info["bottom"]
            assert not covered, f"{info['name']} is under the save bar: {info}"
        assert info["outline"] != "none" and info["width"] >= 2, json.dumps(info)
        assert contrast(info["color"], "rgb(255, 255, 255)") >= 3, info
    assert "callback_due" in seen and any("secondary" in str(n) for n in seen), seen
    context.close()


def test_login_focuses_the_username_and_outbox_tells_what_waits(live_server, team, new_context, artifacts):
    context = new_context(locale="zh-CN")
    page = context.new_page()
    page.goto(live_server.base + "/#/login")
    page.wait_for_function("document.activeElement && document.activeElement.name === 'username'")
    context.close()
    for lang in ("zh-CN", "en"):
        context, page = page_as(live_server, new_context, team, "agent", lang)
        page.goto(live_server.base + "/#/forms/call-record")
        page.wait_for_selector("form.rec-form")
        page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=20000)
        context.set_offline(True)
        page.evaluate("window.dispatchEvent(new Event('offline'))")
        page.fill("input[name=caller_name]", "赵先生")
        page.fill("input[name=phone]", "13800000000")
        page.check("input[name=category][value=complaint]")
        page.check("input[name=urgency][value=normal]")
        page.fill("textarea[name=details]", "断网")
        page.screenshot(path=artifacts / f"form-{lang}.png", full_page=True)
        record_id = page.locator("form.rec-form").get_attribute("data-record")
        page.click("button.rec-save")
        expect(page.locator("form.rec-form")).not_to_have_attribute("data-record", record_id)
        page.goto(live_server.base + "/#/outbox")
        page.wait_for_function("document.getElementById('view').dataset.shown === '#/outbox'")
        truth = page.locator(".outbox-truth")
        expect(truth).to_contain_text("1 条未上传" if lang == "zh-CN" else "1 not uploaded")
        expect(truth).to_contain_text("联网后会自动上传" if lang == "zh-CN" else "when the network is back")
        page.screenshot(path=artifacts / f"outbox-{lang}.png", full_page=True)
        context.set_offline(False)
        context.close()
        context, page = page_as(live_server, new_context, team, "lead", lang)
        page.goto(live_server.base + f"/#/incidents/{team['incident']['id']}/review")
        page.wait_for_function(
            "h => document.getElementById('view').dataset.shown === h",
            arg=f"#/incidents/{team['incident']['id']}/review",
        )
        page.screenshot(path=artifacts / f"review-{lang}.png", full_page=True)
        context.close()


def test_a_paper_sheet_has_only_its_printed_rows(live_server, team, new_context):
    from datetime import UTC, datetime

    from backend.printing import make_sheet_id

    sheet = make_sheet_id(datetime.now(UTC).strftime("%y%m%d"))
    context, page = page_as(live_server, new_context, team, "agent")
    page.goto(live_server.base + "/#/print/form/call-record")
    page.wait_for_selector(".print-pages[data-ready='1']")
    rows = int(page.locator(".form-sheet").first.get_attribute("data-rows"))
    assert page.locator(".form-sheet tbody tr").count() == rows
    page.goto(live_server.base + f"/#/transcribe/call-record/{sheet}/{rows + 1}")
    page.wait_for_url(f"**/#/transcribe/call-record/{sheet}/{rows}")
    expect(page.locator(".toast")).to_contain_text(str(rows))
    expect(page.locator(".tr-row")).to_have_attribute("data-row", str(rows))
    expect(page.get_by_role("button", name="下一行", exact=True)).to_be_disabled()
    context.close()


def test_a_cold_start_offline_draws_the_first_screen_and_loads_the_others_after(
    live_server, team, new_context
):
    context, page = page_as(live_server, new_context, team, "agent")
    page.goto(live_server.base + "/#/forms/call-record")
    page.wait_for_selector("form.rec-form input[name=caller_name]")
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=20000)
    page.close()
    context.set_offline(True)
    page = context.new_page()
    page.goto(live_server.base + "/#/forms/call-record")
    expect(page.locator("form.rec-form input[name=caller_name]")).to_be_editable()
    # The shell's files came from this build's cache by the worker's static routes, not its fetch handler.
    sources = page.evaluate(
        "performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/static/app.js'))"
        ".map((e) => e.workerMatchedSourceType)"
    )
    assert sources == ["cache"]
    # A screen loaded after the first one opens from the tab bar, offline, and the tabs are all there.
    expect(page.locator("#tabs a")).to_have_count(6)
    page.click("#tabs a[href='#/incidents']")
    page.wait_for_function("document.getElementById('view').dataset.shown === '#/incidents'")
    expect(page.locator("#view h1")).to_be_visible()
    # Home's buttons (menu.js) for this role only: an agent has no administration button.
    page.click("#tabs a[href='#/']")
    page.wait_for_function("document.getElementById('view').dataset.shown === '#/'")
    expect(page.locator(".actions a[href='#/forms/call-record']")).to_be_visible()
    expect(page.locator(".actions a[href='#/admin']")).to_have_count(0)
    # A static path the shell does not hold misses the cache and goes to the server.
    context.set_offline(False)
    status = page.evaluate("fetch('/static/not-in-the-shell.txt').then((r) => r.status)")
    assert status == 404
    context.close()
