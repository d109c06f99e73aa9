// The page's message bus: every topic one module announces and others follow is listed here, so the whole
// conversation between modules can be read in one place (they used to be window CustomEvents, spread out).
export const TOPICS = {
  login: "a user logged in (detail: the user)",
  logout: "the user logged out; their cached reads are gone",
  "auth-expired": "the server refused the token (401); the user stays known, offline work goes on",
  online: "the server answers again (net.js probe)",
  offline: "the server stopped answering",
  net: "the online state changed either way (for indicators)",
  store: "records changed in IndexedDB, here or in another tab (detail: {ids})",
  persist: "the browser answered the persistent-storage request (detail: {granted})",
  sync: "the upload engine's state changed (detail: a copy of sync.state)",
  changes: "the sync answer carried changes from the server (detail: {changes})",
  content: "new playbook/form versions were saved on the device (detail: {cursor})",
  notification: "a push message arrived while the page is open (detail: its payload)",
  inbox: "something this user did may have added a notification: redraw the inbox",
  rerender: "redraw the current screen",
  install: "the browser offered (or withdrew) installing the app (pwa.js)",
};

const handlers = new Map(Object.keys(TOPICS).map((topic) => [topic, new Set()]));

function listeners(topic) {
  const set = handlers.get(topic);
  if (!set) throw new Error(`unknown topic ${topic}`); // a typo must fail loudly, not go unheard
  return set;
}

// on("sync", fn) returns a function that stops listening.
export function on(topic, fn) {
  listeners(topic).add(fn);
  return () => listeners(topic).delete(fn);
}

// One failing listener must not keep the others from hearing it.
export function emit(topic, detail) {
  for (const fn of [...listeners(topic)]) {
    try {
      const result = fn(detail);
      if (result && typeof result.catch === "function") result.catch((error) => console.error(topic, error));
    } catch (error) {
      console.error(topic, error);
    }
  }
}

// Listen only while a screen's element is on the page (screens re-render on every route).
export function onWhile(element, topic, fn) {
  const off = on(topic, (detail) => {
    if (!element.isConnected) off();
    else return fn(detail);
  });
  return off;
}
