// The app's navigation in one table: the tab bar and the home screen's big buttons, and who sees each. It
// lives apart from the screens so both draw at once, before the screens off the first one have loaded
// (app.js loads most of them after the first screen is drawn). Who may open a screen is its route's `roles`.
import { t } from "./i18n.js";

const LEADS = ["lead", "manager", "admin"];

const byOrder = (a, b) => a.order - b.order;

export const TABS = [
  { href: "#/", label: () => t("nav.home"), icon: "⌂", order: 0 },
  { href: "#/playbooks", label: () => t("nav.playbooks"), icon: "☰", order: 10 },
  { href: "#/incidents", label: () => t("nav.incidents"), icon: "⚠", order: 20 },
  { href: "#/callbacks", label: () => t("nav.callbacks"), icon: "☎", order: 25 },
  { href: "#/outbox", label: () => t("nav.outbox"), icon: "⇅", order: 30 },
  { href: "#/inbox", label: () => t("nav.inbox"), icon: "✉", order: 30 },
].sort(byOrder);

// kind "primary": the first-minute buttons, drawn larger.
export const HOME_ACTIONS = [
  { href: "#/forms/call-record", label: () => t("rec.home"), kind: "primary", order: 1 },
  { href: "#/outbox", label: () => t("outbox.home"), order: 2 },
  { href: "#/admin", label: () => `⚙ ${t("ad.title")}`, roles: ["admin"], order: 3 },
  { href: "#/incidents", label: () => t("inc.home"), roles: LEADS, order: 5, kind: "primary" },
  { href: "#/playbooks", label: () => t("pb.home"), order: 10, kind: "primary" },
  { href: "#/callbacks", label: () => `☎ ${t("cb.title")}`, order: 40 },
  { href: "#/recovery", label: () => `✔ ${t("re.title")}`, order: 60, roles: LEADS },
  { href: "#/crm/push", label: () => `⇪ ${t("crm.pushTitle")}`, order: 61, roles: LEADS },
  { href: "#/crm", label: () => `⚙ ${t("crm.title")}`, order: 62, roles: ["admin"] },
  { href: "#/fleet", label: () => `⇅ ${t("fl.title")}`, roles: LEADS, order: 62 },
  { href: "#/print", label: () => t("print.kit"), order: 80 },
  { href: "#/transcribe", label: () => t("tr.title"), order: 82, roles: ["agent", "lead", "manager", "admin"] },
].sort(byOrder);
