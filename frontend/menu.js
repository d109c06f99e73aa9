// The app's navigation in one table: the tab bar and the home screen's big buttons, and who sees each. It
// lives apart from the screens so both draw at once, before the screens off the first one have loaded
// (app.js loads most of them after the first screen is drawn). Who may open a screen is its route's `roles`.
import { t } from "./i18n.js";

const LEADS = ["lead", "manager", "admin"];

// In the order shown.
export const TABS = [
  { href: "#/", label: () => t("nav.home"), icon: "⌂" },
  { href: "#/playbooks", label: () => t("nav.playbooks"), icon: "☰" },
  { href: "#/incidents", label: () => t("nav.incidents"), icon: "⚠" },
  { href: "#/callbacks", label: () => t("nav.callbacks"), icon: "☎" },
  { href: "#/outbox", label: () => t("nav.outbox"), icon: "⇅" },
  { href: "#/inbox", label: () => t("nav.inbox"), icon: "✉" },
];

// In the order shown. kind "primary": the first-minute buttons, drawn larger.
export const HOME_ACTIONS = [
  { href: "#/forms/call-record", label: () => t("rec.home"), kind: "primary" },
  { href: "#/outbox", label: () => t("outbox.home") },
  { href: "#/admin", label: () => `⚙ ${t("ad.title")}`, roles: ["admin"] },
  { href: "#/incidents", label: () => t("inc.home"), roles: LEADS, kind: "primary" },
  { href: "#/playbooks", label: () => t("pb.home"), kind: "primary" },
  { href: "#/callbacks", label: () => `☎ ${t("cb.title")}` },
  { href: "#/recovery", label: () => `✔ ${t("re.title")}`, roles: LEADS },
  { href: "#/crm/push", label: () => `⇪ ${t("crm.pushTitle")}`, roles: LEADS },
  { href: "#/crm", label: () => `⚙ ${t("crm.title")}`, roles: ["admin"] },
  { href: "#/fleet", label: () => `⇅ ${t("fl.title")}`, roles: LEADS },
  { href: "#/print", label: () => t("print.kit") },
  { href: "#/transcribe", label: () => t("tr.title"), roles: ["agent", "lead", "manager", "admin"] },
];
