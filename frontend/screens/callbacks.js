// Callbacks: the calls promised a callback during the outage. Agents see their own (also offline, from the
// saved list) and record each try with one tap; tries wait in the device's outbox (attempts.js) and are
// sent with their own ids, so sending one twice is harmless. Leads see everyone's and assign them.
import { api, errorText, session } from "../api.js";
import * as attempts from "../attempts.js";
import { emit, on } from "../events.js";
import { lang, t } from "../i18n.js";
import { net } from "../net.js";
import * as readCache from "../offline.js";
import { route, tab } from "../router.js";
import { syncNow } from "../sync.js";
import { formatTime, h, mount, toast } from "../ui.js";
import { homeAction } from "./home.js";

const OUTCOMES = ["reached", "no_answer", "wrong_number", "resolved"];
const isLead = () => ["lead", "manager", "admin"].includes(session.user?.role);

// The list (also for the printed one): live, else this user's saved copy ({data, savedAt}).
export function loadCallbacks(scope, status = "active") {
  const query = new URLSearchParams({ status, ...(scope === "mine" ? { mine: "true" } : {}) });
  return readCache.read(`/api/callbacks?${query}`);
}

// What the list shows once the waiting attempts are counted in (the server will agree when they arrive).
function withQueued(callback, queued) {
  const mine = queued.filter((a) => a.callback_id === callback.id);
  if (!mine.length) return callback;
  const out = { ...callback, attempts: callback.attempts + mine.length, last_outcome: mine[mine.length - 1].outcome,
    pending: mine.length };
  if (mine.some((a) => a.outcome === "reached" || a.outcome === "resolved")) out.status = "done";
  else if (mine.some((a) => a.outcome === "wrong_number") && out.status !== "done") out.status = "failed";
  else if (out.status === "open") out.status = "trying";
  return out;
}

// Saved on the device first (the one outbox), then the sync engine sends it, offline included.
async function recordOutcome(callback, outcome) {
  await attempts.record(callback.id, outcome);
  toast(t("cb.saved", { outcome: t(`cb.${outcome}`) }));
  emit("rerender"); // shows it waiting (⏳)
  // Sent now when online; the list is redrawn from the server once the run is over (or the retry waits).
  const shown = location.hash;
  syncNow().finally(() => { if (location.hash === shown) emit("rerender"); });
}

function item(callback, now, users, queued) {
  const c = withQueued(callback, queued);
  const overdue = ["open", "trying"].includes(c.status) && new Date(c.due_at) < now;
  const active = ["open", "trying"].includes(c.status);
  return h("li", { class: `cb-item cb-${c.status} ${overdue ? "cb-overdue" : ""}`, dataset: { callback: c.id } },
    h("div", { class: "cb-head" },
      h("strong", { class: "cb-name" }, c.caller_name),
      h("span", { class: `cb-status badge` }, t(`cb.status.${c.status}`))),
    h("a", { class: "cb-phone button", href: `tel:${c.phone.replace(/[^0-9+]/g, "")}` }, `☎ ${c.phone}`),
    h("p", { class: "cb-meta" },
      overdue ? h("span", { class: "cb-late" }, `${t("cb.overdue")} · `) : null,
      t("cb.due", { time: formatTime(c.due_at, lang()) }), " · ", t("cb.attempts", { n: c.attempts }),
      c.pending ? ` · ⏳${c.pending}` : "", isLead() ? ` · ${t("cb.owner")}: ${c.owner.name || c.owner.id}` : ""),
    active ? h("div", { class: "cb-outcomes" }, OUTCOMES.map((o) => h("button", {
      type: "button", class: o === "reached" || o === "resolved" ? "primary" : "", dataset: { outcome: o },
      onclick: () => recordOutcome(callback, o) }, t(`cb.${o}`)))) : null,
    isLead() && users.length && active ? h("label", { class: "cb-assign" }, t("cb.owner"),
      h("select", { onchange: async (event) => {
        try {
          const done = await api(`/api/callbacks/${c.id}/owner`, { method: "PUT", body: { owner_id: Number(event.target.value) } });
          toast(t("cb.assigned", { name: done.owner.name }));
        } catch (error) { toast(errorText(error), "error"); }
      } }, users.map((u) => h("option", { value: u.id, selected: u.id === c.owner.id }, `${u.display_name} (${t(`role.${u.role}`)})`)))) : null);
}

// #/callbacks (agents: mine; leads: everyone's), #/callbacks/mine, /all, /mine-done, /all-done
async function callbacksScreen(view, { scope: asked = "" }) {
  const scope = isLead() && !asked.startsWith("mine") ? "all" : "mine";
  const status = asked.endsWith("-done") ? "all" : "active";
  if (net.online !== false) await attempts.sendAttempts().catch(() => {}); // so the list is the server's
  const { data, savedAt } = await loadCallbacks(scope, status);
  let users = [];
  if (isLead() && net.online !== false) users = await api("/api/users").catch(() => []);
  const now = new Date();
  const queued = await attempts.waiting();
  const waiting = queued.length;
  const link = (s, d) => `#/callbacks/${s}${d ? "-done" : ""}`;
  mount(view,
    h("div", { class: "row cb-top" }, h("h1", {}, t("cb.title")),
      h("a", { class: "button", href: `#/print/callbacks/${scope}` }, `${t("cb.print")}`)),
    isLead() ? h("div", { class: "row cb-scope" },
      h("a", { class: `button ${scope === "mine" ? "primary" : ""}`, href: link("mine", status === "all") }, t("cb.mine")),
      h("a", { class: `button ${scope === "all" ? "primary" : ""}`, href: link("all", status === "all") }, t("cb.all")),
      h("a", { class: "button", href: link(scope, status !== "all") }, t("cb.showDone"))) : null,
    savedAt ? h("p", { class: "banner" }, t("cb.offline", { time: formatTime(savedAt, lang()) })) : null,
    waiting ? h("p", { class: "muted cb-waiting" }, t("cb.queued", { n: waiting })) : null,
    data.items.length ? h("ul", { class: "cb-list" }, data.items.map((c) => item(c, now, users, queued)))
      : h("p", { class: "empty" }, t("cb.none")));
}

route("#/callbacks", callbacksScreen);
route("#/callbacks/:scope", callbacksScreen);

// The device hears of assignments and new callbacks through the sync change feed.
export function start() {
  on("changes", ({ changes }) => {
    const relevant = changes.some((c) => String(c.kind).startsWith("callback."));
    if (relevant && location.hash.startsWith("#/callbacks")) emit("rerender");
  });
}

tab({ href: "#/callbacks", label: () => t("nav.callbacks"), icon: "☎", order: 25 });
homeAction({ href: "#/callbacks", label: () => `☎ ${t("cb.title")}`, order: 40 });
