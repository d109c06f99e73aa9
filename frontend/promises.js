// Promised callbacks as the device sees them: the server's list (live, else this user's saved copy) merged with
// the promises this device still holds and has not sent, so offline the callback list is never empty while
// promises sit in the outbox. Shared by the callbacks screen, its print and the home screen.
import { session } from "./api.js";
import * as readCache from "./offline.js";
import * as store from "./store.js";

// The list (also for the printed one): live, else this user's saved copy ({data, savedAt}).
export function loadCallbacks(scope, status = "active") {
  const query = new URLSearchParams({ status, ...(scope === "mine" ? { mine: "true" } : {}) });
  return readCache.read(`/api/callbacks?${query}`);
}

// The promises this device still holds (recorded, offline too, and not yet on the server's list) as cards.
// Their callback's id is the record's id, so a try recorded on one waits for its record and then goes up.
const DEFAULT_DUE_MS = 2 * 3600 * 1000; // the emergency script's promise
export async function localPromises(serverIds, live) {
  const records = await store.list({});
  const form = await store.cachedForm("call-record").catch(() => null);
  const labels = Object.fromEntries((form?.fields || []).filter((f) => f.type === "choice")
    .map((f) => [f.name, Object.fromEntries((f.choices || []).map((c) => [c.value, c.label]))]));
  return records.filter((r) => r.form === "call-record" && r.status !== "draft" && r.data?.callback_promised === true
    && !serverIds.has(r.id) && !(live && r.status === "synced")).map((r) => {
    const called = r.data.called_at || r.capturedAt;
    const due = r.data.callback_due || new Date(new Date(called).getTime() + DEFAULT_DUE_MS).toISOString();
    return { id: r.id, record_id: r.id, incident_id: r.incidentId ?? null, caller_name: r.data.caller_name || "",
      phone: String(r.data.phone || ""), called_at: called, due_at: due, status: "open", attempts: 0, last_outcome: null,
      owner: { id: session.user?.id, name: session.user?.display_name }, category: r.data.category,
      urgency: r.data.urgency, details: r.data.details, urgent: r.data.urgency === "urgent",
      category_label: labels.category?.[r.data.category] ?? null, urgency_label: labels.urgency?.[r.data.urgency] ?? null,
      history: [], local: r.status };
  });
}

// Urgent first, then the earliest promise.
export const byUrgency = (a, b) => (Number(Boolean(b.urgent)) - Number(Boolean(a.urgent)))
  || (new Date(a.due_at) - new Date(b.due_at));

