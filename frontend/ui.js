// DOM helpers. Text always goes in as text nodes, never as HTML, so user input stays inert.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function mount(view, ...children) {
  view.replaceChildren();
  append(view, children);
}

// A passing note at the top, under the header: it never sits over an action and never takes a tap
// (pointer-events: none); what must not be missed (a save that did not happen) is told on the screen itself.
export function toast(message, kind = "info") {
  const region = document.getElementById("toasts") || document.body;
  const el = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  region.append(el);
  setTimeout(() => el.remove(), 4000);
}

export function formatTime(iso, lang = document.documentElement.lang) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return d.toLocaleString(lang === "en" ? "en-GB" : "zh-CN", { dateStyle: "short", timeStyle: "short" });
}

// Whatever takes the keyboard is scrolled clear of the bars that stay on screen (the sticky header, the tab
// bar, a form's sticky save bar): the browser only makes sure it is inside the viewport, not uncovered.
const BARS = ".topbar, #tabs, .rec-actions, .update-banner, .sticky-bar";

export function keepFocusInSight() {
  document.addEventListener("focusin", (event) => {
    const el = event.target;
    if (!(el instanceof Element) || el.id === "view") return;
    requestAnimationFrame(() => {
      const r = el.getBoundingClientRect();
      let top = 0;
      let bottom = window.innerHeight;
      for (const bar of document.querySelectorAll(BARS)) {
        if (bar.contains(el)) continue;
        const position = getComputedStyle(bar).position;
        if (position !== "fixed" && position !== "sticky") continue;
        const b = bar.getBoundingClientRect();
        if (!b.height || b.bottom <= 0 || b.top >= window.innerHeight) continue;
        if (b.top <= 1) top = Math.max(top, b.bottom); // a bar stuck to the top
        else bottom = Math.min(bottom, b.top); // a bar stuck to the bottom
      }
      const margin = 8;
      if (r.top < top + margin) window.scrollBy({ top: r.top - top - margin });
      else if (r.bottom > bottom - margin) window.scrollBy({ top: Math.min(r.bottom - bottom + margin, r.top - top - margin) });
    });
  });
}

// Machine syntax inside a sentence (a JSON path, a header name, an example address): not language, so
// marked translate="no" (translators, the language sweep and page translators leave it as it is).
export function code(text, attrs = {}) {
  return h("code", { translate: "no", ...attrs }, text);
}
