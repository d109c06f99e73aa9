"""Log in through the page in headless Chromium."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_login_through_the_page(live_server, new_context, artifacts):
    page = new_context(locale="zh-CN", bypass_csp=False).new_page()
    page.goto(live_server.base + "/")
    page.wait_for_url("**/#/login")
    expect(page.locator("h1")).to_have_text("登录")
    page.fill("input[name=username]", "live-lead")
    page.fill("input[name=password]", "wrong-password")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("登录失败")
    page.fill("input[name=password]", live_server.PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/#/")
    expect(page.locator("h1")).to_contain_text("lead live")
    expect(page.locator("#net")).to_have_text("在线")
    page.screenshot(path=artifacts / "login-home.png")


def test_language_follows_browser_and_switch(live_server, new_context):
    page = new_context(locale="en-US", bypass_csp=False).new_page()
    page.goto(live_server.base + "/#/login")
    expect(page.locator("h1")).to_have_text("Log in")
    page.click("#lang")
    expect(page.locator("h1")).to_have_text("登录")
