import { api, ApiError, session } from "../api.js";
import { t } from "../i18n.js";
import { navigate, route } from "../router.js";
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
      const result = await api("/api/auth/login", { method: "POST",
        body: { username: username.value.trim(), password: password.value } });
      session.save(result.token, result.user);
      document.getElementById("banner").hidden = true;
      window.dispatchEvent(new CustomEvent("od:login", { detail: result.user }));
      navigate("#/");
    } catch (e) {
      error.textContent = e instanceof ApiError ? `${t("login.failed")}: ${e.message}` : t("error.network");
      error.hidden = false;
    }
  } },
  h("h1", {}, t("login.title")),
  h("label", {}, t("login.username"), username),
  h("label", {}, t("login.password"), password),
  error,
  h("button", { type: "submit", class: "primary big" }, t("login.submit")));
  mount(view, form);
  if (!username.value) username.focus(); else password.focus();
}, { public: true });
