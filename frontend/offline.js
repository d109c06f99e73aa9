// The one offline read cache: "the server's answer, else this user's saved copy", for every screen.
//
// Saved copies live in a Cache Storage cache per user (od-api-u<id>), so on a shared tablet the next
// person to log in reads only their own cache and never sees the last person's records, callbacks,
// inbox or incidents; logout deletes the cache and a login deletes every other user's. The service
// worker does not cache API answers at all (it only serves the app shell): one place decides what is kept.
import { api, ApiError, session } from "./api.js";

const PREFIX = "od-api-u";
const LEGACY_CACHE = "od-api-v1"; // the old cache shared by every user: never read, deleted on start
const LEGACY_KEYS = /^od\.(inc\.|cb\.list\.|inbox\.)/; // the screens' old localStorage copies
const SAVED_AT = "x-od-saved-at";
const SLOW_MS = 3000; // a server slower than this: show the saved copy now, save the late answer for next time

export function cacheName(userId = session.user?.id) {
  return userId === undefined || userId === null ? null : `${PREFIX}${userId}`;
}

function cacheStorage() {
  return "caches" in window ? caches : null;
}

// Keep one answer as this user's saved copy of path, with the time it was saved.
export async function save(path, data, userId = session.user?.id) {
  const name = cacheName(userId);
  if (!name || !cacheStorage()) return;
  const body = new Response(JSON.stringify(data), { headers: {
    "Content-Type": "application/json", [SAVED_AT]: new Date().toISOString() } });
  try {
    await (await caches.open(name)).put(path, body);
  } catch (error) {
    console.warn("offline copy", path, error); // storage full: the live view still works
  }
}

// This user's saved copy of path: {data, savedAt} or null.
export async function saved(path, userId = session.user?.id) {
  const name = cacheName(userId);
  if (!name || !cacheStorage() || !(await caches.has(name))) return null;
  const response = await (await caches.open(name)).match(path);
  if (!response) return null;
  return { data: await response.json(), savedAt: response.headers.get(SAVED_AT) };
}

// Fall back to the saved copy when the server could not answer (no network, timeout, 5xx) or the login
// expired (401/403: an agent must still read the playbook); a real "no" such as 404 or 422 is shown as is.
function worthFallingBack(error) {
  if (!(error instanceof ApiError)) return true;
  return error.status === 401 || error.status === 403 || error.status >= 500;
}

// The live answer (saved for later) or the saved copy: {data, savedAt}; savedAt is null when live.
// Throws the original error when there is nothing saved (screens tell "offline" by fetch's TypeError).
export async function read(path, options = {}) {
  const userId = session.user?.id;
  const live = api(path, options).then(async (data) => {
    await save(path, data, userId);
    return { data, savedAt: null };
  });
  live.catch(() => {}); // when the saved copy went out first, a late failure is nobody's business
  const copy = saved(path, userId).catch(() => null);
  const slow = new Promise((resolve) => setTimeout(resolve, SLOW_MS, "slow"));
  try {
    const first = await Promise.race([live, slow]);
    if (first !== "slow") return first;
    return (await copy) || await live;
  } catch (error) {
    const fallback = worthFallingBack(error) ? await copy : null;
    if (fallback) return fallback;
    throw error;
  }
}

// Just the data, live or saved (content and lists that show no "saved at" note).
export async function load(path, options) {
  return (await read(path, options)).data;
}

// Logout: this user's saved copies go with them.
export async function forget(userId = session.user?.id) {
  const name = cacheName(userId);
  if (name && cacheStorage()) await caches.delete(name);
}

// A new login: nobody else's copies stay on the device (nor the old shared cache and localStorage copies).
export async function keepOnly(userId = session.user?.id) {
  for (const key of Object.keys(localStorage)) if (LEGACY_KEYS.test(key)) localStorage.removeItem(key);
  if (!cacheStorage()) return;
  const mine = cacheName(userId);
  for (const name of await caches.keys()) {
    if ((name.startsWith(PREFIX) && name !== mine) || name === LEGACY_CACHE) await caches.delete(name);
  }
}
