// The first run (#/setup/<token>): the one-time link the server prints while no admin exists opens this
// page, which creates the first site and its admin, then logs in.
import { api, ApiError } from "../api.js";
import { t } from "../i18n.js";
import { navigate, route } from "../router.js";
import { login } from "../session.js";
import { h, mount } from "../ui.js";
import { passwordProblem, problemText, zoneSelect } from "./admin.js";

function slugFrom(text) {
  return text.toLowerCase().normalize("NFKD").replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40);
}

route("#/setup/:token", async (view, { token }) => {
  let status;
  try {
    status = await api("/api/setup");
  } catch {
    return mount(view, h("p", { class: "error", role: "alert" }, t("error.network")));
  }
  if (!status.needed) {
    return mount(view, h("section", { class: "card stack" }, h("h1", {}, t("su.done.title")),
      h("p", {}, t("su.done.text")), h("a", { class: "button primary big", href: "#/login" }, t("login.submit"))));
  }
  const error = h("p", { class: "error", role: "alert", hidden: true });
  const siteName = h("input", { name: "site_name", required: true, maxlength: 200, placeholder: t("su.site.example") });
  const siteSlug = h("input", { name: "site_slug", required: true, pattern: "[a-z0-9][a-z0-9\\-]{0,62}",
    autocapitalize: "off", placeholder: "bj-01" });
  let slugTouched = false;
  siteName.addEventListener("input", () => { if (!slugTouched) siteSlug.value = slugFrom(siteName.value); });
  siteSlug.addEventListener("input", () => { slugTouched = true; });
  const zone = zoneSelect("Asia/Shanghai", { name: "time_zone" });
  const username = h("input", { name: "username", required: true, autocapitalize: "off", autocomplete: "username",
    pattern: "[\\w.@\\-]+", maxlength: 64 });
  const display = h("input", { name: "display_name", maxlength: 200 });
  const password = h("input", { name: "password", type: "password", required: true, minlength: 8, autocomplete: "new-password" });
  const again = h("input", { name: "password_again", type: "password", required: true, autocomplete: "new-password" });
  const submit = h("button", { type: "submit", class: "primary big" }, t("su.submit"));
  const form = h("form", { class: "card stack", onsubmit: async (event) => {
    event.preventDefault();
    error.hidden = true;
    const rule = passwordProblem(username.value, password.value);
    if (rule || password.value !== again.value) {
      error.textContent = rule || t("su.mismatch");
      error.hidden = false;
      return;
    }
    submit.disabled = true;
    try {
      await api("/api/setup", { method: "POST", body: { token, site_name: siteName.value.trim(),
        site_slug: siteSlug.value.trim(), time_zone: zone.value, username: username.value.trim(),
        display_name: display.value.trim() || null, password: password.value } });
      await login(username.value.trim(), password.value);
      navigate("#/admin");
    } catch (e) {
      error.textContent = e instanceof ApiError ? problemText(e) : t("error.network");
      error.hidden = false;
      submit.disabled = false;
    }
  } },
  h("h1", {}, t("su.title")),
  h("p", {}, t("su.intro")),
  h("h2", {}, t("su.site")),
  h("label", {}, t("ad.site.name"), siteName),
  h("label", {}, t("su.site.slug"), siteSlug, h("span", { class: "muted small" }, t("su.site.slug.hint"))),
  h("label", {}, t("ad.site.zone"), zone),
  h("h2", {}, t("su.admin")),
  h("label", {}, t("ad.user.username"), username),
  h("label", {}, t("ad.user.display"), display),
  h("label", {}, t("ad.user.password"), password, h("span", { class: "muted small" }, t("ad.password.rule"))),
  h("label", {}, t("su.again"), again),
  error, submit);
  mount(view, form);
  siteName.focus();
}, { public: true });
