"""Playbooks and forms in headless Chromium: offline from the service worker's cache in both languages,
search, ticks that survive a reload, tel: links, screenshots, and an installable manifest."""

from __future__ import annotations

import re
import socket

import httpx
import pytest
from playwright.sync_api import Page, expect

from .conftest import CHROMIUM
from .servers import ServerProcess

pytestmark = pytest.mark.browser


def log_in(page: Page, base: str, username: str, password: str) -> None:
    page.goto(base + "/#/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/#/")


def wait_until_controlled(page: Page) -> None:
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=30000)


def api_cache_name(page: Page) -> str:
    """The logged-in user's offline read cache (frontend/offline.js: one Cache Storage cache per user)."""
    return page.evaluate("import('/static/offline.js').then((m) => m.cacheName())")


def cached_api_paths(page: Page) -> set[str]:
    return set(
        page.evaluate(
            """async (name) => {
        const cache = await caches.open(name);
        return (await cache.keys()).map((r) => new URL(r.url).pathname + new URL(r.url).search);
    }""",
            api_cache_name(page),
        )
    )


def wait_until_content_saved(page: Page, paths: set[str]) -> None:
    """The page primes the cache after login; wait until every playbook and form is stored and the page
    has noted the cursor it saved."""
    for _ in range(150):
        if paths <= cached_api_paths(page) and page.evaluate("localStorage.getItem('od.content') !== null"):
            return
        page.wait_for_timeout(200)
    raise AssertionError(f"not cached: {sorted(paths - cached_api_paths(page))}")


def content(server, username: str) -> tuple[list[dict], list[dict]]:
    """Playbooks and forms (both languages) as the server has them for this user's site."""
    headers = {"Authorization": f"Bearer {server.login(username)}"}
    playbooks = httpx.get(server.base + "/api/playbooks", headers=headers, timeout=10).json()
    forms = httpx.get(server.base + "/api/forms", headers=headers, timeout=10).json()
    return playbooks, forms


def set_language(page: Page, lang: str) -> None:
    current = page.evaluate("document.documentElement.lang")
    if current != lang:
        page.click("#lang")
    expect(page.locator("html")).to_have_attribute("lang", lang)


def go(page: Page, hash_: str) -> None:
    page.evaluate("(h) => { location.hash = h; }", hash_)


def test_every_playbook_and_form_in_both_languages_offline(live_server, new_context, artifacts):
    playbooks, forms = content(live_server, "live-agent")
    assert len(playbooks) == 10 and len(forms) == 5
    context = new_context(locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    log_in(page, live_server.base, "live-agent", live_server.PASSWORD)
    wait_until_controlled(page)
    wanted = (
        {"/api/playbooks", "/api/forms"}
        | {f"/api/playbooks/{p['slug']}" for p in playbooks}
        | {f"/api/forms/{f['slug']}" for f in forms}
    )
    wait_until_content_saved(page, wanted)

    context.set_offline(True)
    page.reload()
    expect(page.locator("#net")).to_have_text("离线")
    # Only GETs come from the cache: an upload to a cached address fails like any upload while offline.
    assert (
        page.evaluate("""fetch('/api/playbooks', {method: 'POST', body: '{}'})
        .then((r) => r.status, () => 'network error')""")
        == "network error"
    )
    expect(page.locator("#net")).to_have_class(re.compile(r"\boffline\b"))
    go(page, "#/playbooks")
    expect(page.locator(".pb-card")).to_have_count(10)
    expect(page.locator(".pb-offline")).to_contain_text("离线：显示本机保存的版本")
    page.screenshot(path=artifacts / "playbooks-offline-zh.png")

    for lang in ("zh-CN", "en"):
        set_language(page, lang)
        go(page, "#/playbooks")
        for playbook in playbooks:
            expect(page.locator(f'.pb-card[data-slug="{playbook["slug"]}"]')).to_contain_text(
                playbook["title"][lang]
            )
        for playbook in playbooks:
            go(page, f"#/playbooks/{playbook['slug']}")
            expect(page.locator("h1")).to_have_text(playbook["title"][lang])
            steps = page.locator(".pb-step-text")
            expect(steps).to_have_count(len(playbook["steps"]))
            expect(steps.first).to_contain_text(playbook["steps"][0]["text"][lang])
            expect(steps.last).to_contain_text(playbook["steps"][-1]["text"][lang])
            if playbook.get("script"):
                expect(page.locator(".pb-script li").first).to_have_text(playbook["script"][lang][0])
            expect(page.locator(".pb-form")).to_have_count(len(playbook["forms"]))
        for form in forms:
            go(page, f"#/forms/{form['slug']}")
            expect(page.locator("h1")).to_have_text(form["title"][lang])
            labels = page.locator(".field-label")
            expect(labels).to_have_count(len(form["fields"]))
            for i, field in enumerate(form["fields"]):
                expect(labels.nth(i)).to_contain_text(field["label"][lang])
    assert errors == []


def test_list_search_ticks_contacts_and_screenshots(live_server, new_context, artifacts):
    page = new_context(locale="zh-CN").new_page()
    log_in(page, live_server.base, "live-lead", live_server.PASSWORD)
    expect(page.locator(".action", has_text="应急预案")).to_have_attribute("href", "#/playbooks")
    expect(page.locator("#tabs a", has_text="预案")).to_be_visible()
    page.click("#tabs a:has-text('预案')")
    expect(page.locator(".pb-card")).to_have_count(10)
    expect(page.locator(".pb-group h2")).to_have_text(
        ["系统与设备故障", "电力与设施", "安全与人员", "话务激增", "投诉与舆情"]
    )
    page.screenshot(path=artifacts / "playbooks-list-zh.png")
    assert_touch_targets(page)

    # Search looks at titles, summaries and step text in the current language.
    page.fill(".pb-search", "断电")
    expect(page.locator(".pb-card")).to_have_count(1)
    expect(page.locator(".pb-card")).to_have_attribute("data-slug", "power-outage")
    page.fill(".pb-search", "承诺2小时内回拨")  # words from a step, not from any title
    expect(page.locator('.pb-card[data-slug="system-failure"]')).to_be_visible()
    page.fill(".pb-search", "不存在的东西")
    expect(page.locator(".empty")).to_contain_text("没有找到")
    page.click("text=清除搜索")
    expect(page.locator(".pb-card")).to_have_count(10)

    page.click('.pb-card[data-slug="system-failure"]')
    page.wait_for_url("**/#/playbooks/system-failure")
    expect(page.locator("h1")).to_have_text("应用程序/网络/系统故障")
    first = page.locator(".pb-step").first
    expect(first.locator(".who")).to_have_text("坐席")
    expect(first.locator(".when")).to_have_text("立即")
    report = page.locator('.pb-step[data-step="report-supervisor"]')
    expect(report.locator(".who")).to_have_text("组长")
    expect(report.locator(".when")).to_have_text("5 分钟内")
    expect(page.locator('.pb-step[data-step="review-24h"] .when')).to_have_text("24 小时内")
    expect(page.locator(".pb-script li").first).to_contain_text("系统暂时出现故障")
    assert page.locator(".pb-script").evaluate("el => parseFloat(getComputedStyle(el).fontSize)") >= 20
    ladder = page.locator(".pb-ladder li")
    expect(ladder).to_have_count(3)
    expect(ladder.first).to_contain_text("5 分钟后")
    expect(ladder.first).to_contain_text("通知 主管/经理")
    expect(ladder.nth(2)).to_contain_text("1 小时后")
    expect(page.locator(".pb-tel").first).to_have_attribute("href", "tel:01000000001")
    expect(page.locator(".pb-tel").first).to_contain_text("运维值班")
    expect(page.locator(".pb-form")).to_have_text(
        ["手工记录表", "组长日志（系统故障情况处理表）", "回拨清单"]
    )
    page.screenshot(path=artifacts / "playbook-system-failure-zh.png")
    page.evaluate("document.querySelector('#pb-script').scrollIntoView()")
    page.screenshot(path=artifacts / "playbook-system-failure-script-zh.png")
    page.evaluate("document.querySelector('#pb-contacts').scrollIntoView()")
    page.screenshot(path=artifacts / "playbook-system-failure-contacts-zh.png")
    assert_touch_targets(page)

    # Ticks stay on the device across a reload; clearing takes two taps.
    page.click('.pb-step[data-step="tell-lead"] label')
    page.click('.pb-step[data-step="notify-ops"] label')
    expect(page.locator(".pb-progress")).to_have_text("已完成 2/10")
    expect(page.locator('.pb-step[data-step="tell-lead"] .pb-ticked')).to_contain_text("完成")
    page.reload()
    expect(page.locator(".pb-progress")).to_have_text("已完成 2/10")
    expect(page.locator('.pb-step[data-step="tell-lead"] input')).to_be_checked()
    expect(page.locator('.pb-step[data-step="manual-mode"] input')).not_to_be_checked()
    page.click(".pb-clear")
    expect(page.locator(".pb-clear")).to_have_text("再点一次确认清除")
    expect(page.locator(".pb-progress")).to_have_text("已完成 2/10")
    page.click(".pb-clear")
    expect(page.locator(".pb-progress")).to_have_text("已完成 0/10")
    expect(page.locator(".pb-step input:checked")).to_have_count(0)
    page.reload()
    expect(page.locator(".pb-step input:checked")).to_have_count(0)

    page.click('.pb-form[data-form="call-record"]')
    page.wait_for_url("**/#/forms/call-record")
    expect(page.locator("h1")).to_have_text("手工记录表")
    expect(page.locator(".field-label").first).to_contain_text("来电时间")
    page.screenshot(path=artifacts / "form-call-record-zh.png")


def test_new_content_version_reaches_the_device(live_server, new_context):
    """An admin edit makes version 2; the device sees the cursor grow when it is back online, saves the new
    version and shows it offline."""
    names = live_server.add_users("pbver", roles=("agent", "admin"))
    context = new_context(locale="zh-CN")
    page = context.new_page()
    log_in(page, live_server.base, names["agent"], live_server.PASSWORD)
    wait_until_controlled(page)
    wait_until_content_saved(page, {"/api/playbooks", "/api/playbooks/power-outage"})
    before = page.evaluate("JSON.parse(localStorage.getItem('od.content')).cursor")

    headers = {"Authorization": f"Bearer {live_server.login(names['admin'])}"}
    playbook = httpx.get(live_server.base + "/api/playbooks/power-outage", headers=headers, timeout=10).json()
    playbook["title"]["zh-CN"] = "断电（第二版）"
    playbook["steps"][0]["text"]["zh-CN"] = "第二版的第一步：先确认是整栋楼还是只有本层断电。"
    response = httpx.put(
        live_server.base + "/api/playbooks/power-outage", json=playbook, headers=headers, timeout=10
    )
    assert response.status_code == 200 and response.json()["version"] == 2

    page.evaluate(
        "import('/static/events.js').then((e) => e.emit('online'))"
    )  # what the page does on reconnecting
    page.wait_for_function(f"JSON.parse(localStorage.getItem('od.content')).cursor > {before}")
    context.set_offline(True)
    page.reload()
    go(page, "#/playbooks/power-outage")
    expect(page.locator("h1")).to_have_text("断电（第二版）")
    expect(page.locator(".pb-header")).to_have_attribute("data-version", "2")
    expect(page.locator(".pb-step-text").first).to_contain_text("第二版的第一步")
    go(page, "#/playbooks")
    expect(page.locator('.pb-card[data-slug="power-outage"]')).to_contain_text("断电（第二版）")


def test_server_that_hangs_or_is_down(tmp_path, new_context):
    """The outage case: the network is up but the server hangs, then is gone. API reads fall back to the
    saved copies after the short timeout (the page's own request would wait 15 s and fail)."""
    server = ServerProcess(tmp_path / "var")
    server.add_users("down", roles=("agent",))
    server.start()
    hanging = None
    try:
        page = new_context(locale="zh-CN").new_page()
        log_in(page, server.base, "down-agent", server.PASSWORD)
        wait_until_controlled(page)
        wait_until_content_saved(
            page, {"/api/playbooks", "/api/playbooks/fire-theft", "/api/forms/staff-headcount"}
        )
        server.stop()
        # Something still accepts connections on the port but never answers.
        hanging = socket.socket()
        hanging.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hanging.bind(("127.0.0.1", server.port))
        hanging.listen(64)
        go(page, "#/playbooks/fire-theft")
        expect(page.locator("h1")).to_have_text("火警/盗窃", timeout=12000)
        expect(page.locator("#net")).to_have_text("离线", timeout=20000)
        hanging.close()
        hanging = None
        page.reload()  # server gone: connection refused, shell and content from the caches
        go(page, "#/playbooks")
        expect(page.locator(".pb-card")).to_have_count(10)
        go(page, "#/forms/staff-headcount")
        expect(page.locator(".field-label").first).to_be_visible()
    finally:
        if hanging:
            hanging.close()
        server.stop()


def assert_touch_targets(page: Page) -> None:
    """Every visible link, button and input in the view is at least 44 px tall (checkboxes: their label)."""
    small = page.evaluate("""() => [...document.querySelectorAll('#view a, #view button, #view input, #tabs a')]
        .filter((el) => el.offsetParent !== null && el.type !== 'checkbox')
        .map((el) => [el.textContent.trim() || el.name || el.className, el.getBoundingClientRect().height])
        .filter(([, height]) => height < 44)""")
    assert small == []
    labels = page.evaluate("""() => [...document.querySelectorAll('.pb-step-label')]
        .map((el) => el.getBoundingClientRect().height).filter((h) => h < 44)""")
    assert labels == []


def test_english_playbook_and_unknown_slug(live_server, new_context):
    page = new_context(locale="en-US").new_page()
    log_in(page, live_server.base, "live-agent", live_server.PASSWORD)
    go(page, "#/playbooks/power-outage")
    expect(page.locator("h1")).to_have_text("Power outage")
    expect(page.locator(".pb-category")).to_have_text("Power and facilities")
    expect(page.locator(".pb-step .who").first).to_have_text(re.compile("Agent|Lead|Manager|Ops"))
    go(page, "#/playbooks/no-such-playbook")
    expect(page.locator(".error")).to_have_text("There is no such playbook.")


def test_manifest_is_installable(live_server, browser, tmp_path):
    # A persistent profile: Chromium never offers to install from an incognito context (the default one).
    context = browser.browser_type.launch_persistent_context(
        tmp_path / "profile",
        executable_path=CHROMIUM,
        args=["--no-sandbox", "--disable-gpu"],
        viewport={"width": 390, "height": 844},
        locale="zh-CN",
        bypass_csp=True,  # as the new_context fixture: Playwright's wait_for_function evaluates with eval()
    )
    try:
        page = context.new_page()
        page.goto(live_server.base + "/")
        wait_until_controlled(page)
        cdp = context.new_cdp_session(page)
        manifest = cdp.send("Page.getAppManifest")
        assert manifest["errors"] == [], manifest["errors"]
        errors = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
        assert errors == [], errors
    finally:
        context.close()
    data = httpx.get(live_server.base + "/manifest.webmanifest", timeout=10).json()
    assert data["display"] == "standalone" and data["start_url"] == "/" and data["theme_color"]
    assert any("maskable" in icon["purpose"] for icon in data["icons"])
    for icon in data["icons"]:
        assert httpx.get(live_server.base + icon["src"], timeout=10).headers["content-type"] == "image/png"
