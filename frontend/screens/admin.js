// Administration for admins, phone first: the hub (#/admin), users (#/users: create, role, disable, reset
// password, sign out everywhere), the site (#/admin/site: name, time zone, the contact directory the
// playbooks' tel: links and ladders use) and the audit log (#/admin/audit). Always live: nothing here is
// kept for offline, an admin change needs the server.
import { api, ApiError, session } from "../api.js";
import { lang, pick, t } from "../i18n.js";
import { route } from "../router.js";
import { formatTime, h, mount, toast } from "../ui.js";

const ADMIN = ["admin"];
const ROLES = ["agent", "lead", "manager", "admin"];

// The problem's words, with each field's reason when the server named fields.
export function problemText(error) {
  if (!(error instanceof ApiError)) return t("error.network");
  const errors = error.problem?.errors;
  if (errors && typeof errors === "object" && !Array.isArray(errors)) {
    const details = Object.entries(errors).filter(([, v]) => v !== error.message)
      .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") : v}`);
    return [error.message, ...details].join("\n");
  }
  return error.message;
}

// The app's password rule (backend/auth.py password_problem), told before the server has to.
export function passwordProblem(username, password) {
  if (password.length < 8 || password.trim().toLowerCase() === username.trim().toLowerCase()) return t("ad.password.rule");
  return null;
}

function errorBox() {
  return h("p", { class: "error ad-error", role: "alert", hidden: true });
}

function showError(box, error) {
  box.textContent = problemText(error);
  box.hidden = false;
}

function back(href = "#/admin") {
  return h("a", { class: "pb-back", href }, t("ad.back"));
}

// ---------------------------------------------------------------- hub

route("#/admin", async (view) => {
  const links = [
    ["#/users", "☺", "ad.users", "ad.users.hint"],
    ["#/admin/site", "☎", "ad.site", "ad.site.hint"],
    ["#/admin/docs", "✎", "ad.docs", "ad.docs.hint"],
    ["#/fleet", "⇅", "fl.title", "ad.fleet.hint"],
    ["#/admin/audit", "⌚", "ad.audit", "ad.audit.hint"],
  ];
  mount(view, h("h1", {}, t("ad.title")),
    h("p", { class: "muted" }, t("ad.intro", { site: session.user.site_name })),
    h("ul", { class: "ad-hub" }, links.map(([href, icon, title, hint]) => h("li", {},
      h("a", { class: "ad-link", href },
        h("span", { class: "ad-link-icon", "aria-hidden": "true" }, icon),
        h("span", { class: "ad-link-text" }, h("span", { class: "ad-link-title" }, t(title)),
          h("span", { class: "muted small" }, t(hint))))))));
}, { roles: ADMIN });

// ---------------------------------------------------------------- users

function roleSelect(value, attrs = {}) {
  return h("select", attrs, ROLES.map((role) => h("option", { value: role, selected: role === value }, t(`role.${role}`))));
}

function newUserForm(onDone) {
  const error = errorBox();
  const username = h("input", { name: "username", required: true, autocapitalize: "off", autocomplete: "off",
    pattern: "[\\w.@\\-]+", maxlength: 64 });
  const display = h("input", { name: "display_name", maxlength: 200 });
  const role = roleSelect("agent", { name: "role" });
  const password = h("input", { name: "password", type: "password", required: true, minlength: 8,
    autocomplete: "new-password" });
  const form = h("form", { class: "card stack ad-new-user", onsubmit: async (event) => {
    event.preventDefault();
    error.hidden = true;
    const rule = passwordProblem(username.value, password.value);
    if (rule) { error.textContent = rule; error.hidden = false; return; }
    try {
      await api("/api/users", { method: "POST", body: { username: username.value.trim(), role: role.value,
        password: password.value, display_name: display.value.trim() || null } });
      toast(t("ad.user.created", { name: username.value.trim() }));
      onDone();
    } catch (e) { showError(error, e); }
  } },
  h("h2", {}, t("ad.user.new")),
  h("label", {}, t("ad.user.username"), username),
  h("label", {}, t("ad.user.display"), display),
  h("label", {}, t("ad.user.role"), role),
  h("label", {}, t("ad.user.password"), password, h("span", { class: "muted small" }, t("ad.password.rule"))),
  error,
  h("button", { type: "submit", class: "primary big" }, t("ad.user.create")));
  return form;
}

async function act(button, work, done) {
  button.disabled = true;
  try {
    await work();
    done();
  } catch (error) {
    toast(problemText(error), "error");
    button.disabled = false;
  }
}

function userCard(user, redraw) {
  const base = `/api/users/${user.id}`;
  const details = h("div", { class: "ad-user-actions stack", hidden: true });
  const role = roleSelect(user.role, { "aria-label": t("ad.user.role") });
  const password = h("input", { type: "password", minlength: 8, autocomplete: "new-password",
    "aria-label": t("ad.user.newPassword"), placeholder: t("ad.user.newPassword") });
  const toggle = h("button", { type: "button", class: "ad-user-head", "aria-expanded": "false", onclick: () => {
    details.hidden = !details.hidden;
    toggle.setAttribute("aria-expanded", String(!details.hidden));
  } },
  h("span", { class: "ad-user-name" }, user.display_name, user.me ? ` (${t("ad.user.me")})` : ""),
  h("span", { class: "ad-user-meta" }, h("span", { class: `who who-${user.role}` }, t(`role.${user.role}`)),
    h("span", { class: user.active ? "ad-ok" : "ad-off" }, t(user.active ? "ad.user.active" : "ad.user.disabled")),
    h("span", { class: "muted" }, t("ad.user.logins", { n: user.logins }))));
  if (!user.me) {
    details.append(
      h("p", { class: "muted small" }, t("ad.user.account", { name: user.username, site: session.user.site_name })),
      h("div", { class: "row ad-inline" }, role, h("button", { type: "button", onclick: (e) => act(e.currentTarget,
        () => api(`${base}/role`, { method: "PUT", body: { role: role.value } }),
        () => { toast(t("ad.user.roleDone")); redraw(); }) }, t("ad.user.setRole"))),
      h("div", { class: "row ad-inline" }, password, h("button", { type: "button", class: "ad-reset", onclick: (e) => passwordProblem(user.username, password.value) ? toast(t("ad.password.rule"), "error") : act(e.currentTarget,
        () => api(`${base}/password`, { method: "POST", body: { password: password.value } }),
        () => { toast(t("ad.user.passwordDone")); redraw(); }) }, t("ad.user.resetPassword"))),
      h("div", { class: "row" },
        h("button", { type: "button", class: "ad-revoke", onclick: (e) => act(e.currentTarget,
          () => api(`${base}/revoke`, { method: "POST" }), () => { toast(t("ad.user.revokeDone")); redraw(); }) },
        t("ad.user.revoke")),
        h("button", { type: "button", class: user.active ? "ad-danger" : "", onclick: (e) => act(e.currentTarget,
          () => api(`${base}/${user.active ? "disable" : "enable"}`, { method: "POST" }), () => redraw()) },
        t(user.active ? "ad.user.disable" : "ad.user.enable"))));
  } else {
    details.append(h("p", { class: "muted" }, t("ad.user.self")));
  }
  return h("li", { class: `ad-user ${user.active ? "" : "inactive"}`, dataset: { username: user.username } }, toggle, details);
}

route("#/users", async (view) => {
  const draw = async () => {
    const users = await api("/api/admin/users");
    let showNew = false;
    const slot = h("div");
    const add = h("button", { type: "button", class: "primary big", onclick: () => {
      showNew = !showNew;
      slot.replaceChildren(...(showNew ? [newUserForm(draw)] : []));
      if (showNew) slot.querySelector("input").focus();
    } }, t("ad.user.new"));
    mount(view, back(), h("h1", {}, t("ad.users")),
      h("p", { class: "muted" }, t("ad.users.count", { n: users.filter((u) => u.active).length, site: session.user.site_name })),
      add, slot,
      h("ul", { class: "ad-users" }, users.map((user) => userCard(user, draw))));
  };
  await draw();
}, { roles: ADMIN });

// ---------------------------------------------------------------- site

function timeZones() {
  try { return Intl.supportedValuesOf("timeZone"); } catch { return ["Asia/Shanghai", "Asia/Urumqi", "Asia/Hong_Kong", "UTC"]; }
}

export function zoneSelect(value, attrs = {}) {
  const zones = timeZones();
  if (!zones.includes(value)) zones.unshift(value);
  return h("select", attrs, zones.map((zone) => h("option", { value: zone, selected: zone === value, translate: "no" }, zone.replace(/_/g, " "))));
}

function directoryRows(site) {
  // Every role a playbook calls, then the directory's own entries (e.g. the duty manager for the ladder).
  const byRole = new Map(site.directory.map((e) => [e.role, e]));
  const rows = site.playbook_contacts.map((c) => ({ role: c.role, label: byRole.get(c.role)?.label || c.label,
    phone: byRole.get(c.role)?.phone || "", shipped: c.phone, used: c.playbooks.length }));
  for (const entry of site.directory) if (!rows.some((r) => r.role === entry.role)) rows.push({ ...entry, used: 0 });
  return rows;
}

route("#/admin/site", async (view) => {
  const site = await api("/api/admin/site");
  const error = errorBox();
  const name = h("input", { value: site.name, maxlength: 200, required: true });
  const zone = zoneSelect(site.time_zone);
  const settings = h("form", { class: "card stack", onsubmit: async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      await api("/api/admin/site", { method: "PUT", body: { name: name.value.trim(), time_zone: zone.value } });
      toast(t("ad.saved"));
    } catch (e) { showError(error, e); }
  } }, h("h2", {}, t("ad.site.settings")),
  h("label", {}, t("ad.site.name"), name),
  h("label", {}, t("ad.site.zone"), zone, h("span", { class: "muted small" }, t("ad.site.zone.hint"))),
  error, h("button", { type: "submit", class: "primary big" }, t("ad.save")));

  const dirError = errorBox();
  const rows = directoryRows(site);
  const list = h("ul", { class: "ad-directory" });
  const drawRows = () => list.replaceChildren(...rows.map((row) => {
    const phone = h("input", { type: "tel", value: row.phone, inputmode: "tel", pattern: "[0-9+()\\- ]{3,30}",
      placeholder: row.shipped || "", "aria-label": `${pick(row.label)} ${t("ad.dir.phone")}`,
      oninput: () => { row.phone = phone.value.trim(); } });
    const zh = h("input", { value: row.label?.["zh-CN"] || "", "aria-label": t("ad.dir.labelZh"),
      oninput: () => { row.label = { ...row.label, "zh-CN": zh.value }; } });
    const en = h("input", { value: row.label?.en || "", "aria-label": t("ad.dir.labelEn"),
      oninput: () => { row.label = { ...row.label, en: en.value }; } });
    return h("li", { class: "ad-dir-row", dataset: { role: row.role } },
      h("div", { class: "ad-dir-head" }, h("strong", {}, pick(row.label) || row.role),
        h("span", { class: "muted small" }, row.used ? t("ad.dir.used", { n: row.used }) : t("ad.dir.ladder"))),
      h("label", {}, t("ad.dir.phone"), phone,
        row.shipped ? h("span", { class: "muted small" }, t("ad.dir.shipped", { phone: row.shipped })) : null),
      h("details", {}, h("summary", {}, t("ad.dir.labels")), h("label", {}, t("ad.dir.labelZh"), zh), h("label", {}, t("ad.dir.labelEn"), en)));
  }));
  drawRows();
  const newRole = h("select", { "aria-label": t("ad.dir.addRole") },
    ["lead", "manager", "admin"].map((r) => h("option", { value: r }, t(`role.${r}`))));
  const addRow = h("button", { type: "button", onclick: () => {
    if (rows.some((r) => r.role === newRole.value)) return toast(t("ad.dir.exists"));
    const label = { "zh-CN": t("role." + newRole.value), en: t("role." + newRole.value) };
    rows.push({ role: newRole.value, label, phone: "", used: 0 });
    drawRows();
  } }, t("ad.dir.add"));
  const directory = h("form", { class: "card stack", onsubmit: async (event) => {
    event.preventDefault();
    dirError.hidden = true;
    const entries = rows.filter((r) => r.phone).map((r) => ({ role: r.role, label: r.label, phone: r.phone }));
    try {
      await api("/api/admin/site/directory", { method: "PUT", body: { entries } });
      toast(t("ad.dir.saved"));
    } catch (e) { showError(dirError, e); }
  } }, h("h2", {}, t("ad.dir.title")), h("p", { class: "muted small" }, t("ad.dir.hint")), list,
  h("div", { class: "row ad-inline" }, newRole, addRow), dirError,
  h("button", { type: "submit", class: "primary big" }, t("ad.dir.save")));
  mount(view, back(), h("h1", {}, t("ad.site")), settings, directory);
}, { roles: ADMIN });

// ---------------------------------------------------------------- audit log

// "playbook:power-outage" → "预案 断电" (titles from the editor's list); the directory has no name of its own.
function targetText(target, titles) {
  const [kind, ...rest] = String(target).split(":");
  const name = rest.join(":");
  const word = t(`ad.target.${kind}`) === `ad.target.${kind}` ? kind : t(`ad.target.${kind}`);
  if (kind === "directory") return word;
  const title = titles.get(`${kind}:${name}`);
  return `${word} ${title ? `“${pick(title)}”` : name}`;
}

function valueText(value) {
  if (value === null || value === undefined || (Array.isArray(value) && !value.length)) return "—";
  if (typeof value !== "object") return String(value);
  if (Array.isArray(value)) return value.map((v) => (v && v.phone ? `${pick(v.label)} ${v.phone}` : valueText(v))).join("; ");
  return Object.entries(value).map(([k, v]) => `${t(`ad.key.${k}`) === `ad.key.${k}` ? k : t(`ad.key.${k}`)}: ${
    k === "role" ? t(`role.${v}`) : typeof v === "boolean" ? t(v ? "field.yes" : "field.no") : valueText(v)}`).join(", ");
}

function auditItem(entry, titles) {
  const action = t(`ad.act.${entry.action}`);
  return h("li", { class: "ad-audit-item", dataset: { action: entry.action } },
    h("div", { class: "ad-audit-head" }, h("strong", {}, action === `ad.act.${entry.action}` ? entry.action : action),
      h("span", { class: "muted small" }, formatTime(entry.at, lang()))),
    h("p", { class: "ad-audit-who" }, t("ad.audit.by", { who: entry.actor === "cli" ? t("ad.audit.cli")
      : entry.actor === "setup" ? t("ad.audit.setup") : entry.actor, target: targetText(entry.target, titles) })),
    entry.before || entry.after ? h("dl", { class: "ad-audit-diff" },
      entry.before ? [h("dt", {}, t("ad.audit.before")), h("dd", {}, valueText(entry.before))] : null,
      entry.after ? [h("dt", {}, t("ad.audit.after")), h("dd", {}, valueText(entry.after))] : null) : null);
}

route("#/admin/audit", async (view) => {
  const list = h("ol", { class: "ad-audit" });
  const more = h("button", { type: "button", class: "big ad-more", hidden: true });
  const docs = await api("/api/admin/documents").catch(() => []);
  const titles = new Map(docs.map((d) => [`${d.kind}:${d.slug}`, d.title]));
  let next = null;
  const load = async () => {
    const page = await api(`/api/audit?limit=50${next ? `&before_id=${next}` : ""}`);
    list.append(...page.entries.map((entry) => auditItem(entry, titles)));
    next = page.next_before_id;
    more.hidden = !next;
    if (!list.children.length) list.append(h("li", { class: "empty" }, t("ad.audit.none")));
  };
  more.textContent = t("ad.audit.more");
  more.addEventListener("click", load);
  mount(view, back(), h("h1", {}, t("ad.audit")), h("p", { class: "muted small" }, t("ad.audit.hint")), list, more);
  await load();
}, { roles: ADMIN });
