// Printable fallback: every playbook as a checklist, every form as a blank numbered sheet with a sheet ID
// and its QR code, and the one-click outage kit. Rendered here from the saved definitions, so printing
// works offline too (then the sheet ID is made on this device and printed as big text, without a QR code).
import { api, session } from "../api.js";
import { loadContent } from "../content.js";
import { pick, t } from "../i18n.js";
import { route } from "../router.js";
import { h, mount } from "../ui.js";
import { deviceSheetId, isDeviceSheet, localDay, rowsThatFit } from "../sheets.js";
import { loadCallbacks } from "./callbacks.js";

// Printed text is always both languages: Chinese first, English below.
const ZH = (text) => (text && typeof text === "object" ? text["zh-CN"] : text) || "";
const EN = (text) => (text && typeof text === "object" ? text.en : text) || "";
const both = (text, tag = "span", cls = "") => [
  h(tag, { class: `zh ${cls}`, lang: "zh-CN" }, ZH(text)), h(tag, { class: `en ${cls}`, lang: "en" }, EN(text))];
const L = (zh, en) => ({ "zh-CN": zh, en });

const WHO = {
  agent: L("坐席", "Agent"), lead: L("值班组长", "Team lead"), manager: L("主管/经理", "Manager"),
  ops: L("运维", "Ops"), admin: L("管理员", "Admin"),
};

function printedAt() {
  const now = new Date();
  return now.toLocaleString("zh-CN", { dateStyle: "short", timeStyle: "short" });
}

// What a sheet is called, for its page headers and the kit's contents.
const titled = (title) => ({ title: `${ZH(title)} ${EN(title)}`, titleZh: ZH(title), titleEn: EN(title) });

function sheetHead(title, kindLabel, version, extra) {
  return h("header", { class: "ps-head" },
    h("div", { class: "ps-title" }, h("h1", { class: "zh", lang: "zh-CN" }, ZH(title)),
      h("p", { class: "en", lang: "en" }, EN(title)),
      h("p", { class: "ps-meta" }, `${ZH(kindLabel)} ${EN(kindLabel)} · v${version} · 打印 Printed ${printedAt()} · ` +
        `${session.user ? session.user.site_name : ""}`)),
    extra);
}

// ---------------------------------------------------------------- playbooks

function within(minutes) {
  if (minutes === null || minutes === undefined) return "";
  if (minutes === 0) return " · 立即 at once";
  if (minutes >= 120 && minutes % 60 === 0) return ` · ${minutes / 60} 小时内 within ${minutes / 60} h`;
  return ` · ${minutes} 分钟内 within ${minutes} min`;
}

export function playbookSheet(playbook, forms = []) {
  const formTitle = (slug) => {
    const form = forms.find((f) => f.slug === slug);
    return form ? `${ZH(form.title)} ${EN(form.title)}` : slug;
  };
  const section = (zh, en, ...content) => h("section", { class: "ps-section" },
    h("h2", {}, h("span", { class: "zh" }, zh), " ", h("span", { class: "en" }, en)), ...content);
  return h("article", { class: "print-sheet playbook-sheet", dataset: { playbook: playbook.slug, ...titled(playbook.title) } },
    sheetHead(playbook.title, L("应急预案", "Playbook"), playbook.version,
      h("div", { class: "ps-fill" }, h("span", {}, "事件开始 Started ____:____"), h("span", {}, "组长 Lead ________"))),
    h("p", { class: "ps-summary" }, both(playbook.summary, "span")),
    section("处置步骤（完成后打勾并写时间）", "Steps (tick and write the time when done)",
      h("ol", { class: "checklist" }, playbook.steps.map((step, i) => h("li", { dataset: { step: step.id } },
        h("span", { class: "tick", "aria-hidden": "true" }),
        h("span", { class: "num" }, String(i + 1)),
        h("div", { class: "step-text" }, both(step.text, "p"),
          h("p", { class: "step-who" }, `${ZH(WHO[step.who])} ${EN(WHO[step.who])}`, within(step.within_minutes))),
        h("span", { class: "done-at" }, "时间 Time", h("br"), "____:____"))))),
    playbook.escalation && playbook.escalation.length ? section("升级时间表", "Escalation ladder",
      h("table", { class: "ps-table ladder" },
        h("thead", {}, h("tr", {}, h("th", {}, "时间 After"), h("th", {}, "通知 Notify"), h("th", {}, "内容 Message"),
          h("th", {}, "已通知 Done"))),
        h("tbody", {}, playbook.escalation.map((rung) => h("tr", {},
          h("td", { class: "nowrap" }, `${rung.after_minutes} 分钟 min`),
          h("td", {}, rung.notify.map((r) => `${ZH(WHO[r] || r)} ${EN(WHO[r] || r)}`).join(" / ")),
          h("td", {}, both(rung.message, "p")),
          h("td", { class: "nowrap" }, h("span", { class: "tick" }), " ____:____")))))) : null,
    playbook.contacts && playbook.contacts.length ? section("联系电话", "Contact numbers",
      h("table", { class: "ps-table contacts" }, h("tbody", {}, playbook.contacts.map((c) => h("tr", {},
        h("td", {}, both(c.label, "p")), h("td", { class: "phone" }, c.phone)))))) : null,
    playbook.script ? section("应急话术", "Emergency script",
      h("ol", { class: "script" }, (playbook.script["zh-CN"] || []).map((line, i) => h("li", {},
        h("p", { class: "zh", lang: "zh-CN" }, line), h("p", { class: "en", lang: "en" }, (playbook.script.en || [])[i] || ""))))) : null,
    playbook.forms && playbook.forms.length ? section("使用的表单", "Forms used",
      h("p", {}, playbook.forms.map(formTitle).join(" · "))) : null);
}

// ---------------------------------------------------------------- blank form sheets

function cellHint(field) {
  if (field.type === "boolean") return h("span", { class: "hint" }, "□是Y  □否N");
  if (field.type === "choice") {
    return h("span", { class: "hint" }, field.choices.map((_, i) => `${i + 1}`).join("  "));
  }
  if (field.type === "datetime") return h("span", { class: "hint" }, "月/日 M/D   时:分 h:m");
  return null;
}

export function formSheet(form, sheet) {
  const rows = rowsThatFit(form);
  const total = form.fields.reduce((sum, f) => sum + (f.print_width || 2), 0);
  const offline = isDeviceSheet(sheet.sheet_id);
  const idBlock = h("div", { class: `ps-id ${offline ? "offline" : ""}` },
    sheet.qr_svg ? h("img", { class: "qr", src: sheet.qr_svg, alt: `QR ${sheet.sheet_id}` }) : null,
    h("div", {},
      h("p", { class: "ps-id-label" }, "表单编号 Sheet ID"),
      h("p", { class: "ps-id-value", dataset: { sheetId: sheet.sheet_id } }, sheet.sheet_id),
      offline ? h("p", { class: "ps-id-note" }, "离线生成，无二维码：录入时手输此编号", h("br"),
        "Made offline, no QR code: type this ID when transcribing") : null));
  const choiceFields = form.fields.filter((f) => f.type === "choice");
  return h("article", { class: "print-sheet form-sheet",
    dataset: { form: form.slug, sheetId: sheet.sheet_id, rows, ...titled(form.title) } },
    sheetHead(form.title, L("纸质表单", "Paper form"), form.version, idBlock),
    h("table", { class: "ps-grid" },
      h("colgroup", {}, h("col", { class: "rownum" }),
        form.fields.map((f) => h("col", { style: `width:${((f.print_width || 2) / total) * 100}%` }))),
      h("thead", {}, h("tr", {}, h("th", { class: "rownum" }, "行", h("br"), "Row"),
        form.fields.map((f) => h("th", { dataset: { field: f.name } },
          h("span", { class: "zh" }, ZH(f.label), f.required ? " *" : ""), h("span", { class: "en" }, EN(f.label)))))),
      h("tbody", {}, Array.from({ length: rows }, (_, i) => h("tr", {},
        h("td", { class: "rownum" }, String(i + 1)),
        form.fields.map((f) => h("td", {}, cellHint(f))))))),
    choiceFields.length ? h("div", { class: "legend" }, choiceFields.map((f) => h("p", {},
      h("b", {}, `${ZH(f.label)} ${EN(f.label)}：`),
      f.choices.map((c, i) => `${i + 1} ${ZH(c.label)} ${EN(c.label)}`).join("  ·  ")))) : null,
    h("footer", { class: "ps-foot" },
      h("span", {}, "坐席 Agent ________  日期 Date ________  第__页 Page __"),
      h("span", {}, "* 必填 required · 每行一条；恢复后在“转录纸质表”按编号和行号录入 · One per row; transcribe by sheet ID and row")));
}

// Sheet IDs from the server (with QR codes) when it answers; made here otherwise.
export async function sheetIds(form, count) {
  try {
    return await api("/api/print/sheets", { method: "POST", body: { form, count, day: localDay() }, timeout: 6000 });
  } catch (error) {
    if (error.status && error.status < 500) throw error;
    return Array.from({ length: count }, () => ({ sheet_id: deviceSheetId(), qr_svg: null }));
  }
}

// ---------------------------------------------------------------- screens

function toolbar(back, ...extra) {
  return h("div", { class: "print-toolbar no-print" },
    h("a", { class: "button", href: back }, t("print.back")), ...extra,
    h("button", { type: "button", class: "primary", id: "print-now", onclick: () => window.print() }, t("print.button")));
}

// Every printed page says what it is: the sheet's title (and sheet ID) at the top, "n / N" at the bottom.
// One named @page per sheet carries its own margin boxes; the rules go in through the CSSOM (the CSP allows
// no inline <style>), replacing the last print screen's.
let pageRules = null;
const cssText = (text) => `"${String(text).replace(/["\\]/g, "\\$&").replace(/\n/g, " ")}"`;

function pageSetup(sheets, kitTitle) {
  const rules = sheets.map((sheet, i) => {
    const name = `sheet-${i + 1}`;
    sheet.dataset.page = name;
    const landscape = sheet.classList.contains("form-sheet") || sheet.classList.contains("list-sheet");
    const title = sheet.dataset.title || "";
    const id = sheet.dataset.sheetId ? `表单编号 Sheet ID ${sheet.dataset.sheetId}` : "";
    return `.print-sheet[data-page="${name}"] { page: ${name}; }
      @page ${name} { size: A4 ${landscape ? "landscape" : "portrait"}; margin: ${landscape ? "12mm 10mm" : "14mm 12mm"};
        @top-left { content: ${cssText(sheets.length > 1 ? `${i + 1}. ${title}` : title)}; font-size: 8pt; }
        @top-right { content: ${cssText(id || kitTitle)}; font-size: 8pt; }
        @bottom-left { content: ${cssText(kitTitle)}; font-size: 8pt; }
        @bottom-right { content: "第 " counter(page) " / " counter(pages) " 页 · Page " counter(page) " / " counter(pages); font-size: 8pt; } }`;
  });
  const sheet = new CSSStyleSheet();
  sheet.replaceSync(rules.join("\n"));
  document.adoptedStyleSheets = [...document.adoptedStyleSheets.filter((s) => s !== pageRules), sheet];
  pageRules = sheet;
}

// The kit's first page: every sheet in print order, with its kind and sheet ID, numbered as on its pages.
function contentsSheet(sheets) {
  return h("article", { class: "print-sheet contents-sheet playbook-sheet", dataset: { title: "目录 Contents" } },
    h("header", { class: "ps-head" }, h("div", { class: "ps-title" },
      h("h1", { class: "zh", lang: "zh-CN" }, "应急包 · 目录"), h("p", { class: "en", lang: "en" }, "Outage kit · Contents"),
      h("p", { class: "ps-meta" }, `打印 Printed ${printedAt()} · ${session.user ? session.user.site_name : ""}`))),
    h("ol", { class: "ps-contents" }, sheets.map((sheet, i) => h("li", { dataset: { n: i + 2 } },
      h("span", { class: "num" }, String(i + 2)), " ",
      h("span", { class: "zh", lang: "zh-CN" }, sheet.dataset.titleZh || ""), " ",
      h("span", { class: "en", lang: "en" }, sheet.dataset.titleEn || ""),
      sheet.dataset.sheetId ? h("span", { class: "ps-contents-id" }, ` · ${sheet.dataset.sheetId}`) : null))));
}

function ready(view, sheets, kitTitle = "应急工作台 Outage Desk") {
  pageSetup(sheets, kitTitle);
  const offline = sheets.some((s) => s.dataset.sheetId && isDeviceSheet(s.dataset.sheetId));
  view.append(h("div", { class: "print-pages", dataset: { ready: "1" } }, sheets));
  if (offline) view.querySelector(".print-toolbar").append(h("p", { class: "muted" }, t("print.offlineIds")));
}

route("#/print", async (view) => {
  const [playbooks, forms] = await Promise.all([loadContent("/api/playbooks"), loadContent("/api/forms")]);
  const item = (href, title) => h("li", {}, h("a", { class: "button print-link", href }, pick(title)));
  mount(view,
    h("h1", {}, t("print.index")),
    h("section", { class: "card" }, h("p", {}, t("print.kit.help")),
      h("a", { class: "button primary big", href: "#/print/kit" }, `${t("print.kit")}`)),
    h("h2", {}, t("print.playbooks")),
    h("ul", { class: "print-list" }, playbooks.map((p) => item(`#/print/playbook/${p.slug}`, p.title))),
    h("h2", {}, t("print.forms")),
    h("ul", { class: "print-list" }, forms.map((f) => item(`#/print/form/${f.slug}`, f.title))));
});

route("#/print/playbook/:slug", async (view, { slug }) => {
  const [playbook, forms] = await Promise.all([loadContent(`/api/playbooks/${encodeURIComponent(slug)}`),
    loadContent("/api/forms").catch(() => [])]);
  mount(view, toolbar("#/print"));
  ready(view, [playbookSheet(playbook, forms)]);
});

route("#/print/form/:slug", async (view, { slug }) => {
  const form = await loadContent(`/api/forms/${encodeURIComponent(slug)}`);
  const copies = 1;
  const input = h("input", { type: "number", min: 1, max: 20, value: copies, id: "copies", class: "copies",
    inputmode: "numeric", onchange: async () => {
      const n = Math.max(1, Math.min(20, Number(input.value) || 1));
      view.querySelector(".print-pages")?.remove();
      ready(view, (await sheetIds(slug, n)).map((s) => formSheet(form, s)));
    } });
  mount(view, toolbar("#/print", h("label", { class: "copies-label" }, t("print.copies"), input)),
    h("p", { class: "loading no-print" }, t("print.loading")));
  const sheets = await sheetIds(slug, copies);
  view.querySelector(".loading")?.remove();
  ready(view, sheets.map((s) => formSheet(form, s)));
});

route("#/print/kit", async (view) => {
  mount(view, toolbar("#/print"), h("p", { class: "loading no-print" }, t("print.loading")));
  const [playbooks, forms] = await Promise.all([loadContent("/api/playbooks"), loadContent("/api/forms")]);
  const sheets = [];
  for (const form of forms) sheets.push(formSheet(form, (await sheetIds(form.slug, 1))[0]));
  view.querySelector(".loading")?.remove();
  const all = [...playbooks.map((p) => playbookSheet(p, forms)), ...sheets];
  ready(view, [contentsSheet(all), ...all], "应急包 Outage kit");
});

// The callback list on paper: for when the phones die halfway through the callbacks.
route("#/print/callbacks/:scope", async (view, params) => {
  const scope = params.scope === "all" ? "all" : "mine";
  const { data } = await loadCallbacks(scope, "active");
  const time = (iso) => (iso ? new Date(iso).toLocaleString("zh-CN", { dateStyle: "short", timeStyle: "short" }) : "");
  const heads = [["来电人", "Caller"], ["电话", "Phone"], ["来电时间", "Called"], ["最晚回拨", "Call back by"],
    ["负责人", "Owner"], ["第1次", "Try 1"], ["第2次", "Try 2"], ["第3次", "Try 3"], ["结果", "Outcome"], ["备注", "Notes"]];
  const sheet = h("article", { class: "print-sheet list-sheet",
    dataset: { rows: data.items.length, ...titled(L("回拨清单", "Callback list")) } },
    sheetHead(L("回拨清单", "Callback list"), L("回拨", "Callbacks"), 1,
      h("div", { class: "ps-fill" }, h("span", {}, `共 ${data.items.length} 个 · ${data.items.length} in all`))),
    h("table", { class: "ps-grid list-grid" },
      h("colgroup", {}, h("col", { class: "rownum" }), [13, 15, 10, 10, 10, 7, 7, 7, 12, 9].map((w) => h("col", { style: `width:${w}%` }))),
      h("thead", {}, h("tr", {}, h("th", { class: "rownum" }, "#"), heads.map(([zh, en]) => h("th", {},
        h("span", { class: "zh" }, zh), h("span", { class: "en" }, en))))),
      h("tbody", {}, data.items.map((c, i) => h("tr", { dataset: { callback: c.id } },
        h("td", { class: "rownum" }, String(i + 1)), h("td", {}, c.caller_name), h("td", { class: "phone" }, c.phone),
        h("td", {}, time(c.called_at)), h("td", {}, time(c.due_at)), h("td", {}, c.owner.name || ""),
        h("td", {}, h("span", { class: "hint" }, "时:分 h:m")), h("td", {}), h("td", {}),
        h("td", {}, h("span", { class: "hint" }, "□接通 Reached □无人接 No answer □错号 Wrong no. □解决 Resolved")),
        h("td", {}))))));
  mount(view, toolbar("#/callbacks"));
  ready(view, [sheet]);
});
