// Hash routes (they work offline: the service worker only ever serves "/").
import { on } from "./events.js";
import { h } from "./ui.js";

const routes = [];
const tabs = [];

// route("#/playbooks/:slug", render, { roles: ["lead"], public: false })
export function route(pattern, render, options = {}) {
  const names = [];
  const regex = new RegExp("^" + pattern.replace(/:(\w+)/g, (_, n) => { names.push(n); return "([^/]+)"; }) + "$");
  routes.push({ pattern, regex, names, render, ...options });
}

// tab({ href, label: () => t("…"), icon, roles, order })
export function tab(entry) {
  tabs.push(entry);
  tabs.sort((a, b) => (a.order ?? 50) - (b.order ?? 50));
}

// Every screen the app knows, with who may open it: for the accessibility and language sweeps (tests walk it).
export function routeList() {
  return routes.map(({ pattern, names, roles, public: open }) => ({ pattern, names, roles: roles || null, public: !!open }));
}

export function match(hash) {
  for (const r of routes) {
    const m = hash.match(r.regex);
    if (m) return { route: r, params: Object.fromEntries(r.names.map((n, i) => [n, decodeURIComponent(m[i + 1])])) };
  }
  return null;
}

export function navigate(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

export function renderTabs(nav, user) {
  const current = location.hash || "#/";
  nav.replaceChildren(...tabs
    .filter((entry) => !entry.roles || (user && entry.roles.includes(user.role)))
    .map((entry) => h("a", {
      href: entry.href, class: current === entry.href || current.startsWith(entry.href + "/") ? "active" : "",
    }, h("span", { class: "tab-icon", "aria-hidden": "true" }, entry.icon || "•"), h("span", {}, entry.label()))));
}

// Keep a screen live while it is shown: run fn every `every` ms and on each of `topics` (events.js),
// until the user navigates away from `hash`.
export function whileOnRoute(hash, fn, { every, topics = [] } = {}) {
  const timer = every ? setInterval(fn, every) : null;
  const offs = topics.map((topic) => on(topic, fn));
  const stop = () => {
    if (location.hash === hash) return;
    if (timer) clearInterval(timer);
    offs.forEach((off) => off());
    window.removeEventListener("hashchange", stop);
  };
  window.addEventListener("hashchange", stop);
}
