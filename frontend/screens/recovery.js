// After recovery (leads): re-enter the manual records into the CRM (single or bulk, with the CRM
// reference) or close them, export them, and write the post-incident review; its print views.
import { api, errorText, session } from "../api.js";
import { loadContent } from "../content.js";
import { emit } from "../events.js";
import * as readCache from "../offline.js";
import { lang, pick, t } from "../i18n.js";
import { route } from "../router.js";
import { formatTime, h, mount, toast } from "../ui.js";

const STATUSES = ["pending", "reentered", "closed"];

// Downloads need the token, so they go through fetch and a blob link (a plain link would be a 401).
async function download(path, filename) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${session.token}` } });
  if (!response.ok) throw new Error((await response.json().catch(() => ({}))).detail || `HTTP ${response.status}`);
  // The server's name carries the date (call-record-records-20261120-1000.csv): keep it.
  const named = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1];
  const url = URL.createObjectURL(await response.blob());
  const a = h("a", { href: url, download: named || filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function summary(r) {
  const d = r.data || {};
  return [d.caller_name, d.phone, d.called_at ? formatTime(d.called_at, lang()) : null, d.details || d.symptom || d.topic]
    .filter(Boolean).join(" · ");
}

const FILTERS = "od.re.filters"; // hash routes take no query string: the filters live in the tab's session

route("#/recovery", async (view) => {
  const filters = { form: "call-record", status: "pending", incident_id: "",
    ...JSON.parse(sessionStorage.getItem(FILTERS) || "{}") };
  const query = new URLSearchParams({ form: filters.form, status: filters.status, limit: "500",
    ...(filters.incident_id ? { incident_id: filters.incident_id } : {}) });
  const [counts, page, incidents, forms] = await Promise.all([
    // The tiles count what the list shows: the same form and incident.
    api(`/api/recovery/counts?${new URLSearchParams({ form: filters.form,
      ...(filters.incident_id ? { incident_id: filters.incident_id } : {}) })}`),
    api(`/api/records?${query}`), api("/api/incidents?status=all").catch(() => []), api("/api/forms")]);
  const incidentList = Array.isArray(incidents) ? incidents : incidents.items || [];
  const go = (changes) => {
    sessionStorage.setItem(FILTERS, JSON.stringify({ ...filters, ...changes }));
    emit("rerender");
  };
  const bulkRef = h("input", { id: "bulk-ref", placeholder: t("re.bulkRef"), maxlength: 100 });
  const rows = page.items.map((r) => {
    const box = h("input", { type: "checkbox", class: "re-pick", value: r.id, "aria-label": summary(r) });
    const ref = h("input", { class: "re-ref", placeholder: t("re.crm"), value: r.crm_ref || "", maxlength: 100 });
    return { r, box, ref, el: h("li", { class: "re-item", dataset: { record: r.id } },
      h("label", { class: "re-line" }, box, r.data?.urgency === "urgent"
        ? h("span", { class: "tag urgent re-urgent" }, t("cb.urgent")) : null, h("span", {}, summary(r))),
      h("p", { class: "muted re-meta" }, r.receipt || "", r.source === "paper" ? ` · ${t("re.paper", { sheet: r.sheet_id, row: r.sheet_row })}` : "",
        r.reentered_at ? ` · ${formatTime(r.reentered_at, lang())}` : ""),
      filters.status !== "closed" ? ref : null) };
  });

  async function mark(status) {
    const picked = rows.filter((x) => x.box.checked);
    if (!picked.length) return;
    const records = picked.map((x) => ({ id: x.r.id, ...(x.ref.value.trim() ? { crm_ref: x.ref.value.trim() } : {}) }));
    const body = { status, records, ...(bulkRef.value.trim() ? { crm_ref: bulkRef.value.trim() } : {}) };
    try {
      const answer = await api("/api/recovery/reentry", { method: "POST", body });
      toast(t("re.done", { n: answer.updated.length }));
      if (Object.keys(answer.errors).length) toast(Object.values(answer.errors)[0], "error");
      emit("rerender");
    } catch (error) {
      toast(error.problem?.errors ? t("re.needRef") : errorText(error), "error");
    }
  }

  const exportQuery = new URLSearchParams({ form: filters.form, ...(filters.incident_id ? { incident_id: filters.incident_id } : {}) });
  mount(view,
    h("h1", {}, t("re.title")),
    h("div", { class: "re-counts", role: "status" }, STATUSES.map((s) => h("button", {
      type: "button", class: `re-count ${filters.status === s ? "active" : ""}`, dataset: { status: s },
      onclick: () => go({ status: s }) }, h("b", {}, String(counts[s])), h("span", {}, t(`re.${s}`)))),
    h("span", { class: "re-count total" }, h("b", {}, String(counts.total)), h("span", {}, t("re.total")))),
    h("div", { class: "row re-filters" },
      h("label", {}, t("re.incident"), h("select", { id: "re-incident", onchange: (e) => go({ incident_id: e.target.value }) },
        h("option", { value: "" }, t("re.allIncidents")),
        incidentList.map((i) => h("option", { value: i.id, selected: String(i.id) === filters.incident_id },
          `#${i.id} ${pick(i.title)} ${formatTime(i.declared_at, lang())}`)))),
      h("label", {}, t("re.form"), h("select", { id: "re-form", onchange: (e) => go({ form: e.target.value }) },
        forms.map((f) => h("option", { value: f.slug, selected: f.slug === filters.form }, pick(f.title)))))),
    rows.length ? h("div", { class: "card" },
      h("label", { class: "re-line" }, h("input", { type: "checkbox", id: "re-all",
        onchange: (e) => rows.forEach((x) => { x.box.checked = e.target.checked; }) }), t("re.selectAll")),
      h("ul", { class: "re-list" }, rows.map((x) => x.el)),
      filters.status !== "reentered" ? h("div", { class: "re-actions" }, bulkRef,
        h("button", { type: "button", class: "primary", id: "re-mark", onclick: () => mark("reentered") }, t("re.markSelected")),
        filters.status === "pending" ? h("button", { type: "button", id: "re-close", onclick: () => mark("closed") }, t("re.closeSelected")) : null) : null)
      : h("p", { class: "empty" }, t("re.none")),
    h("div", { class: "row" },
      h("button", { type: "button", id: "re-csv", onclick: () => download(`/api/recovery/export.csv?${exportQuery}`, `${filters.form}.csv`).catch((e) => toast(errorText(e), "error")) }, t("re.csv")),
      h("button", { type: "button", id: "re-json", onclick: () => download(`/api/recovery/export.json?${exportQuery}`, `${filters.form}.json`).catch((e) => toast(errorText(e), "error")) }, t("re.json"))),
    h("h2", {}, t("re.reviews")),
    h("ul", { class: "re-incidents" }, incidentList.slice(0, 30).map((i) => h("li", {},
      h("a", { href: `#/incidents/${i.id}/review` }, `#${i.id} ${pick(i.title)}`), " · ",
      h("span", { class: "muted" }, `${t(`st.${i.status}`)} · ${formatTime(i.declared_at, lang())}`), " · ",
      h("a", { href: `#/print/incident/${i.id}/log` }, t("re.log"))))));
}, { roles: ["lead", "manager", "admin"] });

// ---------------------------------------------------------------- the review

const minutes = (s) => (s === null || s === undefined ? "—" : t("rv.minutes", { n: Math.round(s / 6) / 10 }));

function figures(report) {
  const fr = report.first_report;
  const cb = report.callbacks;
  const re = report.reentry;
  const row = (label, value, cls = "") => h("tr", { class: cls }, h("th", {}, label), h("td", {}, value));
  return h("table", { class: "rv-figures" }, h("tbody", {},
    row(t("rv.firstReport"), `${minutes(fr.seconds)} · ${t("rv.fiveMin")}: ${fr.within_limit ? t("rv.ok") : t("rv.late")}`,
      fr.within_limit ? "ok" : "bad"),
    row(t("rv.outage"), report.outage.ongoing ? `${minutes(report.outage.seconds_so_far)} (${t("rv.ongoing")})` : minutes(report.outage.seconds)),
    row(t("rv.records"), t("rv.recordsBySource", { total: report.records.total,
      device: report.records.by_source.device || 0, paper: report.records.by_source.paper || 0 })),
    row(t("rv.callbacks"), `${t("rv.promised")} ${cb.promised} · ${t("rv.onTime")} ${cb.on_time} · ${t("rv.lateCb")} ${cb.late} · ${t("rv.open")} ${cb.open}`,
      cb.open || cb.late ? "bad" : "ok"),
    row(t("rv.reentry"), `${t("re.reentered")} ${re.reentered} · ${t("re.closed")} ${re.closed} · ${t("re.pending")} ${re.pending} / ${re.total}`,
      re.pending ? "bad" : "ok")));
}

function escalations(report) {
  return h("table", { class: "rv-ladder" },
    h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, t("rv.escalations")), h("th", {}, t("rv.fired")), h("th", {}, t("rv.acked")))),
    h("tbody", {}, report.escalations.map((e) => h("tr", {},
      h("td", {}, String(e.rung + 1)), h("td", {}, t("rv.rung", { after: e.after_minutes, roles: e.notify.map((r) => t(`role.${r}`)).join(t("list.sep")),
        status: t(`rv.state.${e.status}`) })),
      h("td", {}, e.fired_at ? formatTime(e.fired_at, lang()) : "—"),
      h("td", {}, e.acked_at ? `${formatTime(e.acked_at, lang())} (+${minutes(e.seconds_fire_to_ack)})` : "—")))));
}

const KINDS = {
  declared: ["宣布", "Declared"], note: ["备注", "Note"], step_ticked: ["步骤", "Step"],
  escalation_fired: ["升级", "Escalation"], notification_sent: ["已推送", "Push sent"],
  notification_failed: ["推送失败", "Push failed"], notification_gone: ["设备失效", "Device gone"],
  notification_delivered: ["已送达", "Delivered"], acknowledged: ["确认", "Acknowledged"],
  recovered: ["恢复", "Recovered"], resolved: ["结束", "Resolved"], level_changed: ["告警级别", "Alert level"],
  reserve_called: ["调用后备", "Reserves called"],
  crm_pushed: ["推送到CRM", "Sent to CRM"], crm_reentered: ["已入CRM", "In the CRM"], crm_failed: ["CRM推送失败", "CRM push failed"],
};
// On screen in the user's language; on paper both, each marked with its language.
const kindText = (kind, both = false) => {
  const [zh, en] = KINDS[kind] || [t("ev.other"), t("ev.other")];
  if (!both) return lang() === "en" ? en : zh;
  return [h("span", { lang: "zh-CN" }, zh), " ", h("span", { lang: "en" }, en)];
};
// A step is never shown by its id; a ladder message in the reader's language.
const eventDetails = (e) => (e.data && (e.data.text || e.data.note || e.data.crm_ref || e.data.error ||
  (e.data.message ? pick(e.data.message) : e.data.step ? t("ev.step") : ""))) || "";

function timelineTable(events) {
  return h("table", { class: "rv-timeline" }, h("tbody", {}, events.map((e) => h("tr", {},
    h("td", { class: "nowrap" }, formatTime(e.at, "zh-CN")),
    h("td", {}, h("b", {}, kindText(e.kind, Boolean(document.querySelector(".print-sheet")))), e.actor ? ` · ${e.actor.name}` : "",
      eventDetails(e) ? h("div", { class: "rv-detail" }, eventDetails(e)) : null)))));
}

route("#/incidents/:id/review", async (view, { id }) => {
  const report = await readCache.load(`/api/incidents/${encodeURIComponent(id)}/report`); // offline: the saved copy
  const review = report.review;
  const cause = h("textarea", { id: "rv-cause", rows: 4, maxlength: 20000 }, review.cause || "");
  const actions = h("textarea", { id: "rv-actions", rows: 4, maxlength: 20000 }, review.actions || "");
  mount(view,
    h("h1", {}, `${t("rv.title")} · ${pick(report.incident.title)}`),
    report.incident.drill ? h("p", { class: "banner" }, "演练 DRILL") : null,
    review.due_at ? h("p", { class: review.overdue ? "error" : "muted" },
      review.overdue ? t("rv.overdue") : t("rv.due", { time: formatTime(review.due_at, lang()) })) : null,
    h("section", { class: "card" }, figures(report)),
    report.escalations.length ? h("section", { class: "card" }, h("h2", {}, t("rv.escalations")), escalations(report)) : null,
    h("form", { class: "card stack", onsubmit: async (event) => {
      event.preventDefault();
      try {
        await api(`/api/incidents/${id}/report`, { method: "PUT", body: { cause: cause.value, actions: actions.value } });
        toast(t("rv.saved"));
        emit("rerender");
      } catch (error) { toast(errorText(error), "error"); }
    } },
    h("label", { for: "rv-cause" }, t("rv.cause")), cause,
    h("label", { for: "rv-actions" }, t("rv.actions")), actions,
    review.written_at ? h("p", { class: "muted" }, t("rv.written", { name: review.written_by, time: formatTime(review.updated_at, lang()) })) : null,
    h("button", { type: "submit", class: "primary big" }, t("rv.save"))),
    h("div", { class: "row" }, h("a", { class: "button", href: `#/print/incident/${id}/report` }, `${t("rv.print")}`),
      h("a", { class: "button", href: `#/print/incident/${id}/log` }, `${t("re.log")}`)),
    h("section", { class: "card" }, h("h2", {}, t("rv.timeline")), timelineTable(report.timeline)));
}, { roles: ["lead", "manager", "admin"] });

// ---------------------------------------------------------------- print views (both languages on paper)

function printToolbar(back) {
  return h("div", { class: "print-toolbar no-print" }, h("a", { class: "button", href: back }, "←"),
    h("button", { type: "button", class: "primary", onclick: () => window.print() }, t("print.button")));
}

function printHead(zh, en, report) {
  return h("header", { class: "ps-head" }, h("div", { class: "ps-title" },
    h("h1", { class: "zh" }, `${zh}：${report.incident.title["zh-CN"]}`),
    h("p", { class: "en" }, `${en}: ${report.incident.title.en}`),
    h("p", { class: "ps-meta" }, `#${report.incident.id} · ${report.incident.drill ? "演练 DRILL · " : ""}` +
      `${session.user?.site_name || ""} · 打印 Printed ${formatTime(new Date().toISOString(), "zh-CN")}`)));
}

route("#/print/incident/:id/report", async (view, { id }) => {
  const report = await readCache.load(`/api/incidents/${encodeURIComponent(id)}/report`); // offline: the saved copy
  const fr = report.first_report;
  const cb = report.callbacks;
  const re = report.reentry;
  const line = (zh, en, value) => h("tr", {}, h("th", {}, h("span", { class: "zh" }, zh), " ", h("span", { class: "en" }, en)), h("td", {}, value));
  const mins = (s) => (s === null || s === undefined ? "—" : `${Math.round(s / 6) / 10} 分钟 min`);
  mount(view, printToolbar(`#/incidents/${id}/review`), h("div", { class: "print-pages", dataset: { ready: "1" } },
    h("article", { class: "print-sheet playbook-sheet report-sheet" },
      printHead("事件复盘报告", "Post-incident review", report),
      h("table", { class: "ps-table" }, h("tbody", {},
        line("宣布时间", "Declared", formatTime(report.incident.declared_at, "zh-CN")),
        line("故障开始", "Fault started", formatTime(fr.fault_started_at, "zh-CN")),
        line("首次上报", "First report", `${mins(fr.seconds)} · 5分钟规则 5-minute rule: ${fr.within_limit ? "达标 met" : "超时 missed"}`),
        line("确认", "Acknowledged", report.acknowledgement.at ? `${formatTime(report.acknowledgement.at, "zh-CN")} (+${mins(report.acknowledgement.seconds_from_declared)})` : "—"),
        line("恢复", "Recovered", report.incident.recovered_at ? formatTime(report.incident.recovered_at, "zh-CN") : "—"),
        line("故障时长", "Outage", report.outage.ongoing ? `${mins(report.outage.seconds_so_far)}（仍在持续 ongoing）` : mins(report.outage.seconds)),
        line("离线记录", "Records taken offline", `${report.records.total}（设备 device ${report.records.by_source.device || 0} · 纸质 paper ${report.records.by_source.paper || 0}）`),
        line("回拨", "Callbacks", `承诺 promised ${cb.promised} · 按时 on time ${cb.on_time} · 超时 late ${cb.late} · 未完成 open ${cb.open}`),
        line("录入进度", "Re-entry", `已录入 re-entered ${re.reentered} · 已关闭 closed ${re.closed} · 待录入 pending ${re.pending} / ${re.total}`))),
      h("section", { class: "ps-section" }, h("h2", {}, "升级 ", h("span", { class: "en" }, "Escalations")),
        h("table", { class: "ps-table" }, h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, "时间 After"), h("th", {}, "通知 Notify"),
          h("th", {}, "触发 Fired"), h("th", {}, "确认 Acknowledged"))),
        h("tbody", {}, report.escalations.map((e) => h("tr", {}, h("td", {}, String(e.rung + 1)), h("td", {}, `${e.after_minutes} min`),
          h("td", {}, e.notify.join(", ")), h("td", {}, e.fired_at ? formatTime(e.fired_at, "zh-CN") : `— (${e.status})`),
          h("td", {}, e.acked_at ? `${formatTime(e.acked_at, "zh-CN")} (+${mins(e.seconds_fire_to_ack)})` : "—")))))),
      h("section", { class: "ps-section" }, h("h2", {}, "原因 ", h("span", { class: "en" }, "Cause")),
        h("p", { class: "rv-text" }, report.review.cause || "\u00a0")),
      h("section", { class: "ps-section" }, h("h2", {}, "改进措施 ", h("span", { class: "en" }, "Actions")),
        h("p", { class: "rv-text" }, report.review.actions || "\u00a0")),
      h("section", { class: "ps-section" }, h("h2", {}, "时间线 ", h("span", { class: "en" }, "Timeline")),
        timelineTable(report.timeline)))));
}, { roles: ["lead", "manager", "admin"] });

route("#/print/incident/:id/log", async (view, { id }) => {
  const report = await readCache.load(`/api/incidents/${encodeURIComponent(id)}/report`); // offline: the saved copy
  const [logs, form] = await Promise.all([
    api(`/api/records?incident_id=${encodeURIComponent(id)}&form=incident-log&limit=200`).catch(() => ({ items: [] })),
    loadContent("/api/forms/incident-log").catch(() => ({ fields: [] }))]);
  const value = (field, v) => (field.type === "datetime" ? formatTime(v, "zh-CN")
    : field.type === "choice" ? (field.choices.find((c) => c.value === v)?.label || { "zh-CN": v })["zh-CN"] : String(v));
  const logTable = (r) => h("table", { class: "ps-table" }, h("tbody", {}, form.fields
    .filter((f) => r.data[f.name] !== undefined)
    .map((f) => h("tr", {}, h("th", {}, `${f.label["zh-CN"]} ${f.label.en}`), h("td", {}, value(f, r.data[f.name]))))));
  const timeline = h("table", { class: "ps-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "时间 Time"), h("th", {}, "事件 Event"), h("th", {}, "人员 Who"), h("th", {}, "内容 Details"))),
    h("tbody", {}, report.timeline.map((e) => h("tr", {}, h("td", { class: "nowrap" }, formatTime(e.at, "zh-CN")),
      h("td", {}, kindText(e.kind, true)), h("td", {}, e.actor ? e.actor.name : ""), h("td", {}, eventDetails(e))))));
  const sheet = h("article", { class: "print-sheet playbook-sheet log-sheet" },
    printHead("事件日志", "Incident log", report), logs.items.map(logTable),
    h("section", { class: "ps-section" }, h("h2", {}, "时间线 ", h("span", { class: "en" }, "Timeline")), timeline));
  mount(view, printToolbar(`#/incidents/${id}/review`), h("div", { class: "print-pages", dataset: { ready: "1" } }, sheet));
}, { roles: ["lead", "manager", "admin"] });
