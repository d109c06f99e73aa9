// Web Push on this device and the inbox's unread badge.
// Permission is only ever asked from a button (a user gesture); once granted, the subscription is
// re-synced with the server on every load, so a server that lost it (or a new VAPID key) heals itself.
import { api, ApiError, session } from "./api.js";
import { emit, on } from "./events.js";

export function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

// "granted" | "denied" | "default" | "unsupported"
export function pushPermission() {
  return pushSupported() ? Notification.permission : "unsupported";
}

function keyBytes(base64url) {
  const base64 = base64url.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (base64url.length % 4)) % 4);
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

function sameKey(buffer, base64url) {
  if (!buffer) return false;
  const a = new Uint8Array(buffer);
  const b = keyBytes(base64url);
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function registration() {
  const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("service worker not ready")), 10000));
  return Promise.race([navigator.serviceWorker.ready, timeout]);
}

// The browser's push service (Google's for Chrome: unreachable in mainland China) may never answer: give up
// after this long and say so, instead of a button that greys out forever.
export const SUBSCRIBE_TIMEOUT_MS = 8000;

function unreachable() {
  return Object.assign(new Error("push service unreachable"), { code: "unreachable" });
}

// pushManager.subscribe() with a deadline; a push-service failure (AbortError "push service not available",
// a network error) becomes .code "unreachable" too.
function subscribeWithin(reg, key) {
  const timeout = new Promise((_, reject) => setTimeout(() => reject(unreachable()), SUBSCRIBE_TIMEOUT_MS));
  const attempt = reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) })
    .catch((error) => {
      if (error?.name === "NotAllowedError") throw Object.assign(error, { code: "denied" });
      throw Object.assign(unreachable(), { cause: error });
    });
  return Promise.race([attempt, timeout]);
}

// Subscribe (when allowed) and tell the server; returns the subscription or null.
async function subscribeAndSave() {
  const reg = await registration();
  const { public_key: key } = await api("/api/push/vapid-public-key");
  let sub = await reg.pushManager.getSubscription();
  if (sub && !sameKey(sub.options.applicationServerKey, key)) {
    await sub.unsubscribe(); // the server has a new VAPID key: the old subscription is useless
    sub = null;
  }
  const fresh = () => subscribeWithin(reg, key);
  if (!sub) sub = await fresh();
  try {
    await api("/api/push/subscriptions", { method: "POST", body: sub.toJSON() });
  } catch (error) {
    // 409: the server keeps this subscription for its owner (another site's login on a shared phone). A
    // browser holds one subscription per app: replace it with a new endpoint for this user; the old row then
    // answers "gone" at its next send and is removed.
    if (!(error instanceof ApiError) || error.status !== 409) throw error;
    await sub.unsubscribe();
    sub = await fresh();
    await api("/api/push/subscriptions", { method: "POST", body: sub.toJSON() });
  }
  return sub;
}

// From a button: ask permission, then subscribe. Throws with .code "denied" / "unsupported".
export async function enablePush() {
  if (!pushSupported()) throw Object.assign(new Error("unsupported"), { code: "unsupported" });
  const permission = await Notification.requestPermission();
  if (permission !== "granted") throw Object.assign(new Error("denied"), { code: "denied" });
  return subscribeAndSave();
}

export async function disablePush() {
  const reg = await registration();
  const sub = await reg.pushManager.getSubscription();
  if (!sub) return;
  try {
    await api(`/api/push/subscriptions?endpoint=${encodeURIComponent(sub.endpoint)}`, { method: "DELETE" });
  } finally {
    await sub.unsubscribe();
  }
}

export async function pushSubscribed() {
  if (!pushSupported()) return false;
  try { return Boolean(await (await registration()).pushManager.getSubscription()); } catch { return false; }
}

let synced = null;
export function syncPush() {
  if (!session.token || pushPermission() !== "granted") return Promise.resolve(null);
  if (!synced) synced = subscribeAndSave().catch((error) => { console.warn("push sync", error); synced = null; });
  return synced;
}

// ---------------------------------------------------------------- unread badge

let unread = 0;

function paintBadge() {
  const link = document.querySelector('#tabs a[href="#/inbox"]');
  if (!link) return;
  let badge = link.querySelector(".inbox-badge");
  if (!unread) { badge?.remove(); return; }
  if (!badge) {
    badge = document.createElement("span");
    badge.className = "inbox-badge";
    link.append(badge);
  }
  badge.textContent = unread > 99 ? "99+" : String(unread);
  badge.setAttribute("aria-label", String(unread));
}

export function setUnread(count) {
  unread = count;
  paintBadge();
  if ("setAppBadge" in navigator) (count ? navigator.setAppBadge(count) : navigator.clearAppBadge()).catch(() => {});
}

export async function refreshUnread() {
  if (!session.token) return setUnread(0);
  try {
    setUnread((await api("/api/inbox?unread=true&limit=1")).unread);
  } catch { /* offline: keep the last count */ }
}

// Logout on a shared phone: stop this user's escalations from popping up on it. (The browser keeps its
// subscription; whoever logs in next re-registers it under their own name.)
export async function forgetDevice() {
  try {
    const reg = pushSupported() && await navigator.serviceWorker.getRegistration();
    const sub = reg && await reg.pushManager.getSubscription();
    if (sub) await api(`/api/push/subscriptions?endpoint=${encodeURIComponent(sub.endpoint)}`, { method: "DELETE", timeout: 3000 });
  } catch { /* offline or already gone: the next login takes the subscription over */ }
  synced = null;
  setUnread(0);
}

let poll = null;

export function start() {
  if (poll) return;
  // The tab bar is redrawn on every navigation: put the badge back each time.
  const tabs = document.getElementById("tabs");
  if (tabs) new MutationObserver(paintBadge).observe(tabs, { childList: true });
  // A push arrived while the app is open (the service worker tells us): refresh what is on screen.
  navigator.serviceWorker?.addEventListener("message", (event) => {
    if (event.data?.type === "od:open") {
      const target = new URL(event.data.url);
      if (target.origin === location.origin) location.hash = target.hash;
    }
    if (event.data?.type !== "od:push") return;
    refreshUnread();
    emit("notification", event.data.payload);
  });
  on("login", () => { synced = null; syncPush(); refreshUnread(); });
  on("online", () => { syncPush(); refreshUnread(); });
  poll = setInterval(refreshUnread, 30000);
  syncPush();
  refreshUnread();
}
