// Inbox: every notification this user got (escalations, declarations, alert levels), whether or not a
// push reached the phone, and the switch that turns Web Push on for this device (from a tap).
import { api, session } from "../api.js";
import { addStrings, lang, pick, t } from "../i18n.js";
import { disablePush, enablePush, pushPermission, pushSubscribed, refreshUnread, setUnread } from "../push.js";
import { navigate, route, tab, whileOnRoute } from "../router.js";
import { formatTime, h, mount, toast } from "../ui.js";

addStrings({
  "zh-CN": {
    "nav.inbox": "通知", "inbox.title": "通知", "inbox.unread": "{n} 条未读", "inbox.none": "还没有通知。",
    "inbox.readall": "全部标为已读", "inbox.drill": "演练", "inbox.urgent": "紧急", "inbox.open": "查看事件",
    "inbox.offline": "离线：显示 {time} 保存的通知", "push.title": "手机推送",
    "push.on": "这台设备已开启推送：升级通知会直接弹到手机上。", "push.off": "开启后，事件升级时即使没打开应用也会收到提醒。",
    "push.enable": "开启推送通知", "push.disable": "关闭推送", "push.test": "发送测试通知",
    "push.denied": "推送通知已被浏览器禁止。请在浏览器的网站设置里允许通知，然后再试。",
    "push.unsupported": "这个浏览器不支持推送通知。通知仍会出现在这里，请经常查看。",
    "push.failed": "开启推送失败：{error}。通知仍会出现在收件箱。", "push.tested": "测试通知已发送",
    "push.disabled": "已关闭这台设备的推送",
  },
  en: {
    "nav.inbox": "Inbox", "inbox.title": "Notifications", "inbox.unread": "{n} unread", "inbox.none": "No notifications yet.",
    "inbox.readall": "Mark all read", "inbox.drill": "DRILL", "inbox.urgent": "Urgent", "inbox.open": "Open incident",
    "inbox.offline": "Offline: notifications as saved at {time}", "push.title": "Push on this phone",
    "push.on": "Push is on for this device: escalations pop up even when the app is closed.",
    "push.off": "Turn it on to be alerted about escalations even when the app is closed.",
    "push.enable": "Turn on push notifications", "push.disable": "Turn off push", "push.test": "Send a test notification",
    "push.denied": "Notifications are blocked in this browser. Allow them in the site settings, then try again.",
    "push.unsupported": "This browser cannot receive push. Notifications still arrive here; check this page often.",
    "push.failed": "Could not turn on push: {error}. Notifications still arrive in this inbox.",
    "push.tested": "Test notification sent", "push.disabled": "Push turned off on this device",
  },
});

tab({ href: "#/inbox", label: () => t("nav.inbox"), icon: "✉", order: 30 });

const CACHE = "od.inbox";
let pushError = null; // the last failed attempt to turn push on, shown until one succeeds

function cacheKey() {
  return `${CACHE}.${session.user?.id}`;
}

async function loadInbox() {
  try {
    const data = await api("/api/inbox?limit=100", { cache: "no-store" });
    localStorage.setItem(cacheKey(), JSON.stringify({ at: new Date().toISOString(), data }));
    return { data, offline: null };
  } catch (error) {
    const saved = JSON.parse(localStorage.getItem(cacheKey()) || "null");
    if (!saved) throw error;
    return { data: saved.data, offline: saved.at };
  }
}

async function pushCard() {
  const card = h("section", { class: "card push-card" }, h("h2", {}, t("push.title")));
  const permission = pushPermission();
  const subscribed = permission === "granted" && await pushSubscribed();
  const status = h("p", { class: "muted", role: "status" });
  const buttons = h("div", { class: "row" });
  if (permission === "unsupported") status.textContent = t("push.unsupported");
  else if (permission === "denied") status.textContent = t("push.denied");
  else status.textContent = subscribed ? t("push.on") : t("push.off");
  if (pushError && !subscribed) {
    status.textContent = pushError;
    status.className = "error";
  }
  if (permission !== "unsupported" && permission !== "denied" && !subscribed) {
    buttons.append(h("button", { type: "button", class: "primary", id: "push-enable", onclick: async (event) => {
      const button = event.currentTarget;
      button.disabled = true;
      try {
        await enablePush(); // asks permission: only ever from this tap
        toast(t("push.on"));
        pushError = null;
        refreshCard(card);
      } catch (error) {
        pushError = error.code === "denied" ? t("push.denied")
          : error.code === "unsupported" ? t("push.unsupported") : t("push.failed", { error: error.message });
        status.textContent = pushError;
        status.className = "error";
        button.disabled = false;
      }
    } }, t("push.enable")));
  }
  if (subscribed) {
    buttons.append(h("button", { type: "button", onclick: async () => {
      try { await disablePush(); toast(t("push.disabled")); } catch (error) { toast(error.message, "error"); }
      refreshCard(card);
    } }, t("push.disable")));
  }
  buttons.append(h("button", { type: "button", id: "push-test", onclick: async () => {
    try { await api("/api/push/test", { method: "POST" }); toast(t("push.tested")); window.dispatchEvent(new Event("od:inbox")); } catch (error) { toast(error.message, "error"); }
  } }, t("push.test")));
  card.append(status, buttons);
  return card;
}

async function refreshCard(card) {
  if (card.isConnected) card.replaceWith(await pushCard());
}

function item(note) {
  const open = async () => {
    if (!note.read_at) {
      api(`/api/inbox/${note.id}/read`, { method: "POST" }).then(refreshUnread).catch(() => {});
    }
    if (note.incident_id) navigate(`#/incidents/${note.incident_id}`);
    else { note.read_at = new Date().toISOString(); row.classList.remove("unread"); }
  };
  const row = h("li", { class: `inbox-item ${note.read_at ? "" : "unread"} urgency-${note.urgency}` },
    h("button", { type: "button", class: "inbox-open", onclick: open },
      h("span", { class: "inbox-meta" },
        note.drill ? h("span", { class: "tag drill" }, t("inbox.drill")) : null,
        note.urgency === "high" ? h("span", { class: "tag urgent" }, t("inbox.urgent")) : null,
        h("time", { datetime: note.created_at }, formatTime(note.created_at, lang()))),
      h("strong", { class: "inbox-title" }, pick(note.title)),
      h("span", { class: "inbox-body" }, pick(note.body))));
  return row;
}

async function render(view) {
  const { data, offline } = await loadInbox();
  setUnread(data.unread);
  const list = data.items.length ? h("ul", { class: "inbox-list" }, data.items.map(item))
    : h("p", { class: "empty" }, t("inbox.none"));
  mount(view,
    h("div", { class: "row spread" },
      h("h1", {}, t("inbox.title")),
      data.unread ? h("span", { class: "badge unread-count" }, t("inbox.unread", { n: data.unread })) : null),
    offline ? h("p", { class: "offline-note", role: "status" }, t("inbox.offline", { time: formatTime(offline, lang()) })) : null,
    await pushCard(),
    data.unread ? h("div", { class: "row" }, h("button", { type: "button", onclick: async () => {
      await api("/api/inbox/read-all", { method: "POST" });
      render(view);
    } }, t("inbox.readall"))) : null,
    list);
}

route("#/inbox", async (view) => {
  await render(view);
  // Live while on screen: a new notification (push message or a poll) redraws the list.
  const again = () => { if (location.hash === "#/inbox" && view.isConnected) render(view).catch(() => {}); };
  whileOnRoute("#/inbox", again, { every: 10000, events: ["od:notification", "od:inbox"] });
});
