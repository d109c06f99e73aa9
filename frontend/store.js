// The device's record store (IndexedDB). The device is the source of truth until the server acknowledges:
// nothing is ever deleted here before it is synced, and the queue never expires.
//
// A record: {id, userId, form, formVersion, incidentId, source, sheetId, sheetRow, rev, sentRev, data,
//   capturedAt, createdAt, updatedAt, status, reason, receipt, receivedAt, syncedAt, errors, server}
// status: draft | queued | sending | failed (reason) | synced (receipt) | conflict (server) | rejected (errors)
import { session } from "./api.js";
import { open } from "./db.js";
import { emit } from "./events.js";
import { toIso } from "./formview.js";

export const STATUSES = ["draft", "queued", "sending", "failed", "synced", "conflict", "rejected"];
export const UNSENT = ["draft", "queued", "sending", "failed", "conflict", "rejected"];
export const PENDING = ["queued", "sending", "failed"]; // what an upload run sends

let channel = null; // other tabs' writes, from start()

const done = (request) => new Promise((resolve, reject) => {
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});

// Run fn(stores) in one transaction; resolves after the transaction is durable (committed).
async function tx(names, mode, fn) {
  const db = await open();
  const t = db.transaction(names, mode, { durability: "strict" });
  const stores = Object.fromEntries([names].flat().map((n) => [n, t.objectStore(n)]));
  const result = await fn(stores);
  await new Promise((resolve, reject) => {
    t.oncomplete = resolve;
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error || new Error("transaction aborted"));
  });
  return result;
}

function changed(ids) {
  emit("store", { ids });
  channel?.postMessage({ ids });
}

// Hear other tabs' writes as if they were ours (the outbox and form counters follow them).
export function start() {
  if (channel || !("BroadcastChannel" in window)) return;
  channel = new BroadcastChannel("od-store");
  channel.addEventListener("message", (event) => emit("store", event.data));
}

const now = () => new Date().toISOString();

// ---------------------------------------------------------------- records

export function newDraft({ form, formVersion, incidentId = null, source = "device", sheetId = null,
  sheetRow = null, id = null, data = {} }) {
  const at = now();
  return {
    id: id || crypto.randomUUID(), userId: session.user?.id ?? null, form, formVersion, incidentId, source,
    sheetId, sheetRow, rev: 1, sentRev: 0, data, capturedAt: toIso(new Date()), createdAt: at, updatedAt: at,
    status: "draft", reason: null, receipt: null, receivedAt: null, syncedAt: null, errors: null, server: null,
  };
}

export async function get(id) {
  return tx("records", "readonly", (s) => done(s.records.get(id)));
}

// Records of the logged-in user (all users when user is null), newest first.
export async function list({ statuses = null, user = session.user?.id ?? null } = {}) {
  const all = await tx("records", "readonly", (s) => done(s.records.getAll()));
  return all.filter((r) => (user === null || r.userId === user) && (!statuses || statuses.includes(r.status)))
    .sort((a, b) => (a.createdAt < b.createdAt ? 1 : -1));
}

export async function counts({ user = session.user?.id ?? null } = {}) {
  const out = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const r of await list({ user })) out[r.status] += 1;
  out.unsent = UNSENT.reduce((n, s) => n + out[s], 0);
  out.pending = PENDING.reduce((n, s) => n + out[s], 0);
  return out;
}

// Put whole records (one transaction); used by the sync engine too.
export async function putAll(records) {
  if (!records.length) return;
  await tx("records", "readwrite", (s) => { for (const r of records) s.records.put(r); });
  changed(records.map((r) => r.id));
}

// An edit after the server may have seen this rev must become a new rev, or it would conflict.
function editable(record) {
  return record.sentRev >= record.rev ? { ...record, rev: record.sentRev + 1 } : { ...record };
}

export async function saveDraft(record, data) {
  const current = (await get(record.id)) || record;
  // Editing a reopened record makes it a draft again: the agent reviews it and queues it once more.
  const next = { ...editable(current), status: "draft" };
  Object.assign(next, { data, updatedAt: now() });
  await putAll([next]);
  askPersistence().catch(() => {}); // not awaited: a slow permission answer must not hold up saving
  return next;
}

export async function queue(record, data = record.data) {
  const current = (await get(record.id)) || record;
  const next = editable(current);
  Object.assign(next, { data, status: "queued", reason: null, errors: null, server: null, updatedAt: now() });
  await putAll([next]);
  askPersistence().catch(() => {}); // not awaited: a slow permission answer must not hold up saving
  registerBackgroundSync();
  return next;
}

// Conflict: keep mine = resend my data as a rev above the server's; take server's = adopt the server copy.
export async function resolveConflict(id, choice) {
  const r = await get(id);
  if (!r || r.status !== "conflict" || !r.server) return r;
  const s = r.server;
  const next = choice === "mine"
    ? { ...r, rev: Math.max(r.rev, s.rev) + 1, status: "queued", server: null, reason: null, updatedAt: now() }
    : { ...r, rev: s.rev, sentRev: s.rev, data: s.data, form: s.form, formVersion: s.form_version,
      incidentId: s.incident_id, status: "synced", receipt: s.receipt, receivedAt: s.received_at,
      syncedAt: now(), server: null, reason: null, updatedAt: now() };
  await putAll([next]);
  if (choice === "mine") registerBackgroundSync();
  return next;
}

// Drafts nobody typed into are not worth keeping; everything else stays.
export async function discardDraft(id) {
  const r = await get(id);
  if (!r || r.status !== "draft" || r.sentRev > 0) return false;
  await tx("records", "readwrite", (s) => s.records.delete(id));
  changed([id]);
  return true;
}

// Remove synced records only (the server holds them); never an unsent one.
export async function clearSynced() {
  const synced = await list({ statuses: ["synced"] });
  await tx("records", "readwrite", (s) => { for (const r of synced) s.records.delete(r.id); });
  changed(synced.map((r) => r.id));
  return synced.length;
}

// ---------------------------------------------------------------- callback attempts

// Kept until the server has answered for them, like records; each has its own id, so resending is harmless.
export async function addAttempts(attempts) {
  if (!attempts.length) return;
  await tx("attempts", "readwrite", (s) => { for (const a of attempts) s.attempts.put(a); });
  changed([]);
}

// The logged-in user's waiting attempts (all users' when user is null), oldest first.
export async function attempts({ user = session.user?.id ?? null } = {}) {
  const all = await tx("attempts", "readonly", (s) => done(s.attempts.getAll()));
  return all.filter((a) => user === null || a.userId === user)
    .sort((a, b) => (a.attempted_at < b.attempted_at ? -1 : 1));
}

export async function removeAttempts(ids) {
  if (!ids.length) return;
  await tx("attempts", "readwrite", (s) => { for (const id of ids) s.attempts.delete(id); });
  changed([]);
}

// ---------------------------------------------------------------- meta and form definitions

export async function getMeta(key, fallback = null) {
  const row = await tx("meta", "readonly", (s) => done(s.meta.get(key)));
  return row ? row.value : fallback;
}

export async function setMeta(key, value) {
  await tx("meta", "readwrite", (s) => s.meta.put({ key, value }));
}

export async function deviceId() {
  let id = await getMeta("deviceId");
  if (!id) {
    id = crypto.randomUUID();
    await setMeta("deviceId", id);
  }
  return id;
}

export async function saveForm(definition) {
  await tx("forms", "readwrite", (s) => {
    s.forms.put({ key: `${definition.slug}@${definition.version}`, definition });
    s.forms.put({ key: `${definition.slug}@latest`, definition });
  });
}

export async function cachedForm(slug, version = null) {
  const row = await tx("forms", "readonly", (s) => done(s.forms.get(`${slug}@${version ?? "latest"}`)));
  return row ? row.definition : null;
}

// ---------------------------------------------------------------- durability of the device's storage

// Ask once, when the first record is saved; remember the answer for the warning.
export async function askPersistence() {
  if (await getMeta("persist") !== null) return;
  let granted = false;
  try {
    granted = navigator.storage?.persist ? await navigator.storage.persist() : false;
  } catch { granted = false; }
  await setMeta("persist", granted);
  emit("persist", { granted });
}

export async function persistence() {
  if (navigator.storage?.persisted && await navigator.storage.persisted()) return true;
  return getMeta("persist");
}

export async function registerBackgroundSync() {
  try {
    const registration = await navigator.serviceWorker?.ready;
    if (registration?.sync) await registration.sync.register("od-sync");
  } catch { /* no Background Sync here: the page's own triggers cover it */ }
}
