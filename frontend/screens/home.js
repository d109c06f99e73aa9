// Home: who is logged in, and the big buttons for the first minute of an outage.
import { session } from "../api.js";
import { onWhile } from "../events.js";
import { lang, pick, t } from "../i18n.js";
import * as readCache from "../offline.js";
import { loadCallbacks, localPromises } from "../promises.js";
import { HOME_ACTIONS } from "../menu.js";
import { navigate, route } from "../router.js";
import { installControl } from "../pwa.js";
import { running } from "../running.js";
import { logout } from "../session.js";
import * as store from "../store.js";
import { formatTime, h, mount } from "../ui.js";

route("#/", async (view) => {
  const user = session.user;
  const logoutButton = h("button", { type: "button", class: "secondary", onclick: async () => {
    logoutButton.disabled = true;
    await logout(); // session.js: the steps, in order
    navigate("#/login");
  } }, t("logout"));
  // Drawn at once; the incident and my counts fill in when read (a slow server never holds up the buttons,
  // and a screen the user already left is never drawn over).
  const incidentSlot = h("div", { class: "home-slot" });
  const workSlot = h("div", { class: "home-slot" });
  mount(view,
    h("section", { class: "card" },
      h("h1", {}, t("home.hello", { name: user.display_name })),
      h("p", { class: "muted" }, `${t("role." + user.role)} · ${t("home.site", { site: user.site_name })}`)),
    incidentSlot,
    workSlot,
    h("div", { class: "actions" }, HOME_ACTIONS
      .filter((a) => !a.roles || a.roles.includes(user.role))
      .map((a) => h("a", { class: `action ${a.kind || ""}`, href: a.href }, a.label()))),
    installControl(),
    h("div", { class: "row" }, logoutButton));
  const fill = (slot, card) => { if (slot.isConnected && card) slot.replaceChildren(card); };
  incidentCard().then((card) => fill(incidentSlot, card)).catch((e) => console.warn("home incident", e));
  liveWork().then((card) => fill(workSlot, card)).catch((e) => console.warn("home work", e));
});

// The incident that is running (live, else what this device knows), with its drill mark.
async function incidentCard() {
  let list = [];
  try {
    list = (await readCache.read("/api/incidents?status=active&limit=20")).data;
  } catch { list = await running(); }
  list = list.filter((i) => i.status !== "resolved");
  if (!list.length) return h("section", { class: "card home-incident none" }, h("p", { class: "muted" }, t("home.noIncident")));
  return h("section", { class: "card home-incident", "aria-label": t("home.incident") },
    h("h2", {}, t("home.incident")),
    h("ul", { class: "home-incidents" }, list.map((i) => h("li", { class: i.drill ? "drill" : "" },
      h("a", { class: "button home-incident-link", href: `#/incidents/${i.id}` },
        i.drill ? h("span", { class: "tag drill" }, t("inc.drill.label")) : null,
        h("strong", {}, pick(i.title)), h("span", { class: "muted" }, ` · ${t(`st.${i.status}`)}`),
        i.declared_at ? h("span", { class: "muted" }, ` · ${formatTime(i.declared_at, lang())}`) : null)))));
}

// The counts follow the device's store and the sync engine while home is on screen.
async function liveWork() {
  let card = await myWork();
  const box = h("div", { class: "home-work-box" }, card);
  let pending = null;
  const redraw = () => {
    clearTimeout(pending);
    pending = setTimeout(async () => {
      if (!box.isConnected) return;
      const next = await myWork();
      card.replaceWith(next);
      card = next;
    }, 300);
  };
  for (const topic of ["store", "changes", "net"]) onWhile(box, topic, redraw);
  return box;
}

// What is still mine to do: records not on the server yet, drafts never saved for sending, overdue callbacks.
async function myWork() {
  const counts = await store.counts();
  const unsent = counts.unsent - counts.draft;
  let server = { items: [] };
  let live = false;
  try {
    const got = await loadCallbacks("mine", "active");
    server = got.data;
    live = !got.savedAt;
  } catch { /* offline, nothing saved: the device's own promises still count */ }
  const now = new Date();
  const local = await localPromises(new Set(server.items.map((c) => c.id)), live);
  const overdue = [...server.items, ...local].filter((c) => ["open", "trying"].includes(c.status) && new Date(c.due_at) < now);
  const tile = (key, n, href, id) => h("a", { class: `home-tile ${n ? "warn" : ""}`, href, id, dataset: { count: String(n) } },
    h("b", {}, String(n)), h("span", {}, t(key)));
  return h("section", { class: "card home-work", "aria-label": t("home.work") },
    h("h2", {}, t("home.work")),
    h("div", { class: "home-tiles" },
      tile("home.unsent", unsent, "#/outbox", "home-unsent"),
      tile("home.drafts", counts.draft, "#/outbox", "home-drafts"),
      tile("home.overdue", overdue.length, "#/callbacks", "home-overdue")));
}
