// Inbox: every notification this user got (escalations, declarations, alert levels), whether or not a
// push reached the phone, and the switch that turns Web Push on for this device (from a tap).
import { api, errorText } from "../api.js";
import { emit } from "../events.js";
import * as readCache from "../offline.js";
import { lang, pick, t } from "../i18n.js";
import { disablePush, enablePush, pushPermission, pushSubscribed, refreshUnread, setUnread } from "../push.js";
import { navigate, route, whileOnRoute } from "../router.js";
import { formatTime, h, mount, toast } from "../ui.js";

let pushError = null; // the last failed attempt to turn push on, shown until one succeeds

// Live, else this user's saved copy: {data, offline: iso | null}.
async function loadInbox() {
  const { data, savedAt } = await readCache.read("/api/inbox?limit=100");
  return { data, offline: savedAt };
}

async function pushCard() {
  const card = h("section", { class: "card push-card" }, h("h2", {}, t("push.title")));
  const permission = pushPermission();
  const subscribed = permission === "granted" && await pushSubscribed();
  const status = h("p", { class: "muted", role: "status" });
  const buttons = h("div", { class: "row" });
  if (permission === "unsupported") status.textContent = t("push.unsupported");
  else if (permission === "denied") status.textContent = t("push.denied");
  else status.textContent = subscribed ? t("push.on") : t("push.off");
  if (pushError && !subscribed) {
    status.textContent = pushError;
    status.className = "error";
  }
  if (permission !== "unsupported" && permission !== "denied" && !subscribed) {
    buttons.append(h("button", { type: "button", class: "primary", id: "push-enable", onclick: async (event) => {
      const button = event.currentTarget;
      button.disabled = true;
      try {
        await enablePush(); // asks permission: only ever from this tap
        toast(t("push.on"));
        pushError = null;
        refreshCard(card);
      } catch (error) {
        pushError = error.code === "denied" ? t("push.denied")
          : error.code === "unsupported" ? t("push.unsupported")
          : error.code === "unreachable" ? t("push.unreachable") : t("push.failed", { error: errorText(error) });
        status.textContent = pushError;
        status.className = "error";
        status.id = "push-status";
        if (error.code === "unreachable" && !card.querySelector("#push-other")) {
          status.after(h("p", {}, h("a", { href: "#/contacts", id: "push-other", class: "button" }, t("push.otherChannels"))));
        }
        button.disabled = false;
      }
    } }, t("push.enable")));
  }
  if (subscribed) {
    buttons.append(h("button", { type: "button", onclick: async () => {
      try { await disablePush(); toast(t("push.disabled")); } catch (error) { toast(errorText(error), "error"); }
      refreshCard(card);
    } }, t("push.disable")));
  }
  buttons.append(h("a", { href: "#/contacts", class: "button" }, t("contacts.link")));
  buttons.append(h("button", { type: "button", id: "push-test", onclick: async () => {
    try { await api("/api/push/test", { method: "POST" }); toast(t("push.tested")); emit("inbox"); } catch (error) { toast(errorText(error), "error"); }
  } }, t("push.test")));
  card.append(status, buttons);
  return card;
}

async function refreshCard(card) {
  if (card.isConnected) card.replaceWith(await pushCard());
}

// Acknowledge from the inbox: on a notification about an incident that is still waiting for someone to take
// it. The server decides who may (managers, or the roles its escalation reached) and says so if not.
const ACKABLE = ["escalation", "declared", "alert_level"];
async function acknowledge(note, button) {
  button.disabled = true;
  try {
    await api(`/api/incidents/${note.incident_id}/ack`, { method: "POST" });
    if (!note.read_at) await api(`/api/inbox/${note.id}/read`, { method: "POST" }).catch(() => {});
    toast(t("inbox.acked"));
    emit("inbox");
    refreshUnread();
  } catch (error) {
    toast(t("inbox.ackFailed", { error: error.message }), "error");
    button.disabled = false;
  }
}

function item(note, waiting = new Set()) {
  const open = async () => {
    if (!note.read_at) {
      api(`/api/inbox/${note.id}/read`, { method: "POST" }).then(refreshUnread).catch(() => {});
    }
    if (note.incident_id) navigate(`#/incidents/${note.incident_id}`);
    else { note.read_at = new Date().toISOString(); row.classList.remove("unread"); }
  };
  const row = h("li", { class: `inbox-item ${note.read_at ? "" : "unread"} urgency-${note.urgency}` },
    h("button", { type: "button", class: "inbox-open", onclick: open },
      h("span", { class: "inbox-meta" },
        note.drill ? h("span", { class: "tag drill" }, t("inbox.drill")) : null,
        note.urgency === "high" ? h("span", { class: "tag urgent" }, t("inbox.urgent")) : null,
        h("time", { datetime: note.created_at }, formatTime(note.created_at, lang()))),
      h("strong", { class: "inbox-title" }, pick(note.title)),
      h("span", { class: "inbox-body" }, pick(note.body))),
    ACKABLE.includes(note.kind) && waiting.has(note.incident_id) ? h("button", { type: "button",
      class: "primary inbox-ack", dataset: { incident: String(note.incident_id) },
      onclick: (event) => acknowledge(note, event.currentTarget) }, t("inbox.ack")) : null);
  return row;
}

async function render(view) {
  const { data, offline } = await loadInbox();
  setUnread(data.unread);
  // The incidents nobody has acknowledged yet (online only: acknowledging needs the server anyway).
  const waiting = new Set(offline ? [] : (await api("/api/incidents?status=active&limit=50").catch(() => []))
    .filter((i) => !i.acknowledged_at).map((i) => i.id));
  const list = data.items.length ? h("ul", { class: "inbox-list" }, data.items.map((n) => item(n, waiting)))
    : h("p", { class: "empty" }, t("inbox.none"));
  mount(view,
    h("div", { class: "row spread" },
      h("h1", {}, t("inbox.title")),
      data.unread ? h("span", { class: "badge unread-count" }, t("inbox.unread", { n: data.unread })) : null),
    offline ? h("p", { class: "offline-note", role: "status" }, t("inbox.offline", { time: formatTime(offline, lang()) })) : null,
    await pushCard(),
    data.unread ? h("div", { class: "row" }, h("button", { type: "button", onclick: async () => {
      await api("/api/inbox/read-all", { method: "POST" });
      render(view);
    } }, t("inbox.readall"))) : null,
    list);
}

route("#/inbox", async (view) => {
  await render(view);
  // Live while on screen: a new notification (push message or a poll) redraws the list.
  const again = () => { if (location.hash === "#/inbox" && view.isConnected) render(view).catch(() => {}); };
  whileOnRoute("#/inbox", again, { every: 10000, topics: ["notification", "inbox"] });
});
