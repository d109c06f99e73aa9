// Offline content: keep every playbook and form (both languages) in this user's offline read cache
// (offline.js), and refetch them when the server's content cursor grows (an admin saved a new version).
import { api, session } from "./api.js";
import { emit, on } from "./events.js";
import { net } from "./net.js";
import * as offline from "./offline.js";

const STATE = "od.content"; // {user, cursor, at}: what this device last saved, and when
const REFRESH_EVERY_MS = 5 * 60 * 1000;

let queue = Promise.resolve();
let waiting = null; // the refresh that has not started yet
let forceNext = false;

function saved() {
  try { return JSON.parse(localStorage.getItem(STATE) || "null"); } catch { return null; }
}

async function fetchAndKeep(path) {
  const data = await api(path);
  await offline.save(path, data);
  return data;
}

async function isComplete(cursor) {
  const paths = ["/api/playbooks", "/api/forms", ...cursor.documents.map((d) => `/api/${d.kind}s/${d.slug}`)];
  const found = await Promise.all(paths.map((p) => offline.saved(p)));
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
  const cursor = await api("/api/content/cursor"); // always live: it says whether the copies are current
  if (!force && last && last.user === user.id && last.cursor === cursor.cursor && await isComplete(cursor)) {
    return { cursor: cursor.cursor, fetched: 0 };
  }
  const [playbooks, forms] = await Promise.all([fetchAndKeep("/api/playbooks"), fetchAndKeep("/api/forms")]);
  const docs = [...playbooks.map((p) => `/api/playbooks/${p.slug}`), ...forms.map((f) => `/api/forms/${f.slug}`)];
  await Promise.all(docs.map(fetchAndKeep));
  localStorage.setItem(STATE, JSON.stringify({ user: user.id, cursor: cursor.cursor, at: new Date().toISOString() }));
  emit("content", { cursor: cursor.cursor });
  return { cursor: cursor.cursor, fetched: docs.length };
}

// When this device last saved the content for this user (ISO time), or null.
export function savedAt() {
  const last = saved();
  return last && last.user === session.user?.id ? last.at : null;
}

// Logout: the saved copies themselves go with the user's offline cache (offline.forget).
export function forgetContent() {
  localStorage.removeItem(STATE);
}

// One playbook or form (or a list): from the server when it answers, else the saved copy.
export const loadContent = (path) => offline.load(path);

function refreshQuietly() {
  refreshContent().catch((error) => console.warn("content refresh", error));
}

export function start() {
  on("login", () => refreshContent({ force: true }).catch((e) => console.warn(e)));
  on("online", refreshQuietly);
  // A sync answer said an admin published a playbook or form (or the contact directory): fetch it now.
  on("changes", ({ changes }) => { if (changes.some((c) => c.kind === "content.updated")) refreshQuietly(); });
  setInterval(() => { if (net.online) refreshQuietly(); }, REFRESH_EVERY_MS);
  refreshQuietly();
}
