"""The sweep: every screen the router knows, for each role and both languages, at phone size.

On each screen: axe-core (zero violations), a scan of the rendered text for what is not from the language
files (server English in Chinese screens, raw ids and enum values, ISO timestamps), and the 200 % zoom check
(a 195 px wide viewport: nothing scrolls sideways). The screens come from the app's own route list
(router.js `routeList()`); screens with parameters are reached through the links the app itself shows, so a
screen added later is swept without touching this file.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from backend.firstrun import setup_token
from backend.printing import make_sheet_id

from .browsing import api, new_team
from .conftest import REQUIRE_ALL, SECRET

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "var" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
ZOOM_200 = {"width": 195, "height": 422}  # a 390×844 phone at 200 % zoom

# Machine text that must never reach a screen: ISO timestamps, UUIDs, snake_case or kebab-case ids.
ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
SNAKE = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")
# Words of the server's English problem details and API vocabulary, which a Chinese screen must not show.
LATIN_WORD = re.compile(r"\b[A-Z]?[a-z]{3,}\b")  # words, not codes such as a sheet ID's "VXQN"
# Latin words a Chinese screen may show: product names, units, user-entered sample data.
ALLOWED_LATIN = {
    *(
        "Outage",
        "Desk",
        "WeCom",
        "DingTalk",
        "Feishu",
        "Push",
        "Chrome",
        "Safari",
        "Android",
        "iPhone",
        "iPad",
    ),
    *("JSON", "Excel", "HTTPS", "Wi-Fi", "CRM", "PDF"),
}


def _axe_available() -> bool:
    if AXE.exists():
        return True
    if REQUIRE_ALL:
        pytest.fail(f"axe-core is required (OUTAGE_TEST_REQUIRE_ALL=1) but missing at {AXE}: run `just axe`")
    pytest.skip("axe-core not installed (`just axe`)")
    return False


@pytest.fixture(scope="module")
def team(live_server):
    """A site with one user per role, an open incident, a synced call record with a callback."""
    made = new_team(live_server, "a11y")

    def call(role, method, path, **kwargs):
        return api(live_server, made, role, method, path, **kwargs)

    incident = call(
        "lead", "POST", "/api/incidents", json={"playbook": "system-failure", "note": "全部坐席无法登录"}
    )
    now = datetime.now(UTC)
    record = {
        "id": str(uuid.uuid4()),
        "form": "call-record",
        "form_version": 1,
        "rev": 1,
        "captured_at": now.isoformat(),
        "incident_id": incident["id"],
        "data": {
            "called_at": (now - timedelta(minutes=20)).isoformat(),
            "caller_name": "李女士",
            "phone": "021-5555 0101",
            "category": "fault_report",
            "urgency": "urgent",
            "details": "停电后宽带一直断",
            "callback_promised": True,
            "callback_due": (now + timedelta(hours=1)).isoformat(),
        },
    }
    answer = call(
        "agent", "POST", "/api/sync", json={"device_id": "a11y-dev", "cursor": 0, "records": [record]}
    )
    assert answer["results"][0]["status"] == "created", answer
    return {"names": made["names"], "tokens": made["tokens"], "incident": incident, "record": record}


def open_as(new_context, live_server, team, role, lang):
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
    page = context.new_page()
    page.goto(live_server.base + "/#/")
    wait_shown(page, "#/")
    return page


def wait_shown(page, hash_: str) -> None:
    page.wait_for_function(
        "h => document.getElementById('view').dataset.shown === h && !document.querySelector('#view .loading')",
        arg=hash_,
    )
    page.wait_for_timeout(60)  # late redraws (a live list's first refresh)


def routes(page) -> list[dict]:
    return page.evaluate("import('/static/router.js').then((m) => m.routeList())")


def to_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r":\w+", "[^/]+", re.escape(pattern).replace("\\:", ":")) + "$")


def app_links(page) -> list[str]:
    return page.evaluate(
        "[...document.querySelectorAll('a[href^=\"#/\"]')].map((a) => a.getAttribute('href'))"
    )


def run_axe(page) -> list[dict]:
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    return page.evaluate(
        """axe.run(document, { resultTypes: ["violations"] }).then((r) => r.violations.map((v) => ({
             id: v.id, impact: v.impact, help: v.help,
             nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ") + " :: " + n.failureSummary) })))"""
    )


def visible_text(page) -> str:
    # What a person sees or hears in the page's language: text nodes, plus labels, placeholders and titles.
    # Text marked as another language (lang="en" beside the Chinese on a printed sheet) is meant so.
    # Code and machine syntax (translate="no", code, pre, kbd, samp: a request preview, a JSON path, an
    # example address) is not language: the words around it are, and those are checked.
    return page.evaluate(
        """(() => {
          const parts = [document.title];
          const paper = [];
          const mine = document.documentElement.lang;
          const CODE = '[translate="no"], code, pre, kbd, samp';
          const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
          for (let n = walker.nextNode(); n; n = walker.nextNode()) {
            const el = n.parentElement;
            if (!el || el.closest("script, style, [hidden], [aria-hidden=true]")) continue;
            if (el.closest("input, textarea")) continue;
            if (el.closest(CODE)) continue; // machine syntax (a request, a JSON path), not language
            if ((el.closest("[lang]")?.getAttribute("lang") || mine) !== mine) continue;
            if (el.closest(".print-sheet")) { paper.push(n.textContent); continue; } // bilingual on purpose
            const style = getComputedStyle(el);
            if (style.display === "none" || style.visibility === "hidden") continue;
            parts.push(n.textContent);
          }
          for (const el of document.querySelectorAll("[aria-label], [placeholder], [title]")) {
            if ((el.closest("[lang]")?.getAttribute("lang") || mine) !== mine) continue;
            if (el.closest(CODE)) continue;
            for (const a of ["aria-label", "placeholder", "title"]) if (el.getAttribute(a)) parts.push(el.getAttribute(a));
          }
          return { screen: parts.join("\\n"), paper: paper.join("\\n") };
        })()"""
    )


def machine_text(text: dict, lang: str, data_words: set[str]) -> list[str]:
    """Raw ids and timestamps anywhere; on a Chinese screen (not the bilingual paper) English words too."""
    both = text["screen"] + "\n" + text["paper"]
    found = [m.group(0) for pattern in (ISO, UUID, SNAKE) for m in pattern.finditer(both)]
    if lang == "zh-CN":
        words = LATIN_WORD.findall(text["screen"])
        found += [w for w in words if w not in ALLOWED_LATIN and w not in data_words]
    return found


def overflow(page) -> dict | None:
    return page.evaluate(
        """(() => {
          const s = document.scrollingElement;
          if (s.scrollWidth <= s.clientWidth) return null;
          const wide = [...document.querySelectorAll("body *")].filter((el) => {
            const r = el.getBoundingClientRect();
            return r.width > 0 && r.right > s.clientWidth + 1;
          }).slice(0, 4).map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
            (el.className && typeof el.className === "string" ? "." + el.className.split(" ").join(".") : ""));
          return { scrollWidth: s.scrollWidth, clientWidth: s.clientWidth, wide };
        })()"""
    )


def samples(team) -> dict[str, str]:
    """Screens no other screen links to (opened from a QR code, a device's own drafts, the first-run link the
    server prints): one address each."""
    sheet = make_sheet_id(datetime.now(UTC).strftime("%y%m%d"))
    return {
        "#/records/:id": f"#/records/{team['record']['id']}",
        "#/transcribe/:form/:sheet/:row": f"#/transcribe/call-record/{sheet}/1",
        "#/setup/:token": f"#/setup/{setup_token(SECRET)}",  # this server has its admins: the "done" page
    }


def sweep(page, role: str | None, lang: str, data_words: set[str], problems: list[str], extra=()) -> set[str]:
    """Visit every screen this role may open; return the route patterns visited."""
    known = routes(page)
    allowed = [r for r in known if (r["public"] or role) and (not r["roles"] or role in r["roles"])]
    if role is None:
        allowed = [r for r in known if r["public"]]
    queue = [r["pattern"] for r in allowed if not r["names"]]
    queue += [hash_ for pattern, hash_ in extra if any(r["pattern"] == pattern for r in allowed)]
    if role is not None:
        queue.append("#/no-such-screen")  # the not-found screen
    patterns = {r["pattern"]: to_regex(r["pattern"]) for r in allowed}
    visited: set[str] = set()
    seen_hashes: set[str] = set()
    while queue:
        hash_ = queue.pop(0)
        if hash_ in seen_hashes:
            continue
        seen_hashes.add(hash_)
        pattern = next((p for p, rx in patterns.items() if rx.match(hash_)), "not-found")
        if pattern in visited:
            continue
        visited.add(pattern)
        started = time.monotonic()
        page.set_viewport_size(PHONE)
        page.goto(page.url.split("#")[0] + hash_)
        wait_shown(page, hash_)
        where = f"{role or 'anonymous'} {lang} {hash_}"
        for violation in run_axe(page):
            problems.append(f"{where}: axe {violation['id']} ({violation['help']}): {violation['nodes']}")
        for bad in sorted(set(machine_text(visible_text(page), lang, data_words)))[:8]:
            problems.append(f"{where}: not from the language files: {bad!r}")
        links = app_links(page)
        page.set_viewport_size(ZOOM_200)
        page.wait_for_timeout(50)
        wide = overflow(page)
        if wide:
            problems.append(f"{where}: scrolls sideways at 200 % zoom: {wide}")
        print(f"{where}: {time.monotonic() - started:.2f}s")
        for link in links:
            if link not in seen_hashes and any(rx.match(link) for rx in patterns.values()):
                queue.append(link)
    return visited


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_every_screen_every_role_has_no_axe_violations_and_no_machine_text(
    live_server, team, new_context, lang
):
    _axe_available()
    data = team["record"]["data"]
    data_words = set(LATIN_WORD.findall(" ".join(str(v) for v in data.values())))
    data_words |= set(LATIN_WORD.findall(" ".join(team["names"].values())))
    problems: list[str] = []
    visited: set[str] = set()
    # Logged out: the login screen.
    context = new_context(locale=lang)
    context.add_init_script(f"localStorage.setItem('od.lang', {json.dumps(lang)});")
    page = context.new_page()
    page.goto(live_server.base + "/#/login")
    wait_shown(page, "#/login")
    visited |= sweep(page, None, lang, data_words, problems)
    known = {r["pattern"] for r in routes(page)}
    extra = list(samples(team).items())
    for role in ("agent", "lead", "manager", "admin"):
        page = open_as(new_context, live_server, team, role, lang)
        visited |= sweep(page, role, lang, data_words, problems, extra)
        page.context.close()
    assert not problems, "\n".join(problems)
    unreached = known - visited
    assert not unreached, f"screens no role reached through the app's links or SAMPLES: {sorted(unreached)}"
