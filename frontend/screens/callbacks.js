// Callbacks: the calls promised a callback during the outage. Agents see their own (also offline, from the
// saved list) and record each try with one tap; tries wait in the device's outbox (attempts.js) and are
// sent with their own ids, so sending one twice is harmless. Leads see everyone's and assign them.
import { api, errorText, session } from "../api.js";
import * as attempts from "../attempts.js";
import { emit, on } from "../events.js";
import { lang, pick, t } from "../i18n.js";
import { net } from "../net.js";
import { route } from "../router.js";
import { byUrgency, loadCallbacks, localPromises } from "../promises.js";
import * as store from "../store.js";
import { syncNow } from "../sync.js";
import { formatTime, h, mount, toast } from "../ui.js";

const OUTCOMES = ["reached", "no_answer", "wrong_number", "resolved"];
const isLead = () => ["lead", "manager", "admin"].includes(session.user?.role);

export { loadCallbacks }; // the print screen reads it from here

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

function lateness(c, now) {
  const minutes = Math.floor((now - new Date(c.due_at)) / 60000);
  if (minutes <= 0) return null;
  return minutes < 60 ? t("cb.lateMin", { n: minutes }) : t("cb.lateHours", { h: Math.floor(minutes / 60), m: minutes % 60 });
}

// Saved on the device first (the one outbox), then the sync engine sends it, offline included.
async function recordOutcome(callback, outcome) {
  const attempt = await attempts.record(callback.id, outcome);
  toast(t("cb.saved", { outcome: t(`cb.${outcome}`) }));
  lastTry = { id: attempt.id, callbackId: callback.id, until: Date.now() + UNDO_MS };
  emit("rerender"); // shows it waiting (⏳) with its undo button
  // Sent now when online; the list is redrawn from the server once the run is over (or the retry waits).
  const shown = location.hash;
  syncNow().finally(() => { if (location.hash === shown) emit("rerender"); });
}

// Undo the latest try within a minute: still on the device, it is dropped; already sent, the server undoes it.
const UNDO_MS = 60000;
let lastTry = null;
async function undo(callback, serverAttempt) {
  try {
    const queued = (await attempts.waiting()).filter((a) => a.callback_id === callback.id);
    const mine = queued[queued.length - 1];
    if (mine) await store.removeAttempts([mine.id]);
    else if (serverAttempt) await api(`/api/callbacks/attempts/${serverAttempt.id}`, { method: "DELETE" });
    lastTry = null;
    toast(t("cb.undone"));
  } catch (error) { toast(error.message, "error"); }
  emit("rerender");
}

function history(c, queued) {
  const mine = queued.filter((a) => a.callback_id === c.id);
  const rows = [...(c.history || []).map((a) => ({ ...a, waiting: false })),
    ...mine.map((a) => ({ ...a, by: { name: session.user?.display_name }, waiting: true }))];
  if (!rows.length) return null;
  return h("ol", { class: "cb-history", "aria-label": t("cb.history") }, rows.map((a) => h("li", {},
    h("time", { datetime: a.attempted_at }, formatTime(a.attempted_at, lang())), " · ", t(`cb.${a.outcome}`),
    " · ", a.by?.name || "", a.waiting ? " ⏳" : "")));
}

function undoButton(callback, queued, now) {
  const mine = queued.filter((a) => a.callback_id === callback.id);
  const last = (callback.history || [])[callback.history?.length - 1];
  const localOk = mine.length && lastTry?.callbackId === callback.id && Date.now() < lastTry.until;
  const serverOk = !mine.length && last?.undo_until && new Date(last.undo_until) > now;
  if (!localOk && !serverOk) return null;
  return h("button", { type: "button", class: "cb-undo secondary", onclick: () => undo(callback, serverOk ? last : null) },
    t("cb.undo"));
}

function item(callback, now, users, queued) {
  const c = withQueued(callback, queued);
  const overdue = ["open", "trying"].includes(c.status) && new Date(c.due_at) < now;
  const active = ["open", "trying"].includes(c.status);
  const late = overdue ? lateness(c, now) : null;
  return h("li", { class: `cb-item cb-${c.status} ${overdue ? "cb-overdue" : ""} ${c.urgent ? "cb-urgent" : ""}`,
    dataset: { callback: c.id, urgent: c.urgent ? "1" : "0", local: c.local ? "1" : "0" } },
    h("div", { class: "cb-head" },
      c.urgent ? h("span", { class: "tag urgent cb-urgent-tag" }, pick(c.urgency_label) || t("cb.urgent")) : null,
      h("strong", { class: "cb-name" }, c.caller_name),
      h("span", { class: `cb-status badge` }, t(`cb.status.${c.status}`))),
    c.local ? h("p", { class: "cb-local" }, t("cb.local")) : null,
    h("p", { class: "cb-matter" }, c.category_label ? h("b", {}, pick(c.category_label)) : null,
      c.details ? ` ${c.details}` : ""),
    h("a", { class: "cb-phone button", href: `tel:${c.phone.replace(/[^0-9+]/g, "")}` }, `☎ ${c.phone}`),
    h("p", { class: "cb-meta" },
      late ? h("span", { class: "cb-late" }, `${t("cb.overdue")} ${late} · `) : null,
      t("cb.due", { time: formatTime(c.due_at, lang()) }), " · ", t("cb.attempts", { n: c.attempts }),
      c.pending ? ` · ⏳${c.pending}` : "", isLead() ? ` · ${t("cb.owner")}: ${c.owner.name || c.owner.id}` : ""),
    history(callback, queued),
    undoButton(callback, queued, now),
    active ? h("div", { class: "cb-outcomes" }, OUTCOMES.map((o) => h("button", {
      type: "button", class: o === "reached" || o === "resolved" ? "primary" : "", dataset: { outcome: o },
      onclick: () => recordOutcome(callback, o) }, t(`cb.${o}`)))) : null,
    isLead() && users.length && active && !c.local ? h("label", { class: "cb-assign" }, t("cb.owner"),
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
  let data = { items: [] };
  let savedAt = null;
  try {
    ({ data, savedAt } = await loadCallbacks(scope, status));
  } catch { savedAt = "never"; } // offline and never saved: the device's own promises still show
  let users = [];
  if (isLead() && net.online !== false) users = await api("/api/users").catch(() => []);
  const now = new Date();
  const queued = await attempts.waiting();
  const waiting = queued.length;
  const local = await localPromises(new Set(data.items.map((c) => c.id)), !savedAt);
  const items = [...data.items, ...local].sort(byUrgency);
  const link = (s, d) => `#/callbacks/${s}${d ? "-done" : ""}`;
  mount(view,
    h("div", { class: "row cb-top" }, h("h1", {}, t("cb.title")),
      h("a", { class: "button", href: `#/print/callbacks/${scope}` }, `${t("cb.print")}`)),
    isLead() ? h("div", { class: "row cb-scope" },
      h("a", { class: `button ${scope === "mine" ? "primary" : ""}`, href: link("mine", status === "all") }, t("cb.mine")),
      h("a", { class: `button ${scope === "all" ? "primary" : ""}`, href: link("all", status === "all") }, t("cb.all")),
      h("a", { class: "button", href: link(scope, status !== "all") }, t("cb.showDone"))) : null,
    savedAt && savedAt !== "never" ? h("p", { class: "banner" }, t("cb.offline", { time: formatTime(savedAt, lang()) })) : null,
    savedAt === "never" ? h("p", { class: "banner" }, t("cb.offlineNever")) : null,
    local.length ? h("p", { class: "muted cb-local-count" }, t("cb.localCount", { n: local.length })) : null,
    waiting ? h("p", { class: "muted cb-waiting" }, t("cb.queued", { n: waiting })) : null,
    items.length ? h("ul", { class: "cb-list" }, items.map((c) => item(c, now, users, queued)))
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
