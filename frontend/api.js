// The API client: bearer token, problem-details errors, and a real server probe for "online".
import { emit } from "./events.js";

const TOKEN = "od.token";
const USER = "od.user";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
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
