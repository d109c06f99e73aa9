// Outage Desk service worker. The server prepends `self.__BUILD__ = {version, assets}`:
// the version is a hash of the shipped files, so a changed file means new caches, no manual bumps.
// Background Sync (records) and Web Push (incidents) live in their own files.
importScripts("/sw/sync.js", "/sw/push.js");

const BUILD = self.__BUILD__ || { version: "dev", assets: ["/"] };
const SHELL = `od-shell-${BUILD.version}`;
// API answers are never cached here: the page keeps them per user (frontend/offline.js), so one person's
// records can never be served to the next person on a shared device. This old shared cache is dropped.
const LEGACY_API_CACHE = "od-api-v1";

self.addEventListener("install", (event) => {
  // cache: "no-cache" revalidates with the server: what the page has just downloaded comes back as a 304
  // (every shell answer is tagged with the build version), so a first visit downloads the shell once, and
  // the shell cache still holds exactly this build's files.
  event.waitUntil(caches.open(SHELL).then((cache) =>
    cache.addAll(BUILD.assets.map((url) => new Request(url, { cache: "no-cache" })))));
  // Static routes (Chromium 123+) answer without waking the worker, which on a cold start would otherwise
  // be started and asked once per shell file: the API straight to the network (the fetch handler leaves it
  // alone too), the shell's files and the index from this build's cache, a miss from the network. Other
  // browsers, and an index with a query string, go through the fetch handler below, which does the same.
  if (event.addRoutes) {
    const shell = { cacheName: SHELL };
    event.addRoutes([
      { condition: { urlPattern: { pathname: "/api/*" } }, source: "network" },
      { condition: { urlPattern: { pathname: "/static/*" }, requestMethod: "get" }, source: shell },
      { condition: { urlPattern: { pathname: "/", search: "" }, requestMode: "navigate" }, source: shell },
    ]).catch((error) => console.warn("static routes", error));
  }
  // No skipWaiting here: the page asks for it when the user taps "reload" (unsent work comes first).
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if ((name.startsWith("od-shell-") && name !== SHELL) || name === LEGACY_API_CACHE) await caches.delete(name);
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
  if (url.pathname.startsWith("/api/")) return; // live, always (offline copies: frontend/offline.js)
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
