// The playbook and form editor (admins): edit as a draft (devices never see it), preview it exactly as
// agents will (both languages, the print view too), see the changes against the published version, publish
// (devices pick the new version up on their next refresh or sync) and roll back to an earlier version.
// The server checks every rule again (backend/definitions.py, backend/compat.py) and its answer is shown.
import { api } from "../api.js";
import { loadContent } from "../content.js";
import { defaults, renderForm } from "../formview.js";
import { lang, pick, setLang, t } from "../i18n.js";
import { route } from "../router.js";
import { formatTime, h, mount, toast } from "../ui.js";
import { problemText } from "./admin.js";
import { renderPlaybook } from "./playbooks.js";
import { formSheet, playbookSheet } from "./print.js";

const ADMIN = ["admin"];
const WHO = ["agent", "lead", "manager", "ops"];
const TYPES = ["text", "textarea", "tel", "integer", "datetime", "choice", "boolean"];
const NAME = /^[a-z][a-z0-9_]{0,62}$/;
const VALUE = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const clone = (value) => JSON.parse(JSON.stringify(value));

// ---------------------------------------------------------------- the list

route("#/admin/docs", async (view) => {
  const docs = await api("/api/admin/documents");
  const group = (kind) => h("section", {}, h("h2", {}, t(`ed.kind.${kind}s`)),
    h("ul", { class: "pb-list" }, docs.filter((d) => d.kind === kind).map((d) => h("li", {},
      h("a", { class: "pb-card", href: `#/admin/docs/${d.kind}/${encodeURIComponent(d.slug)}`, dataset: { slug: d.slug } },
        h("span", { class: "pb-card-title" }, pick(d.title)),
        h("span", { class: "pb-card-meta" }, d.version ? t("ed.version", { n: d.version }) : t("ed.unpublished"),
          d.draft ? h("span", { class: "ed-badge" }, t("ed.hasDraft")) : null))))));
  mount(view, h("a", { class: "pb-back", href: "#/admin" }, t("ad.back")), h("h1", {}, t("ad.docs")),
    h("p", { class: "muted" }, t("ed.intro")), group("playbook"), group("form"));
}, { roles: ADMIN });

// ---------------------------------------------------------------- client-side checks (the server has the last word)

export function checkDraft(kind, def) {
  const errors = [];
  const both = (text, what) => {
    if (!text || !String(text["zh-CN"] || "").trim() || !String(text.en || "").trim()) errors.push(t("ed.err.both", { what }));
  };
  both(def.title, t("ed.f.title"));
  if (kind === "playbook") {
    both(def.summary, t("ed.f.summary"));
    if (!def.steps?.length) errors.push(t("ed.err.noSteps"));
    def.steps?.forEach((step, i) => both(step.text, t("ed.step", { n: i + 1 })));
    if (new Set(def.steps?.map((s) => s.id)).size !== def.steps?.length) errors.push(t("ed.err.stepIds"));
  } else {
    const names = def.fields.map((f) => f.name);
    if (new Set(names).size !== names.length) errors.push(t("ed.err.names"));
    for (const f of def.fields) {
      const what = pick(f.label) || f.name;
      if (!NAME.test(f.name || "")) errors.push(t("ed.err.name", { what }));
      both(f.label, what);
      if (f.type === "choice") {
        if (!f.choices?.length) errors.push(t("ed.err.choices", { what }));
        if (f.choices?.some((c) => !VALUE.test(c.value))) errors.push(t("ed.err.choiceValue", { what }));
        if (new Set(f.choices?.map((c) => c.value)).size !== (f.choices?.length || 0)) errors.push(t("ed.err.choiceUnique", { what }));
        f.choices?.forEach((c) => both(c.label, `${what} · ${c.value}`));
      }
      if (f.pattern) { try { new RegExp(f.pattern); } catch { errors.push(t("ed.err.pattern", { what })); } }
    }
  }
  return errors;
}

// ---------------------------------------------------------------- editing

function textPair(obj, key, label, { area = false, onChange }) {
  const value = obj[key] || { "zh-CN": "", en: "" };
  obj[key] = value;
  const make = (code, name) => h(area ? "textarea" : "input", { value: value[code] || "", lang: code, rows: area ? 3 : undefined,
    "aria-label": `${label} · ${name}`, oninput: (e) => { value[code] = e.target.value; onChange(); } });
  const zh = make("zh-CN", "中文");
  const en = make("en", "English");
  if (area) { zh.value = value["zh-CN"] || ""; en.value = value.en || ""; }
  return h("fieldset", { class: "ed-pair" }, h("legend", {}, label),
    h("label", {}, h("span", { class: "ed-lang", lang: "zh-CN" }, "中文"), zh), h("label", {}, h("span", { class: "ed-lang", lang: "en" }, "English"), en));
}

function moveButtons(list, index, redraw, onChange) {
  const move = (to) => { const [item] = list.splice(index, 1); list.splice(to, 0, item); onChange(); redraw(); };
  return h("div", { class: "row ed-move" },
    h("button", { type: "button", disabled: index === 0, "aria-label": t("ed.up"), onclick: () => move(index - 1) }, "↑"),
    h("button", { type: "button", disabled: index === list.length - 1, "aria-label": t("ed.down"), onclick: () => move(index + 1) }, "↓"),
    h("button", { type: "button", class: "ad-danger", "aria-label": t("ed.remove"), onclick: () => { list.splice(index, 1); onChange(); redraw(); } }, t("ed.remove")));
}

function stepEditor(def, onChange) {
  const box = h("div", { class: "ed-list" });
  const redraw = () => box.replaceChildren(...def.steps.map((step, i) => {
    const who = h("select", { "aria-label": t("ed.f.who"), onchange: () => { step.who = who.value; onChange(); } },
      WHO.map((w) => h("option", { value: w, selected: step.who === w }, t(`who.${w}`))));
    const within = h("input", { type: "number", min: 0, inputmode: "numeric", value: step.within_minutes ?? "",
      "aria-label": t("ed.f.within"), oninput: () => {
        if (within.value === "") delete step.within_minutes; else step.within_minutes = Number(within.value);
        onChange();
      } });
    return h("section", { class: "ed-item", dataset: { step: step.id } }, h("h3", {}, t("ed.step", { n: i + 1 })),
      textPair(step, "text", t("ed.f.text"), { area: true, onChange }),
      h("div", { class: "ed-grid" }, h("label", {}, t("ed.f.who"), who), h("label", {}, t("ed.f.within"), within)),
      moveButtons(def.steps, i, redraw, onChange));
  }));
  redraw();
  const add = h("button", { type: "button", class: "big", onclick: () => {
    let n = def.steps.length + 1;
    while (def.steps.some((s) => s.id === `step-${n}`)) n += 1;
    def.steps.push({ id: `step-${n}`, who: "agent", text: { "zh-CN": "", en: "" } });
    onChange();
    redraw();
    box.lastChild?.querySelector("textarea")?.focus();
  } }, t("ed.addStep"));
  return h("div", {}, h("h2", {}, t("pb.steps")), box, add);
}

function choicesText(choices) {
  return (choices || []).map((c) => `${c.value} = ${c.label["zh-CN"]} / ${c.label.en}`).join("\n");
}

function parseChoices(text) {
  return text.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
    const [value, rest = ""] = line.split("=").map((s) => s.trim());
    const [zh = "", en = ""] = rest.split("/").map((s) => s.trim());
    return { value, label: { "zh-CN": zh, en: en || zh } };
  });
}

function fieldEditor(def, published, onChange) {
  const kept = new Set((published?.fields || []).map((f) => f.name));
  const box = h("div", { class: "ed-list" });
  const redraw = () => box.replaceChildren(...def.fields.map((field, i) => {
    const set = (key, value) => { if (value === "" || value === null || value === false) delete field[key]; else field[key] = value; onChange(); };
    const name = h("input", { value: field.name, disabled: kept.has(field.name), autocapitalize: "off",
      "aria-label": t("ed.f.name"), oninput: () => { field.name = name.value.trim(); onChange(); } });
    const type = h("select", { "aria-label": t("ed.f.type"), onchange: () => { field.type = type.value; onChange(); redraw(); } },
      TYPES.map((k) => h("option", { value: k, selected: field.type === k }, t(`ed.type.${k}`))));
    const required = h("input", { type: "checkbox", checked: Boolean(field.required), onchange: () => set("required", required.checked) });
    const extra = [];
    if (["text", "textarea", "tel"].includes(field.type)) {
      const max = h("input", { type: "number", min: 1, max: 10000, value: field.max_length ?? "", oninput: () => set("max_length", max.value === "" ? "" : Number(max.value)) });
      const pattern = h("input", { value: field.pattern || "", autocapitalize: "off", spellcheck: false, oninput: () => set("pattern", pattern.value) });
      extra.push(h("label", {}, t("ed.f.maxLength"), max), h("label", {}, t("ed.f.pattern"), pattern));
    }
    if (field.type === "integer") {
      const min = h("input", { type: "number", value: field.min ?? "", oninput: () => set("min", min.value === "" ? "" : Number(min.value)) });
      const max = h("input", { type: "number", value: field.max ?? "", oninput: () => set("max", max.value === "" ? "" : Number(max.value)) });
      extra.push(h("label", {}, t("ed.f.min"), min), h("label", {}, t("ed.f.max"), max));
    }
    if (field.type === "choice") {
      const choices = h("textarea", { rows: 4, spellcheck: false, oninput: () => { field.choices = parseChoices(choices.value); onChange(); } });
      choices.value = choicesText(field.choices);
      extra.push(h("label", { class: "ed-wide" }, t("ed.f.choices"), choices, h("span", { class: "muted small" }, t("ed.f.choices.hint"))));
    }
    return h("section", { class: "ed-item", dataset: { field: field.name } }, h("h3", {}, pick(field.label) || t("ed.newField")),
      textPair(field, "label", t("ed.f.label"), { onChange }),
      h("div", { class: "ed-grid" }, h("label", {}, t("ed.f.name"), name), h("label", {}, t("ed.f.type"), type),
        h("label", { class: "ed-check" }, required, t("field.required")), extra),
      kept.has(field.name) ? h("p", { class: "muted small" }, t("ed.f.kept")) : null,
      moveButtons(def.fields, i, redraw, onChange));
  }));
  redraw();
  const add = h("button", { type: "button", class: "big", onclick: () => {
    let n = def.fields.length + 1;
    while (def.fields.some((f) => f.name === `field_${n}`)) n += 1;
    def.fields.push({ name: `field_${n}`, type: "text", label: { "zh-CN": "", en: "" } });
    onChange();
    redraw();
  } }, t("ed.addField"));
  return h("div", {}, h("h2", {}, t("ed.fields")), box, add);
}

function advancedEditor(state, redrawAll) {
  const area = h("textarea", { rows: 12, class: "ed-json", spellcheck: false, "aria-label": t("ed.advanced") });
  area.value = JSON.stringify(state.working, null, 1);
  const error = h("p", { class: "error", role: "alert", hidden: true });
  return h("details", { class: "card ed-advanced" }, h("summary", {}, t("ed.advanced")),
    h("p", { class: "muted small" }, t("ed.advanced.hint")), area, error,
    h("button", { type: "button", onclick: () => {
      try { state.working = JSON.parse(area.value); state.dirty = true; redrawAll("edit"); } catch (e) { error.textContent = e.message; error.hidden = false; }
    } }, t("ed.advanced.apply")));
}

// ---------------------------------------------------------------- preview, changes, versions

function withDirectory(def, entries) {
  if (!entries?.length) return def;
  const byRole = new Map(entries.map((e) => [e.role, e]));
  return { ...def,
    contacts: (def.contacts || []).map((c) => (byRole.has(c.role) ? { ...c, phone: byRole.get(c.role).phone } : c)),
    escalation: (def.escalation || []).map((r) => ({ ...r, contacts: r.notify.filter((n) => byRole.has(n)).map((n) => byRole.get(n)) })) };
}

// Drawn in the language asked for, as the agent's screen draws it (pick() reads the current language).
function inLanguage(code, draw) {
  const before = lang();
  setLang(code);
  try { return draw(); } finally { setLang(before); }
}

function previewPane(state, extra) {
  const def = { ...state.working, version: state.doc.version ? state.doc.version + 1 : 1 };
  const pane = h("div", { class: "ed-preview-body" });
  const show = (mode) => {
    buttons.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.mode === mode)));
    if (mode === "print") {
      pane.replaceChildren(h("div", { class: "ed-print" }, state.kind === "playbook"
        ? playbookSheet(withDirectory(def, extra.directory), extra.forms) : formSheet(def, { sheet_id: "PREVIEW" })));
      return;
    }
    inLanguage(mode, () => {
      if (state.kind === "playbook") {
        const box = h("div", { class: "ed-agent" });
        renderPlaybook(box, withDirectory(def, extra.directory), extra.forms);
        pane.replaceChildren(box);
      } else {
        pane.replaceChildren(h("div", { class: "ed-agent card" }, h("h1", {}, pick(def.title)), renderForm(def, defaults(def)).element));
      }
      pane.firstChild.setAttribute("lang", mode);
    });
  };
  // The screen has one h1 (the editor's): the preview's own titles become level-2 headings that look the same.
  const demote = () => pane.querySelectorAll("h1").forEach((el) => {
    el.replaceWith(h("p", { class: `ed-h1 ${el.className}`, role: "heading", "aria-level": "2", lang: el.getAttribute("lang") }, el.textContent));
  });
  const buttons = h("div", { class: "row ed-modes", role: "group", "aria-label": t("ed.preview") },
    [["zh-CN", "中文"], ["en", "English"], ["print", t("ed.printView")]].map(([mode, label]) =>
      h("button", { type: "button", class: "chip-light", lang: mode === "print" ? undefined : mode, dataset: { mode }, onclick: () => { show(mode); demote(); } }, label)));
  show(lang());
  demote();
  return h("div", { class: "ed-preview" }, h("p", { class: "muted small" }, t("ed.preview.hint")), buttons, pane);
}

const PATH_WORDS = ["title", "summary", "steps", "text", "who", "within_minutes", "fields", "label", "required",
  "choices", "pattern", "type", "max_length", "min", "max", "escalation", "script", "contacts", "phone", "message",
  "forms", "category", "notify", "after_minutes", "help", "description"];

export function pathText(path, def) {
  return path.split(/\.(?![^[]*\])/).map((part) => {
    const m = part.match(/^([^[]+)(?:\[([^\]]+)\])?$/);
    if (!m) return part;
    const [, word, key] = m;
    const name = word === "zh-CN" ? t("ed.p.zhCN") : word === "en" ? t("ed.p.en") : PATH_WORDS.includes(word) ? t(`ed.p.${word}`) : word;
    if (key === undefined) return name;
    const list = def?.[word];
    const index = Array.isArray(list) ? list.findIndex((x) => [x.id, x.name, x.role, x.value].includes(key)) : -1;
    if (word === "steps") return index >= 0 ? t("ed.step", { n: index + 1 }) : `${name} ${key}`;
    if (index >= 0 && list[index].label) return `${name} “${pick(list[index].label)}”`;
    return /^\d+$/.test(key) ? `${name} ${Number(key) + 1}` : `${name} ${key}`;
  }).join(" › ");
}

function shown(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "object" && ("zh-CN" in value || "en" in value)) return `${value["zh-CN"] ?? ""} / ${value.en ?? ""}`;
  if (typeof value === "object") return JSON.stringify(value);
  if (typeof value === "boolean") return t(value ? "field.yes" : "field.no");
  return String(value);
}

function changesPane(state) {
  const draft = state.doc.draft;
  if (!draft) return h("p", { class: "empty" }, t("ed.noDraft"));
  const def = draft.definition;
  return h("div", {},
    state.dirty ? h("p", { class: "banner" }, t("ed.unsavedChanges")) : null,
    draft.stale ? h("p", { class: "banner" }, t("ed.stale")) : null,
    draft.changes.length ? h("ol", { class: "ed-diff" }, draft.changes.map((c) => h("li", { class: `ed-change ${c.change}` },
      h("strong", {}, pathText(c.path, c.change === "removed" ? state.doc.published : def)),
      h("span", { class: "ed-change-kind" }, t(`ed.change.${c.change}`)),
      c.change === "order" ? null : h("div", { class: "ed-before" }, h("span", { class: "muted small" }, t("ad.audit.before")), h("del", {}, shown(c.before))),
      c.change === "order" ? null : h("div", { class: "ed-after" }, h("span", { class: "muted small" }, t("ad.audit.after")), h("ins", {}, shown(c.after))))))
      : h("p", { class: "empty" }, t("ed.same")));
}

function versionsPane(state, reload) {
  return h("ol", { class: "ed-versions" }, state.doc.versions.map((v) => {
    const current = v.version === state.doc.version;
    let armed = false;
    const button = current ? null : h("button", { type: "button", class: "ed-rollback", onclick: async () => {
      if (!armed) { armed = true; button.textContent = t("ed.rollback.confirm", { n: v.version }); return; }
      button.disabled = true;
      try {
        const done = await api(`/api/admin/documents/${state.kind}/${encodeURIComponent(state.slug)}/rollback`, { method: "POST", body: { version: v.version } });
        toast(t("ed.rolledBack", { n: v.version, now: done.version }));
        reload();
      } catch (e) { toast(problemText(e), "error"); button.disabled = false; }
    } }, t("ed.rollback", { n: v.version }));
    return h("li", { class: `ed-version ${current ? "current" : ""}`, dataset: { version: v.version } },
      h("div", {}, h("strong", {}, t("ed.version", { n: v.version })), current ? h("span", { class: "ed-badge" }, t("ed.current")) : null),
      h("p", { class: "muted small" }, formatTime(v.created_at, lang()), " · ",
        v.source === "shipped" ? t("ed.shipped") : t("ed.by", { who: v.created_by || "—" })),
      button);
  }));
}

// ---------------------------------------------------------------- the screen

route("#/admin/docs/:kind/:slug", async (view, { kind, slug }) => {
  if (!["playbook", "form"].includes(kind)) return mount(view, h("p", { class: "empty" }, t("notfound")));
  const base = `/api/admin/documents/${kind}/${encodeURIComponent(slug)}`;
  const [forms, site] = await Promise.all([loadContent("/api/forms").catch(() => []), api("/api/admin/site").catch(() => null)]);
  const extra = { forms, directory: site?.directory || [] };
  const state = { kind, slug, tab: "edit", dirty: false };
  const load = async () => {
    state.doc = await api(base);
    state.working = clone(state.doc.draft?.definition || state.doc.published);
    state.dirty = false;
    draw(state.tab);
  };
  const errors = h("div", { class: "error", role: "alert", hidden: true });
  const showErrors = (lines) => { errors.replaceChildren(...lines.map((l) => h("p", {}, l))); errors.hidden = !lines.length; };
  const onChange = () => { state.dirty = true; status.textContent = t("ed.unsaved"); };
  const status = h("p", { class: "ed-status", role: "status" });

  async function saveDraft() {
    const problems = checkDraft(kind, state.working);
    showErrors(problems);
    if (problems.length) return false;
    try {
      await api(`${base}/draft`, { method: "PUT", body: state.working });
      toast(t("ed.draftSaved"));
      await load();
      return true;
    } catch (e) { showErrors(problemText(e).split("\n")); return false; }
  }

  async function publish(button) {
    if (state.dirty && !(await saveDraft())) return;
    button.disabled = true;
    try {
      const done = await api(`${base}/publish`, { method: "POST" });
      toast(t("ed.published", { n: done.version }));
      state.tab = "versions";
      await load();
    } catch (e) { showErrors(problemText(e).split("\n")); button.disabled = false; }
  }

  function draw(tabName) {
    state.tab = tabName;
    const def = state.working;
    const draft = state.doc.draft;
    status.textContent = state.dirty ? t("ed.unsaved") : draft ? t("ed.draftFrom", { time: formatTime(draft.updated_at, lang()) }) : t("ed.noDraftYet");
    const tabs = h("div", { class: "ed-tabs", role: "tablist" }, ["edit", "preview", "changes", "versions"].map((name) =>
      h("button", { type: "button", role: "tab", "aria-selected": String(name === tabName), class: name === tabName ? "active" : "",
        dataset: { tab: name }, onclick: () => draw(name) }, t(`ed.tab.${name}`))));
    let body;
    if (tabName === "edit") {
      body = h("div", { class: "stack" },
        h("section", { class: "card stack" }, textPair(def, "title", t("ed.f.title"), { onChange }),
          kind === "playbook" ? textPair(def, "summary", t("ed.f.summary"), { area: true, onChange }) : null),
        h("section", { class: "card" }, kind === "playbook" ? stepEditor(def, onChange) : fieldEditor(def, state.doc.published, onChange)),
        advancedEditor(state, draw));
    } else if (tabName === "preview") body = previewPane(state, extra);
    else if (tabName === "changes") body = changesPane(state);
    else body = versionsPane(state, load);
    const publishButton = h("button", { type: "button", class: "primary", disabled: !draft && !state.dirty,
      onclick: (e) => publish(e.currentTarget) }, t("ed.publish"));
    const discard = draft ? h("button", { type: "button", class: "ad-danger", onclick: async () => {
      try { await api(`${base}/draft`, { method: "DELETE" }); toast(t("ed.discarded")); await load(); } catch (e) { toast(problemText(e), "error"); }
    } }, t("ed.discard")) : null;
    mount(view, h("a", { class: "pb-back", href: "#/admin/docs" }, t("ad.back")),
      h("header", { class: "ed-head" }, h("span", { class: "pb-category" }, t(`ed.kind.${kind}`)),
        h("h1", {}, pick(def.title) || slug),
        h("p", { class: "muted small" }, state.doc.version ? t("ed.publishedVersion", { n: state.doc.version }) : t("ed.unpublished"))),
      tabs, status, errors, body,
      h("div", { class: "ed-bar" }, h("button", { type: "button", onclick: saveDraft }, t("ed.saveDraft")), publishButton, discard));
  }
  await load();
}, { roles: ADMIN });
