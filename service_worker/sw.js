// Outage Desk service worker. The server prepends `self.__BUILD__ = {version, assets}`:
// the version is a hash of the shipped files, so a changed file means new caches, no manual bumps.
// Background Sync (records) and Web Push (incidents) live in their own files.
importScripts("/sw/sync.js", "/sw/push.js");

const BUILD = self.__BUILD__ || { version: "dev", assets: ["/"] };
const SHELL = `od-shell-${BUILD.version}`;
// API data is NOT versioned with the shell: an app update while offline must not lose the playbooks and
// forms the device saved. The page (frontend/content.js) uses the same name when it primes the cache itself.
const API = "od-api-v1";
const API_TIMEOUT_MS = 3000;
// Never answered from a cache: the online probe, logins, and the build info the page compares against.
const LIVE_ONLY = ["/api/health", "/api/auth/", "/api/build"];

self.addEventListener("install", (event) => {
  // cache: "reload" skips the HTTP cache, so the shell cache holds exactly this build's files.
  event.waitUntil(caches.open(SHELL).then((cache) =>
    cache.addAll(BUILD.assets.map((url) => new Request(url, { cache: "reload" })))));
  // No skipWaiting here: the page asks for it when the user taps "reload" (unsent work comes first).
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith("od-shell-") && name !== SHELL) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener("message", (event) => {
  const type = event.data && event.data.type;
  if (type === "SKIP_WAITING") self.skipWaiting();
  if (type === "VERSION" && event.ports[0]) event.ports[0].postMessage({ version: BUILD.version });
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return; // never touch uploads
  const url = new URL(request.url);
  if (url.origin !== location.origin) return;
  if (url.pathname.startsWith("/api/")) {
    if (request.cache === "no-store" || LIVE_ONLY.some((p) => url.pathname.startsWith(p))) return;
    event.respondWith(networkFirst(event, request));
    return;
  }
  event.respondWith(shellFirst(request, url));
});

// The app shell: this build's cache first; anything not precached comes from the network.
async function shellFirst(request, url) {
  const cache = await caches.open(SHELL);
  const isIndex = request.mode === "navigate" ? url.pathname === "/" || url.pathname === "/index.html"
    : url.pathname === "/";
  const cached = await cache.match(isIndex ? "/" : request, { ignoreSearch: isIndex });
  return cached || fetch(request);
}

// API GETs: the server's answer when it comes within API_TIMEOUT_MS, else the saved copy (keyed by URL).
// A slow answer still lands in the cache for next time; with no saved copy we wait for the network.
async function networkFirst(event, request) {
  const network = fetch(request);
  // Registered now, while the event is live: the copy is saved even after a cached answer went out.
  event.waitUntil(network.then(async (response) => {
    if (response.status !== 200) return;
    const copy = response.clone(); // before the page starts reading the body
    await (await caches.open(API)).put(request.url, copy);
  }).catch(() => {}));
  const saved = () => caches.open(API).then((cache) => cache.match(request.url, { ignoreVary: true }));
  const timeout = new Promise((resolve) => setTimeout(resolve, API_TIMEOUT_MS, "timeout"));
  try {
    const first = await Promise.race([network, timeout]);
    if (first !== "timeout") return first;
    return (await saved()) || await network;
  } catch (error) {
    const cached = await saved();
    if (cached) return cached;
    throw error;
  }
}
