// Boot: every module registers its routes at import, and nothing else; what listens or runs on a timer
// starts here, in this order, so the whole start-up can be read top to bottom.
import { ApiError, session } from "./api.js";
import * as attempts from "./attempts.js";
import * as content from "./content.js";
import { emit, on } from "./events.js";
import { lang, setLang, t } from "./i18n.js";
import { checkOnline, net as netState, setOnline } from "./net.js";
import * as offline from "./offline.js";
import * as push from "./push.js";
import * as pwa from "./pwa.js";
import * as running from "./running.js";
import { allScreens, laterScreens, match, navigate, renderTabs } from "./router.js";
import * as store from "./store.js";
import * as sync from "./sync.js";
import { h, keepFocusInSight, mount } from "./ui.js";
// The screens loaded with the app: the first one on a new device, home (the app's start page; its buttons
// and the tab bar are menu.js's table), and the call-record form an agent opens cold, offline. The others
// are imported right after the first screen is drawn (router.allScreens); a screen's start() runs once loaded.
import "./screens/login.js";
import "./screens/home.js";
import "./screens/form.js";

const LATER_SCREENS = ["outbox", "playbooks", "callbacks", "incidents", "inbox", "contacts", "channels", "recovery",
  "crm", "print", "transcribe", "admin", "editor", "fleet", "setup"];
laterScreens(async () => {
  const screens = await Promise.all(LATER_SCREENS.map((name) => import(`./screens/${name}.js`)));
  screens.forEach((screen) => screen.start?.());
});

const ONLINE_CHECK_MS = 15000;
const view = document.getElementById("view");
const net = document.getElementById("net");
const langButton = document.getElementById("lang");

function applyLanguage() {
  document.documentElement.lang = lang();
  // The button names the language it switches to, in that language (its visible text is its name).
  langButton.textContent = lang() === "en" ? "中文" : "English";
  langButton.lang = lang() === "en" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll("[data-i18n-label]").forEach((el) => el.setAttribute("aria-label", t(el.dataset.i18nLabel)));
  document.title = `${t("app.title")} · Outage Desk`;
}

function showNet() {
  const online = netState.online;
  net.className = `net ${online === null ? "checking" : online ? "online" : "offline"}`;
  net.textContent = t(online === null ? "net.checking" : online ? "net.online" : "net.offline");
}

// One message for an expired login, with the way out on it: this banner, except on the login screen itself
// and on the outbox, which says it in its own words beside the records it concerns.
const OWN_LOGIN_MESSAGE = ["#/login", "#/outbox"];

function showExpired() {
  const banner = document.getElementById("banner");
  banner.replaceChildren(t("login.expired"), " ", h("a", { class: "button", href: "#/login" }, t("login.again")));
  placeBanner();
}

function placeBanner() {
  const banner = document.getElementById("banner");
  banner.hidden = !session.expired || !banner.childNodes.length || OWN_LOGIN_MESSAGE.includes(location.hash);
}

// Renders overlap (a redraw still waiting for the network while the agent moves on): an older one that
// finishes after a newer one has drawn the wrong screen, so the current one is drawn again.
let started = 0;
let finished = 0;

async function render() {
  const mine = ++started;
  const hash = location.hash || "#/";
  placeBanner();
  const user = session.user;
  renderTabs(document.getElementById("tabs"), user);
  let found = match(hash);
  if (!found) {
    // Not a screen loaded with the app: wait for the others (a failed load shows "not found", and retries).
    await allScreens().catch((e) => console.warn("screens", e));
    found = match(hash);
  }
  if (!found) {
    mount(view, h("h1", {}, t("notfound.title")), h("p", { class: "empty" }, t("notfound")),
      h("a", { class: "button primary", href: "#/" }, t("nav.home")));
    view.dataset.shown = hash;
    return;
  }
  const { route, params } = found;
  if (!route.public && !user) return navigate("#/login");
  if (route.roles && user && !route.roles.includes(user.role)) return navigate("#/");
  try {
    await route.render(view, params);
  } catch (error) {
    console.error(error);
    // In the user's language: an API problem's own words (api.js translates its code), else a general line.
    mount(view, h("h1", {}, t("error.screen")),
      h("p", { class: "error", role: "alert" }, error instanceof ApiError ? error.message : t("error.screenDetail")));
  }
  if (mine < finished) return render();
  finished = mine;
  view.dataset.shown = hash; // drawn and settled: tests and the sweeps wait for this
  view.focus({ preventScroll: true });
}

function startFrame() {
  keepFocusInSight();
  langButton.addEventListener("click", () => {
    setLang(lang() === "en" ? "zh-CN" : "en");
    applyLanguage();
    showNet();
    render();
  });
  window.addEventListener("hashchange", render);
  window.addEventListener("online", checkOnline);
  window.addEventListener("offline", () => setOnline(false));
  on("net", showNet);
  on("auth-expired", showExpired);
  on("rerender", render);
}

// Start-up, in order: the page frame, storage, the service worker, then the engines that talk to the server.
startFrame();
store.start(); // other tabs' writes
attempts.start().catch((e) => console.warn("attempts", e)); // the old localStorage queue moves into IndexedDB
offline.keepOnly().catch((e) => console.warn("offline cache", e)); // nobody else's saved reads stay
pwa.start(); // service worker registration and the "new version" prompt
running.start(); // the incidents this device knows are running, for new records
applyLanguage();
showNet();
render().finally(() => allScreens().catch((e) => console.warn("screens", e)));
checkOnline();
setInterval(checkOnline, ONLINE_CHECK_MS);
sync.start(); // uploads (records and callback attempts)
content.start(); // playbooks and forms kept for offline
push.start(); // push subscription and the inbox badge
if (session.expired) emit("auth-expired");
