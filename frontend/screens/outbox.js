// The outbox: what is on this device, what reached the server (with its receipt), what is waiting, and
// the choices an agent has: sync now, export unsent records, settle a conflict, fix a rejected record.
import { session } from "../api.js";
import { pick, t } from "../i18n.js";
import { net } from "../net.js";
import { route } from "../router.js";
import { formatTime, h, mount, toast } from "../ui.js";
import * as store from "../store.js";
import { onWhile } from "../events.js";
import { exportBeforeLeaving, exportUnsent, failureDetail, failureText, state as syncState, syncNow } from "../sync.js";

const SHOWN = 200; // the newest; counts cover everything

route("#/outbox", async (view) => {
  const countsBar = h("div", { class: "outbox-counts", role: "status" });
  // The truth at a glance: how many are not uploaded, since when, and what happens next.
  const truth = h("div", { class: "outbox-truth", role: "status", "aria-live": "polite" });
  let waiting = { unsent: 0, drafts: 0, oldest: null };
  const syncLine = h("p", { class: "outbox-sync muted" });
  const progress = h("progress", { class: "outbox-progress", max: 1, value: 0, hidden: true });
  const notice = h("p", { class: "warning", role: "alert", hidden: true });
  const persistWarning = h("p", { class: "warning", role: "alert", hidden: true }, t("persist.warn"));
  const login = h("div", { class: "banner outbox-login", hidden: true }, t("outbox.login"), " ",
    h("a", { class: "button", href: "#/login" }, t("outbox.loginButton")));
  const list = h("ul", { class: "outbox-list" });
  const syncButton = h("button", { type: "button", class: "primary big outbox-syncnow", onclick: async () => {
    const outcome = await syncNow({ manual: true });
    if (outcome === "done") toast(t("outbox.done"));
  } }, t("outbox.sync"));
  const exportButton = h("button", { type: "button", class: "outbox-export", onclick: async () => {
    const n = (await store.counts({ user: null })).unsent;
    if (!n) return toast(t("outbox.nothing"));
    toast(t("outbox.exported", { n: await exportUnsent() }));
  } }, t("outbox.export"));
  const clearButton = h("button", { type: "button", class: "secondary outbox-clear", onclick: async () => {
    await exportBeforeLeaving(); // unsent work goes to a file first, like logout
    toast(t("outbox.cleared", { n: await store.clearSynced() }));
  } }, t("outbox.clear"));

  const root = h("section", { class: "outbox" },
    h("h1", {}, t("outbox.title")), truth, login, notice, persistWarning, countsBar, syncLine, progress,
    h("div", { class: "row outbox-buttons" }, syncButton, exportButton), list, h("div", { class: "row" }, clearButton));
  mount(view, root);

  const definitions = {};
  async function formOf(r) {
    const key = `${r.form}@${r.formVersion}`;
    if (!definitions[key]) definitions[key] = await store.cachedForm(r.form, r.formVersion);
    return definitions[key];
  }

  function nextStep(s) {
    if (s.running) return t("outbox.next.sending");
    if (s.needsLogin || !session.token) return t("outbox.next.login");
    if (net.online === false) return t("outbox.next.offline");
    if (s.lastError) return t("outbox.next.retry");
    return t("outbox.next.soon");
  }

  function showTruth(s = syncState) {
    const { unsent, drafts, oldest } = waiting;
    truth.className = `outbox-truth ${unsent ? "waiting" : "clear"}`;
    truth.replaceChildren(...[
      h("strong", {}, unsent ? t("outbox.unsent", { n: unsent }) : t("outbox.unsentNone")),
      unsent && oldest ? h("p", {}, t("outbox.since", { time: formatTime(oldest) })) : null,
      unsent ? h("p", {}, nextStep(s)) : null,
      drafts ? h("p", {}, t("outbox.drafts", { n: drafts })) : null].filter(Boolean));
  }

  function showSync(s = syncState) {
    // "Last successful upload" never reads as "all is well" while records wait.
    syncLine.textContent = s.lastSync
      ? t(waiting.unsent ? "outbox.lastOk" : "outbox.last", { time: formatTime(s.lastSync) }) : t("outbox.never");
    showTruth(s);
    progress.hidden = !s.running || !s.total;
    progress.max = Math.max(1, s.total);
    progress.value = s.done;
    if (s.running && s.total) syncLine.textContent = t("outbox.progress", { done: s.done, total: s.total });
    // One message for an expired login (the app's banner stays off on this screen); no retry notice with it.
    const loginNeeded = s.needsLogin || !session.token;
    login.hidden = !loginNeeded;
    notice.hidden = loginNeeded || !((s.lastError && !s.running) || net.online === false);
    // In the agent's language; the server's own (English) words only as a smaller second line.
    if (net.online === false) notice.replaceChildren(t("outbox.offline"));
    else notice.replaceChildren(t("outbox.retry", { reason: failureText(s.lastError) }),
      ...(failureDetail(s.lastError) ? [h("small", { class: "detail" }, failureDetail(s.lastError))] : []));
    syncButton.disabled = s.running;
  }

  let drawing = false;
  let again = false;
  async function draw() {
    if (drawing) { again = true; return; } // coalesce bursts of store events during a big upload
    drawing = true;
    try {
      const counts = await store.counts();
      countsBar.replaceChildren(...store.STATUSES.map((s) => h("span", { class: `count status-${s}`,
        dataset: { status: s, count: counts[s] } }, `${t(`status.${s}`)} `, h("b", {}, String(counts[s])))));
      persistWarning.hidden = (await store.persistence()) !== false;
      const records = await store.list();
      const unsent = records.filter((r) => r.status !== "synced" && r.status !== "draft");
      waiting = { unsent: unsent.length, drafts: counts.draft,
        oldest: unsent.map((r) => r.capturedAt).filter(Boolean).sort()[0] || null };
      showSync();
      const items = [];
      for (const r of records.slice(0, SHOWN)) items.push(await item(r));
      if (!items.length) items.push(h("li", { class: "empty" }, t("outbox.empty")));
      if (records.length > SHOWN) items.push(h("li", { class: "muted" }, t("outbox.more", { n: SHOWN })));
      list.replaceChildren(...items);
    } finally {
      drawing = false;
      if (again) { again = false; setTimeout(draw, 250); }
    }
  }

  async function item(r) {
    const definition = await formOf(r);
    const summary = summarize(r, definition);
    const li = h("li", { class: `outbox-item status-${r.status}`, dataset: { id: r.id, status: r.status } },
      h("div", { class: "outbox-head" },
        h("span", { class: `status-badge status-${r.status}` }, t(`status.${r.status}`)),
        h("b", {}, pick(definition?.title) || r.form),
        h("span", { class: "muted" }, formatTime(r.capturedAt))),
      h("p", { class: "outbox-summary" }, summary || r.id.slice(0, 8)),
      r.status === "synced" ? h("p", { class: "receipt" }, t("outbox.receipt", { receipt: r.receipt })) : null,
      r.status === "synced" && r.reentryStatus && r.reentryStatus !== "pending"
        ? h("p", { class: "muted reentry" }, t(`outbox.${r.reentryStatus}`, { ref: r.crmRef || "" })) : null,
      reasonText(r, definition) ? h("p", { class: "muted reason" }, reasonText(r, definition)) : null,
      r.failure?.detail && r.reason ? h("p", { class: "muted reason-detail" }, failureDetail(r.failure)) : null);
    if (r.status === "conflict" && r.server) li.append(conflict(r, definition));
    if (["draft", "rejected", "failed", "queued"].includes(r.status)) {
      li.append(h("a", { class: "button", href: `#/records/${r.id}` },
        r.status === "rejected" ? t("outbox.fix") : t("outbox.open")));
    }
    return li;
  }

  // Why a record is not synced, in the agent's language where we know the case.
  function reasonText(r, definition) {
    if (r.status === "conflict") return t("outbox.conflict");
    if (r.status === "rejected") {
      const fields = Object.keys(r.errors || {}).filter((n) => definition?.fields.some((f) => f.name === n));
      return fields.length ? t("outbox.rejectedFields", { fields: fields.map((n) =>
        pick(definition.fields.find((f) => f.name === n).label)).join("、") }) : r.reason;
    }
    if (r.status === "synced") return null;
    // A failed upload in today's language (the store clears reason, not failure, when a record is queued again).
    return r.failure && r.reason ? failureText(r.failure) : r.reason;
  }

  // The first few answers an agent recognises a call by: name, phone, matter (choice labels, not codes).
  function summarize(r, definition) {
    const parts = [];
    for (const field of definition?.fields || []) {
      const value = r.data?.[field.name];
      if (value === undefined || value === null || value === "" || field.type === "datetime") continue;
      if (field.type === "choice") parts.push(pick(field.choices.find((c) => c.value === value)?.label) || value);
      else if (field.type !== "boolean") parts.push(String(value));
      if (parts.length === 3) break;
    }
    return parts.join(" · ");
  }

  function conflict(r, definition) {
    const names = [...new Set([...Object.keys(r.data || {}), ...Object.keys(r.server.data || {})])];
    const label = (n) => pick(definition?.fields.find((f) => f.name === n)?.label) || n;
    const cell = (v, n) => {
      if (v === undefined || v === null) return "—";
      if (typeof v === "boolean") return t(v ? "field.yes" : "field.no");
      const choice = definition?.fields.find((f) => f.name === n)?.choices?.find((c) => c.value === v);
      if (choice) return pick(choice.label);
      return /^\d{4}-\d\d-\d\dT/.test(String(v)) ? formatTime(v) : String(v);
    };
    return h("div", { class: "conflict" },
      h("table", { class: "conflict-table" },
        h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {}, t("outbox.mine")), h("th", {}, t("outbox.theirs")))),
        h("tbody", {}, names.map((n) => h("tr", { class: cell(r.data?.[n], n) === cell(r.server.data?.[n], n) ? "" : "differs" },
          h("th", {}, label(n)), h("td", {}, cell(r.data?.[n], n)), h("td", {}, cell(r.server.data?.[n], n)))))),
      h("div", { class: "row" },
        h("button", { type: "button", class: "primary keep-mine", onclick: async () => {
          await store.resolveConflict(r.id, "mine");
          syncNow({ manual: true });
        } }, t("outbox.keepMine")),
        h("button", { type: "button", class: "take-server", onclick: () => store.resolveConflict(r.id, "server") },
          t("outbox.takeServer"))));
  }

  onWhile(root, "sync", (detail) => showSync(detail));
  onWhile(root, "net", () => showSync());
  onWhile(root, "auth-expired", () => showSync());
  onWhile(root, "store", draw);
  onWhile(root, "persist", draw);
  showSync();
  await draw();
});
