// Boot: service worker, language, online indicator, routes. Each screen module registers itself.
import { session } from "./api.js";
import { lang, setLang, t } from "./i18n.js";
import { checkOnline, net as netState, setOnline } from "./net.js";
import { match, navigate, renderTabs } from "./router.js";
import { h, mount } from "./ui.js";
import "./pwa.js";
import "./screens/login.js";
import "./screens/home.js";
import "./screens/playbooks.js";
import "./screens/form.js";
import "./screens/outbox.js";
import "./screens/incidents.js";
import "./screens/inbox.js";
import "./screens/callbacks.js";
import "./screens/recovery.js";
import "./screens/print.js";
import "./screens/transcribe.js";

const view = document.getElementById("view");
const net = document.getElementById("net");
const langButton = document.getElementById("lang");

function applyLanguage() {
  document.documentElement.lang = lang();
  langButton.textContent = lang() === "en" ? "中文" : "EN";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.title = `${t("app.title")} · Outage Desk`;
}

function showNet() {
  const online = netState.online;
  net.className = `net ${online === null ? "checking" : online ? "online" : "offline"}`;
  net.textContent = t(online === null ? "net.checking" : online ? "net.online" : "net.offline");
}

async function render() {
  const hash = location.hash || "#/";
  const found = match(hash);
  const user = session.user;
  renderTabs(document.getElementById("tabs"), user);
  if (!found) return mount(view, h("p", { class: "empty" }, t("notfound")));
  const { route, params } = found;
  if (!route.public && !user) return navigate("#/login");
  if (route.roles && user && !route.roles.includes(user.role)) return navigate("#/");
  try {
    await route.render(view, params);
  } catch (error) {
    console.error(error);
    mount(view, h("p", { class: "error", role: "alert" }, error.message || String(error)));
  }
  view.focus({ preventScroll: true });
}

langButton.addEventListener("click", () => {
  setLang(lang() === "en" ? "zh-CN" : "en");
  applyLanguage();
  showNet();
  render();
});
window.addEventListener("hashchange", render);
window.addEventListener("od:net", showNet);
window.addEventListener("online", checkOnline);
window.addEventListener("offline", () => setOnline(false));
window.addEventListener("od:auth-expired", () => {
  const banner = document.getElementById("banner");
  banner.textContent = t("login.expired");
  banner.hidden = false;
});
window.addEventListener("od:rerender", render);

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch((e) => console.warn("service worker", e));
}

applyLanguage();
showNet();
render();
checkOnline();
setInterval(checkOnline, 15000);
if (session.expired) window.dispatchEvent(new CustomEvent("od:auth-expired"));
