// My contact methods and notification rules: how an escalation reaches me (push on this phone, email, SMS,
// an @-mention in the team's group bot), and after how long without an acknowledgement. A test per method.
import { api, session } from "../api.js";
import { lang, t } from "../i18n.js";
import { pushPermission, pushSubscribed } from "../push.js";
import { route } from "../router.js";
import { formatTime, h, mount, toast } from "../ui.js";

function problemText(error) {
  const fields = error.problem?.errors || error.data?.errors;
  return fields ? Object.entries(fields).map(([k, v]) => `${k}: ${v}`).join("; ") : error.message;
}

async function test(method) {
  try {
    if (method === "push") await api("/api/push/test", { method: "POST" });
    else await api("/api/me/contact/test", { method: "POST", body: { method } });
    toast(t("contacts.testSent"));
  } catch (error) { toast(problemText(error), "error"); }
}

function methodsCard(view, data) {
  const email = h("input", { type: "email", id: "contact-email", autocomplete: "email", value: data.email || "", inputmode: "email" });
  const mobile = h("input", { type: "tel", id: "contact-mobile", autocomplete: "tel", value: data.mobile || "", placeholder: "+86 138 0000 0000" });
  const save = async (event) => {
    event.preventDefault();
    try {
      await api("/api/me/contact", { method: "PUT", body: { email: email.value.trim(), mobile: mobile.value.trim() } });
      toast(t("contacts.saved"));
      render(view);
    } catch (error) { toast(problemText(error), "error"); }
  };
  return h("form", { class: "card contact-card", onsubmit: save },
    h("h2", {}, t("contacts.methods")),
    h("label", { for: "contact-email" }, t("contacts.email")), email,
    data.available.email ? null : h("p", { class: "muted" }, t("contacts.noEmail")),
    h("label", { for: "contact-mobile" }, t("contacts.mobile")), mobile,
    h("p", { class: "muted" }, data.available.sms ? t("contacts.mobileUse") : t("contacts.noSms")),
    h("div", { class: "row" },
      h("button", { type: "submit", class: "primary", id: "contact-save" }, t("contacts.save")),
      data.email ? h("button", { type: "button", id: "test-email", onclick: () => test("email") }, t("contacts.testEmail")) : null,
      data.mobile ? h("button", { type: "button", id: "test-sms", onclick: () => test("sms") }, t("contacts.testSms")) : null));
}

function rulesCard(view, data, pushOn) {
  const rows = data.rules.map((rule) => {
    const on = h("input", { type: "checkbox", id: `rule-${rule.method}`, checked: rule.enabled });
    const minutes = h("input", { type: "number", min: "0", max: "1440", inputmode: "numeric", value: String(rule.after_minutes), id: `rule-${rule.method}-after`, "aria-label": t("contacts.after") });
    return { rule, on, minutes, el: h("li", { class: "rule" },
      h("label", { class: "rule-on", for: `rule-${rule.method}` }, on, h("span", {}, t(`contacts.m.${rule.method}`))),
      h("span", { class: "rule-after" }, minutes, t("contacts.minutes")),
      rule.default ? h("span", { class: "tag" }, t("contacts.default")) : null) };
  });
  const save = async () => {
    const rules = rows.map(({ rule, on, minutes }) => ({ method: rule.method, enabled: on.checked, after_minutes: Math.max(0, Number(minutes.value) || 0) }));
    try { await api("/api/me/rules", { method: "PUT", body: { rules } }); toast(t("contacts.saved")); render(view); } catch (error) { toast(problemText(error), "error"); }
  };
  return h("section", { class: "card rules-card" },
    h("h2", {}, t("contacts.rules")),
    h("p", { class: "muted" }, t("contacts.rulesHelp")),
    h("ul", { class: "rules" }, rows.map((r) => r.el)),
    h("p", { class: "muted" }, pushOn ? t("push.on") : t("contacts.pushOff")),
    h("div", { class: "row" },
      h("button", { type: "button", class: "primary", id: "rules-save", onclick: save }, t("contacts.saveRules")),
      h("button", { type: "button", id: "test-push", onclick: () => test("push") }, t("push.test"))));
}

function historyCard(items) {
  if (!items.length) return null;
  return h("section", { class: "card" }, h("h2", {}, t("contacts.history")),
    h("ul", { class: "deliveries" }, items.map((d) => h("li", { class: `delivery state-${d.state}` },
      h("strong", {}, t(`contacts.m.${d.kind}`)), " ", t(`contacts.state.${d.state}`), " ",
      h("time", { datetime: d.sent_at || d.created_at }, formatTime(d.sent_at || d.created_at, lang())),
      d.error ? h("span", { class: "muted" }, ` · ${d.error}`) : null))));
}

async function render(view) {
  const [data, history] = await Promise.all([api("/api/me/contact"), api("/api/me/deliveries")]);
  const pushOn = pushPermission() === "granted" && await pushSubscribed();
  mount(view, h("h1", {}, t("contacts.title")), methodsCard(view, data), rulesCard(view, data, pushOn), historyCard(history),
    session.user?.role === "admin" ? h("p", {}, h("a", { href: "#/channels", class: "button", id: "to-channels" }, t("contacts.channels"))) : null);
}

route("#/contacts", render);
