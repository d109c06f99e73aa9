// Transcription: enter a filled-in paper sheet row by row. Each row becomes a record with source "paper",
// its sheet ID and row number, and the id uuid5("{site}:{sheet_id}:{row}"), so typing a row twice (here, on
// another phone, or after a crash) can never make two records.
import { api, ApiError, session } from "../api.js";
import { loadContent } from "../content.js";
import { pick, t } from "../i18n.js";
import { navigate, route } from "../router.js";
import { formatTime, h, mount, toast } from "../ui.js";
import { renderForm } from "../formview.js";
import { normalizeSheetId, paperRecordId, rowsThatFit } from "../sheets.js";
import * as store from "../store.js";
import { requestSync } from "../sync.js";

const STATE = "od.transcribe"; // {sheetId: {form, rows: [n…]}}: where each sheet got to on this device

function progress() {
  try { return JSON.parse(localStorage.getItem(STATE) || "{}"); } catch { return {}; }
}

function setIncident(sheetId, form, incidentId) {
  const all = progress();
  all[sheetId] = { form, rows: [], ...(all[sheetId] || {}), incidentId };
  localStorage.setItem(STATE, JSON.stringify(all));
}

function noteRow(sheetId, form, row) {
  const all = progress();
  const entry = all[sheetId] || { form, rows: [] };
  if (!entry.rows.includes(row)) entry.rows.push(row);
  entry.rows.sort((a, b) => a - b);
  all[sheetId] = entry;
  localStorage.setItem(STATE, JSON.stringify(all));
}

const sameData = (a, b) => JSON.stringify(Object.entries(a || {}).sort()) === JSON.stringify(Object.entries(b || {}).sort());

// Save one row through the record queue. Returns {outcome: "saved" | "same" | "differs", before?}.
export async function saveRow({ form, sheetId, row, data, replace = false, incidentId = null }) {
  const id = await paperRecordId(session.user?.site, sheetId, row);
  const existing = await store.get(id);
  if (existing && !replace) {
    return sameData(existing.data, data) ? { outcome: "same", id } : { outcome: "differs", id, before: existing.data };
  }
  const record = existing || store.newDraft({ form: form.slug, formVersion: form.version, source: "paper",
    sheetId, sheetRow: row, id, incidentId });
  await store.queue(record, data); // an edit of a row already sent becomes the next rev
  requestSync();
  return { outcome: "saved", id };
}

route("#/transcribe", async (view) => {
  const [forms, incidents] = await Promise.all([loadContent("/api/forms"),
    api("/api/incidents?status=all&limit=20", { timeout: 4000 }).catch(() => [])]);
  // Preselected only when it is clear: the one real incident a lead declared that is still running. Otherwise
  // "by the time of the call": the server attaches each row to the incident running when that call was taken
  // (paper is typed in after recovery, so the newest incident is often the wrong one: a drill, a surge).
  const declared = incidents.filter((i) => i.status !== "resolved" && !i.drill && i.source !== "metrics");
  const preselect = declared.length === 1 ? declared[0].id : null;
  const incidentSelect = h("select", { id: "tr-incident", name: "incident" },
    h("option", { value: "" }, t("tr.byCallTime")),
    incidents.map((i) => h("option", { value: i.id, selected: i.id === preselect },
      `#${i.id} ${pick(i.title)}${i.drill ? ` · ${t("inc.drill.label")}` : ""} · ${new Date(i.declared_at).toLocaleString()}`)));
  const sheetInput = h("input", { id: "sheet-id", name: "sheet_id", class: "sheet-id-input", autocomplete: "off",
    autocapitalize: "characters", spellcheck: false, placeholder: "261123-K7Q2MX-4", inputmode: "text" });
  const message = h("p", { class: "tr-message", role: "status" });
  const select = h("div", { class: "choices tr-forms", role: "radiogroup" }, forms.map((f, i) => h("label", { class: "choice" },
    h("input", { type: "radio", name: "form", value: f.slug, checked: i === 0 }), pick(f.title))));
  const chosen = () => select.querySelector("input:checked")?.value;

  async function lookUp() {
    const sheetId = normalizeSheetId(sheetInput.value);
    message.className = "tr-message";
    if (!sheetId) { message.textContent = sheetInput.value.trim() ? t("tr.badId") : ""; return null; }
    sheetInput.value = sheetId;
    try {
      const info = await api(`/api/print/sheets/${sheetId}`, { timeout: 4000 });
      if (info.known) {
        const form = forms.find((f) => f.slug === info.form);
        if (form && chosen() !== info.form) {
          select.querySelector(`input[value="${info.form}"]`).checked = true;
          message.textContent = t("tr.otherForm", { form: pick(form.title) });
        } else {
          message.textContent = t("tr.known", { form: form ? pick(form.title) : info.form,
            at: new Date(info.created_at).toLocaleDateString() });
        }
      } else {
        message.textContent = t("tr.unknown");
      }
    } catch (error) {
      if (error instanceof ApiError && error.status === 422) { message.textContent = t("tr.badId"); return null; }
      // offline: the check character already said the ID is well formed
    }
    return sheetId;
  }

  sheetInput.addEventListener("change", lookUp);
  mount(view,
    h("h1", {}, t("tr.title")),
    h("form", { class: "card stack", onsubmit: async (event) => {
      event.preventDefault();
      const sheetId = await lookUp();
      if (!sheetId) { message.textContent = t("tr.badId"); message.className = "tr-message error"; return; }
      setIncident(sheetId, chosen(), Number(incidentSelect.value) || null);
      const rows = progress()[sheetId]?.rows || [];
      navigate(`#/transcribe/${encodeURIComponent(chosen())}/${sheetId}/${rows.length ? Math.max(...rows) + 1 : 1}`);
    } },
    h("label", { for: "sheet-id" }, t("tr.sheet")), sheetInput, message,
    h("p", { class: "field-label" }, t("tr.form")), select,
    incidents.length ? h("label", { for: "tr-incident" }, t("tr.incident")) : null, incidents.length ? incidentSelect : null,
    h("button", { type: "submit", class: "primary big" }, t("tr.start"))));
  sheetInput.focus();
});

route("#/transcribe/:form/:sheet/:row", async (view, params) => {
  const sheetId = normalizeSheetId(params.sheet);
  if (!sheetId) return navigate("#/transcribe");
  const definition = await loadContent(`/api/forms/${encodeURIComponent(params.form)}`);
  // A paper sheet has the rows print.js drew on it, and no more: row 11 of a 10-row sheet is a typo.
  const rows = rowsThatFit(definition);
  const row = Math.min(rows, Math.max(1, Number(params.row) || 1));
  const go = (n) => navigate(`#/transcribe/${params.form}/${sheetId}/${Math.min(rows, Math.max(1, n))}`);
  if (Number(params.row) > rows) toast(t("print.rowTooHigh", { rows }), "error");
  if (String(row) !== String(params.row)) return go(row);

  // Times on a sheet run on: a new row starts with the previous row's date and time fields.
  const values = {};
  const earlier = await store.get(await paperRecordId(session.user?.site, sheetId, row));
  const previous = row > 1 ? await store.get(await paperRecordId(session.user?.site, sheetId, row - 1)) : null;
  if (earlier) Object.assign(values, earlier.data);
  else if (previous) {
    for (const f of definition.fields) if (f.type === "datetime" && previous.data[f.name]) values[f.name] = previous.data[f.name];
  }
  const form = renderForm(definition, values);
  const done = progress()[sheetId]?.rows || [];
  const conflict = h("div", { class: "tr-conflict", hidden: true });
  const codes = definition.fields.filter((f) => f.type === "choice").map((f) => h("p", { class: "muted tr-codes" },
    `${pick(f.label)} · ${t("tr.codes")}`, f.choices.map((c, i) => `${i + 1}=${pick(c.label)}`).join("  ")));

  async function save(replace = false) {
    const errors = form.validate();
    form.showErrors(errors);
    if (Object.keys(errors).length) { toast(t("tr.fix"), "error"); return; }
    const result = await saveRow({ form: definition, sheetId, row, data: form.read(), replace,
      incidentId: progress()[sheetId]?.incidentId ?? null });
    if (result.outcome === "differs") return showConflict(result.before);
    noteRow(sheetId, definition.slug, row);
    toast(t(result.outcome === "same" ? "tr.same" : "tr.saved", { row }));
    if (row < rows) go(row + 1);
    else navigate("#/transcribe"); // the sheet's last row: the sheet is done
  }

  function showConflict(before) {
    // Values as the agent wrote them (choice labels, yes/no, times in the app's language); what differs marked.
    const shown = (f, v) => {
      if (v === undefined || v === null || v === "") return "—";
      if (typeof v === "boolean") return t(v ? "field.yes" : "field.no");
      if (f.type === "choice") return pick(f.choices.find((c) => c.value === v)?.label) || "—";
      if (f.type === "datetime") return formatTime(v) || "—";
      return String(v);
    };
    const now = form.read();
    const differs = (f) => shown(f, before[f.name]) !== shown(f, now[f.name]);
    const list = (data) => h("dl", {}, definition.fields.filter((f) => data[f.name] !== undefined || differs(f)).map((f) => [
      h("dt", { class: differs(f) ? "differs" : "" }, pick(f.label), differs(f) ? " ≠" : ""),
      h("dd", { class: differs(f) ? "differs" : "" }, shown(f, data[f.name]))]));
    conflict.hidden = false;
    conflict.replaceChildren(h("p", { class: "error", role: "alert" }, t("tr.differs", { row })),
      h("div", { class: "tr-versions" }, h("div", {}, h("h3", {}, t("tr.before")), list(before)),
        h("div", {}, h("h3", {}, t("tr.now")), list(form.read()))),
      h("div", { class: "row" },
        h("button", { type: "button", onclick: () => { noteRow(sheetId, definition.slug, row); go(row + 1); } }, t("tr.keep")),
        h("button", { type: "button", class: "primary", onclick: () => save(true) }, t("tr.replace"))));
    conflict.scrollIntoView({ block: "center" });
  }

  mount(view,
    h("div", { class: "tr-head" },
      h("p", { class: "muted" }, `${pick(definition.title)} · v${definition.version}`),
      h("p", { class: "tr-sheet", dataset: { sheetId } }, sheetId)),
    h("div", { class: "tr-rowbar" },
      h("button", { type: "button", "aria-label": t("tr.prevRow"), disabled: row <= 1, onclick: () => go(row - 1) }, "◀"),
      h("h1", { class: "tr-row", dataset: { row } }, t("tr.row", { row })),
      h("button", { type: "button", "aria-label": t("tr.nextRow"), disabled: row >= rows, onclick: () => go(row + 1) }, "▶")),
    h("p", { class: "muted tr-rows" }, t("print.sheetRows", { rows })),
    h("p", { class: "tr-done muted" }, `${t("tr.done")}: `, done.length ? done.map((n) => h("a", {
      href: `#/transcribe/${params.form}/${sheetId}/${n}`, class: n === row ? "current" : "" }, String(n))) : t("tr.none")),
    codes,
    h("form", { class: "card", onsubmit: (event) => { event.preventDefault(); save(); } },
      form.element, conflict,
      h("button", { type: "submit", class: "primary big", id: "save-row" }, t("tr.saveNext"))),
    h("a", { class: "button", href: "#/transcribe" }, t("tr.finish")));
  const first = view.querySelector(".form-fields input, .form-fields textarea, .form-fields select");
  if (first) first.focus({ preventScroll: true });
});
