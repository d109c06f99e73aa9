// Strings per language; zh-CN first. Every text lives in one table per language (i18n/zh-CN.js, i18n/en.js),
// so a translator edits two files and no screen has to be imported for its words to exist.
import en from "./i18n/en.js";
import zhCN from "./i18n/zh-CN.js";

const strings = { "zh-CN": zhCN, en };
const KEY = "od.lang";

export function lang() {
  const saved = localStorage.getItem(KEY);
  if (saved === "en" || saved === "zh-CN") return saved;
  const prefs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ""];
  const first = prefs.find((l) => /^(zh|en)/i.test(l)) || "zh-CN";
  return /^zh/i.test(first) ? "zh-CN" : "en";
}

export function setLang(value) {
  localStorage.setItem(KEY, value);
  document.documentElement.lang = value;
}

export function t(key, vars = {}) {
  const text = strings[lang()][key] ?? strings["zh-CN"][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

// Like t(), but a value may be a DOM node (a <code translate="no"> fragment: a JSON path, a header name):
// returns the pieces to append, so machine syntax sits in its own element inside the translated sentence.
export function tparts(key, vars = {}) {
  const text = strings[lang()][key] ?? strings["zh-CN"][key] ?? key;
  return text.split(/\{(\w+)\}/).map((piece, i) => (i % 2 === 0 ? piece : piece in vars ? vars[piece] : `{${piece}}`))
    .map((piece) => (piece instanceof Node ? piece : String(piece))).filter((piece) => piece !== "");
}

// Is there a string for this key (in the current language, or the Chinese fallback)?
export function has(key) {
  return key in strings[lang()] || key in strings["zh-CN"];
}

// Pick the current language from a {"zh-CN": …, "en": …} object (content from the server).
export function pick(texts) {
  if (texts === null || texts === undefined) return "";
  if (typeof texts === "string") return texts;
  return texts[lang()] ?? texts["zh-CN"] ?? Object.values(texts)[0] ?? "";
}

