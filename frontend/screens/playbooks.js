// Playbooks: the list grouped by category with search, and one playbook with tickable steps, the call
// script, the forms it uses, contacts as tel: buttons and the escalation ladder. Works offline from the
// saved copies (content.js); ticks are kept on this device.
import { errorText, session } from "../api.js";
import { loadContent, savedAt } from "../content.js";
import { emit, on } from "../events.js";
import { net } from "../net.js";
import { lang, pick, t } from "../i18n.js";
import { route } from "../router.js";
import { formatTime, h, mount } from "../ui.js";

const CATEGORIES = ["technical", "facility", "safety", "demand", "public"];

let query = ""; // kept while moving between the list and a playbook
let shownHash = null; // a new screen starts at the top; a refresh of the same one keeps its place

function startScreen() {
  if (shownHash !== location.hash) window.scrollTo(0, 0);
  shownHash = location.hash;
}

// Offline, say that what is shown is the device's saved copy, and from when.
function fillOfflineNote(note) {
  const at = savedAt();
  note.textContent = at ? t("pb.offline.note", { time: formatTime(at, lang()) }) : t("pb.offline.unknown");
  note.hidden = net.online !== false;
}

function offlineNote() {
  const note = h("p", { class: "pb-offline", role: "status" });
  fillOfflineNote(note);
  return note;
}

function minutesText(prefix, minutes) {
  if (minutes === 0 && prefix === "when") return t("when.now");
  if (minutes >= 60 && minutes % 60 === 0) return t(`${prefix}.hours`, { n: minutes / 60 });
  return t(`${prefix}.minutes`, { n: minutes });
}

// ---------------------------------------------------------------- the list

function searchText(playbook) {
  const script = pick(playbook.script) || [];
  return [playbook.title, playbook.summary, ...playbook.steps.map((s) => s.text)].map(pick).concat(script)
    .join("\n").toLowerCase();
}

function matches(playbook, words) {
  const text = searchText(playbook);
  return words.every((word) => text.includes(word));
}

function playbookCard(playbook) {
  return h("li", {},
    h("a", { class: "pb-card", href: `#/playbooks/${encodeURIComponent(playbook.slug)}`, dataset: { slug: playbook.slug } },
      h("span", { class: "pb-card-title" }, pick(playbook.title)),
      h("span", { class: "pb-card-summary" }, pick(playbook.summary)),
      h("span", { class: "pb-card-meta" }, t("pb.steps.count", { n: playbook.steps.length }),
        playbook.script ? ` · ${t("pb.has.script")}` : "")));
}

function renderList(view, playbooks) {
  const results = h("div", { class: "pb-groups" });
  const search = h("input", { type: "search", class: "pb-search", placeholder: t("pb.search"), value: query,
    "aria-label": t("pb.search.label"), enterkeyhint: "search", autocomplete: "off",
    oninput: () => { query = search.value; show(); } });

  function show() {
    const words = query.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const found = playbooks.filter((p) => matches(p, words));
    if (!found.length) {
      results.replaceChildren(h("div", { class: "empty" }, h("p", {}, t("pb.none", { q: query.trim() })),
        h("button", { type: "button", onclick: () => { query = ""; search.value = ""; show(); search.focus(); } },
          t("pb.clear"))));
      return;
    }
    const known = CATEGORIES.filter((c) => found.some((p) => p.category === c));
    const other = [...new Set(found.map((p) => p.category))].filter((c) => !CATEGORIES.includes(c));
    results.replaceChildren(...[...known, ...other].map((category) =>
      h("section", { class: "pb-group", dataset: { category } },
        h("h2", {}, t(`cat.${category}`)),
        h("ul", { class: "pb-list" }, found.filter((p) => p.category === category).map(playbookCard)))));
  }

  show();
  mount(view, offlineNote(), h("div", { class: "pb-head" }, h("h1", {}, t("pb.title")),
    h("span", { class: "muted" }, t("pb.count", { n: playbooks.length }))), search, results);
  startScreen();
}

// ---------------------------------------------------------------- one playbook

const ticksKey = (slug) => `od.ticks.${session.user?.site_id ?? "-"}.${slug}`;

function loadTicks(slug) {
  try { return JSON.parse(localStorage.getItem(ticksKey(slug)) || "{}"); } catch { return {}; }
}

function saveTicks(slug, ticks) {
  if (Object.keys(ticks).length) localStorage.setItem(ticksKey(slug), JSON.stringify(ticks));
  else localStorage.removeItem(ticksKey(slug));
}

function tickTime(iso) {
  return new Date(iso).toLocaleTimeString(lang() === "en" ? "en-GB" : "zh-CN", { hour: "2-digit", minute: "2-digit" });
}

function stepsSection(playbook) {
  const ticks = loadTicks(playbook.slug);
  const progress = h("span", { class: "pb-progress", "aria-live": "polite" });
  const update = () => {
    const done = playbook.steps.filter((s) => ticks[s.id]).length;
    progress.textContent = t("pb.progress", { done, total: playbook.steps.length });
    clear.hidden = done === 0;
  };
  let armed = null; // two taps to clear, so a stray tap doesn't wipe the checklist
  const clear = h("button", { type: "button", class: "pb-clear", onclick: () => {
    if (!armed) {
      clear.textContent = t("pb.clear.confirm");
      armed = setTimeout(() => { armed = null; clear.textContent = t("pb.clear.ticks"); }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    for (const id of Object.keys(ticks)) delete ticks[id];
    saveTicks(playbook.slug, ticks);
    list.querySelectorAll("input[type=checkbox]").forEach((box) => { box.checked = false; box.dispatchEvent(new Event("sync")); });
    clear.textContent = t("pb.clear.ticks");
    update();
  } }, t("pb.clear.ticks"));

  const list = h("ol", { class: "pb-steps" }, playbook.steps.map((step, index) => {
    const when = h("span", { class: "pb-ticked" });
    const box = h("input", { type: "checkbox", checked: Boolean(ticks[step.id]), "aria-describedby": `step-${step.id}-meta` });
    const item = h("li", { class: "pb-step", dataset: { step: step.id } });
    const sync = () => {
      item.classList.toggle("done", box.checked);
      when.textContent = ticks[step.id] ? t("pb.ticked.at", { time: tickTime(ticks[step.id]) }) : "";
    };
    box.addEventListener("change", () => {
      if (box.checked) ticks[step.id] = new Date().toISOString();
      else delete ticks[step.id];
      saveTicks(playbook.slug, ticks);
      sync();
      update();
    });
    box.addEventListener("sync", sync);
    item.append(h("label", { class: "pb-step-label" }, box,
      h("span", { class: "pb-step-body" },
        h("span", { class: "pb-step-text" }, `${index + 1}. `, pick(step.text)),
        h("span", { class: "pb-step-meta", id: `step-${step.id}-meta` },
          h("span", { class: `who who-${step.who}` }, t(`who.${step.who}`)),
          step.within_minutes === null || step.within_minutes === undefined ? null
            : h("span", { class: "when" }, minutesText("when", step.within_minutes)),
          when))));
    sync();
    return item;
  }));
  update();
  return h("section", { class: "pb-section", id: "pb-steps" },
    h("div", { class: "pb-section-head" }, h("h2", {}, t("pb.steps")), progress),
    list,
    h("div", { class: "row pb-steps-foot" }, clear, h("span", { class: "muted small" }, t("pb.ticks.note"))));
}

function scriptSection(playbook) {
  const lines = pick(playbook.script);
  if (!lines || !lines.length) return null;
  return h("section", { class: "pb-section", id: "pb-script" },
    h("h2", {}, t("pb.script")),
    h("p", { class: "muted small" }, t("pb.script.hint")),
    h("ol", { class: "pb-script" }, lines.map((line) => h("li", {}, line))));
}

function formsSection(playbook, formTitles) {
  if (!playbook.forms?.length) return null;
  return h("section", { class: "pb-section", id: "pb-forms" },
    h("h2", {}, t("pb.forms")),
    h("div", { class: "pb-forms" }, playbook.forms.map((slug) =>
      h("a", { class: "button big pb-form", href: `#/forms/${encodeURIComponent(slug)}`, dataset: { form: slug } },
        formTitles.get(slug) || slug))));
}

function telHref(phone) {
  return `tel:${phone.replace(/[^0-9+]/g, "")}`;
}

function contactsSection(playbook) {
  if (!playbook.contacts?.length) return null;
  return h("section", { class: "pb-section", id: "pb-contacts" },
    h("h2", {}, t("pb.contacts")),
    h("div", { class: "pb-contacts" }, playbook.contacts.map((contact) =>
      // Its name is what it shows (label, then number), so voice control finds it by the words on it.
      h("a", { class: "pb-tel", href: telHref(contact.phone), title: `${t("pb.call")} ${contact.phone}` },
        h("span", { class: "pb-tel-icon", "aria-hidden": "true" }, "✆"),
        h("span", { class: "pb-tel-text" },
          h("span", { class: "pb-tel-label" }, pick(contact.label)), " ",
          h("span", { class: "pb-tel-number" }, contact.phone))))));
}

function escalationSection(playbook) {
  if (!playbook.escalation?.length) return null;
  return h("section", { class: "pb-section", id: "pb-escalation" },
    h("h2", {}, t("pb.escalation")),
    h("ol", { class: "pb-ladder" }, playbook.escalation.map((rung) =>
      h("li", {},
        h("div", { class: "pb-rung-head" },
          h("span", { class: "pb-rung-time" }, minutesText("after", rung.after_minutes)),
          h("span", { class: "pb-rung-roles" }, t("pb.notify", {
            roles: rung.notify.map((role) => t(`role.${role}`)).join(lang() === "en" ? ", " : "、") }))),
        h("p", {}, pick(rung.message)),
        rung.contacts?.length ? h("div", { class: "pb-rung-calls" }, rung.contacts.map((contact) =>
          h("a", { class: "pb-tel pb-tel-small", href: telHref(contact.phone), "aria-label": `${t("pb.call")} ${pick(contact.label)} ${contact.phone}` },
            h("span", { class: "pb-tel-icon", "aria-hidden": "true" }, "✆"),
            h("span", { class: "pb-tel-text" }, h("span", { class: "pb-tel-label" }, pick(contact.label)),
              h("span", { class: "pb-tel-number" }, contact.phone))))) : null))));
}

function jumpLinks(sections) {
  const present = sections.filter(Boolean);
  if (present.length < 2) return null;
  return h("nav", { class: "pb-jump", "aria-label": t("pb.jump") }, present.map((section) =>
    h("button", { type: "button", class: "chip-light", onclick: () => section.scrollIntoView({ behavior: "smooth" }) },
      section.querySelector("h2").textContent)));
}

// Also the editor's preview (screens/editor.js): a draft is drawn exactly as agents will see it.
export function renderPlaybook(view, playbook, forms) {
  const formTitles = new Map(forms.map((f) => [f.slug, pick(f.title)]));
  const sections = [formsSection(playbook, formTitles), stepsSection(playbook), scriptSection(playbook),
    contactsSection(playbook), escalationSection(playbook)];
  mount(view, offlineNote(),
    h("a", { class: "pb-back", href: "#/playbooks" }, t("pb.back")),
    h("header", { class: "pb-header", dataset: { slug: playbook.slug, version: playbook.version } },
      h("span", { class: "pb-category" }, t(`cat.${playbook.category}`)),
      h("h1", {}, pick(playbook.title)),
      h("p", { class: "pb-summary" }, pick(playbook.summary))),
    jumpLinks(sections),
    sections);
  startScreen();
}

// ---------------------------------------------------------------- routes

// Not found, or nothing saved on this device while the server can't be reached (fetch's TypeError).
function showFailure(view, error) {
  const offline = error instanceof TypeError;
  mount(view, h("div", { class: "card stack" },
    h("p", { class: "error", role: "alert" },
      error?.status === 404 ? t("pb.notfound") : offline ? t("pb.offline.empty") : errorText(error)),
    h("div", { class: "row" },
      h("button", { type: "button", onclick: () => emit("rerender") }, t("pb.retry")),
      h("a", { class: "button", href: "#/playbooks" }, t("pb.back")))));
}

route("#/playbooks", async (view) => {
  let playbooks;
  try {
    playbooks = await loadContent("/api/playbooks");
  } catch (error) {
    return showFailure(view, error);
  }
  renderList(view, playbooks);
});

route("#/playbooks/:slug", async (view, { slug }) => {
  let playbook;
  let forms;
  try {
    [playbook, forms] = await Promise.all([
      loadContent(`/api/playbooks/${encodeURIComponent(slug)}`),
      loadContent("/api/forms").catch(() => []), // titles only; slugs do without them
    ]);
  } catch (error) {
    return showFailure(view, error);
  }
  renderPlaybook(view, playbook, forms);
  // Paper fallback (screens/print.js): this playbook as a printable checklist.
  view.append(h("a", { class: "button print-this", href: `#/print/playbook/${encodeURIComponent(slug)}` }, t("print.button")));
});

export function start() {
  window.addEventListener("hashchange", () => { if (!location.hash.startsWith("#/playbooks")) shownHash = null; });
  on("net", () => document.querySelectorAll(".pb-offline").forEach(fillOfflineNote));
  // New versions arrived (content.js): show them, unless the agent is typing a search.
  on("content", () => {
    if (/^#\/playbooks/.test(location.hash) && document.activeElement?.type !== "search") emit("rerender");
  });
}
