// The device fleet (#/fleet, leads and up): per agent and device, how many records it still holds unsent
// and when it last reached the server, so after a recovery nobody's queue is forgotten in a drawer.
import { api } from "../api.js";
import { lang, t } from "../i18n.js";
import { route, whileOnRoute } from "../router.js";
import { formatTime, h, mount } from "../ui.js";

const LEADS = ["lead", "manager", "admin"];
const REFRESH_MS = 30000;

function ago(iso) {
  const minutes = Math.round((Date.now() - new Date(iso).getTime()) / 60000);
  if (minutes < 1) return t("fl.justNow");
  if (minutes < 60) return t("fl.minutesAgo", { n: minutes });
  if (minutes < 48 * 60) return t("fl.hoursAgo", { n: Math.round(minutes / 60) });
  return formatTime(iso, lang());
}

// Devices grouped by person, people holding unsent records first.
function byPerson(devices) {
  const people = new Map();
  for (const d of devices) {
    if (!people.has(d.user_id)) people.set(d.user_id, { name: d.display_name || d.username, devices: [] });
    people.get(d.user_id).devices.push(d);
  }
  const list = [...people.values()];
  for (const p of list) p.unsent = p.devices.reduce((n, d) => n + d.unsent, 0);
  return list.sort((a, b) => b.unsent - a.unsent || a.name.localeCompare(b.name));
}

function deviceRow(device, index) {
  const holds = device.unsent > 0;
  return h("li", { class: `fl-device ${holds ? "holds" : ""}`, dataset: { unsent: device.unsent } },
    h("div", { class: "fl-device-head" }, h("strong", {}, t("fl.device", { n: index + 1 })),
      h("span", { class: holds ? "fl-count" : "fl-clear" },
        holds ? t("fl.unsent", { n: device.unsent }) : t("fl.none"))),
    h("p", { class: "muted small" }, t("fl.seen", { when: ago(device.last_seen_at) }),
      device.drafts ? ` · ${t("fl.drafts", { n: device.drafts })}` : "",
      holds && device.oldest_unsent_at ? ` · ${t("fl.oldest", { when: formatTime(device.oldest_unsent_at, lang()) })}` : ""));
}

async function draw(view) {
  const fleet = await api("/api/fleet");
  const people = byPerson(fleet.devices);
  const holding = people.filter((p) => p.unsent > 0).length;
  mount(view, h("h1", {}, t("fl.title")),
    h("p", { class: `fl-summary ${fleet.unsent ? "holds" : ""}`, role: "status" },
      fleet.unsent ? t("fl.summary", { n: fleet.unsent, people: holding }) : t("fl.allSent")),
    h("p", { class: "muted small" }, t("fl.hint")),
    people.length ? h("ul", { class: "fl-people" }, people.map((person) =>
      h("li", { class: "card fl-person" }, h("h2", {}, person.name), h("ul", { class: "fl-devices" }, person.devices.map(deviceRow)))))
      : h("p", { class: "empty" }, t("fl.empty")));
}

route("#/fleet", async (view) => {
  await draw(view);
  whileOnRoute("#/fleet", () => draw(view).catch((e) => console.warn("fleet", e)), { every: REFRESH_MS, topics: ["online"] });
}, { roles: LEADS });
