// Home: who is logged in, and the big buttons for the first minute of an outage.
import { session } from "../api.js";
import { t } from "../i18n.js";
import { navigate, route, tab } from "../router.js";
import { installControl } from "../pwa.js";
import { logout } from "../session.js";
import { h, mount } from "../ui.js";

// Other screens add their big home buttons here: homeAction({ href, label, roles, order, kind }).
const actions = [];
export function homeAction(entry) {
  actions.push(entry);
  actions.sort((a, b) => (a.order ?? 50) - (b.order ?? 50));
}

tab({ href: "#/", label: () => t("nav.home"), icon: "⌂", order: 0 });

route("#/", async (view) => {
  const user = session.user;
  const logoutButton = h("button", { type: "button", class: "secondary", onclick: async () => {
    logoutButton.disabled = true;
    await logout(); // session.js: the steps, in order
    navigate("#/login");
  } }, t("logout"));
  mount(view,
    h("section", { class: "card" },
      h("h1", {}, t("home.hello", { name: user.display_name })),
      h("p", { class: "muted" }, `${t("role." + user.role)} · ${t("home.site", { site: user.site_name })}`)),
    h("div", { class: "actions" }, actions
      .filter((a) => !a.roles || a.roles.includes(user.role))
      .map((a) => h("a", { class: `action ${a.kind || ""}`, href: a.href }, a.label()))),
    installControl(),
    h("div", { class: "row" }, logoutButton));
});
