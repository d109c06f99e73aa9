// App updates: when a new service worker (a new build) is waiting, offer "reload". Nothing reloads by itself:
// the agent may be mid-call with a half-filled form. On tap, unsent work is flushed first (window.odBeforeReload,
// a hook for whoever holds unsent work; returning false cancels), then the new worker takes over.
import { t } from "./i18n.js";
import { emit, on } from "./events.js";
import { h } from "./ui.js";

const CHECK_EVERY_MS = 30 * 60 * 1000;
let userAskedReload = false;
let prompt = null;

function showPrompt(worker) {
  prompt?.remove();
  const reload = h("button", { type: "button", class: "primary", onclick: async () => {
    reload.disabled = true;
    const before = window.odBeforeReload;
    try {
      if (before && (await before()) === false) { reload.disabled = false; return; }
    } catch (error) {
      console.error("odBeforeReload", error);
      reload.disabled = false;
      return; // could not secure unsent work: do not reload
    }
    userAskedReload = true;
    worker.postMessage({ type: "SKIP_WAITING" });
  } }, t("update.reload"));
  prompt = h("div", { id: "update", class: "update-banner", role: "status", "aria-live": "polite" },
    h("p", {}, h("strong", {}, t("update.available")), " ", t("update.safe")),
    h("div", { class: "row" }, reload,
      h("button", { type: "button", class: "secondary", onclick: () => { prompt.remove(); prompt = null; } },
        t("update.later"))));
  document.querySelector(".topbar").after(prompt);
}

function watch(registration) {
  const offer = (worker) => { if (worker && navigator.serviceWorker.controller) showPrompt(worker); };
  const track = (worker) => worker?.addEventListener("statechange", () => {
    if (worker.state === "installed") offer(worker);
  });
  offer(registration.waiting);
  track(registration.installing);
  registration.addEventListener("updatefound", () => track(registration.installing));
  const check = () => registration.update().catch(() => {});
  on("online", check);
  setInterval(check, CHECK_EVERY_MS);
}

// Installing: Chromium offers a prompt (beforeinstallprompt), kept here until the user taps "install";
// iOS Safari has none, so there the steps are shown instead. Installed (standalone) shows nothing.
let installPrompt = null;

const standalone = () => matchMedia("(display-mode: standalone)").matches || navigator.standalone === true;
const iosSafari = () => /iP(hone|ad|od)/.test(navigator.userAgent) && !/CriOS|FxiOS|EdgiOS/.test(navigator.userAgent);

// A small block for a screen: the install button, or the iOS steps, or nothing; it follows the browser's offer.
export function installControl() {
  const box = h("div", { class: "install" });
  const draw = () => {
    if (standalone()) return box.replaceChildren();
    if (installPrompt) {
      return box.replaceChildren(h("button", { type: "button", class: "primary install-button", onclick: async () => {
        const offer = installPrompt;
        installPrompt = null;
        await offer.prompt();
        await offer.userChoice.catch(() => null);
        emit("install");
      } }, t("install.button")));
    }
    box.replaceChildren(...(iosSafari() ? [h("p", { class: "muted install-ios" }, t("install.ios"))] : []));
  };
  draw();
  const off = on("install", () => (box.isConnected ? draw() : off()));
  return box;
}

// Register the service worker and watch for new builds.
export function start() {
  window.addEventListener("beforeinstallprompt", (event) => {
    event.preventDefault(); // our own button, shown where it helps, instead of the browser's mini-bar
    installPrompt = event;
    emit("install");
  });
  window.addEventListener("appinstalled", () => { installPrompt = null; emit("install"); });
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((e) => console.warn("service worker", e));
  // The first install also changes the controller (clients.claim): only a tapped "reload" reloads.
  navigator.serviceWorker.addEventListener("controllerchange", () => { if (userAskedReload) location.reload(); });
  navigator.serviceWorker.ready.then(watch);
}

// The build this page runs under (the active worker's cache version), for support and tests.
export async function appVersion() {
  const worker = navigator.serviceWorker?.controller;
  if (!worker) return null;
  const channel = new MessageChannel();
  const answer = new Promise((resolve) => { channel.port1.onmessage = (event) => resolve(event.data.version); });
  worker.postMessage({ type: "VERSION" }, [channel.port2]);
  return answer;
}
