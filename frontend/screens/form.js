// A form rendered from its definition. (The sync issue adds drafts, autosave and the outbox queue.)
import { api } from "../api.js";
import { pick } from "../i18n.js";
import { route } from "../router.js";
import { h, mount } from "../ui.js";
import { defaults, renderForm } from "../formview.js";

route("#/forms/:slug", async (view, { slug }) => {
  const definition = await api(`/api/forms/${encodeURIComponent(slug)}`);
  const form = renderForm(definition, defaults(definition));
  mount(view,
    h("h1", {}, pick(definition.title)),
    definition.description ? h("p", { class: "muted" }, pick(definition.description)) : null,
    h("form", { class: "card", dataset: { form: slug, version: definition.version } }, form.element));
});
