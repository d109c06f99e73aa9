"""Structure checks for the shipped content (playbooks and forms).

Plain pytest: no app imports, only json, pathlib and re.
"""

import json
import pathlib
import re

import pytest

CONTENT = pathlib.Path(__file__).resolve().parent.parent / "backend" / "content"
FORMS_DIR = CONTENT / "forms"
PLAYBOOKS_DIR = CONTENT / "playbooks"

PLAYBOOK_SLUGS = {
    "seat-equipment-failure",
    "system-failure",
    "power-outage",
    "air-conditioning-failure",
    "fire-theft",
    "personal-accident",
    "website-failure",
    "call-surge",
    "complaint-escalation",
    "media-enquiry",
}
FORM_SLUGS = {"call-record", "incident-log", "callback-list", "staff-headcount", "media-enquiry"}

LANGS = ("zh-CN", "en")
CATEGORIES = {"technical", "facility", "safety", "demand", "public"}
WHO = {"agent", "lead", "manager", "ops"}
NOTIFY_ROLES = {"lead", "manager"}
FIELD_TYPES = {"text", "textarea", "tel", "integer", "datetime", "choice", "boolean"}

PLAYBOOK_KEYS = {
    "slug",
    "version",
    "category",
    "title",
    "summary",
    "steps",
    "escalation",
    "script",
    "forms",
    "contacts",
}
STEP_KEYS = {"id", "who", "within_minutes", "text"}
ESCALATION_KEYS = {"after_minutes", "notify", "message"}
CONTACT_KEYS = {"role", "label", "phone"}
FORM_KEYS = {"slug", "version", "title", "description", "fields"}
FIELD_KEYS = {
    "name",
    "type",
    "label",
    "help",
    "required",
    "required_if",
    "max_length",
    "pattern",
    "min",
    "max",
    "choices",
    "default",
    "print_width",
}
CHOICE_KEYS = {"value", "label"}

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
ASCII_VALUE = re.compile(r"^[a-z0-9]+([_-][a-z0-9]+)*$")
PLACEHOLDER_PHONE = re.compile(r"^010-0000-00\d\d$")
DATETIME_DEFAULT = re.compile(r"^now(\+[1-9]\d*)?$")
EMERGENCY_NUMBERS = {"119", "110", "120"}

CALL_RECORD_ORDER = [
    "called_at",
    "caller_name",
    "phone",
    "category",
    "urgency",
    "details",
    "callback_promised",
    "callback_due",
]


def _load_dir(d):
    assert d.is_dir(), f"missing directory {d}"
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(d.glob("*.json"))}


FORMS = _load_dir(FORMS_DIR)
PLAYBOOKS = _load_dir(PLAYBOOKS_DIR)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_text(obj, where):
    """A user-visible text: {zh-CN, en}, both non-empty, zh-CN with CJK."""
    assert isinstance(obj, dict), f"{where}: not a localized object"
    assert set(obj) == set(LANGS), f"{where}: keys {sorted(obj)} != {list(LANGS)}"
    for lang in LANGS:
        assert isinstance(obj[lang], str) and obj[lang].strip(), f"{where}: empty {lang}"
    assert CJK.search(obj["zh-CN"]), f"{where}: zh-CN has no Chinese characters"


# ---------------------------------------------------------------- files


def test_every_content_file_is_valid_utf8_json():
    files = [p for p in CONTENT.rglob("*") if p.is_file()]
    assert files
    for p in files:
        assert p.suffix == ".json", f"unexpected file {p}"
        raw = p.read_text(encoding="utf-8")
        json.loads(raw)
        # ensure_ascii off: real Chinese characters, no \uXXXX escapes
        assert not re.search(r"\\u[0-9a-fA-F]{4}", raw), f"{p}: escaped unicode"
        assert CJK.search(raw), f"{p}: no Chinese text"


def test_exact_slugs():
    assert set(PLAYBOOKS) == PLAYBOOK_SLUGS
    assert set(FORMS) == FORM_SLUGS
    for stem, pb in PLAYBOOKS.items():
        assert pb["slug"] == stem
    for stem, form in FORMS.items():
        assert form["slug"] == stem


# ---------------------------------------------------------------- playbooks


@pytest.mark.parametrize("slug", sorted(PLAYBOOK_SLUGS))
def test_playbook_structure(slug):
    pb = PLAYBOOKS[slug]
    assert set(pb) == PLAYBOOK_KEYS, f"{slug}: keys {sorted(pb)}"
    assert _is_int(pb["version"]) and pb["version"] >= 1
    assert pb["category"] in CATEGORIES
    check_text(pb["title"], f"{slug}.title")
    check_text(pb["summary"], f"{slug}.summary")

    steps = pb["steps"]
    assert 4 <= len(steps) <= 10, f"{slug}: {len(steps)} steps"
    ids = [s["id"] for s in steps]
    assert len(ids) == len(set(ids)), f"{slug}: duplicate step ids"
    for s in steps:
        assert set(s) == STEP_KEYS, f"{slug}.{s.get('id')}: keys {sorted(s)}"
        assert KEBAB.match(s["id"]), f"{slug}: bad step id {s['id']}"
        assert s["who"] in WHO, f"{slug}.{s['id']}: who={s['who']}"
        w = s["within_minutes"]
        assert w is None or (_is_int(w) and w >= 0), f"{slug}.{s['id']}: within_minutes={w}"
        check_text(s["text"], f"{slug}.{s['id']}.text")

    esc = pb["escalation"]
    assert isinstance(esc, list)
    for i, e in enumerate(esc):
        assert set(e) == ESCALATION_KEYS, f"{slug}.escalation[{i}]: keys {sorted(e)}"
        assert _is_int(e["after_minutes"]) and e["after_minutes"] >= 0
        assert e["notify"] and set(e["notify"]) <= NOTIFY_ROLES, f"{slug}: notify {e['notify']}"
        assert len(e["notify"]) == len(set(e["notify"]))
        check_text(e["message"], f"{slug}.escalation[{i}].message")
    mins = [e["after_minutes"] for e in esc]
    assert all(a < b for a, b in zip(mins, mins[1:], strict=False)), (
        f"{slug}: escalation not increasing {mins}"
    )

    script = pb["script"]
    if script is not None:
        assert set(script) == set(LANGS)
        assert 4 <= len(script["zh-CN"]) <= 6
        assert len(script["zh-CN"]) == len(script["en"])
        for zh, en in zip(script["zh-CN"], script["en"], strict=True):
            assert isinstance(zh, str) and zh.strip() and CJK.search(zh)
            assert isinstance(en, str) and en.strip()

    assert pb["forms"] and len(pb["forms"]) == len(set(pb["forms"]))
    for f in pb["forms"]:
        assert f in FORMS, f"{slug}: references missing form {f}"

    assert pb["contacts"], f"{slug}: no contacts"
    for c in pb["contacts"]:
        assert set(c) == CONTACT_KEYS
        assert SNAKE.match(c["role"]), f"{slug}: contact role {c['role']}"
        check_text(c["label"], f"{slug}.contacts.{c['role']}")
        assert PLACEHOLDER_PHONE.match(c["phone"]) or c["phone"] in EMERGENCY_NUMBERS, (
            f"{slug}: contact phone {c['phone']}"
        )


def _ladder(slug):
    return [e["after_minutes"] for e in PLAYBOOKS[slug]["escalation"]]


def test_escalation_ladders_match_domain():
    assert _ladder("system-failure") == [5, 10, 60]
    assert _ladder("call-surge") == [30, 60]
    assert _ladder("power-outage") == [30]
    assert 10 in _ladder("personal-accident")
    assert _ladder("fire-theft") == [30, 60, 90, 120]


def test_key_steps_and_timings():
    steps = {s: {st["id"]: st for st in PLAYBOOKS[s]["steps"]} for s in PLAYBOOKS}
    # seat equipment: logged in again on a spare seat within 5 minutes
    assert 5 in [
        st["within_minutes"] for st in steps["seat-equipment-failure"].values() if st["who"] == "agent"
    ]
    # system failure: lead reports to supervisor within 5 minutes
    assert any(st["who"] == "lead" and st["within_minutes"] == 5 for st in steps["system-failure"].values())
    # call surge: tier 1 is an immediate step, not an escalation
    assert any(st["within_minutes"] == 0 and "tier1" in st["id"] for st in steps["call-surge"].values())
    surge = json.dumps(PLAYBOOKS["call-surge"], ensure_ascii=False)
    for level in ("85–90", "80–85", "80"):
        assert level in surge
    power = json.dumps(PLAYBOOKS["power-outage"], ensure_ascii=False)
    assert "3–4" in power and "UPS" in power and "空调" in power and "外呼" in power


def test_required_safety_facts():
    fire = PLAYBOOKS["fire-theft"]
    phones = {c["phone"] for c in fire["contacts"]}
    assert {"119", "110"} <= phones
    media = json.dumps(PLAYBOOKS["media-enquiry"], ensure_ascii=False)
    assert "采访" in media and "发言人" in media
    for slug in ("system-failure", "power-outage"):
        script = PLAYBOOKS[slug]["script"]
        assert script is not None
        assert any("2小时" in line for line in script["zh-CN"])
        assert any("2 hours" in line for line in script["en"])
        for line in script["zh-CN"]:
            assert "明天再打" not in line
        for line in script["en"]:
            assert "tomorrow" not in line.lower()


# ---------------------------------------------------------------- forms


@pytest.mark.parametrize("slug", sorted(FORM_SLUGS))
def test_form_structure(slug):
    form = FORMS[slug]
    assert set(form) == FORM_KEYS, f"{slug}: keys {sorted(form)}"
    assert _is_int(form["version"]) and form["version"] >= 1
    check_text(form["title"], f"{slug}.title")
    check_text(form["description"], f"{slug}.description")
    fields = form["fields"]
    assert 3 <= len(fields) <= 10
    names = [f["name"] for f in fields]
    assert len(names) == len(set(names)), f"{slug}: duplicate field names"
    by_name = {f["name"]: f for f in fields}

    for f in fields:
        where = f"{slug}.{f.get('name')}"
        assert set(f) <= FIELD_KEYS, f"{where}: unknown keys {sorted(set(f) - FIELD_KEYS)}"
        assert SNAKE.match(f["name"]), where
        t = f["type"]
        assert t in FIELD_TYPES, f"{where}: type {t}"
        check_text(f["label"], f"{where}.label")
        if "help" in f:
            check_text(f["help"], f"{where}.help")
        if "required" in f:
            assert isinstance(f["required"], bool)
        if "print_width" in f:
            assert _is_int(f["print_width"]) and 1 <= f["print_width"] <= 4

        if t in ("text", "textarea", "tel"):
            assert _is_int(f.get("max_length")) and f["max_length"] > 0, f"{where}: max_length"
        else:
            assert "max_length" not in f, where
        if "pattern" in f:
            assert t == "tel", f"{where}: pattern on non-tel"
            re.compile(f["pattern"])
        if "min" in f or "max" in f:
            assert t == "integer", where
        if t == "choice":
            choices = f["choices"]
            assert len(choices) >= 2
            values = [c["value"] for c in choices]
            assert len(values) == len(set(values)), f"{where}: duplicate choice values"
            for c in choices:
                assert set(c) == CHOICE_KEYS
                assert ASCII_VALUE.match(c["value"]), f"{where}: value {c['value']}"
                check_text(c["label"], f"{where}.{c['value']}")
        else:
            assert "choices" not in f, where

        if "required_if" in f:
            cond = f["required_if"]
            assert isinstance(cond, dict) and cond
            for other, value in cond.items():
                assert other in by_name and other != f["name"], f"{where}: required_if {other}"
                target = by_name[other]
                if target["type"] == "boolean":
                    assert isinstance(value, bool)
                elif target["type"] == "choice":
                    assert value in [c["value"] for c in target["choices"]]

        if "default" in f:
            d = f["default"]
            if t == "datetime":
                assert isinstance(d, str) and DATETIME_DEFAULT.match(d), f"{where}: default {d}"
            elif t == "boolean":
                assert isinstance(d, bool)
            elif t == "integer":
                assert _is_int(d)
            elif t == "choice":
                assert d in [c["value"] for c in f["choices"]]
            else:
                assert isinstance(d, str)


def test_call_record_layout():
    fields = FORMS["call-record"]["fields"]
    assert [f["name"] for f in fields] == CALL_RECORD_ORDER
    f = {x["name"]: x for x in fields}
    assert f["called_at"]["default"] == "now"
    assert f["callback_promised"]["type"] == "boolean" and f["callback_promised"]["default"] is True
    assert f["callback_due"]["default"] == "now+120"
    assert f["callback_due"]["required_if"] == {"callback_promised": True}
    assert [c["value"] for c in f["urgency"]["choices"]] == ["urgent", "normal"]
    assert f["urgency"]["default"] == "normal"


def test_form_choice_sets():
    def values(form, field):
        return [c["value"] for c in next(x for x in FORMS[form]["fields"] if x["name"] == field)["choices"]]

    assert set(values("incident-log", "fault_type")) == PLAYBOOK_SLUGS
    assert values("callback-list", "outcome") == ["reached", "no_answer", "wrong_number", "resolved"]
    assert values("staff-headcount", "status") == [
        "on_site",
        "called_in",
        "en_route",
        "unreachable",
        "evacuated_safe",
        "missing",
    ]
    assert values("staff-headcount", "tier") == ["tier1", "tier2", "tier3"]
    notes = next(x for x in FORMS["media-enquiry"]["fields"] if x["name"] == "notes")
    assert "help" in notes
