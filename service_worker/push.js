// Web Push: show every message as a notification (the browser requires it, and a manager must see it),
// tell the server it arrived, and open the incident when the notification is tapped.
// Payload (backend/push.py payload_for): {v, id, delivery, receipt, incident_id, kind, urgency, drill,
// title: {"zh-CN", "en"}, body: {"zh-CN", "en"}}.

function pushLang() {
  return /^zh/i.test(self.navigator.language || "zh-CN") ? "zh-CN" : "en";
}

function pushText(value, lang) {
  if (!value) return "";
  if (typeof value === "string") return value;
  return value[lang] || value["zh-CN"] || value.en || "";
}

function readPush(event) {
  if (!event.data) return {};
  try {
    return event.data.json();
  } catch {
    return { title: event.data.text() }; // not ours or not JSON: still show something
  }
}

self.addEventListener("push", (event) => {
  const data = readPush(event);
  const lang = pushLang();
  const fallback = lang === "zh-CN" ? "应急工作台：新通知" : "Outage Desk: new notification";
  const title = pushText(data.title, lang) || fallback;
  const url = data.incident_id ? `/#/incidents/${data.incident_id}` : "/#/inbox";
  const options = {
    body: pushText(data.body, lang),
    tag: data.incident_id ? `incident-${data.incident_id}` : `note-${data.id || Date.now()}`,
    renotify: Boolean(data.incident_id), // a new rung of the same incident must buzz again
    requireInteraction: data.urgency === "high",
    icon: "/static/icons/icon-192.png",
    badge: "/static/icons/icon-192.png",
    data: { url, id: data.id, incident_id: data.incident_id || null },
  };
  event.waitUntil((async () => {
    await self.registration.showNotification(title, options);
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    windows.forEach((client) => client.postMessage({ type: "od:push", payload: data }));
    if (data.delivery && data.receipt) {
      // "Delivered" on the incident's timeline means this phone got it, not just the push service.
      await fetch("/api/push/receipts", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ delivery: data.delivery, receipt: data.receipt }),
      }).catch(() => {});
    }
  })());
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = new URL((event.notification.data && event.notification.data.url) || "/#/inbox", self.location.origin);
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
    const open = windows.find((client) => new URL(client.url).origin === target.origin);
    if (open) {
      await open.focus();
      open.postMessage({ type: "od:open", url: target.href }); // the page switches to the incident's hash route
      return;
    }
    return self.clients.openWindow(target.href);
  })());
});
