// Strings per language; zh-CN first. Screens add their own with addStrings().

const strings = { "zh-CN": {}, en: {} };
const KEY = "od.lang";

export function addStrings(table) {
  for (const lang of Object.keys(strings)) Object.assign(strings[lang], table[lang] || {});
}

export function lang() {
  const saved = localStorage.getItem(KEY);
  if (saved === "en" || saved === "zh-CN") return saved;
  const prefs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ""];
  const first = prefs.find((l) => /^(zh|en)/i.test(l)) || "zh-CN";
  return /^zh/i.test(first) ? "zh-CN" : "en";
}

export function setLang(value) {
  localStorage.setItem(KEY, value);
  document.documentElement.lang = value;
}

export function t(key, vars = {}) {
  const text = strings[lang()][key] ?? strings["zh-CN"][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

// Pick the current language from a {"zh-CN": …, "en": …} object (content from the server).
export function pick(texts) {
  if (texts === null || texts === undefined) return "";
  if (typeof texts === "string") return texts;
  return texts[lang()] ?? texts["zh-CN"] ?? Object.values(texts)[0] ?? "";
}

addStrings({
  "zh-CN": {
    "app.title": "应急工作台", "net.online": "在线", "net.offline": "离线", "net.checking": "检测中",
    "nav.home": "首页", "nav.login": "登录", "login.title": "登录", "login.username": "用户名",
    "login.password": "密码", "login.submit": "登录", "login.failed": "登录失败", "login.expired":
      "登录已过期：联网后请重新登录。离线期间记录照常保存。", "home.hello": "你好，{name}",
    "home.site": "站点：{site}", "logout": "退出登录", "role.agent": "坐席", "role.lead": "值班组长",
    "role.manager": "主管/经理", "role.admin": "管理员", "error.network": "无法连接服务器",
  },
  en: {
    "app.title": "Outage Desk", "net.online": "Online", "net.offline": "Offline", "net.checking": "Checking",
    "nav.home": "Home", "nav.login": "Log in", "login.title": "Log in", "login.username": "Username",
    "login.password": "Password", "login.submit": "Log in", "login.failed": "Login failed", "login.expired":
      "Your login has expired: log in again when online. Records you take offline are still kept.",
    "home.hello": "Hello, {name}", "home.site": "Site: {site}", "logout": "Log out", "role.agent": "Agent",
    "role.lead": "Team lead", "role.manager": "Manager", "role.admin": "Admin",
    "error.network": "Cannot reach the server",
  },
});
