// The site's team channels (admin): WeCom / DingTalk / Feishu group robots and signed webhooks that receive the
// ladder's rungs, each with its last delivery outcome, a test button and a form to add one.
import { api } from "../api.js";
import { lang, t, tparts } from "../i18n.js";
import { route } from "../router.js";
import { code, formatTime, h, mount, toast } from "../ui.js";

const KINDS = ["wecom", "dingtalk", "feishu", "webhook"];
const ROLES = ["lead", "manager", "admin"];

function problemText(error) {
  const fields = error.problem?.errors || error.data?.errors;
  return fields ? Object.entries(fields).map(([k, v]) => `${k}: ${v}`).join("; ") : error.message;
}

function outcome(last) {
  if (!last) return h("p", { class: "muted outcome" }, t("channels.never"));
  const when = last.sent_at ? formatTime(last.sent_at, lang()) : "";
  return h("p", { class: `outcome state-${last.state}` }, h("strong", {}, t(`contacts.state.${last.state}`)), " ", when,
    last.error ? h("span", {}, ` · ${last.error}`) : null);
}

function channelCard(view, c) {
  return h("li", { class: `card channel state-${c.state}`, dataset: { id: String(c.id) } },
    h("div", { class: "row spread" }, h("strong", { class: "channel-name" }, c.name), h("span", { class: "tag" }, t(`channels.k.${c.kind}`))),
    h("p", { class: "muted channel-url" }, code(c.url), c.signed ? ` · ${t("channels.signed")}` : ""),
    h("p", {}, t("channels.for"), " ", c.roles.map((r) => t(`role.${r}`)).join(lang() === "en" ? ", " : "、")),
    c.state === "dead" ? h("p", { class: "error" }, t("channels.dead")) : null,
    outcome(c.last),
    h("div", { class: "row" },
      h("button", { type: "button", class: "channel-test", onclick: async () => {
        try { await api(`/api/channels/${c.id}/test`, { method: "POST" }); toast(t("contacts.testSent")); setTimeout(() => render(view), 3000); } catch (error) { toast(problemText(error), "error"); }
      } }, t("channels.test")),
      h("button", { type: "button", onclick: async () => {
        if (!confirm(t("channels.confirmRemove", { name: c.name }))) return;
        try { await api(`/api/channels/${c.id}`, { method: "DELETE" }); render(view); } catch (error) { toast(problemText(error), "error"); }
      } }, t("channels.remove"))));
}

function addForm(view) {
  const kind = h("select", { id: "channel-kind" }, KINDS.map((k) => h("option", { value: k }, t(`channels.k.${k}`))));
  const name = h("input", { id: "channel-name", required: true, maxlength: "100" });
  const url = h("input", { id: "channel-url", type: "url", required: true, inputmode: "url" });
  const secret = h("input", { id: "channel-secret", autocomplete: "off" });
  const roles = ROLES.map((r) => h("input", { type: "checkbox", id: `channel-role-${r}`, value: r, checked: r === "manager" }));
  const submit = async (event) => {
    event.preventDefault();
    const body = { kind: kind.value, name: name.value.trim(), url: url.value.trim(), roles: roles.filter((r) => r.checked).map((r) => r.value) };
    if (secret.value.trim()) body.secret = secret.value.trim();
    try { await api("/api/channels", { method: "POST", body }); toast(t("contacts.saved")); render(view); } catch (error) { toast(problemText(error), "error"); }
  };
  return h("form", { class: "card channel-add", onsubmit: submit },
    h("h2", {}, t("channels.add")),
    h("label", { for: "channel-kind" }, t("channels.kind")), kind,
    h("label", { for: "channel-name" }, t("channels.name")), name,
    h("label", { for: "channel-url" }, t("channels.url")), url,
    h("label", { for: "channel-secret" }, t("channels.secret")), secret,
    h("p", { class: "muted" }, tparts("channels.secretHelp", { sec: code("SEC…"), whsec: code("whsec_…"),
      spec: h("span", { lang: "en", translate: "no" }, "Standard Webhooks") })),
    h("fieldset", {}, h("legend", {}, t("channels.for")),
      roles.map((box, i) => h("label", { class: "check", for: box.id }, box, t(`role.${ROLES[i]}`)))),
    h("button", { type: "submit", class: "primary big", id: "channel-save" }, t("channels.save")));
}

async function render(view) {
  const channels = await api("/api/channels");
  mount(view, h("h1", {}, t("channels.title")), h("p", { class: "muted" }, t("channels.help")),
    channels.length ? h("ul", { class: "channels" }, channels.map((c) => channelCard(view, c))) : h("p", { class: "empty" }, t("channels.none")),
    addForm(view));
}

route("#/channels", render, { roles: ["admin"] });
