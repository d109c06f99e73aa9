// Outage Desk service worker. The server prepends `self.__BUILD__ = {version, assets}`:
// the version is a hash of the shipped files, so a changed file means new caches, no manual bumps.
// Background Sync (records) and Web Push (incidents) live in their own files.
importScripts("/sw/sync.js", "/sw/push.js");

const BUILD = self.__BUILD__ || { version: "dev", assets: ["/"] };
const SHELL = `od-shell-${BUILD.version}`;

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(BUILD.assets)));
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name.startsWith("od-shell-") && name !== SHELL) await caches.delete(name);
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return; // never touch uploads
  const url = new URL(request.url);
  if (url.origin !== location.origin || url.pathname.startsWith("/api/")) return;
  event.respondWith((async () => {
    const cached = await caches.match(url.pathname === "/" || url.pathname === "/index.html" ? "/" : request,
      { ignoreSearch: true });
    return cached || fetch(request);
  })());
});
