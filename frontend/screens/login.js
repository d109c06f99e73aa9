import { api, ApiError, session } from "../api.js";
import { t } from "../i18n.js";
import { navigate, route } from "../router.js";
import { login } from "../session.js";
import { h, mount } from "../ui.js";

route("#/login", async (view) => {
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const username = h("input", { name: "username", autocomplete: "username", required: true,
    value: session.user?.username || "", autocapitalize: "off" });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "card stack", onsubmit: async (event) => {
    event.preventDefault();
    error.hidden = true;
    try {
      await login(username.value.trim(), password.value);
      document.getElementById("banner").hidden = true;
      navigate("#/");
    } catch (e) {
      error.textContent = e instanceof ApiError ? t("login.failedBecause", { reason: e.message }) : t("error.network");
      error.hidden = false;
    }
  } },
  h("h1", {}, t("login.title")),
  h("label", {}, t("login.username"), username),
  h("label", {}, t("login.password"), password),
  error,
  h("button", { type: "submit", class: "primary big" }, t("login.submit")));
  const firstRun = h("section", { class: "card stack first-run", hidden: true, role: "note" },
    h("h2", {}, t("su.empty.title")), h("p", {}, t("su.empty.text")), h("p", { class: "muted small" }, t("su.empty.demo")));
  mount(view, firstRun, form);
  // The first empty field takes the keyboard (after the app's own focus on the view, hence the next frame).
  requestAnimationFrame(() => (username.value ? password : username).focus());
  // An install without an admin: say how to get one (the setup link in the server's output).
  api("/api/setup", { timeout: 4000 }).then((status) => { firstRun.hidden = !status.needed; }).catch(() => {});
}, { public: true });
