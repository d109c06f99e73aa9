// Offline content: keep every playbook and form (both languages) in the cache the service worker reads,
// and refetch them when the server's content cursor grows (an admin saved a new version).
//
// The service worker cannot log in, so the page does the fetching with its token: the worker's
// network-first handler saves each answer under its URL. Until the worker controls the page (first visit),
// the page writes the copies itself, so content is offline-ready from the first visit.
import { api, ApiError, session } from "./api.js";
import { net } from "./net.js";

export const API_CACHE = "od-api-v1"; // same name as in service_worker/sw.js
const STATE = "od.content"; // {user, cursor, at}: what this device last saved, and when
const REFRESH_EVERY_MS = 5 * 60 * 1000;

let queue = Promise.resolve();
let waiting = null; // the refresh that has not started yet
let forceNext = false;

function saved() {
  try { return JSON.parse(localStorage.getItem(STATE) || "null"); } catch { return null; }
}

// cache: "no-store" makes the service worker pass the request through: the cursor must be the live one.
async function fetchJson(path, cache = "default") {
  const headers = { Accept: "application/json", Authorization: `Bearer ${session.token}` };
  const response = await fetch(path, { headers, cache, signal: AbortSignal.timeout(15000) });
  if (response.status === 401) {
    session.expire();
    window.dispatchEvent(new CustomEvent("od:auth-expired"));
  }
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => ({})));
  return response;
}

async function fetchAndKeep(path) {
  // Decided before fetching: a worker that takes control mid-request never sees this one.
  const viaWorker = Boolean(navigator.serviceWorker?.controller);
  const response = await fetchJson(path);
  if (!viaWorker && "caches" in window) {
    await (await caches.open(API_CACHE)).put(path, response.clone());
  }
  return response.json();
}

async function isComplete(cursor) {
  if (!("caches" in window)) return false;
  const cache = await caches.open(API_CACHE);
  const paths = ["/api/playbooks", "/api/forms", ...cursor.documents.map((d) => `/api/${d.kind}s/${d.slug}`)];
  const found = await Promise.all(paths.map((p) => cache.match(p, { ignoreVary: true })));
  return found.every(Boolean);
}

// Save everything once per cursor; returns {cursor, fetched} (fetched = how many documents were saved).
// One refresh at a time; a request made while one runs gets a fresh run after it (the news that made
// the request may be newer than the cursor the running one read), and requests meanwhile share that run.
export function refreshContent({ force = false } = {}) {
  forceNext ||= force;
  if (!waiting) {
    waiting = queue.then(() => {
      const forced = forceNext;
      forceNext = false;
      waiting = null;
      return refresh(forced);
    });
    queue = waiting.catch(() => {});
  }
  return waiting;
}

async function refresh(force) {
  const user = session.user;
  if (!session.token || !user || net.online === false) return { fetched: 0 };
  const last = saved();
  if (last && last.user !== user.id) await forgetContent(); // another person on a shared phone
  const cursor = await (await fetchJson("/api/content/cursor", "no-store")).json();
  if (!force && last && last.user === user.id && last.cursor === cursor.cursor && await isComplete(cursor)) {
    return { cursor: cursor.cursor, fetched: 0 };
  }
  const [playbooks, forms] = await Promise.all([fetchAndKeep("/api/playbooks"), fetchAndKeep("/api/forms")]);
  const docs = [...playbooks.map((p) => `/api/playbooks/${p.slug}`), ...forms.map((f) => `/api/forms/${f.slug}`)];
  await Promise.all(docs.map(fetchAndKeep));
  localStorage.setItem(STATE, JSON.stringify({ user: user.id, cursor: cursor.cursor, at: new Date().toISOString() }));
  window.dispatchEvent(new CustomEvent("od:content", { detail: { cursor: cursor.cursor } }));
  return { cursor: cursor.cursor, fetched: docs.length };
}

// When this device last saved the content (ISO time), or null.
export function savedAt() {
  return saved()?.at || null;
}

export async function forgetContent() {
  localStorage.removeItem(STATE);
  if ("caches" in window) await caches.delete(API_CACHE);
}

// One playbook or form (or a list): from the server when it answers, else the saved copy. The saved copy
// also serves when the login has expired (401): an agent must still be able to read the playbook.
export async function loadContent(path) {
  try {
    return await api(path);
  } catch (error) {
    if (error instanceof ApiError && error.status !== 401 && error.status !== 403) throw error;
    const cached = "caches" in window && await caches.match(path, { cacheName: API_CACHE, ignoreVary: true });
    if (cached) return cached.json();
    throw error;
  }
}

function refreshQuietly() {
  refreshContent().catch((error) => console.warn("content refresh", error));
}

window.addEventListener("od:login", () => refreshContent({ force: true }).catch((e) => console.warn(e)));
window.addEventListener("od:online", refreshQuietly);
setInterval(() => { if (net.online) refreshQuietly(); }, REFRESH_EVERY_MS);
refreshQuietly();
