// Background Sync: the browser wakes the service worker when the network is back (even if the tab was in
// the background). Uploads need the page's login token and its IndexedDB queue logic, so the worker only
// asks every open page to run an upload now; with no page open, the next page load does it.
self.addEventListener("sync", (event) => {
  if (event.tag !== "od-sync") return;
  event.waitUntil((async () => {
    const pages = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    for (const page of pages) page.postMessage({ type: "od-sync" });
  })());
});
