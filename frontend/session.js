// Logging in and out, as explicit lists of steps in one place (they used to be a chain of window hooks
// that worked only because of import order).
//
// Logout forgets the user's cached reads but never their unsent work: records and callback attempts stay
// in IndexedDB under their author and upload when that author next logs in (sync.js only sends the
// logged-in author's), and the unsent records are exported to a file first, as before.
import { api, session } from "./api.js";
import { forgetContent } from "./content.js";
import { emit } from "./events.js";
import * as offline from "./offline.js";
import { forgetDevice } from "./push.js";
import { exportBeforeLeaving, stop as stopSync } from "./sync.js";

const LOGOUT = [
  ["export unsent records to a file", () => exportBeforeLeaving()],
  ["stop push to this device for this user", () => forgetDevice()],
  ["tell the server", () => api("/api/auth/logout", { method: "POST", timeout: 5000 })
    .catch(() => { /* offline: the token just expires */ })],
  ["stop sync (retry timers)", () => stopSync()],
  ["forget this user's cached reads", async () => { forgetContent(); await offline.forget(); }],
  ["clear the token and user", () => session.clear()],
  ["tell the screens", () => emit("logout")],
];

// Every step runs even if an earlier one failed: a half logout would leave the next user this one's data.
export async function logout() {
  for (const [name, step] of LOGOUT) {
    try {
      await step();
    } catch (error) {
      console.error(`logout: ${name}`, error);
    }
  }
}

const LOGIN = [
  ["keep the token and user", (result) => session.save(result.token, result.user)],
  ["drop anybody else's cached reads", (result) => offline.keepOnly(result.user.id)],
  ["tell sync, push and content", (result) => emit("login", result.user)],
];

export async function login(username, password) {
  const result = await api("/api/auth/login", { method: "POST", body: { username, password } });
  for (const [name, step] of LOGIN) {
    try {
      await step(result);
    } catch (error) {
      if (name === LOGIN[0][0]) throw error; // without a saved token nothing else makes sense
      console.error(`login: ${name}`, error);
    }
  }
  return result.user;
}
