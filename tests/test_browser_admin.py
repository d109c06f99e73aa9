"""Administration in headless Chromium as an admin at phone size: create a user, reset a password (the old
login is refused at once), edit a playbook step as a draft, preview it in both languages and as print, see
the diff, publish, see the new version on an agent's device after a reload and on another after its next
sync, roll back; the site's time zone and contact directory; the fleet and the audit log. Screenshots of each
admin screen go to the artifacts folder."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from .servers import ServerProcess
from .test_browser_playbooks import go, log_in, wait_until_controlled

pytestmark = pytest.mark.browser
NEW_ZH = "立即通知运维值班和中心领导（演练改）"
NEW_EN = "Tell ops on duty and the center leaders at once (drill edit)"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = ServerProcess(tmp_path_factory.mktemp("admin"))
    server.add_users("adm", roles=("agent", "lead", "admin"))
    server.start()
    yield server
    server.stop()


def shot(page: Page, artifacts, name: str, at: str | None = None) -> None:
    """The phone's screen (not the full page: the sticky bars would repeat), scrolled to `at` if given."""
    if at:
        page.locator(at).first.scroll_into_view_if_needed()
    else:
        page.evaluate("window.scrollTo(0, 0)")
    page.wait_for_timeout(150)  # fonts and the last redraw
    page.screenshot(path=str(artifacts / f"admin-{name}.png"))


def expect_toast(page: Page, text: str) -> None:
    expect(page.locator(".toast", has_text=text).first).to_be_visible()


def first_step(page: Page) -> str:
    return page.locator(".pb-step .pb-step-text").first.inner_text()


def agent_on_playbook(new_context, server, username="adm-agent", password=ServerProcess.PASSWORD) -> Page:
    page = new_context(locale="zh-CN").new_page()
    log_in(page, server.base, username, password)
    wait_until_controlled(page)
    page.wait_for_function("localStorage.getItem('od.content') !== null", timeout=20000)
    go(page, "#/playbooks/power-outage")
    expect(page.locator(".pb-step").first).to_be_visible()
    return page


def me_status(page: Page) -> int:
    return page.evaluate(
        "fetch('/api/me', {headers: {Authorization: 'Bearer ' + localStorage.getItem('od.token')}}).then(r => r.status)"
    )


def test_users_create_and_reset_password_ends_the_old_login(server, new_context, artifacts):
    admin = new_context(locale="zh-CN").new_page()
    log_in(admin, server.base, "adm-admin", server.PASSWORD)
    expect(admin.locator("a.action[href='#/admin']")).to_be_visible()
    go(admin, "#/admin")
    expect(admin.locator("h1")).to_have_text("管理")
    shot(admin, artifacts, "hub")

    go(admin, "#/users")
    admin.get_by_role("button", name="新建用户").click()
    admin.fill("input[name=username]", "adm-new")
    admin.fill("input[name=display_name]", "新坐席 小赵")
    admin.fill("input[name=password]", "adm-new-pass-1")
    admin.click("button[type=submit]")
    card = admin.locator("li.ad-user[data-username='adm-new']")
    expect(card).to_be_visible()
    expect(card).to_contain_text("坐席")

    # The new agent logs in on a phone of their own.
    phone = new_context(locale="zh-CN").new_page()
    log_in(phone, server.base, "adm-new", "adm-new-pass-1")
    assert me_status(phone) == 200

    card.locator(".ad-user-head").click()
    card.locator("input[type=password]").fill("adm-new-pass-2")
    card.get_by_role("button", name="重置密码").click()
    expect_toast(admin, "密码已重置")
    expect(admin.locator("li.ad-user[data-username='adm-new']")).to_contain_text("0 处登录中")
    assert me_status(phone) == 401  # refused at once, not at the token's expiry
    with pytest.raises(httpx.HTTPStatusError):
        server.login("adm-new", "adm-new-pass-1")
    server.login("adm-new", "adm-new-pass-2")
    # A password the app would not accept is refused with the reason, on screen.
    card = admin.locator("li.ad-user[data-username='adm-new']")
    card.locator(".ad-user-head").click()
    card.locator("input[type=password]").fill("adm-new")
    card.get_by_role("button", name="重置密码").click()
    expect(admin.locator(".toast-error")).to_contain_text("8")
    admin.locator(".toast").first.wait_for(state="detached", timeout=6000)
    shot(admin, artifacts, "users")
    shot(admin, artifacts, "user-actions", at="li.ad-user[data-username='adm-new'] .ad-user-actions")


def test_edit_preview_publish_reach_devices_and_roll_back(server, new_context, artifacts):
    reloader = agent_on_playbook(new_context, server)
    original = first_step(reloader)
    syncer = agent_on_playbook(new_context, server, "adm-lead")

    admin = new_context(locale="zh-CN").new_page()
    log_in(admin, server.base, "adm-admin", server.PASSWORD)
    go(admin, "#/admin/docs")
    admin.locator("a.pb-card[data-slug='power-outage']").first.click()
    expect(admin.locator(".ed-head h1")).to_contain_text("断电")
    step = admin.locator(".ed-item").first
    step.locator("textarea[lang='zh-CN']").fill(NEW_ZH)
    step.locator("textarea[lang='en']").fill(NEW_EN)
    admin.get_by_role("button", name="保存草稿").click()
    expect_toast(admin, "草稿已保存")
    shot(admin, artifacts, "editor")

    # Saved as a draft: devices still show the published text.
    reloader.reload()
    expect(reloader.locator(".pb-step .pb-step-text").first).to_contain_text(original.split(". ", 1)[-1][:8])

    admin.get_by_role("tab", name="预览").click()
    expect(admin.locator(".ed-preview .pb-step-text").first).to_contain_text(NEW_ZH)
    shot(admin, artifacts, "preview-zh")
    # the preview's English, not the header's language switch (also named English)
    admin.locator(".ed-modes").get_by_role("button", name="English").click()
    expect(admin.locator(".ed-preview .pb-step-text").first).to_contain_text(NEW_EN)
    expect(admin.locator("html")).to_have_attribute("lang", "zh-CN")  # the admin's own language is kept
    shot(admin, artifacts, "preview-en")
    admin.locator(".ed-modes button[data-mode=print]").click()
    sheet = admin.locator(".ed-preview .playbook-sheet")
    expect(sheet).to_contain_text(NEW_ZH)
    expect(sheet).to_contain_text(NEW_EN)
    shot(admin, artifacts, "preview-print")

    admin.get_by_role("tab", name="改动").click()
    changes = admin.locator(".ed-change")
    expect(changes).to_have_count(2)
    expect(changes.first).to_contain_text("第 1 步")
    expect(changes.first.locator("ins")).to_have_text(NEW_ZH)
    shot(admin, artifacts, "changes")

    admin.get_by_role("button", name="发布").click()
    expect_toast(admin, "已发布")
    expect(admin.locator(".ed-version.current")).to_be_visible()
    shot(admin, artifacts, "versions")
    published = int(admin.locator(".ed-version.current").get_attribute("data-version"))

    # Online, a reload shows the new version; the other device gets it with its next sync.
    reloader.reload()
    expect(reloader.locator(".pb-step .pb-step-text").first).to_contain_text(NEW_ZH, timeout=20000)
    assert reloader.locator(".pb-header").get_attribute("data-version") == str(published)
    syncer.evaluate("import('/static/sync.js').then((s) => s.syncNow({ manual: true }))")
    expect(syncer.locator(".pb-step .pb-step-text").first).to_contain_text(NEW_ZH, timeout=20000)

    # Roll back: two taps on the previous version.
    rollback = admin.locator(f".ed-version[data-version='{published - 1}'] .ed-rollback")
    rollback.click()
    rollback.click()
    expect_toast(admin, f"第 {published + 1} 版")
    reloader.reload()
    expect(reloader.locator(".pb-step .pb-step-text").first).to_have_text(original, timeout=20000)
    assert reloader.locator(".pb-header").get_attribute("data-version") == str(published + 1)


def test_site_directory_fleet_and_audit_screens(server, new_context, artifacts):
    admin = new_context(locale="zh-CN").new_page()
    log_in(admin, server.base, "adm-admin", server.PASSWORD)
    go(admin, "#/admin/site")
    admin.locator("select").first.select_option("Asia/Urumqi")
    admin.get_by_role("button", name="保存", exact=True).click()
    expect_toast(admin, "已保存")
    ops = admin.locator(".ad-dir-row[data-role='ops'] input[type=tel]")
    ops.fill("010-6666-0001")
    admin.get_by_role("button", name="保存电话簿").click()
    expect_toast(admin, "电话簿已保存")
    shot(admin, artifacts, "site")
    shot(admin, artifacts, "directory", at=".ad-dir-row[data-role='ops']")

    agent = agent_on_playbook(new_context, server)
    expect(agent.locator("#pb-contacts")).to_contain_text("010-6666-0001")
    assert agent.locator("#pb-contacts a[href='tel:01066660001']").count() == 1

    # A device reports on its next sync what it still holds; the fleet shows it per person and device.
    token = server.login("adm-agent")
    answer = httpx.post(
        server.base + "/api/sync",
        json={"device_id": "drawer-tablet", "records": [], "device": {"unsent": 4, "drafts": 1}},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    go(admin, "#/fleet")
    expect(admin.locator(".fl-summary")).to_contain_text("4")
    expect(admin.locator(".fl-device[data-unsent='4']")).to_contain_text("4 条未上传")
    expect(admin.locator(".fl-person").first).to_contain_text("agent adm")
    shot(admin, artifacts, "fleet")

    go(admin, "#/admin/audit")
    items = admin.locator(".ad-audit-item")
    expect(items.first).to_be_visible()
    actions = items.evaluate_all("(els) => els.map((e) => e.dataset.action)")
    assert "site.directory" in actions and "site.update" in actions and "user.create" in actions
    expect(admin.locator(".ad-audit-item[data-action='site.update']").first).to_contain_text("Asia/Urumqi")
    assert "ad.act" not in admin.locator("main").inner_text()  # every action has words
    shot(admin, artifacts, "audit")
    admin.click("#lang")
    expect(admin.locator("h1")).to_have_text("Audit log")
    shot(admin, artifacts, "audit-en")
    # The form editor: fields edited one by one, previewed as the agent's form.
    admin.click("#lang")
    go(admin, "#/admin/docs/form/call-record")
    expect(admin.locator(".ed-item[data-field='phone']")).to_be_visible()
    shot(admin, artifacts, "form-editor", at=".ed-item[data-field='category']")
    admin.get_by_role("tab", name="预览").click()
    expect(admin.locator(".ed-preview .ed-agent input, .ed-preview .ed-agent textarea").first).to_be_visible()
    assert admin.locator("h1").count() == 1  # the preview's titles do not add a second h1
    shot(admin, artifacts, "form-preview")
    # Tablet: the same screens, two columns where there is room.
    admin.set_viewport_size({"width": 820, "height": 1180})
    go(admin, "#/users")
    expect(admin.locator("li.ad-user").first).to_be_visible()
    shot(admin, artifacts, "users-tablet")
