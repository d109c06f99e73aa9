// Hash routes (they work offline: the service worker only ever serves "/").
import { on } from "./events.js";
import { TABS } from "./menu.js";
import { h } from "./ui.js";

const routes = [];

// route("#/playbooks/:slug", render, { roles: ["lead"], public: false })
export function route(pattern, render, options = {}) {
  const names = [];
  const regex = new RegExp("^" + pattern.replace(/:(\w+)/g, (_, n) => { names.push(n); return "([^/]+)"; }) + "$");
  routes.push({ pattern, regex, names, render, ...options });
}

// Screens off the path to the call-record form are imported after the first screen is drawn (app.js gives
// the loader), so a cold start parses only what that screen needs. allScreens() starts that loading if it
// has not started yet and resolves when every screen's routes are registered.
let loadLater = () => Promise.resolve();
let loadingAll = null;
export function laterScreens(loader) {
  loadLater = loader;
}
export function allScreens() {
  loadingAll ||= loadLater().catch((error) => { loadingAll = null; throw error; });
  return loadingAll;
}

// Every screen the app knows, with who may open it: for the accessibility and language sweeps (tests walk it).
export async function routeList() {
  await allScreens();
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
  nav.replaceChildren(...TABS
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
