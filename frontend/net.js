// Online state from a real server probe (not navigator.onLine). Announces "online" / "offline" and "net" on change.
import { probe } from "./api.js";
import { emit } from "./events.js";

export const net = { online: null };

export async function checkOnline() {
  const online = await probe();
  setOnline(online);
  return online;
}

export function setOnline(online) {
  if (online === net.online) return;
  net.online = online;
  emit(online ? "online" : "offline");
  emit("net");
}
