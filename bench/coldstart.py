"""Offline cold start in headless Chromium (Debian's /usr/bin/chromium): from navigation to an interactive
call-record form, everything served by the service worker with the network off; the same to the home
screen (its buttons come from every screen, so it waits for the screens loaded after the first one); and
the app shell's bytes (what a device downloads to install it: the service worker and everything it
precaches).

Baselines, same run: a blank page served from the shell cache by the same service worker, offline (the
floor: tab, navigation and worker, no app), and the form's navigation online, the server answering.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers import ServerProcess

CHROMIUM = "/usr/bin/chromium"
# Records (in the page, from navigation start) when the call-record form's first field can take input.
READY_PROBE = """
(() => {
  const check = () => {
    const input = document.querySelector("form.rec-form input[name=caller_name]");
    if (input && !input.disabled && input.offsetParent !== null && window.__formReady === undefined) {
      window.__formReady = performance.now();
    }
  };
  new MutationObserver(check).observe(document, { childList: true, subtree: true, attributes: true });
})();
"""


# The floor: a page with nothing in it, put into the service worker's shell cache and served by its fetch
# handler like any shell file; it marks itself ready as its body is parsed.
BLANK_PATH = "/static/bench-blank.html"
PUT_BLANK = """async (path) => {
  const name = (await caches.keys()).find((n) => n.startsWith("od-shell-"));
  const html = "<!doctype html><meta charset=utf-8><title>blank</title><body><script>window.__formReady = performance.now()</script>";
  await (await caches.open(name)).put(path, new Response(html, { headers: { "Content-Type": "text/html" } }));
}"""
HOME_READY = "document.querySelector('#view[data-shown=\"#/\"] .actions a') !== null"


@dataclass
class ColdStartResult:
    offline_ms: float
    online_ms: float
    blank_ms: float
    home_ms: float
    shell_wire: int  # bytes on the wire, as the server sends them to a browser (compressed)
    shell_bytes: int  # the same files uncompressed
    shell_files: int
    runs: int


# What Chromium sends; the server picks the encoding (gzip today).
BROWSER_ENCODINGS = "gzip, deflate, br, zstd"


def shell_bytes(base: str) -> tuple[int, int, int]:
    """(wire bytes, uncompressed bytes, files) of the app shell.

    The figure that counts is the wire size: it is what a phone on a weak link downloads to install the
    shell, and what the 150 KB target is about. The uncompressed total is printed beside it; it is what the
    browser parses and what the Cache API stores (decoded bodies). /sw.js is counted too: the device
    downloads it to learn the precache list. Response headers are not counted.
    """
    # The precache list, as the service worker gets it (its first line: self.__BUILD__ = {...};).
    first_line = httpx.get(f"{base}/sw.js", timeout=10).text.split("\n", 1)[0]
    assets = json.loads(first_line.removeprefix("self.__BUILD__ = ").rstrip(";"))["assets"]
    wire = total = 0
    with httpx.Client(base_url=base, timeout=10) as client:
        for asset in ["/sw.js", *assets]:
            plain = client.get(asset, headers={"Accept-Encoding": "identity"})
            plain.raise_for_status()
            total += len(plain.content)
            # iter_raw: the body as it came over the wire, before httpx would decode it.
            with client.stream("GET", asset, headers={"Accept-Encoding": BROWSER_ENCODINGS}) as response:
                response.raise_for_status()
                wire += sum(len(chunk) for chunk in response.iter_raw())
    return wire, total, len(assets) + 1


def run_coldstart(runs: int = 7) -> ColdStartResult:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp:
        server = ServerProcess(Path(tmp))
        users = server.add_users("cold", ("agent",))
        server.start()
        try:
            wire, size, files = shell_bytes(server.base)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM,
                    args=[
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-background-networking",
                        "--no-first-run",
                    ],
                )
                try:
                    # bypass_csp: Playwright's wait_for_function evaluates its predicate with eval(), which the
                    # app's CSP forbids (the tests do the same; it changes nothing the page itself runs).
                    context = browser.new_context(
                        viewport={"width": 390, "height": 844}, locale="zh-CN", bypass_csp=True
                    )
                    context.set_default_timeout(30000)
                    context.add_init_script(READY_PROBE)
                    page = context.new_page()
                    page.goto(server.base + "/#/login")
                    page.fill("input[name=username]", users["agent"])
                    page.fill("input[name=password]", server.PASSWORD)
                    page.click("button[type=submit]")
                    page.wait_for_url("**/#/")
                    page.wait_for_function("navigator.serviceWorker.controller !== null")
                    form = server.base + "/#/forms/call-record"
                    page.goto(form)  # online once: the form definition is saved for offline use
                    page.wait_for_function("window.__formReady !== undefined")
                    page.evaluate(PUT_BLANK, BLANK_PATH)
                    page.close()
                    online = [_open(context, form) for _ in range(runs)]
                    context.set_offline(True)
                    # Interleaved, so a slow spell of the machine weighs on each alike.
                    blank, offline, home = [], [], []
                    for _ in range(runs):
                        blank.append(_open(context, server.base + BLANK_PATH))
                        offline.append(_open(context, form))
                        home.append(_open(context, server.base + "/#/", HOME_READY))
                finally:
                    browser.close()
        finally:
            server.stop()
    median = statistics.median
    return ColdStartResult(
        median(offline), median(online), median(blank), median(home), wire, size, files, runs
    )


def _open(context, url: str, ready: str | None = None) -> float:
    """A fresh tab navigates to url; ms from navigation start until the form takes input (or, with `ready`,
    until that condition holds, checked on every frame)."""
    page = context.new_page()
    try:
        if ready:
            check = (
                f"() => ({ready}) ? (window.__formReady = performance.now()) : requestAnimationFrame(check)"
            )
            page.add_init_script(f"(() => {{ const check = {check}; requestAnimationFrame(check); }})();")
        page.goto(url)
        page.wait_for_function("window.__formReady !== undefined")
        return page.evaluate("window.__formReady")
    finally:
        page.close()
