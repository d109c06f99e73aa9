// The incidents this device knows are running, kept on the device (IndexedDB meta, per user) so that a call
// recorded offline still names its incident. Refreshed from the server when it answers and from the sync
// change feed ("incident" changes); the server attaches a record that names none to the one incident
// running when the call happened, so "don't know" is always safe.
import { api, session } from "./api.js";
import { on } from "./events.js";
import * as store from "./store.js";

const key = () => `running:${session.user?.id ?? "-"}`;
let memo = { key: null, list: [] }; // the last list read or written, so a new form does not wait for IndexedDB
const slim = (i) => ({ id: i.id, status: i.status, drill: Boolean(i.drill), title: i.title, playbook: i.playbook,
  source: i.source ?? null, declared_at: i.declared_at ?? null });

export async function running() {
  if (!session.user) return [];
  if (memo.key === key()) return memo.list;
  const list = (await store.getMeta(key(), [])) || [];
  memo = { key: key(), list };
  return list;
}

async function keep(list) {
  if (!session.user) return;
  const kept = list.filter((i) => i.status !== "resolved").map(slim);
  memo = { key: key(), list: kept };
  await store.setMeta(key(), kept);
}

export async function refresh() {
  if (!session.user) return running();
  try {
    await keep(await api("/api/incidents?status=active&limit=50", { timeout: 4000 }));
  } catch { /* offline: what we knew */ }
  return running();
}

// The incident a new record belongs to: the one running incident this device knows of, else none (the
// server decides by the call's time). A lead's own declared incident beats the surge incident the call
// figures opened beside it. Synchronous (from what start() loaded): opening a form never waits for it.
export function knownIncident() {
  const list = memo.key === key() ? memo.list : [];
  if (list.length === 1) return list[0].id;
  const declared = list.filter((i) => i.source !== "metrics");
  return declared.length === 1 ? declared[0].id : null;
}

export function start() {
  on("changes", async ({ changes }) => {
    const news = changes.filter((c) => c.kind === "incident" && c.payload?.id);
    if (!news.length) return;
    const list = await running();
    for (const change of news) {
      const at = list.findIndex((i) => i.id === change.payload.id);
      if (at >= 0) list[at] = { ...list[at], ...slim({ ...list[at], ...change.payload }) };
      else list.push(slim(change.payload));
    }
    await keep(list);
  });
  on("login", () => { refresh(); });
  if (session.user) running().then(refresh);
}
