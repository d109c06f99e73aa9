// Incidents: the list (and declaring one from a playbook, lead+), and one incident live: status, drill
// label, playbook steps with who ticked them, the escalation ladder, notes, the timeline, and the
// ack / recovered / resolve buttons the server says this user may use. The last state fetched is kept in
// this user's offline cache (offline.js), so the screens still show something useful offline.
import { api, errorText, session } from "../api.js";
import { emit } from "../events.js";
import { loadContent } from "../content.js";
import * as readCache from "../offline.js";
import { lang, pick, t } from "../i18n.js";
import { navigate, route, whileOnRoute } from "../router.js";
import { formatTime, h, mount, toast } from "../ui.js";

const LEAD = ["lead", "manager", "admin"];
const POLL_MS = 4000;

const isLead = () => LEAD.includes(session.user?.role);
const time = (iso) => formatTime(iso, lang());
// Timeline and ladder times: the time of day (with seconds: drills move fast) when it is today.
function clock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime()) || d.toDateString() !== new Date().toDateString()) return time(iso);
  return d.toLocaleTimeString(lang() === "en" ? "en-GB" : "zh-CN", { hour12: false });
}
const duration = (seconds) => (seconds < 60 ? t("dur.seconds", { n: Math.round(seconds) })
  : t("dur.minutes", { n: Math.round(seconds / 6) / 10 }));
const roleNames = (roles) => roles.map((r) => t(`role.${r}`)).join("、");

// ---------------------------------------------------------------- the device's saved copy

// The server's answer, else this user's saved copy with the time it was saved ({data, offline: iso | null}).
async function fetchOrSaved(path) {
  const { data, savedAt } = await readCache.read(path);
  return { data, offline: savedAt };
}

function offlineNote(at) {
  return at ? h("p", { class: "offline-note", role: "status" }, t("inc.offline", { time: time(at) })) : null;
}

function statusChip(status) {
  return h("span", { class: `status status-${status}` }, t(`st.${status}`));
}

function drillTag(incident) {
  return incident.drill ? h("span", { class: "tag drill" }, t("inc.drill.label")) : null;
}

// ---------------------------------------------------------------- list + declare

function incidentCard(incident) {
  const esc = incident.escalation;
  return h("li", {}, h("a", { class: `incident-card card status-line-${incident.status}`, href: `#/incidents/${incident.id}` },
    h("span", { class: "row" }, statusChip(incident.status), drillTag(incident), h("span", { class: "muted" }, `#${incident.id}`)),
    h("strong", { class: "incident-title" }, pick(incident.title)),
    h("span", { class: "muted" }, t("inc.declared", { who: incident.declared_by?.name || t("ev.system"), time: time(incident.declared_at) })),
    esc.total ? h("span", { class: "muted" }, t("inc.escalation", { fired: esc.fired, total: esc.total }),
      esc.next_due_at && incident.status !== "resolved" ? ` · ${t("inc.next", { time: time(esc.next_due_at) })}` : "") : null));
}

async function declareCard() {
  let playbooks = [];
  try { playbooks = await loadContent("/api/playbooks"); } catch { /* offline with nothing saved */ }
  const select = h("select", { name: "playbook", required: true },
    playbooks.map((p) => h("option", { value: p.slug }, pick(p.title))));
  const note = h("textarea", { name: "note", maxlength: 4000, rows: 3 });
  const drill = h("input", { type: "checkbox", name: "drill" });
  const scale = h("select", { name: "time_scale" }, [10, 60, 300, 600].map((n) => h("option", { value: n, selected: n === 60 }, t("inc.scale.opt", { n }))));
  const scaleField = h("label", { hidden: true }, t("inc.scale"), scale);
  const submit = h("button", { type: "submit", class: "primary big" }, t("inc.submit"));
  const error = h("p", { class: "error", role: "alert", hidden: true });
  drill.addEventListener("change", () => {
    scaleField.hidden = !drill.checked;
    submit.textContent = t(drill.checked ? "inc.submit.drill" : "inc.submit");
  });
  const form = h("form", { class: "card stack declare-form", onsubmit: async (event) => {
    event.preventDefault();
    submit.disabled = true;
    error.hidden = true;
    try {
      const body = { playbook: select.value, note: note.value.trim() || null };
      if (drill.checked) body.drill = { time_scale: Number(scale.value) };
      const incident = await api("/api/incidents", { method: "POST", body });
      navigate(`#/incidents/${incident.id}`);
    } catch (e) {
      error.textContent = t("inc.failed", { error: errorText(e) });
      error.hidden = false;
      submit.disabled = false;
    }
  } },
  h("h2", {}, t("inc.declare")),
  h("label", {}, t("inc.playbook"), select),
  h("label", {}, t("inc.note"), note),
  h("label", { class: "check" }, drill, t("inc.drill")),
  scaleField, error, submit);
  return form;
}

function levelCard(level) {
  const chip = h("div", { class: `level level-${level.level}` },
    h("strong", {}, t(`level.${level.level}`)),
    level.answer_rate !== null ? h("span", {}, t("level.rate", { rate: level.answer_rate, queue: level.queue_length })) : null,
    level.tier ? h("span", {}, t("level.tiers", { tiers: level.tier })) : null);
  if (!isLead()) return h("section", { class: "card" }, h("h2", {}, t("level.title")), chip);
  const rate = h("input", { type: "number", name: "answer_rate", min: 0, max: 100, step: "0.1", required: true, inputmode: "decimal" });
  const queue = h("input", { type: "number", name: "queue_length", min: 0, step: 1, required: true, inputmode: "numeric" });
  const failure = h("input", { type: "checkbox", name: "system_failure" });
  const form = h("form", { class: "level-form", onsubmit: async (event) => {
    event.preventDefault();
    try {
      await api("/api/metrics", { method: "POST", body: {
        answer_rate: Number(rate.value), queue_length: Number(queue.value), system_failure: failure.checked } });
      emit("rerender");
    } catch (e) { toast(t("inc.failed", { error: errorText(e) }), "error"); }
  } },
  h("div", { class: "row two" }, h("label", {}, t("level.answer_rate"), rate), h("label", {}, t("level.queue"), queue)),
  h("label", { class: "check" }, failure, t("level.failure")),
  h("button", { type: "submit" }, t("level.send")));
  return h("section", { class: "card" }, h("h2", {}, t("level.title")), chip,
    h("details", {}, h("summary", {}, t("level.report")), form));
}

route("#/incidents", async (view) => {
  const [{ data: incidents, offline }, level] = await Promise.all([
    fetchOrSaved("/api/incidents?limit=50"),
    api("/api/metrics/level").catch(() => null)]);
  const active = incidents.filter((i) => i.status !== "resolved");
  const closed = incidents.filter((i) => i.status === "resolved").slice(0, 10);
  mount(view,
    h("h1", {}, t("inc.title")),
    offlineNote(offline),
    h("h2", {}, t("inc.active")),
    active.length ? h("ul", { class: "incident-list" }, active.map(incidentCard)) : h("p", { class: "empty" }, t("inc.none")),
    isLead() && !offline ? await declareCard() : null,
    level ? levelCard(level) : null,
    closed.length ? [h("h2", {}, t("inc.closed")), h("ul", { class: "incident-list" }, closed.map(incidentCard))] : null);
});

// ---------------------------------------------------------------- one incident

function eventText(event, incident) {
  const d = event.data || {};
  const actor = event.actor?.name || t("ev.system");
  const stepText = (id) => pick(incident.steps.find((s) => s.id === id)?.text) || id;
  switch (event.kind) {
    case "declared": return t("ev.declared", { actor, version: d.version }) + (d.note ? ` — ${d.note}` : "");
    case "note": return t("ev.note", { actor, text: d.text });
    case "step_ticked": return t(d.done ? "ev.step_ticked" : "ev.step_unticked", { actor, step: stepText(d.step) });
    case "escalation_fired": return t("ev.escalation_fired", { after: d.after_minutes, roles: roleNames(d.notify || []),
      recipients: d.recipients, deliveries: d.deliveries });
    case "notification_failed": return t("ev.notification_failed", { user: d.user || d.user_id,
      status: d.status ? `HTTP ${d.status}` : t("ev.neterror"),
      retry: d.retry_at ? t("ev.retry", { time: time(d.retry_at) }) : t("ev.giveup") });
    case "notification_sent": case "notification_gone": case "notification_delivered":
      if (d.channel) return t(`ev.via.${event.kind}`, { user: d.user || d.user_id, via: t(`contacts.m.${d.channel}`) });
      return t(`ev.${event.kind}`, { user: d.user || d.user_id });
    case "notification_deferred": return t("ev.notification_deferred", { user: d.user, time: time(d.retry_at) });
    case "acknowledged": return t("ev.acknowledged", { actor, after: duration(d.seconds_to_ack || 0), n: d.rungs_stopped });
    case "recovered": return t("ev.recovered", { actor }) + (d.note ? ` — ${d.note}` : "");
    case "resolved": return t("ev.resolved", { actor }) + (d.note ? ` — ${d.note}` : "")
      + (d.anyway ? ` — ${t("ev.anyway", { reason: d.reason })}` : "");
    case "level_changed": return t("ev.level_changed", { from: t(`level.${d.from}`), to: t(`level.${d.to}`),
      rate: d.answer_rate, queue: d.queue_length });
    case "reserve_called": return t("ev.reserve_called", { tier: d.tier });
    case "crm_pushed": return t("ev.crm_pushed", { actor, n: d.queued });
    case "crm_reentered": return t("ev.crm_reentered", { ref: d.crm_ref, record: String(d.record).slice(0, 8) });
    case "crm_failed": return t("ev.crm_failed", { record: String(d.record).slice(0, 8), error: d.error,
      retry: d.retry_at ? t("ev.retry", { time: time(d.retry_at) }) : t("ev.crm_giveup") });
    case "records_attached": case "records_detached": return t(`ev.${event.kind}`, { actor, n: (d.records || []).length });
    default: return event.kind;
  }
}

function timelineList(events, incident) {
  return h("ol", { class: "timeline" }, events.map((event) => h("li", { class: `ev ev-${event.kind}` },
    h("time", { datetime: event.at }, clock(event.at)), h("span", {}, eventText(event, incident)))));
}

function stepsList(incident, offline, onChange) {
  const role = session.user?.role;
  return h("ol", { class: "inc-steps" }, incident.steps.map((step) => {
    const allowed = incident.can.tick && !offline && (isLead() || step.who === "agent");
    const box = h("input", { type: "checkbox", checked: step.done, disabled: !allowed, "aria-label": pick(step.text),
      onchange: async () => {
        box.disabled = true;
        try {
          onChange(await api(`/api/incidents/${incident.id}/steps/${encodeURIComponent(step.id)}`,
            { method: "POST", body: { done: box.checked } }));
        } catch (e) {
          box.checked = !box.checked;
          box.disabled = false;
          toast(t("inc.failed", { error: errorText(e) }), "error");
        }
      } });
    return h("li", { class: `inc-step ${step.done ? "done" : ""} ${role === step.who ? "mine" : ""}` },
      h("label", { class: "step-line" }, box, h("span", {},
        h("span", { class: "step-who" }, t(`who.${step.who}`),
          step.within_minutes ? ` · ${t("inc.within", { n: step.within_minutes })}` : "",
          step.due_at && !step.done ? ` · ${t("inc.due", { time: clock(step.due_at) })}` : ""),
        h("span", { class: "step-text" }, pick(step.text)),
        step.done ? h("span", { class: "step-ticked" }, t("inc.by", { who: step.ticked_by?.name, time: clock(step.ticked_at) })) : null)));
  }));
}

function ladderList(incident) {
  return h("ol", { class: "ladder" }, incident.ladder.map((rung) => h("li", { class: `rung rung-${rung.status}` },
    h("div", { class: "rung-head" }, h("strong", {}, t("rung.after", { n: rung.after_minutes })),
      h("span", {}, t("rung.notify", { roles: roleNames(rung.notify) })),
      h("span", { class: "rung-state" }, rung.status === "pending" ? t("rung.pending", { time: clock(rung.due_at) })
        : rung.status === "fired" ? t("rung.fired", { time: clock(rung.fired_at) }) : t(`rung.${rung.status}`))),
    h("p", {}, pick(rung.message)))));
}

function actionButtons(incident, offline, onChange) {
  const act = (path, body) => async (event) => {
    event.currentTarget.disabled = true;
    try {
      const next = await api(`/api/incidents/${incident.id}/${path}`, { method: "POST",
        body: typeof body === "function" ? body() : body });
      panel.hidden = true; // done: the live refresh may redraw again
      onChange(next);
      emit("inbox");
    } catch (e) {
      toast(t("inc.failed", { error: errorText(e) }), "error");
      event.target.disabled = false;
    }
  };
  const can = incident.can;
  let armed = false;
  const panel = h("div", { class: "resolve-check", hidden: true });
  // First tap: what is still open. Nothing: a second tap resolves. Something: listed, and "resolve anyway"
  // needs a reason, which goes on the timeline.
  const resolve = h("button", { type: "button", class: "resolve", onclick: async (event) => {
    if (armed) return act("resolve")(event);
    resolve.disabled = true;
    let left = null;
    try { left = await api(`/api/incidents/${incident.id}/open`); } catch (e) { toast(t("inc.failed", { error: e.message }), "error"); }
    resolve.disabled = false;
    if (!left) return;
    if (!left.anything) { armed = true; resolve.textContent = t("inc.resolve.confirm"); return; }
    resolve.hidden = true;
    const reason = h("textarea", { name: "reason", rows: 2, maxlength: 4000, required: true, placeholder: t("inc.anyway.reason") });
    const anyway = h("button", { type: "button", class: "resolve", id: "inc-resolve-anyway", disabled: true,
      onclick: act("resolve", () => ({ anyway: true, reason: reason.value.trim() })) }, t("inc.anyway"));
    reason.addEventListener("input", () => { anyway.disabled = !reason.value.trim(); });
    panel.replaceChildren(h("h3", {}, t("inc.left.title")), h("ul", { class: "left-open" },
      left.steps.length ? h("li", { dataset: { left: "steps" } }, t("inc.left.steps", { n: left.steps.length }),
        h("ul", {}, left.steps.map((step) => h("li", {}, pick(step.title) || pick(incident.steps.find((x) => x.id === step.id)?.text) || step.id)))) : null,
      left.callbacks ? h("li", { dataset: { left: "callbacks" } }, h("a", { href: "#/callbacks/all" }, t("inc.left.callbacks", { n: left.callbacks }))) : null,
      left.unsent.records ? h("li", { dataset: { left: "unsent" } }, t("inc.left.unsent", { n: left.unsent.records, devices: left.unsent.devices })) : null),
    h("label", {}, t("inc.anyway.why"), reason), h("div", { class: "row" }, anyway,
      h("button", { type: "button", class: "secondary", onclick: () => { panel.hidden = true; resolve.hidden = false; } }, t("inc.anyway.cancel"))));
    panel.hidden = false;
  } }, t("inc.resolve"));
  const buttons = [
    can.ack ? h("button", { type: "button", class: "primary big", id: "inc-ack", onclick: act("ack") }, t("inc.ack")) : null,
    can.recover ? h("button", { type: "button", id: "inc-recover", onclick: act("recover") }, t("inc.recover")) : null,
    can.resolve ? resolve : null].filter(Boolean);
  buttons.forEach((b) => { if (offline) b.disabled = true; });
  return buttons.length ? [h("div", { class: "inc-actions" }, buttons), can.resolve ? panel : null] : null;
}

// Leads: calls taken while this incident and another were running are attached to neither; attach them here.
async function unattachedCard(incident, onChange) {
  if (!incident.can.timeline) return null;
  let items = [];
  try { items = (await api("/api/records/unattached")).items; } catch { return null; }
  items = items.filter((x) => x.candidates.some((c) => c.id === incident.id));
  if (!items.length) return null;
  return h("section", { class: "card unattached" }, h("h2", {}, t("inc.unattached", { n: items.length })),
    h("ul", { class: "unattached-list" }, items.map((x) => h("li", { dataset: { record: x.record.id } },
      h("span", {}, [x.record.data?.caller_name, x.record.data?.phone, formatTime(x.called_at, lang())].filter(Boolean).join(" · ")),
      h("span", { class: "muted" }, ` (${x.candidates.map((c) => `#${c.id}`).join(" / ")})`),
      h("button", { type: "button", class: "attach-here", onclick: async (event) => {
        event.currentTarget.disabled = true;
        try {
          await api(`/api/incidents/${incident.id}/records`, { method: "POST", body: { attach: [x.record.id] } });
          toast(t("inc.attached"));
          onChange();
        } catch (e) { toast(t("inc.failed", { error: e.message }), "error"); }
      } }, t("inc.attach"))))));
}

function noteForm(incident, onAdded) {
  const text = h("textarea", { name: "text", rows: 2, maxlength: 4000, placeholder: t("inc.note.placeholder"), required: true });
  return h("form", { class: "note-form", onsubmit: async (event) => {
    event.preventDefault();
    if (!text.value.trim()) return;
    try {
      await api(`/api/incidents/${incident.id}/notes`, { method: "POST", body: { text: text.value.trim() } });
      text.value = "";
      onAdded();
    } catch (e) { toast(t("inc.failed", { error: errorText(e) }), "error"); }
  } }, h("label", {}, t("inc.notes"), text), h("button", { type: "submit" }, t("inc.note.add")));
}

route("#/incidents/:id", async (view, { id }) => {
  const hash = location.hash;
  let incident = null;
  let events = [];
  let cursor = 0;
  let offline = null;
  const timelineBox = h("section", { class: "card" });

  const load = async () => {
    const got = await fetchOrSaved(`/api/incidents/${id}`);
    incident = got.data;
    offline = got.offline;
    unattached = offline ? null : await unattachedCard(incident, () => refresh());
    if (incident.can.timeline) {
      // Fetched in steps (after=cursor), saved whole: the saved copy is the timeline so far.
      const key = `/api/incidents/${id}/timeline`;
      try {
        const fresh = await api(`${key}?after=${cursor}`);
        events = events.concat(fresh.events);
        cursor = fresh.cursor;
        await readCache.save(key, { events, cursor });
      } catch {
        const saved = await readCache.saved(key);
        if (saved && !events.length) ({ events, cursor } = saved.data);
      }
    }
  };

  let unattached = null;
  const draw = () => {
    const user = session.user;
    const notes = incident.can.note && !offline ? noteForm(incident, () => refresh()) : null;
    timelineBox.replaceChildren(h("h2", {}, t("inc.timeline")), timelineList(events.slice().reverse(), incident));
    mount(view,
      h("a", { href: "#/incidents", class: "back" }, t("inc.back")),
      offlineNote(offline),
      incident.drill ? h("p", { class: "drill-banner", role: "note" }, t("inc.drill.banner", { n: incident.time_scale })) : null,
      h("header", { class: "inc-head" },
        h("div", { class: "row" }, statusChip(incident.status), drillTag(incident), h("span", { class: "muted" }, `#${incident.id}`)),
        h("h1", {}, pick(incident.title)),
        h("p", { class: "muted" }, t("inc.declared", { who: incident.declared_by?.name || t("ev.system"), time: time(incident.declared_at) })),
        incident.acknowledged_at ? h("p", { class: "muted" }, t("inc.acked", { who: incident.acknowledged_by?.name, time: time(incident.acknowledged_at) })) : null,
        incident.note ? h("p", { class: "inc-note" }, incident.note) : null),
      actionButtons(incident, offline, (next) => { incident = next; refresh(); }),
      incident.ladder.length ? h("section", { class: "card" }, h("h2", {}, t("inc.ladder")), ladderList(incident)) : null,
      h("section", { class: "card" }, h("h2", {}, t("inc.steps")),
        stepsList(incident, offline, (next) => { incident = next; refresh(); })),
      incident.forms.length ? h("section", { class: "card" }, h("h2", {}, t("inc.forms")),
        h("div", { class: "row" }, incident.forms.map((slug) => h("a", { class: "button", href: `#/forms/${slug}?incident=${incident.id}` },
          pick(formTitles[slug]) || slug)))) : null,
      notes ? h("section", { class: "card" }, notes) : null,
      unattached,
      // After recovery (screens/recovery.js): the review and the printed incident log.
      incident.can.timeline ? h("div", { class: "row inc-review" },
        h("a", { class: "button", href: `#/incidents/${incident.id}/review` }, t("rv.title")),
        h("a", { class: "button", href: `#/print/incident/${incident.id}/log` }, t("re.log"))) : null,
      incident.can.timeline ? timelineBox : null);
    view.dataset.incidentStatus = incident.status;
    view.dataset.user = user?.id;
  };

  let busy = false;
  const refresh = async () => {
    if (busy || location.hash !== hash) return;
    if (view.querySelector(".resolve-check:not([hidden])")) return; // the lead is writing why: keep the panel
    busy = true;
    try {
      const focused = document.activeElement?.name === "text" ? document.activeElement : null;
      const draft = focused?.value;
      await load();
      if (location.hash !== hash) return;
      const scroll = window.scrollY;
      draw();
      if (draft) { // keep a half-typed note across a live refresh
        const box = view.querySelector("textarea[name=text]");
        if (box) { box.value = draft; box.focus(); }
      }
      window.scrollTo(0, scroll);
    } catch (e) {
      console.warn("incident refresh", e);
    } finally {
      busy = false;
    }
  };

  const formTitles = {};
  try {
    for (const form of await loadContent("/api/forms")) formTitles[form.slug] = form.title;
  } catch { /* no saved forms: the slugs will do */ }
  await load();
  window.scrollTo(0, 0);
  draw();
  // Polled while on screen; offline a poll fails fast and the saved copy stays shown.
  whileOnRoute(hash, refresh, { every: POLL_MS, topics: ["notification", "net"] });
});
