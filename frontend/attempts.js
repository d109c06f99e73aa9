// Callback attempts ("no answer", "reached"…) go through the one outbox: saved in IndexedDB (store.js)
// under their author, sent by the sync engine with its retries and backoff, deleted only once the server
// has answered for them. Each attempt has its own id, so sending one twice is harmless.
import { api, session } from "./api.js";
import * as store from "./store.js";
import { toast } from "./ui.js";

const LEGACY = "od.cb.attempts"; // the old localStorage queue: moved into IndexedDB once, never dropped

export async function record(callbackId, outcome) {
  const attempt = { id: crypto.randomUUID(), callback_id: callbackId, outcome,
    attempted_at: new Date().toISOString(), userId: session.user?.id ?? null };
  await store.addAttempts([attempt]);
  return attempt;
}

export const waiting = () => store.attempts();

// Send this user's waiting attempts; throws (for the sync engine's retry) when the server gives no answer.
let sending = null;
export function sendAttempts() {
  if (!sending) sending = (async () => {
    // A try on a promise still on this device waits for its record: the server makes the callback from it.
    const mine = [];
    for (const attempt of await store.attempts()) {
      const record = await store.get(attempt.callback_id);
      if (!record || record.status === "synced") mine.push(attempt);
    }
    if (!mine.length || !session.token) return 0;
    const body = mine.map(({ userId, ...attempt }) => attempt);
    const answer = await api("/api/callbacks/attempts", { method: "POST", body: { attempts: body } });
    for (const r of answer.results) if (r.status === "rejected") toast(r.message, "error");
    await store.removeAttempts(answer.results.map((r) => r.id));
    return answer.results.length;
  })().finally(() => { sending = null; });
  return sending;
}

export async function start() {
  let legacy = [];
  try { legacy = JSON.parse(localStorage.getItem(LEGACY) || "[]"); } catch { legacy = []; }
  if (!legacy.length) return;
  await store.addAttempts(legacy);
  localStorage.removeItem(LEGACY);
}
