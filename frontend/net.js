// Online state from a real server probe (not navigator.onLine). Fires od:online / od:offline on change.
import { probe } from "./api.js";

export const net = { online: null };

export async function checkOnline() {
  const online = await probe();
  setOnline(online);
  return online;
}

export function setOnline(online) {
  if (online === net.online) return;
  net.online = online;
  window.dispatchEvent(new CustomEvent(online ? "od:online" : "od:offline"));
  window.dispatchEvent(new CustomEvent("od:net"));
}
