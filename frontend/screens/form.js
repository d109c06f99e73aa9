// Record a call (or any paper-replacement form): a new record id at form open, autosave while typing,
// one big "Save & queue" button, then a fresh form for the next caller. Works offline from the device's
// copy of the form; reopen a draft or a record the server rejected at #/records/:id.
import { api, session } from "../api.js";
import { pick, t } from "../i18n.js";
import { net } from "../net.js";
import { navigate, route } from "../router.js";
import { formatTime, h, mount, toast } from "../ui.js";
import { defaults, renderForm } from "../formview.js";
import * as store from "../store.js";
import { onWhile } from "../events.js";
import { knownIncident } from "../running.js";
import { requestSync } from "../sync.js";

// The newest version online (kept on the device), else the device's copy; old versions for old records.
export async function loadForm(slug, version = null) {
  // The device's copy is read alongside the server's answer: when the server cannot answer, it is ready
  // without a second wait. A browser that knows it is offline is not asked to try.
  const saved = store.cachedForm(slug, version);
  saved.catch(() => {});
  if (net.online !== false && navigator.onLine !== false) {
    try {
      const path = `/api/forms/${encodeURIComponent(slug)}${version ? `?version=${version}` : ""}`;
      const definition = await api(path, { timeout: 5000 });
      // Kept for offline use, but not awaited: the form shows without waiting for a durable IndexedDB write.
      store.saveForm(definition).catch((e) => console.warn("keeping the form offline", e));
      return definition;
    } catch { /* offline or server down: the device's copy */ }
  }
  const cached = await saved;
  if (!cached) throw new Error(t("rec.notcached"));
  return cached;
}

route("#/forms/:slug", async (view, { slug }) => {
  const [name, query] = slug.split("?");
  // The incident named in the link, else the one this device knows is running (also offline).
  const incident = Number(new URLSearchParams(query || "").get("incident")) || knownIncident();
  const definition = await loadForm(name);
  showForm(view, definition, store.newDraft({ form: name, formVersion: definition.version, incidentId: incident }),
    { fresh: true });
  // Paper fallback (screens/print.js): blank sheets of this form with sheet IDs.
  view.append(h("a", { class: "button print-this", href: `#/print/form/${encodeURIComponent(name)}` }, t("print.blank")));
});

route("#/records/:id", async (view, { id }) => {
  const record = await store.get(id);
  if (!record) return mount(view, h("h1", {}, t("rec.notfound")), h("a", { class: "button", href: "#/outbox" }, t("nav.outbox")));
  showForm(view, await loadForm(record.form, record.formVersion), record, { fresh: false });
});

function showForm(view, definition, record, { fresh }) {
  const stored = !fresh || record.status !== "draft";
  const values = Object.keys(record.data || {}).length ? record.data : defaults(definition);
  let timer = null;
  let saving = Promise.resolve();
  const status = h("p", { class: "rec-status muted", role: "status" },
    fresh ? t("rec.new") : statusText(record));
  const outboxLink = h("a", { class: "rec-outbox", href: "#/outbox" });
  const warning = h("p", { class: "warning", role: "alert", hidden: true }, t("persist.warn"));

  const autosave = () => {
    saving = saving.then(async () => {
      record = await store.saveDraft(record, form.read());
      status.textContent = t("rec.autosaved", { time: formatTime(record.updatedAt) });
      discard.hidden = record.sentRev > 0;
    }).catch((e) => { console.warn("autosave", e); toast(t("rec.autosaveFailed"), "error"); });
    return saving;
  };
  const form = renderForm(definition, values, { onInput: () => {
    clearTimeout(timer);
    timer = setTimeout(() => { timer = null; autosave(); }, 400);
  } });
  if (record.status === "rejected" && record.errors) {
    form.showErrors(Object.fromEntries(Object.entries(record.errors)
      .filter(([name]) => definition.fields.some((f) => f.name === name))));
  }

  const discard = h("button", { type: "button", class: "secondary", hidden: !stored || record.status !== "draft",
    onclick: async () => {
      clearTimeout(timer);
      timer = null;
      await saving;
      await store.discardDraft(record.id);
      navigate(fresh ? "#/" : "#/outbox");
    } }, t("rec.discard"));

  const submit = h("button", { type: "submit", class: "primary big rec-save" }, t("rec.save"));
  const notSaved = h("p", { class: "rec-notsaved", role: "alert", hidden: true });
  const element = h("form", { class: "card rec-form", novalidate: true, dataset: { form: definition.slug,
    version: definition.version, record: record.id }, onsubmit: async (event) => {
    event.preventDefault();
    clearTimeout(timer);
    timer = null;
    const errors = form.validate();
    if (Object.keys(errors).length) {
      // Not saved, and it says so where the thumb is: a line in the action bar that stays until the next
      // save, the status line above the form, and the keyboard on the first field to fix.
      form.showErrors(errors);
      notSaved.textContent = t("rec.notSaved", { n: Object.keys(errors).length });
      notSaved.hidden = false;
      status.textContent = t("rec.notSavedStatus");
      element.querySelector(".field.invalid input, .field.invalid textarea, .field.invalid select")?.focus();
      return;
    }
    notSaved.hidden = true;
    submit.disabled = true;
    try {
      await saving;
      await store.queue(record, form.read());
      requestSync();
      const n = (await store.counts()).pending;
      if (fresh) {
        toast(t("rec.saved", { n }));
        // A fresh form for the next caller: new id, new call time.
        showForm(view, definition, store.newDraft({ form: record.form, formVersion: definition.version,
          incidentId: record.incidentId }), { fresh: true });
        window.scrollTo(0, 0);
      } else {
        toast(t("rec.updated"));
        navigate("#/outbox");
      }
    } finally {
      submit.disabled = false;
    }
  } }, form.element, h("div", { class: "rec-actions" }, notSaved, submit, discard));

  mount(view,
    h("h1", {}, pick(definition.title)),
    definition.description && fresh ? h("p", { class: "muted rec-desc" }, pick(definition.description)) : null,
    record.incidentId ? h("p", { class: "chip-line" }, t("rec.incident", { id: record.incidentId })) : null,
    record.source === "paper" ? h("p", { class: "chip-line" }, t("rec.paper", { sheet: record.sheetId,
      row: record.sheetRow })) : null,
    status, warning, outboxLink, element);

  const refreshCounts = async () => {
    const counts = await store.counts();
    outboxLink.textContent = t("rec.outbox", { n: counts.pending });
    warning.hidden = (await store.persistence()) !== false;
  };
  refreshCounts();
  // Leaving mid-typing (another screen, tab closed): save the last keystrokes now, not after the debounce.
  const flush = () => { if (timer) { clearTimeout(timer); timer = null; autosave(); } };
  // Not onWhile: the next screen is already mounted when these fire. A flush with no pending save is a no-op.
  window.addEventListener("hashchange", flush, { once: true });
  window.addEventListener("pagehide", flush, { once: true });
  onWhile(element, "store", refreshCounts);
  onWhile(element, "persist", refreshCounts);
  if (fresh) {
    const first = definition.fields.find((f) => f.required && values[f.name] === undefined);
    if (first && session.user) element.querySelector(`[name="${first.name}"]`)?.focus({ preventScroll: true });
  }
}

function statusText(record) {
  switch (record.status) {
    case "synced": return t("rec.synced", { receipt: record.receipt });
    case "rejected": return record.errors && Object.keys(record.errors).some((n) => n !== "_" && n !== "form")
      ? t("rec.rejectedFields") : t("rec.rejected", { reason: record.reason || "" });
    case "conflict": return t("rec.conflict");
    default: return t(`status.${record.status}`);
  }
}
