// Re-entry into the CRM by its API. Admins: the site's connector (endpoint, authentication, mapping per form,
// where the answer holds the reference) with the preview of the exact request for a sample record before it
// is switched on. Leads: push an incident's records pending re-entry (dry run first), follow the deliveries,
// and push again the records changed after the CRM got them.
import { api } from "../api.js";
import { lang, pick, t, tparts } from "../i18n.js";
import { route, whileOnRoute } from "../router.js";
import { code, formatTime, h, mount, toast } from "../ui.js";

const LEAD = ["lead", "manager", "admin"];
const AUTH = ["none", "bearer", "header", "hmac"];
const EXAMPLE = {
  "call-record": {
    time_zone: "Asia/Shanghai",
    body: {
      source: "outage-desk",
      external_id: { meta: "id" },
      customer: { name: { field: "caller_name" }, phone: { field: "phone" } },
      priority: { field: "urgency", map: { urgent: "P1", normal: "P3" }, default: "P3" },
      called_at: { field: "called_at", date: "%Y-%m-%d %H:%M" },
      description: { field: "details" },
    },
  },
};

const pretty = (value) => JSON.stringify(value, null, 2);

function requestText(req) {
  const headers = Object.entries(req.headers).map(([k, v]) => `${k}: ${v}`).join("\n");
  return `${req.method} ${req.url}\n${headers}\n\n${pretty(req.body)}`;
}

function errorList(error) {
  const errors = error.problem?.errors;
  return h("div", { class: "error crm-errors", role: "alert" }, h("p", {}, error.parts || error.message),
    errors ? h("ul", {}, Object.entries(errors).map(([k, v]) => h("li", {}, code(k), " ", String(v)))) : null);
}

// ---------------------------------------------------------------- set-up (admin)

route("#/crm", async (view) => {
  const [stored, forms] = await Promise.all([api("/api/crm/connector"), api("/api/forms").catch(() => [])]);
  const field = (id, label, input, help) => h("div", { class: "crm-field" }, h("label", { for: id }, label), input,
    help ? h("p", { class: "muted crm-help" }, help) : null);
  const url = h("input", { id: "crm-url", type: "url", inputmode: "url", value: stored.url || "", placeholder: "https://crm.example.cn/api/cases", maxlength: 1000, translate: "no" });
  const auth = h("select", { id: "crm-auth" }, AUTH.map((a) => h("option", { value: a, selected: a === (stored.auth || "none") }, t(`crm.auth.${a}`))));
  const headerName = h("input", { id: "crm-header-name", value: stored.header_name || "", placeholder: "X-Api-Key", maxlength: 100, translate: "no" });
  const secret = h("input", { id: "crm-secret", type: "password", autocomplete: "new-password", maxlength: 2000,
    placeholder: stored.has_secret ? t("crm.secretKept") : "" });
  const refPath = h("input", { id: "crm-ref-path", value: stored.ref_path || "$.id", maxlength: 200, translate: "no" });
  const mapping = h("textarea", { id: "crm-mapping", rows: 14, spellcheck: false, class: "crm-code", translate: "no" },
    stored.mapping && Object.keys(stored.mapping).length ? pretty(stored.mapping) : "");
  const enabled = h("input", { type: "checkbox", id: "crm-enabled", checked: Boolean(stored.enabled) });
  const sampleForm = h("select", { id: "crm-form" }, (forms.length ? forms : [{ slug: "call-record", title: "call-record" }])
    .map((f) => h("option", { value: f.slug }, pick(f.title))));
  const out = h("div", { id: "crm-out", "aria-live": "polite" });
  const headerRow = field("crm-header-name", t("crm.headerName"), headerName, tparts("crm.headerHelp", { name: code("X-OD-Signature") }));
  const secretRow = field("crm-secret", t("crm.secret"), secret);
  const showAuth = () => {
    headerRow.hidden = !["header", "hmac"].includes(auth.value);
    secretRow.hidden = auth.value === "none";
  };
  auth.addEventListener("change", showAuth);
  showAuth();

  function draft() {
    let parsed = {};
    if (mapping.value.trim()) {
      try { parsed = JSON.parse(mapping.value); } catch (e) { throw Object.assign(new Error(t("crm.badJson", { error: e.message })), { problem: {}, parts: tparts("crm.badJson", { error: code(e.message) }) }); }
    }
    return { url: url.value.trim(), auth: auth.value, header_name: headerName.value.trim() || null,
      secret: secret.value || null, mapping: parsed, ref_path: refPath.value.trim() || "$.id", enabled: enabled.checked };
  }

  async function preview() {
    try {
      const req = await api("/api/crm/preview", { method: "POST", body: { form: sampleForm.value, connector: draft() } });
      mount(out, h("section", { class: "card crm-preview" },
        h("h2", {}, t("crm.previewTitle")),
        h("p", { class: "muted" }, req.record.sample ? t("crm.sampleMade") : tparts("crm.sampleReal", { id: code(req.record.id.slice(0, 8)), rev: req.record.rev })),
        h("pre", { id: "crm-request", class: "crm-code", translate: "no" }, requestText(req)),
        h("p", { class: "muted" }, tparts("crm.refFrom", { path: code(req.ref_path) }))));
    } catch (error) { mount(out, errorList(error)); }
  }

  async function save() {
    try {
      const saved = await api("/api/crm/connector", { method: "PUT", body: draft() });
      secret.value = "";
      secret.placeholder = saved.has_secret ? t("crm.secretKept") : "";
      toast(saved.enabled ? t("crm.savedOn") : t("crm.savedOff"));
      mount(out);
    } catch (error) { mount(out, errorList(error)); }
  }

  mount(view,
    h("h1", {}, t("crm.title")),
    h("p", { class: "muted" }, t("crm.intro")),
    h("form", { class: "card stack crm-setup", onsubmit: (e) => { e.preventDefault(); save(); } },
      field("crm-url", t("crm.url"), url, t("crm.urlHelp")),
      field("crm-auth", t("crm.auth"), auth),
      headerRow, secretRow,
      field("crm-mapping", t("crm.mapping"), mapping, tparts("crm.mappingHelp", {
        shape: code('{"<form>": {"body": {…}, "time_zone": "Asia/Shanghai"}}'), field: code('{"field": …}'),
        meta: code('{"meta": …}'), map: code('"map"'), date: code('"date"') })),
      h("button", { type: "button", id: "crm-example", onclick: () => { mapping.value = pretty(EXAMPLE); } }, t("crm.example")),
      field("crm-ref-path", t("crm.refPath"), refPath, tparts("crm.refHelp", { a: code("$.id"), b: code("$.data.case_no") })),
      field("crm-form", t("crm.sampleForm"), sampleForm),
      h("button", { type: "button", id: "crm-preview", class: "big", onclick: preview }, t("crm.preview")),
      out,
      h("label", { class: "crm-switch" }, enabled, h("span", {}, t("crm.enabled"))),
      h("button", { type: "submit", id: "crm-save", class: "primary big" }, t("crm.save"))));
}, { roles: ["admin"] });

// ---------------------------------------------------------------- pushing (lead)

const STATE_CLASS = { sent: "ok", failed: "bad", pending: "wait", sending: "wait", superseded: "muted" };

// "CRM answered 400: <the CRM's own words>" in the user's language; a failure without an answer (timeout,
// refused address) in the server's short English classification.
function reasonText(d) {
  if (!d.last_status || !/^the CRM answered \d+/.test(d.last_error)) return d.last_error;
  return t("crm.answered", { status: d.last_status }) + (d.reason ? `${t("crm.colon")}${d.reason}` : "");
}

function deliveryRow(d) {
  const state = d.state === "failed" && !d.gave_up ? "retrying" : d.gave_up ? "gaveUp" : d.state;
  return h("li", { class: `crm-delivery ${STATE_CLASS[d.state] || ""}`, dataset: { record: d.record_id, state } },
    h("div", { class: "crm-line" }, h("b", { class: "crm-state" }, t(`crm.state.${state}`)),
      h("span", {}, d.summary || d.record_id.slice(0, 8)), d.crm_ref ? code(d.crm_ref, { class: "crm-ref" }) : null),
    d.last_error ? h("p", { class: "crm-reason" }, reasonText(d)) : null,
    d.next_attempt_at && d.state !== "sent" ? h("p", { class: "muted" }, t("crm.retryAt", { time: formatTime(d.next_attempt_at, lang()) })) : null);
}

route("#/crm/push", async (view) => {
  const incidents = await api("/api/incidents?status=all").catch(() => []);
  const list = Array.isArray(incidents) ? incidents : incidents.items || [];
  const incident = h("select", { id: "cp-incident" }, h("option", { value: "" }, t("crm.allIncidents")),
    list.map((i, n) => h("option", { value: i.id, selected: n === 0 }, `#${i.id} ${pick(i.title)} ${formatTime(i.declared_at, lang())}`)));
  const result = h("div", { id: "cp-result", "aria-live": "polite" });
  const deliveries = h("div", { id: "cp-deliveries" });
  const scope = () => (incident.value ? { incident_id: Number(incident.value) } : {});

  async function refresh() {
    const q = incident.value ? `?incident_id=${incident.value}` : "";
    const data = await api(`/api/crm/deliveries${q}`).catch(() => null);
    if (!data) return;
    const counts = {};
    data.items.forEach((d) => { const k = d.gave_up ? "gaveUp" : d.state; counts[k] = (counts[k] || 0) + 1; });
    mount(deliveries,
      !data.connector.enabled ? h("p", { class: "error" }, t("crm.off")) : null,
      data.changed.length ? h("section", { class: "card crm-changed" },
        h("h2", {}, t("crm.changedTitle", { n: data.changed.length })), h("p", { class: "muted" }, t("crm.changedHelp")),
        h("ul", {}, data.changed.map((c) => h("li", {}, code(c.crm_ref), " · ", t("crm.revs", { from: c.crm_rev, to: c.rev })))),
        h("button", { type: "button", id: "cp-again", onclick: () => send({ records: data.changed.map((c) => c.record_id) }) }, t("crm.pushAgain"))) : null,
      h("section", { class: "card" }, h("h2", {}, t("crm.deliveries")),
        h("p", { class: "crm-counts", id: "cp-counts" }, Object.entries(counts).map(([k, n]) => `${t(`crm.state.${k}`)} ${n}`).join(" · ") || t("crm.noneYet")),
        h("ul", { class: "crm-deliveries" }, data.items.map(deliveryRow))));
  }

  async function send(body, dry = false) {
    try {
      const answer = await api("/api/crm/push", { method: "POST", body: { ...body, dry_run: dry } });
      const skipped = answer.skipped.length ? h("p", { class: "muted" }, t("crm.skipped", { n: answer.skipped.length })) : null;
      if (dry) {
        mount(result, h("section", { class: "card crm-dry" },
          h("h2", {}, t("crm.dryTitle", { n: answer.count })), skipped,
          answer.would_send.map((req, i) => h("details", { open: i === 0 }, h("summary", {}, `${i + 1}. ${req.summary || req.record_id.slice(0, 8)}`),
            h("pre", { class: "crm-code", translate: "no" }, requestText(req))))));
      } else {
        mount(result, h("p", { class: "ok", role: "status" }, t("crm.queued", { n: answer.count })), skipped);
        toast(t("crm.queued", { n: answer.count }));
      }
      refresh();
    } catch (error) { mount(result, errorList(error)); }
  }

  incident.addEventListener("change", () => { mount(result); refresh(); });
  mount(view,
    h("h1", {}, t("crm.pushTitle")),
    h("p", { class: "muted" }, t("crm.pushIntro")),
    h("div", { class: "card stack" },
      h("label", { for: "cp-incident" }, t("crm.incident")), incident,
      h("div", { class: "crm-buttons" },
        h("button", { type: "button", id: "cp-dry", class: "big", onclick: () => send(scope(), true) }, t("crm.dryRun")),
        h("button", { type: "button", id: "cp-push", class: "primary big", onclick: () => send(scope()) }, t("crm.push")))),
    result, deliveries);
  await refresh();
  whileOnRoute("#/crm/push", refresh, { every: 3000 });
}, { roles: LEAD });
