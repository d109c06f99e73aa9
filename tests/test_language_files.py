"""The two language tables (frontend/i18n/zh-CN.js, en.js): each key written once, the same keys in both.

A key written twice in one object literal is not an error in JavaScript: the later line silently wins,
so a translator's fix made to the first one never shows.
"""

from __future__ import annotations

import re
from collections import Counter

from backend.config import ROOT

# A key is a quoted string followed by a colon, at the start of an entry ("{", "," or a new line before it).
KEY = re.compile(r'(?:^|[{,])\s*"([^"\\]+)"\s*:', re.MULTILINE)


def keys(name: str) -> Counter[str]:
    return Counter(KEY.findall((ROOT / "frontend" / "i18n" / name).read_text(encoding="utf-8")))


def test_each_key_is_written_once_per_language():
    for name in ("zh-CN.js", "en.js"):
        twice = sorted(key for key, count in keys(name).items() if count > 1)
        assert twice == [], f"{name}: written more than once: {twice}"


def test_both_languages_have_the_same_keys():
    zh, en = set(keys("zh-CN.js")), set(keys("en.js"))
    assert len(zh) > 500
    assert sorted(zh - en) == [] and sorted(en - zh) == []
