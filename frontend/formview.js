// Render a form definition (from /api/forms/{slug}, with or without ?lang=) as big-target inputs,
// read the values back, and check them the same way the server does (backend/forms.py).
import { pick, t } from "./i18n.js";
import { formatTime, h } from "./ui.js";

const pad = (n) => String(n).padStart(2, "0");

// ISO 8601 with the device's offset, e.g. 2026-11-23T14:05:00+08:00 (what the server stores).
export function toIso(date) {
  const offset = -date.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:` +
    `${pad(date.getMinutes())}:${pad(date.getSeconds())}${sign}${pad(Math.floor(Math.abs(offset) / 60))}:` +
    `${pad(Math.abs(offset) % 60)}`;
}

function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value) {
  if (!value) return null;
  const d = new Date(value); // datetime-local is read as device-local time
  return Number.isNaN(d.getTime()) ? value : toIso(d);
}

// Resolve field defaults: a literal, "now", or "now+N" (N minutes from now).
export function defaults(definition, now = new Date()) {
  const values = {};
  for (const field of definition.fields) {
    const d = field.default;
    if (d === undefined || d === null) continue;
    const m = typeof d === "string" && d.match(/^now(?:\+(\d+))?$/);
    values[field.name] = m ? toIso(new Date(now.getTime() + Number(m[1] || 0) * 60000)) : d;
  }
  return values;
}

function isEmpty(v) { return v === undefined || v === null || (typeof v === "string" && !v.trim()); }

function isRequired(field, values) {
  return Boolean(field.required) ||
    Object.entries(field.required_if || {}).some(([other, expected]) => values[other] === expected);
}

function checkValue(field, value) {
  switch (field.type) {
    case "text": case "textarea": case "tel":
      if (typeof value !== "string") return { code: "type" };
      if (field.max_length && value.length > field.max_length) return { code: "max_length", max_length: field.max_length };
      if (field.pattern && !new RegExp(`^(?:${field.pattern.replace(/^\^|\$$/g, "")})$`).test(value)) return { code: "pattern" };
      return null;
    case "integer":
      if (!Number.isInteger(value)) return { code: "type" };
      if (field.min !== undefined && field.min !== null && value < field.min) return { code: "min", min: field.min };
      if (field.max !== undefined && field.max !== null && value > field.max) return { code: "max", max: field.max };
      return null;
    case "boolean": return typeof value === "boolean" ? null : { code: "type" };
    case "choice": return (field.choices || []).some((c) => c.value === value) ? null : { code: "choice" };
    case "datetime": {
      // with a timezone, and between 2000 and 2100 (as the server: a year 1 or 9999 is a typo)
      const at = typeof value === "string" && /[zZ]|[+-]\d\d:\d\d$/.test(value) ? Date.parse(value) : NaN;
      if (Number.isNaN(at) || at < Date.UTC(2000, 0, 1) || at >= Date.UTC(2100, 0, 1)) return { code: "datetime" };
      return null;
    }
    default: return null;
  }
}

// Same rules and codes as the server; returns {name: {code, …}}.
export function validate(definition, values) {
  const errors = {};
  const names = new Set(definition.fields.map((f) => f.name));
  for (const name of Object.keys(values)) if (!names.has(name)) errors[name] = { code: "unknown" };
  for (const field of definition.fields) {
    const value = values[field.name];
    if (isEmpty(value)) {
      if (isRequired(field, values)) errors[field.name] = { code: "required" };
      continue;
    }
    const problem = checkValue(field, value);
    if (problem) errors[field.name] = problem;
  }
  return errors;
}

export function errorText(error) {
  return t(`err.${error.code}`, error);
}

function control(field, value, onInput) {
  const id = `f-${field.name}`;
  const common = { id, name: field.name, oninput: onInput, onchange: onInput };
  switch (field.type) {
    case "textarea":
      return h("textarea", { ...common, maxlength: field.max_length, rows: 4 }, value ?? "");
    case "tel":
      return h("input", { ...common, type: "tel", inputmode: "tel", autocomplete: "off", maxlength: field.max_length,
        value: value ?? "" });
    case "integer":
      return h("input", { ...common, type: "number", inputmode: "numeric", step: 1, min: field.min, max: field.max,
        value: value ?? "" });
    case "datetime":
      return h("input", { ...common, type: "datetime-local", value: toLocalInput(value) });
    case "boolean":
      return h("div", { class: "toggle", role: "radiogroup", id },
        [true, false].map((v) => h("label", { class: "toggle-option" },
          h("input", { type: "radio", name: field.name, value: String(v), checked: value === v, onchange: onInput }),
          t(v ? "field.yes" : "field.no"))));
    case "choice":
      if ((field.choices || []).length <= 5) {
        return h("div", { class: "choices", role: "radiogroup", id },
          field.choices.map((c) => h("label", { class: "choice" },
            h("input", { type: "radio", name: field.name, value: c.value, checked: value === c.value, onchange: onInput }),
            pick(c.label))));
      }
      return h("select", common, h("option", { value: "" }, t("field.choose")),
        field.choices.map((c) => h("option", { value: c.value, selected: value === c.value }, pick(c.label))));
    default:
      return h("input", { ...common, type: "text", maxlength: field.max_length, value: value ?? "" });
  }
}

function readField(element, field) {
  if (field.type === "boolean" || (field.type === "choice" && element.querySelector("input[type=radio]"))) {
    const checked = element.querySelector(`input[name="${field.name}"]:checked`);
    if (!checked) return null;
    return field.type === "boolean" ? checked.value === "true" : checked.value;
  }
  const input = element.querySelector(`[name="${field.name}"]`);
  const raw = input ? input.value : "";
  if (field.type === "datetime") return fromLocalInput(raw);
  if (field.type === "integer") return raw === "" ? null : Number(raw);
  return raw === "" && field.type === "choice" ? null : raw;
}

// renderForm(definition, values, { onInput }) → { element, read(), showErrors(errors), validate() }
export function renderForm(definition, values = {}, { onInput } = {}) {
  const rows = new Map();
  const changed = () => { update(); if (onInput) onInput(read()); };
  const element = h("div", { class: "form-fields" }, definition.fields.map((field) => {
    const error = h("p", { class: "field-error", role: "alert", hidden: true });
    // The browser's date-time picker speaks the browser's language; this line says the same in the app's.
    const echo = field.type === "datetime" ? h("p", { class: "field-echo muted", id: `f-${field.name}-echo` }) : null;
    const row = h("div", { class: `field field-${field.type}`, dataset: { field: field.name } },
      h("label", { for: `f-${field.name}`, class: "field-label" }, pick(field.label),
        h("span", { class: "req", hidden: !field.required }, ` *`)),
      field.help ? h("p", { class: "field-help muted" }, pick(field.help)) : null,
      control(field, values[field.name], changed),
      echo, error);
    if (echo) row.querySelector("input")?.setAttribute("aria-describedby", echo.id);
    rows.set(field.name, { row, error, field, echo });
    return row;
  }));

  function read() {
    const out = {};
    for (const { row, field } of rows.values()) {
      const value = readField(row, field);
      if (!isEmpty(value)) out[field.name] = value;
    }
    return out;
  }

  // Show "required" marks that depend on other answers (callback due when a callback is promised).
  function update() {
    const current = read();
    for (const { row, field, echo } of rows.values()) {
      row.querySelector(".req").hidden = !isRequired(field, current);
      if (echo) echo.textContent = current[field.name] ? t("dt.picked", { time: formatTime(current[field.name]) }) : "";
    }
  }

  function showErrors(errors = {}) {
    for (const [name, { row, error }] of rows) {
      const problem = errors[name];
      error.hidden = !problem;
      error.textContent = problem ? errorText(problem) : "";
      row.classList.toggle("invalid", Boolean(problem));
    }
    const first = Object.keys(errors).find((n) => rows.has(n));
    if (first) rows.get(first).row.scrollIntoView({ block: "center" });
  }

  update();
  return { element, read, showErrors, validate: () => validate(definition, read()) };
}
