// The upload engine: sends queued records to POST /api/sync in batches, one run at a time across tabs
// (Web Locks), retrying with capped exponential backoff and full jitter so hundreds of devices coming
// back at once don't stampede. The page does the uploads; the service worker only wakes it (sw/sync.js).
import { api, ApiError, session } from "./api.js";
import { sendAttempts } from "./attempts.js";
import { emit as announce, on } from "./events.js";
import { t } from "./i18n.js";
import { checkOnline, net } from "./net.js";
import * as store from "./store.js";
import { toast } from "./ui.js";

export const BATCH = 100;
const BASE_MS = 2000;
const CAP_MS = 5 * 60 * 1000;
const TICK_MS = 30 * 1000;

// Why an upload failed: a code the screens translate when they draw (the language may change later), the
// HTTP status (0: no answer), and the server's own words (problem detail, English) as secondary text.
export function failure(error) {
  const status = error instanceof ApiError ? error.status : 0;
  const type = (status && error.problem?.type) || "";
  const code = !status ? "network" : status === 401 ? "login" : status === 413 ? "tooLarge"
    : type.endsWith(":database-unavailable") ? "database"
    : type.endsWith(":busy") || type.endsWith(":server-busy") || status === 429 ? "busy"
    : status === 503 ? "unavailable" : "server";
  return { code, status, detail: status ? String(error.problem?.detail || error.message || "") : "" };
}

export function failureText(why) {
  return why ? t(`sync.why.${why.code}`, { status: why.status }) : "";
}

export function failureDetail(why) {
  return why?.detail ? t("sync.why.detail", { detail: why.detail }) : "";
}

// What the outbox shows; changes are announced on the "sync" topic. lastError: a failure() or null.
export const state = { running: false, done: 0, total: 0, lastSync: null, lastError: null, attempt: 0,
  nextAt: null, needsLogin: false };
let retryTimer = null;
let formsFetched = false;

function emit() {
  announce("sync", { ...state });
}

// Full jitter: a random wait between 0 and the capped exponential step.
export function backoffDelay(attempt, random = Math.random) {
  return Math.floor(random() * Math.min(CAP_MS, BASE_MS * 2 ** attempt));
}

function retryLater(why) {
  state.lastError = why;
  const delay = backoffDelay(state.attempt);
  state.attempt += 1;
  state.nextAt = Date.now() + delay;
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => syncNow(), delay);
  return "retry";
}

// Entry point for every trigger. manual (the button, a new login): forget the backoff and go now.
export async function syncNow({ manual = false } = {}) {
  if (manual) {
    state.attempt = 0;
    state.nextAt = null;
    clearTimeout(retryTimer);
  }
  if (!navigator.locks) return state.running ? "busy" : run();
  // One run at a time across tabs. A trigger during a run waits for it and then runs once more, so a record
  // queued at the very end of a run is not left for the timer; further triggers meanwhile share that wait.
  if (waiting) return waiting;
  const busy = state.running || (await navigator.locks.query()).held?.some((l) => l.name === "od-sync");
  if (busy && manual) toast(t("sync.busy"));
  waiting = navigator.locks.request("od-sync", () => {
    waiting = null;
    return run();
  });
  return waiting;
}
let waiting = null;

// After the agent queued something: upload soon, unless we are waiting out a backoff.
let soon = null;
export function requestSync() {
  clearTimeout(soon);
  soon = setTimeout(() => { if (!state.nextAt || Date.now() >= state.nextAt) syncNow(); }, 300);
}

function wire(r) {
  return { id: r.id, form: r.form, form_version: r.formVersion, rev: r.rev, captured_at: r.capturedAt,
    data: r.data, incident_id: r.incidentId ?? null, source: r.source || "device", sheet_id: r.sheetId ?? null,
    sheet_row: r.sheetRow ?? null };
}

// What this device still holds for the fleet view (leads see whose queue is left in a drawer).
async function holding(user) {
  const mine = await store.list({ user });
  const unsent = mine.filter((r) => r.status !== "draft" && store.UNSENT.includes(r.status));
  const oldest = unsent.reduce((t, r) => (!t || r.createdAt < t ? r.createdAt : t), null);
  return { unsent: unsent.length, drafts: mine.filter((r) => r.status === "draft").length,
    oldest_unsent_at: oldest ? new Date(oldest).toISOString() : null };
}

async function run() {
  if (!session.user) return "nouser";
  // Only the logged-in author's records go up, under their token; if the user changes mid-run (logout,
  // another login on a shared phone), the run stops and the next user's engine starts afresh.
  const user = session.user.id;
  const stillMine = () => session.user?.id === user;
  state.running = true;
  state.done = 0;
  emit();
  try {
    // A page closed mid-upload leaves "sending": the server may or may not have it; resending is safe.
    const stuck = await store.list({ statuses: ["sending"], user });
    await store.putAll(stuck.map((r) => ({ ...r, status: "queued", sentRev: Math.max(r.sentRev, r.rev) })));
    state.total = (await store.counts({ user })).pending;
    if (!session.token) {
      state.needsLogin = true;
      return "login";
    }
    if (!(await checkOnline())) return retryLater({ code: "network", status: 0, detail: "" });
    if (!formsFetched) await refreshForms();
    const device = await store.deviceId();
    let cursor = await store.getMeta(`cursor:${user}`);
    let size = BATCH;
    for (let round = 0; round < 100000; round += 1) {
      if (!stillMine()) return "nouser";
      const batch = (await store.list({ statuses: store.PENDING, user })).reverse().slice(0, size);
      const sending = batch.map((r) => ({ ...r, status: "sending", sentRev: Math.max(r.sentRev, r.rev) }));
      await store.putAll(sending);
      let answer;
      try {
        answer = await api("/api/sync", { method: "POST", timeout: 60000,
          body: { device_id: device, cursor, records: sending.map(wire), device: await holding(user) } });
      } catch (error) {
        const why = failure(error);
        const { status } = why;
        if (status === 413 && size > 1) { // too big for this server: smaller batches
          size = Math.max(1, Math.floor(size / 2));
          await settle(sending, { status: "queued" });
          continue;
        }
        // reason: the text at the time (older screens and exports read it); failure: drawn in today's language.
        await settle(sending, { status: status === 401 ? "queued" : "failed", reason: failureText(why), failure: why });
        if (status === 401) {
          state.needsLogin = true; // recording goes on; the queue waits for the next login
          state.lastError = why;
          return "login";
        }
        if (!status) await checkOnline();
        return retryLater(why);
      }
      await apply(sending, answer.results);
      cursor = answer.cursor;
      await store.setMeta(`cursor:${user}`, cursor);
      if (answer.changes.length) await applyChanges(answer.changes);
      state.done += batch.length;
      state.total = Math.max(state.total, state.done);
      emit();
      if (!batch.length && !answer.more_changes) break;
    }
    // Callback attempts ride the same run: same retries, same backoff, same "login expired" handling.
    try {
      if (stillMine()) await sendAttempts();
    } catch (error) {
      const why = failure(error);
      if (why.status === 401) { state.needsLogin = true; state.lastError = why; return "login"; }
      return retryLater(why);
    }
    state.lastSync = new Date().toISOString();
    await store.setMeta("lastSync", state.lastSync);
    Object.assign(state, { attempt: 0, nextAt: null, lastError: null, needsLogin: false });
    return "done";
  } finally {
    state.running = false;
    emit();
  }
}

// No answer: put the batch back in the queue, except records the agent edited during the upload.
async function settle(sent, patch) {
  const current = await Promise.all(sent.map((r) => store.get(r.id)));
  await store.putAll(current.filter((r, i) => r && r.rev === sent[i].rev && r.status === "sending")
    .map((r) => ({ ...r, ...patch })));
}

// Record the server's answer on each record, unless the agent edited it meanwhile (a newer rev waits).
async function apply(sent, results) {
  const updates = [];
  for (const result of results) {
    const mine = sent[result.index];
    const current = (await store.get(mine.id)) || mine;
    if (current.rev !== mine.rev) continue;
    const next = { ...current, reason: null, failure: null, errors: null, server: null };
    if (["created", "updated", "duplicate"].includes(result.status)) {
      Object.assign(next, { status: "synced", receipt: result.receipt, receivedAt: result.received_at,
        syncedAt: new Date().toISOString() });
    } else if (result.status === "conflict") {
      Object.assign(next, { status: "conflict", server: result.server, reason: result.message });
    } else {
      // Rejected: not stored, so this rev may be fixed and sent again.
      Object.assign(next, { status: "rejected", errors: result.errors, reason: result.message,
        sentRev: Math.max(0, mine.rev - 1) });
    }
    updates.push(next);
  }
  await store.putAll(updates);
}

async function applyChanges(changes) {
  const updates = [];
  for (const change of changes) {
    if (change.kind === "record.status" && change.ref) {
      const record = await store.get(change.ref);
      // After recovery a lead marks records re-entered into the CRM or closed: show it on the device too.
      if (record) updates.push({ ...record, reentryStatus: change.payload.reentry_status ?? null,
        crmRef: change.payload.crm_ref ?? null });
    }
    if (change.kind === "content.updated") await refreshForms();
  }
  await store.putAll(updates);
  announce("changes", { changes });
}

// Keep every form definition (both languages) on the device, so forms open offline.
export async function refreshForms() {
  try {
    for (const definition of await api("/api/forms")) await store.saveForm(definition);
    formsFetched = true;
  } catch { /* next run */ }
}

// ---------------------------------------------------------------- export of unsent records

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// The server's CSV rules (backend/reentry.py), so both files open the same in Excel and WPS:
// - a cell starting with = + - @ (or tab, CR) would run as a formula: a leading apostrophe keeps it text;
// - text that looks like a number (a phone number 13712345678, 010-8888 6666) gets it too, or it would
//   become 1.37E+10 or a date;
// - times are the site's wall clock, 2026-11-20 10:00:00 (a real date-time there), one zone for the file;
// - a field that does not apply (call back by, when no callback was promised) is empty.
const FORMULA = /^[=+\-@\t\r]/;
const NUMBER_LIKE = /^[\d\s().+\-/]+$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/;
const NOT_PROMISED = { callback_due: "callback_promised" }; // shown only when the other field is true

export function sheetTime(iso, zone = session.user?.site_time_zone || "Asia/Shanghai") {
  const when = new Date(iso);
  if (Number.isNaN(when.getTime())) return String(iso);
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", { timeZone: zone, year: "numeric",
    month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" })
    .formatToParts(when).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}:${parts.second}`;
}

export function csvCell(value) {
  if (value === null || value === undefined) return "";
  let text = typeof value === "object" ? JSON.stringify(value) : String(value);
  if (typeof value === "string" && ISO_TIME.test(text)) text = sheetTime(text);
  else if (typeof value === "string" && (FORMULA.test(text) || (text && NUMBER_LIKE.test(text)))) text = `'${text}`;
  else if (FORMULA.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCsv(records) {
  const fixed = ["id", "status", "form", "formVersion", "rev", "capturedAt", "incidentId", "source", "sheetId",
    "sheetRow", "reason"];
  const fields = [...new Set(records.flatMap((r) => Object.keys(r.data || {})))];
  const applies = (r, f) => !NOT_PROMISED[f] || r.data?.[NOT_PROMISED[f]] === true;
  const lines = [[...fixed, ...fields].join(",")];
  for (const r of records) {
    lines.push([...fixed.map((k) => r[k]), ...fields.map((f) => (applies(r, f) ? r.data?.[f] : null))]
      .map(csvCell).join(","));
  }
  return "\uFEFF" + lines.join("\r\n") + "\r\n"; // BOM: Excel opens Chinese text correctly
}

// Everything on this device not yet acknowledged by the server, as JSON and CSV files.
export async function exportUnsent() {
  const records = (await store.list({ statuses: store.UNSENT, user: null })).reverse();
  const stamp = sheetTime(new Date().toISOString()).slice(0, 16).replace(/[-: ]/g, "").replace(/^(\d{8})/, "$1-");
  const body = { exported_at: new Date().toISOString(), device_id: await store.deviceId(),
    user: session.user?.username ?? null, records };
  download(`outage-desk-unsent-${stamp}.json`, "application/json", JSON.stringify(body, null, 2));
  download(`outage-desk-unsent-${stamp}.csv`, "text/csv;charset=utf-8", toCsv(records));
  return records.length;
}

// Logout and the outbox's "clear data": export unsent work first (a file the agent keeps). The records stay
// on the device, queued under their author, and upload when that author next logs in.
export async function exportBeforeLeaving() {
  const unsent = (await store.counts({ user: null })).unsent;
  if (unsent) {
    await exportUnsent();
    toast(t("sync.exported", { n: unsent }));
  }
  return true;
}

// ---------------------------------------------------------------- triggers

let tick = null;

async function somethingWaiting() {
  return (await store.counts()).pending > 0 || (await store.attempts()).length > 0;
}

export function start() {
  if (tick) return;
  store.getMeta("lastSync").then((v) => { state.lastSync = v; emit(); }).catch(() => {});
  // Back online: go within a few seconds, at a random moment, so a whole floor doesn't hit the server at once.
  on("online", () => setTimeout(() => syncNow(), Math.random() * 3000));
  on("login", () => { state.needsLogin = false; formsFetched = false; syncNow({ manual: true }); });
  on("auth-expired", () => { state.needsLogin = true; emit(); });
  // Background Sync: the service worker wakes the page (sw/sync.js) when the network is back.
  navigator.serviceWorker?.addEventListener("message", (event) => {
    if (event.data?.type === "od-sync") syncNow();
  });
  tick = setInterval(async () => {
    if (state.running || !session.user || (state.nextAt && Date.now() < state.nextAt)) return;
    if (net.online === false || await somethingWaiting()) syncNow();
  }, TICK_MS);
  if (session.user) syncNow(); // page load
}

// Logout: no retry timer may fire for the user who left (the next login starts the engine afresh).
export function stop() {
  clearTimeout(retryTimer);
  clearTimeout(soon);
  Object.assign(state, { attempt: 0, nextAt: null, lastError: null, needsLogin: false, done: 0, total: 0 });
  formsFetched = false;
  emit();
}
