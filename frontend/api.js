// The API client: bearer token, problem-details errors, and a real server probe for "online".
import { emit } from "./events.js";
import { has, t } from "./i18n.js";

const TOKEN = "od.token";
const USER = "od.user";

// A server problem in the user's words: its stable `code` (backend/errors.py) looked up in the language
// files, else a line for its status. The server's English `detail` stays on `detail`, never in `message`.
export function problemText(status, problem = {}) {
  if (problem.code && has(`problem.${problem.code}`)) return t(`problem.${problem.code}`);
  const area = String(problem.code || "").split(".")[0];
  if (area && has(`problem.${area}`)) return t(`problem.${area}`);
  if (has(`problem.status.${status}`)) return t(`problem.status.${status}`);
  return t("problem.other", { status });
}

export class ApiError extends Error {
  constructor(status, problem) {
    super(problemText(status, problem));
    this.status = status;
    this.problem = problem;
    this.code = problem.code || null;
    this.detail = problem.detail || "";
  }
}

export const session = {
  get token() { return localStorage.getItem(TOKEN); },
  get user() { try { return JSON.parse(localStorage.getItem(USER) || "null"); } catch { return null; } },
  save(token, user) {
    localStorage.setItem(TOKEN, token);
    localStorage.setItem(USER, JSON.stringify(user));
    localStorage.removeItem("od.expired"); // a fresh login: no "login expired" banner on the next load
  },
  // The user stays known (offline work goes on under their name); only the token goes.
  expire() { localStorage.removeItem(TOKEN); localStorage.setItem("od.expired", "1"); },
  clear() { localStorage.removeItem(TOKEN); localStorage.removeItem(USER); localStorage.removeItem("od.expired"); },
  get expired() { return localStorage.getItem("od.expired") === "1"; },
};

// What to tell the user about any failure: a server problem in their words, else "cannot reach the server".
export function errorText(error) {
  return error instanceof ApiError ? error.message : t("error.network");
}

// Always live: the service worker never answers /api (saved copies are offline.js's, per user).
export async function api(path, { method = "GET", body, timeout = 15000, headers = {}, cache } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, signal: AbortSignal.timeout(timeout) };
  if (cache) init.cache = cache;
  if (session.token) init.headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    if (response.status === 401 && path !== "/api/auth/login") {
      session.expire();
      emit("auth-expired");
    }
    throw new ApiError(response.status, typeof data === "object" ? data : { detail: String(data) });
  }
  return data;
}

// navigator.onLine only says a network interface is up; ask the server itself.
export async function probe(timeout = 4000) {
  try {
    const response = await fetch("/api/health", { cache: "no-store", signal: AbortSignal.timeout(timeout) });
    return response.ok;
  } catch {
    return false;
  }
}
